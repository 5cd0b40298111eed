"""The tampering screen, the harness's log and the guard's cross-check, without a sandbox."""

from __future__ import annotations

import pytest

from envfarm.sandbox.base import ExecResult
from envfarm.tasks.grade_result import GradeResult
from envfarm.tasks.grading import _crash, guard_findings, harness_log, screen_patch
from envfarm.tasks.loading import BUILTIN_DIR, load_jsonl
from envfarm.tasks.schema import Task
from envfarm.tasks.tampering import screen_tampering


def new_file(path: str, text: str) -> str:
    lines = text.splitlines()
    return (f"diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n"
            f"@@ -0,0 +1,{len(lines)} @@\n" + "".join(f"+{line}\n" for line in lines))


def edit(path: str, old: str, new: str) -> str:
    return (f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n@@ -1,2 +1,2 @@\n"
            f" def f(x):\n-{old}\n+{new}\n")


@pytest.mark.parametrize("code", [
    'import sys\nsys.modules["_pytest.python"].Function.runtest = lambda self: None',
    "import atexit\natexit.register(print)",
    "import os\nos._exit(0)",
    "import os\nos.write(3, b'x')",
    "open('/proc/self/fd/1', 'w')",
    "import faulthandler",
    "import builtins\nbuiltins.print = len",
    "print('>>>>> End Test Output')",
    "print('>>>>> Test Exit Code: 0')",
    "import os, signal\nos.kill(1, signal.SIGTERM)",
    "exec(data)",
    "mod = __import__('sys')",
    "import unittest\nunittest.TestCase.run = lambda self, result=None: None",
    "def pytest_runtest_makereport(item, call):\n    pass",
    "import sys\nsys.settrace(f)",
])
def test_tampering_constructs_are_caught(code):
    reasons = screen_tampering(new_file("pkg/helper.py", code), ["tests/test_pkg.py"])
    assert reasons and all(r.startswith("pkg/helper.py: ") for r in reasons), reasons


def test_markers_are_caught_in_any_file_and_python_rules_only_in_python():
    assert screen_tampering(new_file("data/notes.txt", ">>>>> Start Test Output"), [])
    assert not screen_tampering(new_file("docs/usage.txt", "call sys.modules and atexit"), [])


def test_files_restored_or_removed_before_the_tests_are_not_screened():
    code = "import _pytest\n"
    assert not screen_tampering(new_file("tests/test_new.py", code), ["tests/test_pkg.py"])
    assert not screen_tampering(new_file("tests/helpers.py", code), ["tests/test_pkg.py"])
    assert screen_tampering(new_file("pkg/helpers.py", code), ["tests/test_pkg.py"])


def test_test_paths_are_the_restored_roots_and_test_names_only():
    from envfarm.tasks.tampering import is_test_path

    assert is_test_path("toolz/tests/test_x.py", ["toolz/tests"]) and is_test_path("tests/new.py", [])
    assert not is_test_path("toolz/dicttoolz.py", ["toolz/tests", "toolz/sandbox/tests"])
    assert not is_test_path("inflection/__init__.py", ["test_inflection.py"])
    assert not is_test_path("src/pkg/core.py", ["src/pkg/test_core.py"])


def test_a_misread_file_name_still_has_its_lines_screened():
    patch = ("diff --git a/conf.py b/conf.py\nnew file mode 100644\n--- /dev/null\n+++  b/pkg/x.py\n"
             "@@ -0,0 +1,1 @@\n+import atexit\n")
    assert screen_tampering(patch, [])


def test_rewriting_a_line_that_already_held_the_construct_adds_nothing():
    patch = edit("pkg/deprecated.py", "    frame = cast(inspect.currentframe(), T).f_back",
                 "    frame = cast(T, inspect.currentframe()).f_back")
    assert not screen_tampering(patch, [])


def test_a_test_framework_may_touch_its_own_internals():
    assert not screen_tampering(new_file("src/_pytest/python.py", "from _pytest.nodes import Item"), [])


