"""Statements at three levels: snippets read as user code, and no level ever leaks the fix."""

from __future__ import annotations

import re

import pytest

from envfarm.suitegen import levels
from envfarm.suitegen.repro import ACTUAL, repro, snippet
from envfarm.suitegen.statement import changed_lines, leaked_lines
from envfarm.tasks.loading import BUILTIN_DIR, load_jsonl
from envfarm.tasks.schema import Task

TESTS = '''import pytest
from collections import OrderedDict
from mylib.text import slug, words
import unittest

SEP = "-"


def norm(s):
    return s.strip().lower() + SEP


def test_slug():
    """Docstrings are dropped."""
    assert slug("A b") == "a-b"
    assert slug(norm(" X ")) == "x-"
    assert slug("") == ""


def test_uses_fixture(tmp_path):
    assert slug(str(tmp_path))


@pytest.mark.parametrize("x", [1, 2])
def test_param(x):
    assert x


class TestWords(unittest.TestCase):
    def test_split(self):
        self.assertEqual(words("a b"), ["a", "b"])
        self.assertTrue(words(""))

    def test_state(self):
        self.helper = 1
        assert self.helper
'''


def test_snippet_is_the_body_with_its_imports_and_helpers_only():
    text = snippet("tests/test_text.py::test_slug", TESTS)
    assert text is not None
    assert "from mylib.text import slug" in text and "words" not in text and "OrderedDict" not in text
    assert "def norm(s):" in text and "SEP = '-'" in text
    assert "test_slug" not in text and "Docstrings" not in text and "def test" not in text
    compile(text, "<snippet>", "exec")


def test_snippet_ends_at_the_failing_line_and_reports_the_value_it_got():
    line = TESTS.splitlines().index('    assert slug(norm(" X ")) == "x-"') + 1
    r = repro("tests/test_text.py::test_slug", TESTS, stop_line=line)
    assert r is not None and r.text.rstrip().endswith("assert slug(norm(' X ')) == 'x-'")
    assert 'slug("")' not in r.text and "slug('')" not in r.text
    assert r.compared == ("slug(norm(' X '))", "'x-'")
    assert ACTUAL in r.script and ACTUAL not in r.text


def test_unittest_asserts_become_plain_asserts():
    text = snippet("tests/test_text.py::TestWords::test_split", TESTS)
    assert text is not None and "self" not in text
    assert "assert words('a b') == ['a', 'b']\nassert words('')\n" in text


@pytest.mark.parametrize("test_id", ["tests/test_text.py::test_uses_fixture", "tests/test_text.py::test_param[3]",
                                     "tests/test_text.py::test_param",
                                     "tests/test_text.py::test_missing"])
def test_tests_a_user_could_not_paste_give_no_snippet(test_id):
    assert snippet(test_id, TESTS) is None


BUG = """diff --git a/mylib/text.py b/mylib/text.py
--- a/mylib/text.py
+++ b/mylib/text.py
@@ -1,3 +1,3 @@
 def slug(s):
-    return SEP.join(s.lower().split())
+    return SEP.join(s.upper().split())
"""


def test_safe_refuses_changed_lines_diff_markers_and_test_names():
    ok = levels.issue("changed_constant", [levels.Observation("print(slug('A b'))\n", "slug", "ValueError: x")])
    assert levels.safe(ok, BUG, ["tests/test_text.py::test_slug"])
    assert not levels.safe(ok + "\nreturn SEP.join(s.upper().split())", BUG, [])
    assert not levels.safe(ok + "\n@@ -1,3 +1,3 @@", BUG, [])
    assert not levels.safe(ok + "\nsee test_slug", BUG, ["tests/test_text.py::test_slug"])
    assert not levels.safe(ok + "\nin test_text.py", BUG, ["tests/test_text.py::test_slug"])


