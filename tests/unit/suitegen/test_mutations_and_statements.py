"""The bug generator: every kind yields valid, minimal, deterministic mutants; statements never leak."""

from __future__ import annotations

import ast
import difflib
import re

import pytest

from envfarm.sandbox.images import Project
from envfarm.suitegen import KINDS, mutants_of_file, order
from envfarm.suitegen.statement import compose, excerpt, leaked_lines, single_test_command
from envfarm.tasks.loading import BUILTIN_DIR, load_jsonl

SAMPLE = '''"""A module with a bit of everything the mutation kinds look for."""
import re


def window(items, size=2, strict=True):
    """Docstring stays untouched."""
    out = []
    if size < 1 or not items:
        raise ValueError("size must be positive")  # a comment survives
    for i in range(0, len(items) - size + 1):
        chunk = items[i:i + size]
        out.append(chunk)
    total = len(out) * 2
    if strict and total > 0:
        return out
    else:
        return out[:1]


class Text:
    def clean(self, text: str, sep: str = "-") -> str:
        text = text.strip()
        if text.startswith(sep):
            text = text[1:]
        parts = re.split(r"\\s+", text)
        return sep.join(p for p in parts if p) if any(parts) else ""

    def score(self, a, b):
        return max(a - b, 0) ** 2 // 3 + (a % b)
'''

PROJECT = Project("demo", "1.0", "MIT", "python3 -m pytest -rA -p no:cacheprovider -o addopts= tests "
                  "--deselect tests/test_x.py::slow", ("tests",), env={"PYTHONPATH": "src"})


def _changed(old: str, new: str) -> list[str]:
    return [ln for ln in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
            if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]


def test_at_least_eight_kinds_each_found_and_valid():
    mutants = [m for m in mutants_of_file("demo", "demo.py", SAMPLE) if m.check()]
    kinds = {m.kind for m in mutants}
    assert len(KINDS) >= 8
    assert kinds == set(KINDS), f"kinds with no valid mutant in the sample: {set(KINDS) - kinds}"
    original = ast.dump(ast.parse(SAMPLE))
    for m in mutants:
        new = m.source
        compile(new, "demo.py", "exec")
        assert ast.dump(ast.parse(new)) != original
        assert '"""Docstring stays untouched."""' in new


def test_edits_are_minimal_and_keep_formatting():
    for m in mutants_of_file("demo", "demo.py", SAMPLE):
        if not m.check():
            continue
        changed = _changed(SAMPLE, m.source)
        assert 1 <= len(changed) <= 12, (m.kind, changed)
        if m.kind in ("flipped_comparison", "off_by_one", "wrong_operator", "changed_constant",
                      "swapped_builtin", "dropped_return", "negated_condition", "removed_condition"):
            assert len(changed) == 2, (m.kind, changed)  # exactly one line replaced
        assert "# a comment survives" in m.source or m.kind in ("removed_branch",)


def test_examples_of_each_kind_look_like_the_kind():
    by_kind = {}
    for m in mutants_of_file("demo", "demo.py", SAMPLE):
        if m.check():
            by_kind.setdefault(m.kind, []).append(_changed(SAMPLE, m.source))
    assert any("size >= 1" in "".join(c) for c in by_kind["flipped_comparison"])
    assert any("range(0, len(items) - size + 2)" in "".join(c) for c in by_kind["off_by_one"])
    assert any("min(a - b, 0)" in "".join(c) for c in by_kind["swapped_builtin"])
    assert any("re.split(text, r" in "".join(c) for c in by_kind["swapped_arguments"])
    assert any(c == ["-        return out", "+        return"] for c in by_kind["dropped_return"])
    assert any(c == ["-        out.append(chunk)"] for c in by_kind["dropped_statement"])


