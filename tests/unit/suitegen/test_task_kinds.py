"""The new task kinds: re-implementation, contract change, multi-location combinations."""

from __future__ import annotations

import ast

import pytest

from envfarm.suitegen.combine import (
    Combination,
    apply_patches,
    combinations,
    diff_texts,
    fix_all_but_one,
    group_id,
    validated_groups,
)
from envfarm.suitegen.contract import contract_changes
from envfarm.suitegen.reimplement import documented, removals_of_file
from envfarm.tasks.schema import Task

HELPERS = '''"""Helpers."""


def scale(value, factor):
    """Multiply value by factor."""
    return value * factor


def shift(value, by):
    return scale(value, 1) + by


class Box:
    def __init__(self, x):
        self.x = x

    def grow(self, n):
        """Grow the box by n, twice."""
        self.x += n
        self.x += n
        return self


def one_liner(a): return a
'''

USER = '''from helpers import scale


def area(w, h):
    return scale(w, h)
'''


def test_reimplement_keeps_signature_and_docstring_and_raises():
    mutants = {m.function: m for m in removals_of_file("demo", "helpers.py", HELPERS)}
    assert set(mutants) == {"Box.grow"}  # dunders, one-liners and two-line bodies are left alone
    new = mutants["Box.grow"].source
    assert mutants["Box.grow"].check()
    func = next(n for n in ast.walk(ast.parse(new)) if isinstance(n, ast.FunctionDef) and n.name == "grow")
    assert ast.get_docstring(func) == "Grow the box by n, twice."
    assert [ast.unparse(s) for s in func.body[1:]] == ["raise NotImplementedError"]
    assert "    def grow(self, n):\n" in new and "self.x += n" not in new
    assert documented(list(mutants.values())) == {mutants["Box.grow"].instance_id}


def test_reimplement_respects_coverage():
    assert removals_of_file("demo", "helpers.py", HELPERS, covered={1}) == []


def test_contract_change_swaps_the_def_and_its_own_module_callers_only():
    texts = {"helpers.py": HELPERS, "user.py": USER}
    covered = {"user.py": {4}, "helpers.py": set()}
    found = contract_changes("demo", texts, covered, seed=0)
    assert [m.function for m in found] == ["scale"]
    new = found[0].source
    assert "def scale(factor, value):" in new
    assert "return scale(1, value) + by" in new  # the same-file caller follows the new contract
    assert found[0].path == "helpers.py" and found[0].check()
    # no tested caller in another file: no candidate
    assert contract_changes("demo", texts, {"user.py": set()}, seed=0) == []


def _single(iid: str, path: str, function: str, bug_patch: str) -> Task:
    return Task.parse({"instance_id": iid, "repo": "demo", "problem_statement": "x", "FAIL_TO_PASS": ["t::a"],
                       "image": "img", "eval_script": "true", "bug_patch": bug_patch,
                       "envfarm_meta": {"kind": "changed_constant", "path": path, "function": function, "line": 1}})


CLEAN = {"a.py": "def f():\n    return 1\n\n\ndef g():\n    return 2\n", "b.py": "def h():\n    return 3\n"}


def _bug(path: str, old: str, new: str) -> str:
    after = dict(CLEAN)
    after[path] = CLEAN[path].replace(old, new)
    return diff_texts({path: CLEAN[path]}, {path: after[path]})


def test_combination_applies_all_parts_and_each_partial_keeps_one_bug():
    parts = [_single("demo__synth-1", "a.py", "f", _bug("a.py", "return 1", "return 0")),
             _single("demo__synth-2", "b.py", "h", _bug("b.py", "return 3", "return 4"))]
    combo = Combination("demo__multi-x", "demo", parts, CLEAN)
    assert combo.check()
    cand = combo.candidate()
    assert cand.sources == {"a.py": CLEAN["a.py"].replace("return 1", "return 0"),
                            "b.py": CLEAN["b.py"].replace("return 3", "return 4")}
    assert cand.partials == [{"a.py": cand.sources["a.py"], "b.py": CLEAN["b.py"]},
                             {"a.py": CLEAN["a.py"], "b.py": cand.sources["b.py"]}]
    assert [loc["from"] for loc in cand.meta["locations"]] == ["demo__synth-1", "demo__synth-2"]
    fixes = fix_all_but_one(parts[0], parts, CLEAN)
    assert "-    return 4" in fixes[0] and "return 0" not in fixes[0]
    assert "-    return 0" in fixes[1] and "return 4" not in fixes[1]


def test_overlapping_bugs_do_not_combine():
    one = _bug("a.py", "return 1", "return 0")
    two = _bug("a.py", "return 1", "return 5")
    assert apply_patches(CLEAN, [one, two]) is None
    combo = Combination("demo__multi-y", "demo", [_single("s1", "a.py", "f", one), _single("s2", "a.py", "g", two)],
                        CLEAN)
    assert not combo.check()
    with pytest.raises(ValueError):
        combo.candidate()


def test_combinations_pick_distinct_functions_and_files():
    singles = [_single(f"demo__synth-{i}", path, fn, _bug(path, old, new)) for i, (path, fn, old, new) in enumerate([
        ("a.py", "f", "return 1", "return 0"), ("a.py", "g", "return 2", "return 0"),
        ("b.py", "h", "return 3", "return 0")])]
    combos = combinations("demo", singles, CLEAN.__getitem__, seed=0, limit=5)
    assert combos
    for combo in combos:
        paths = [t.envfarm_meta["path"] for t in combo.parts]  # type: ignore[attr-defined]
        assert 2 <= len(combo.parts) <= 4 and len(set(paths)) == len(paths)  # several files: one bug per file
        assert combo.instance_id.startswith("demo__multi-")
    assert combinations("demo", singles, CLEAN.__getitem__, seed=0, limit=5) == combos  # deterministic


def test_validated_groups_come_first_and_survive_a_change_of_the_singles():
    specs = [("a.py", "f", "return 1", "return 0"), ("a.py", "g", "return 2", "return 0"),
             ("b.py", "h", "return 3", "return 0")]
    singles = [_single(f"demo__synth-{i}", path, fn, _bug(path, old, new))
               for i, (path, fn, old, new) in enumerate(specs)]
    kept = ["demo__synth-1", "demo__synth-2"]
    records = [{"instance_id": group_id("demo", kept), "kind": "multi_location", "status": "accepted",
                "task": {"envfarm_meta": {"locations": [{"from": i} for i in kept]}}},
               {"instance_id": "demo__multi-rejected", "kind": "multi_location", "status": "rejected"}]
    assert validated_groups(records) == [kept]
    combos = combinations("demo", singles, CLEAN.__getitem__, seed=0, limit=5, keep=validated_groups(records))
    assert combos[0].instance_id == group_id("demo", kept)
    assert sorted(t.instance_id for t in combos[0].parts) == kept
    # a validated group with a part no longer shipped is not proposed
    gone = combinations("demo", singles[1:2] + singles[:1], CLEAN.__getitem__, seed=0, limit=5, keep=[kept])
    assert group_id("demo", kept) not in {c.instance_id for c in gone}