def test_issue_and_terse_wording():
    wrong = levels.Observation("assert slug('A') == 'a'\n", "slug", "AssertionError", "'A'", ("slug('A')", "'a'"))
    text = levels.issue("flipped_comparison", [wrong])
    assert text.startswith("`slug` returns a wrong result")
    assert "`slug('A')` gives `'A'`, but `'a'` is expected." in text and "```python" in text
    assert "Traceback" not in text
    assert levels.terse("flipped_comparison", [wrong], 3) == "`slug` returns a wrong result; 3 tests fail."
    two = levels.terse("multi_location", [wrong, levels.Observation("", "words", "KeyError: 1")], 5, locations=2)
    assert two.startswith("2 separate bugs") and two.count(".") <= 2
    impl = levels.terse("reimplement", [], 1, function="Box.grow", doc="Grow the box. Then more.\n\nDetails.")
    assert impl == "Implement `Box.grow`: Grow the box. 1 test fails."


SHIPPED = [t for f in sorted(BUILTIN_DIR.glob("*.jsonl")) for t in load_jsonl(f)]


def _levels(task: Task) -> dict[str, str]:
    return getattr(task, "statements", None) or {}


def test_every_shipped_task_records_its_levels():
    for task in SHIPPED:
        recorded = _levels(task)
        assert recorded.get("traceback") == task.problem_statement, task.instance_id
        assert "terse" in recorded, task.instance_id
        assert len(re.findall(r"[.!?](\s|$)", recorded["terse"])) <= 2, recorded["terse"]
        assert "issue" in recorded, f"{task.instance_id}: a task without an issue statement"
        assert "```python\n" in recorded["issue"], f"{task.instance_id}: an issue statement without a snippet"


@pytest.mark.parametrize("task", SHIPPED, ids=lambda t: t.instance_id)
def test_shipped_statements_never_leak_the_fix(task):
    for level, text in _levels(task).items():
        assert not leaked_lines(text, task.bug_patch), (level, leaked_lines(text, task.bug_patch))
        assert "diff --git" not in text and "@@ -" not in text
        if level != "traceback":  # the traceback level quotes the failing test by design
            assert levels.safe(text, task.bug_patch, task.FAIL_TO_PASS), (level, text)
            # a re-implementation task quotes the kept docstring (the agent has it), doctests included
            own_words = "\n".join(ln for ln in text.splitlines() if not ln.startswith(">"))
            assert "Traceback (most recent call last)" not in own_words


def test_reimplement_statements_never_quote_the_removed_body():
    tasks = [t for t in SHIPPED if (getattr(t, "envfarm_meta", None) or {}).get("kind") == "reimplement"]
    for task in tasks:
        removed = [ln[1:].strip() for ln in task.bug_patch.splitlines()
                   if ln.startswith("-") and not ln.startswith("---") and len(ln[1:].strip()) >= 6
                   and re.search(r"[A-Za-z0-9]", ln[1:])
                   and ln[1:].strip() not in ("else:", "return", "pass")]  # what any text may hold
        assert removed and set(removed) <= set(changed_lines(task.bug_patch))
        for text in _levels(task).values():
            assert not [ln for ln in removed if ln in text], task.instance_id


PYTEST_OUT = """============================= test session starts ==============================
collected 2 items

tests/test_text.py FF

=================================== FAILURES ===================================
__________________________________ test_slug ___________________________________
tests/test_text.py:14: in test_slug
    assert slug("A b") == "a-b"
E   AssertionError: assert 'A-B' == 'a-b'
____________________________ TestWords.test_split ______________________________
mylib/text.py:3: in words
    return s.split(1)
E   TypeError: must be str or None, not int
=========================== short test summary info ============================
"""


def test_failure_sections_split_one_run_per_test():
    from envfarm.sandbox.images import Project
    from envfarm.suitegen.restate import failure_sections
    from envfarm.suitegen.statement import excerpt

    sections = failure_sections(PYTEST_OUT)
    assert set(sections) == {"test_slug", "TestWords.test_split"}
    project = Project("demo", "1", "MIT", "python3 -m pytest tests", ("tests",))
    frames, errors = excerpt(sections["test_slug"], project)
    assert frames[0] == "tests/test_text.py:14: in test_slug" and "'A-B' == 'a-b'" in errors[0]
    assert excerpt(sections["TestWords.test_split"], project)[1] == ["E   TypeError: must be str or None, not int"]