def test_order_is_deterministic_per_seed():
    mutants = mutants_of_file("demo", "demo.py", SAMPLE)
    again = mutants_of_file("demo", "demo.py", SAMPLE)
    first = [m.instance_id for m in order(mutants, seed=7)]
    assert first == [m.instance_id for m in order(again, seed=7)]
    assert first != [m.instance_id for m in order(mutants, seed=8)]
    assert len(first) == len(order(mutants, seed=8))  # one per (function, kind) whatever the seed
    assert all(iid.startswith("demo__synth-") for iid in first)
    # ids name no kind, so an agent cannot read the bug from them
    assert not any(kind in iid for iid in first for kind in KINDS)


def test_coverage_filter_keeps_only_executed_functions():
    tree_lines = {5}  # `def window` only
    mutants = mutants_of_file("demo", "demo.py", SAMPLE, covered=tree_lines)
    assert mutants and {m.function for m in mutants} == {"window"}


PYTEST_OUT = """\
F                                                                        [100%]
=================================== FAILURES ===================================
__________________________________ test_slug ___________________________________
tests/test_slug.py:12: in test_slug
    assert slugify("Hello World") == "hello-world"
src/demo/slug.py:40: in slugify
    return sep.join(p for p in parts if p) if any(parts) else ""
E   AssertionError: assert 'hello_world' == 'hello-world'
E     - hello-world
E     + hello_world
=========================== short test summary info ============================
FAILED tests/test_slug.py::test_slug - AssertionError: assert 'hello_world' == 'hello-world'
"""

BUG_PATCH = """\
diff --git a/src/demo/slug.py b/src/demo/slug.py
--- a/src/demo/slug.py
+++ b/src/demo/slug.py
@@ -39,3 +39,3 @@ def slugify(text, sep="-"):
-    return sep.join(p for p in parts if p) if any(parts) else ""
+    return sep.join(p for p in parts if p) if all(parts) else ""
"""


def test_statement_quotes_the_test_not_the_library():
    frames, errors = excerpt(PYTEST_OUT, PROJECT)
    assert frames == ["tests/test_slug.py:12: in test_slug", '    assert slugify("Hello World") == "hello-world"']
    assert errors[0] == "E   AssertionError: assert 'hello_world' == 'hello-world'"
    text = compose("tests/test_slug.py::test_slug", frames, errors, ["tests/test_slug.py::test_other"])
    assert text.startswith("`slugify` returns a wrong result")
    assert "tests/test_slug.py::test_other" in text
    assert leaked_lines(text, BUG_PATCH) == []
    assert "src/demo/slug.py" not in text


def test_leak_check_catches_a_quoted_changed_line():
    text = "see: return sep.join(p for p in parts if p) if all(parts) else \"\""
    assert leaked_lines(text, BUG_PATCH)
    assert leaked_lines("diff --git a/x b/x", BUG_PATCH)


def test_single_test_command_keeps_options_and_drops_paths():
    cmd = single_test_command(PROJECT, "tests/test_x.py::test_a[1-2]")
    assert "-o addopts=" in cmd and "-p no:cacheprovider" in cmd and "PYTHONPATH=src" in cmd
    assert "--deselect" not in cmd and " tests " not in cmd and "-rA" not in cmd
    assert cmd.endswith("'tests/test_x.py::test_a[1-2]'")


SHIPPED = [t for f in sorted(BUILTIN_DIR.glob("*.jsonl")) if f.name != "fixtures.jsonl" for t in load_jsonl(f)]


@pytest.mark.skipif(not SHIPPED, reason="the builtin suite is not generated yet")
def test_shipped_statements_never_leak_the_bug():
    assert len({t.repo for t in SHIPPED}) >= 6
    assert len(SHIPPED) >= 300
    for task in SHIPPED:
        text = task.problem_statement
        assert leaked_lines(text, task.bug_patch) == [], task.instance_id
        assert leaked_lines(text, task.patch) == [], task.instance_id
        assert not any(kind in text for kind in KINDS), task.instance_id
        assert not re.search(r"\bmutation|\bmutant", text, re.I), task.instance_id  # (a test may be "..._mutate")
        assert task.FAIL_TO_PASS and task.PASS_TO_PASS
        assert not set(task.FAIL_TO_PASS) & set(task.PASS_TO_PASS)