def test_no_builtin_gold_patch_trips_the_screen():
    flagged = {t.instance_id: screen_tampering(t.patch, t.restored_files)
               for f in sorted(BUILTIN_DIR.glob("*.jsonl")) for t in load_jsonl(f)}
    assert len(flagged) >= 340  # the whole shipped suite
    assert not {k: v for k, v in flagged.items() if v}


def test_no_builtin_gold_patch_loses_a_file_to_the_tree_revert():
    """What grading puts back on the applied tree (harness files, test files) holds no gold fix."""
    from envfarm.tasks.diff import files_in_diff
    from envfarm.tasks.patch_guard import is_harness_file
    from envfarm.tasks.tampering import is_test_path

    lost = {t.instance_id: f for path in sorted(BUILTIN_DIR.glob("*.jsonl")) for t in load_jsonl(path)
            for f in files_in_diff(t.patch) if is_harness_file(f) or is_test_path(f, t.restored_files)}
    assert not lost


@pytest.fixture
def task() -> Task:
    return next(t for t in load_jsonl(BUILTIN_DIR / "fixtures.jsonl") if t.instance_id == "inflection__ordinal-teens")


def test_screen_patch_refuses_tampering_with_reasons(task):
    result = screen_patch(task, new_file("inflection/_x.py", "import atexit"))
    assert isinstance(result, GradeResult) and result.error_kind == "tampering" and result.tampering
    assert not result.error_kind.masked


def test_harness_log_drops_forged_markers_and_appends_the_real_status():
    output = ("+ : '>>>>> Start Test Output'\nPASSED t::a\n>>>>> End Test Output\n>>>>> Test Exit Code: 0\n"
              "FAILED t::a - boom\n+ : '>>>>> End Test Output'\n>>>>> Test Exit Code: 1\n")
    log = harness_log(output, 1)
    assert log.count(">>>>> End Test Output") == 1 and log.count("Test Exit Code") == 1
    assert log.rstrip().endswith(">>>>> Test Exit Code: 1") and "FAILED t::a" in log
    assert harness_log("no markers", 0) == "no markers" and harness_log(output, None) == output


def test_guard_findings(task):
    passed = GradeResult(instance_id=task.instance_id, tests_ran=True,
                         tests={t: "PASSED" for t in task.FAIL_TO_PASS + task.PASS_TO_PASS})
    honest = {"changed": [], "outcomes": {t: "passed" for t in task.FAIL_TO_PASS + task.PASS_TO_PASS},
              "exitstatus": 0}
    log = "=== test session starts ===\n"
    assert guard_findings(task, passed, honest, log) == []
    failing = {**honest, "outcomes": {**honest["outcomes"], task.FAIL_TO_PASS[0]: "failed"}}
    assert "did not pass" in guard_findings(task, passed, failing, log)[0]
    assert guard_findings(task, passed, {**honest, "changed": ["_pytest.python.Function.runtest"]}, log)
    assert "without the guard's record" in guard_findings(task, passed, None, log)[0]
    assert guard_findings(task, passed, None, "a runner that is not pytest") == []
    forged_line = f"PASSED {task.FAIL_TO_PASS[0]}\n"
    assert guard_findings(task, GradeResult(instance_id="x"), failing, log + forged_line)


def test_crash_attribution():
    assert _crash(ExecResult("", 137), True).startswith("the test process was killed by signal 9")
    assert _crash(ExecResult("", 1, limit="memory"), True)
    assert _crash(ExecResult("", None), True)
    assert _crash(ExecResult("", 143, note="the shell exited; a new shell session was started"), True)
    assert _crash(ExecResult("", 1), True) == "" and _crash(ExecResult("", 0), True) == ""
    assert _crash(ExecResult("", 137), False) == ""


def test_new_modules_that_shadow_the_runtime_where_tests_import_from():
    from envfarm.tasks.patch_guard import shadows_runtime

    roots = ["", "src"]
    for path in ("xml/__init__.py", "src/xml/__init__.py", "src/pluggy/__init__.py", "_pytest/python.py",
                 "src/pytest.py"):
        assert shadows_runtime(path, roots), path
    for path in ("mypkg/types.py", "parse.py", "tests/xml/x.py", "src/mypkg/__init__.py"):
        assert not shadows_runtime(path, roots), path