def test_backfill_writes_terse_and_labels_from_the_data_alone():
    from envfarm.suitegen.restate import backfill

    row = {"instance_id": "demo__synth-1", "repo": "demo", "FAIL_TO_PASS": ["tests/test_text.py::test_slug"],
           "problem_statement": "`slug` raises TypeError\n\nThe test `tests/test_text.py::test_slug` fails",
           "image": "img", "eval_script": "true", "bug_patch": BUG, "patch": BUG,
           "envfarm_meta": {"kind": "changed_constant", "generator": "envfarm.tasks.synth", "path": "mylib/text.py"}}
    task = backfill(Task.parse(row))
    assert task.statements == {"traceback": row["problem_statement"],  # type: ignore[attr-defined]
                               "terse": "`slug` raises TypeError; 1 test fails."}
    assert task.difficulty["kind"] == "single" and task.difficulty["f2p"] == 1  # type: ignore[attr-defined]


def test_an_old_records_terse_level_is_cut_at_its_first_sentence_when_collected():
    from envfarm.suitegen.levels import retrimmed

    old = ('Implement `f`: Times like "1:22" are ambiguous; do they mean minutes or hours? '
           "By default, the latter. 6 tests fail.")
    cut = 'Implement `f`: Times like "1:22" are ambiguous; do they mean minutes or hours. 6 tests fail.'
    assert retrimmed(old) == cut
    assert retrimmed("Implement `f`: Does x. 1 test fails.") == "Implement `f`: Does x. 1 test fails."
    assert retrimmed("`f` returns a wrong result; 2 tests fail.") == "`f` returns a wrong result; 2 tests fail."


PARAM_TESTS = '''import pytest
from datetime import date
from mylib.text import FMT_A, FMT_B, ordinal, parse

ORDINALS = (
    (1, "1st"),
    (-11, "-11th"),
    ("12", "12th"),
)
CASES = {
    ("2024-01-02", date(2024, 1, 2)),
    ("nope", None),
}


@pytest.mark.parametrize(("number", "expected"), ORDINALS)
def test_ordinal(number, expected):
    assert expected == ordinal(number)


@pytest.mark.parametrize("text,expected", CASES)
def test_parse(text, expected):
    if expected is None:
        with pytest.raises(ValueError):
            parse(text)
    else:
        result = parse(text)
        assert result == expected


@pytest.mark.parametrize("text", ["a", pytest.param("b", id="second")])
def test_one_name(text):
    assert parse(text)


@pytest.mark.parametrize("x", [1, 2], ids=["one", "two"])
def test_explicit_ids(x):
    assert x


@pytest.mark.parametrize("x", [1, 2], ids=str)
def test_computed_ids(x):
    assert x


@pytest.mark.parametrize("x,fmt", [(1, FMT_A), (2, FMT_B)])
def test_imported_constant(x, fmt):
    assert ordinal(x, fmt)
'''


def test_a_parametrized_case_becomes_its_row_written_into_the_call():
    r = repro("tests/test_o.py::test_ordinal[-11--11th]", PARAM_TESTS)
    assert r is not None and r.text.rstrip().endswith("assert '-11th' == ordinal(-11)")
    assert r.compared == ("ordinal(-11)", "'-11th'")  # a literal on the left is the expected side
    assert "ORDINALS" not in r.text and "number" not in r.text and "import pytest" not in r.text
    assert snippet("tests/test_o.py::test_ordinal[12-12th]", PARAM_TESTS).rstrip().endswith(
        "assert '12th' == ordinal('12')")


def test_a_set_table_row_is_told_by_its_literal_values_and_settled_branches_fold():
    text = snippet("tests/test_o.py::test_parse[2024-01-02-expected1]", PARAM_TESTS)
    assert text is not None
    assert "from datetime import date" in text and "if " not in text and "raises" not in text
    assert text.rstrip().endswith("result = parse('2024-01-02')\nassert result == date(2024, 1, 2)")
    assert "with pytest.raises(ValueError):\n    parse('nope')" in snippet("tests/test_o.py::test_parse[nope-None]",
                                                                         PARAM_TESTS)


@pytest.mark.parametrize("test_id", ["tests/test_o.py::test_ordinal[7-7th]", "tests/test_o.py::test_ordinal",
                                     "tests/test_o.py::test_computed_ids[1]", "tests/test_o.py::test_ordinal[1-1st"])
def test_a_case_not_told_for_sure_gives_no_snippet(test_id):
    assert snippet(test_id, PARAM_TESTS) is None


def test_single_name_tables_and_explicit_param_ids():
    assert snippet("tests/test_o.py::test_one_name[a]", PARAM_TESTS).rstrip().endswith("assert parse('a')")
    assert snippet("tests/test_o.py::test_one_name[second]", PARAM_TESTS).rstrip().endswith("assert parse('b')")
    assert snippet("tests/test_o.py::test_explicit_ids[two]", PARAM_TESTS).rstrip().endswith("assert 2")
    # a constant of another module shows as its value or as name and index: either way the row is told
    text = snippet("tests/test_o.py::test_imported_constant[2-%b]", PARAM_TESTS)
    assert text is not None and text.rstrip().endswith("assert ordinal(2, FMT_B)")
    assert "from mylib.text import FMT_B, ordinal" in text
    assert snippet("tests/test_o.py::test_imported_constant[1-fmt0]", PARAM_TESTS).rstrip().endswith(
        "assert ordinal(1, FMT_A)")


CLASS_TESTS = '''import unittest
from mylib.evaluator import Evaluator, LRU
from .base import RemoteBase


class Base(unittest.TestCase):
    Cache = LRU

    def setUp(self):
        """A fresh evaluator."""
        self.ev = Evaluator()

    def check(self, expr, expected):
        return self.assertEqual(self.ev.eval(expr), expected)


class TestEval(Base):
    def setUp(self):
        super().setUp()
        self.ev.strict = True

    def test_add(self):
        self.check("1 + 1", 2)

    def test_cache(self):
        cache = self.Cache(2)
        self.mine = cache
        assert self.mine.maxsize == 2

    def test_nested_class(self):
        class Foo:
            def bar(self):
                return self
        assert Foo().bar()

    def remember(self, x):
        self.last = x

    def test_helper_sets_state(self):
        self.remember(1)


class TestRemote(RemoteBase):
    def test_remote(self):
        self.assertEqual(self.client.get(), 1)
'''


def test_a_methods_class_state_is_written_out_as_plain_code():
    text = snippet("tests/test_e.py::TestEval::test_add", CLASS_TESTS)
    assert text is not None and "self" not in text and "class " not in text
    # the bases' setUp first, then the class's own; the helper becomes a function
    assert "ev = Evaluator()\nev.strict = True\n" in text
    assert "def check(expr, expected):\n    assert ev.eval(expr) == expected" in text
    assert text.rstrip().endswith("check('1 + 1', 2)")
    compile(text, "<snippet>", "exec")
    cache = snippet("tests/test_e.py::TestEval::test_cache", CLASS_TESTS)
    assert cache is not None and "Cache = LRU" in cache and "mine = cache\nassert mine.maxsize == 2" in cache
    assert "RemoteBase" not in cache  # the relative import it does not use is left out
    nested = snippet("tests/test_e.py::TestEval::test_nested_class", CLASS_TESTS)
    assert nested is not None and "return self" in nested  # a class of the test keeps its own self


@pytest.mark.parametrize("test_id", ["tests/test_e.py::TestEval::test_helper_sets_state",
                                     "tests/test_e.py::TestRemote::test_remote"])
def test_state_that_cannot_be_written_out_gives_no_snippet(test_id):
    assert snippet(test_id, CLASS_TESTS) is None
