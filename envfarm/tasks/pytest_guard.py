"""A pytest plugin the grader loads first, to see whether code under test rewrote the verdict.

Not imported by envfarm: grading writes this file into the grading container under a random
module name for each grade and loads it with `-p` (through PYTEST_ADDOPTS) before pytest
imports the repository's conftests, test modules or package. It then:

- snapshots pytest's and unittest's machinery (`Function.runtest`, `CallInfo.from_call`,
  `TestReport.from_item_and_call`, the runner's and the terminal reporter's functions, pluggy's
  hook calling, `os._exit`, `builtins.__import__`, ...) and checks every one of them is still the
  same object at every test's report and at the end of the session;
- records each test's outcome from its own outermost `pytest_runtest_makereport` wrapper,
  cross-checked against the call's own exception (a report that says "passed" for a call that
  raised was rewritten);
- writes that record, once, at the end of the session, to a file it opened exclusively at
  import (path from ENVFARM_GUARD_OUT, removed from the environment at once).

The grader compares the record with the log it parsed: a test the log says passed and the guard
did not see pass, a replaced internal, or a missing record where pytest ran, costs the reward
(see `grading`). Everything here runs inside the process it watches, so code that knows this
plugin can still defeat it; it is one of several layers (the patch screen in `tampering`, the
harness's own exit status), meant to make a forged verdict take a deliberate, visible effort.
Compatible with Python 3.6+ and pytest 5+; it never fails a test run itself.
"""

import builtins
import json
import os
import sys

_OUT_FD = None
_path = os.environ.pop("ENVFARM_GUARD_OUT", "")
if _path:
    try:
        _OUT_FD = os.open(_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:  # a second process (an xdist worker) or a planted file: this one does not write
        _OUT_FD = None

_WATCHED = [
    ("_pytest.python", "Function", "runtest"), ("_pytest.python", "Function", "setup"),
    ("_pytest.python", None, "pytest_pyfunc_call"), ("_pytest.python", "Module", "collect"),
    ("_pytest.runner", "CallInfo", "from_call"), ("_pytest.runner", None, "call_and_report"),
    ("_pytest.runner", None, "runtestprotocol"), ("_pytest.runner", None, "call_runtest_hook"),
    ("_pytest.runner", None, "pytest_runtest_makereport"), ("_pytest.runner", None, "pytest_runtest_call"),
    ("_pytest.runner", None, "check_interactive_exception"),
    ("_pytest.reports", "TestReport", "from_item_and_call"), ("_pytest.reports", "BaseReport", "passed"),
    ("_pytest.reports", "BaseReport", "failed"), ("_pytest.reports", "TestReport", "__init__"),
    ("_pytest.main", None, "pytest_runtestloop"), ("_pytest.main", "Session", "perform_collect"),
    ("_pytest.terminal", "TerminalReporter", "pytest_runtest_logreport"),
    ("_pytest.terminal", "TerminalReporter", "short_test_summary"),
    ("_pytest.terminal", "TerminalReporter", "summary_stats"), ("_pytest.terminal", "TerminalReporter", "write_line"),
    ("_pytest.terminal", None, "_get_line_with_reprcrash_message"),
    ("_pytest.skipping", None, "pytest_runtest_makereport"), ("_pytest.unittest", "TestCaseFunction", "runtest"),
    ("_pytest.outcomes", None, "fail"), ("_pytest.outcomes", None, "skip"), ("_pytest.outcomes", None, "xfail"),
    ("_pytest.assertion.rewrite", None, "rewrite_asserts"), ("_pytest.assertion.util", None, "assertrepr_compare"),
    ("_pytest.python_api", None, "approx"), ("_pytest.python_api", None, "raises"),
    ("pluggy._hooks", "_HookCaller", "__call__"), ("pluggy._hooks", "HookCaller", "__call__"),
    ("pluggy._manager", "PluginManager", "_hookexec"), ("pluggy._callers", None, "_multicall"),
    ("unittest.case", "TestCase", "run"), ("unittest.case", "TestCase", "__call__"),
    ("unittest.case", "TestCase", "assertEqual"), ("unittest.case", "TestCase", "assertTrue"),
    ("unittest.case", "TestCase", "_baseAssertEqual"), ("unittest.case", "TestCase", "fail"),
    ("unittest.result", "TestResult", "addFailure"), ("unittest.result", "TestResult", "addError"),
    ("os", None, "_exit"), ("os", None, "write"), ("os", None, "kill"), ("sys", None, "exit"),
    ("builtins", None, "__import__"), ("builtins", None, "print"),
]


def _lookup(module, owner, name):
    mod = sys.modules.get(module)
    if mod is None:
        try:
            mod = __import__(module, fromlist=["_"])
        except Exception:  # noqa: BLE001 - an older pytest or pluggy: nothing to watch there
            return None, None
    obj = getattr(mod, owner, None) if owner else mod
    if obj is None:
        return mod, None
    return mod, (obj.__dict__.get(name) if isinstance(obj, type) else getattr(obj, name, None))


_SNAPSHOT = {}
for _m, _o, _n in _WATCHED:
    _mod, _val = _lookup(_m, _o, _n)
    if _val is not None:
        _SNAPSHOT[(_m, _o, _n)] = (_mod, _val)
_ASSERT = builtins.AssertionError
_changed = []
_outcomes = {}
_finished = False


def _check(internal_only):
    """Append what is no longer the object snapshotted at import. During the run only pytest's and
    pluggy's machinery (tests may monkeypatch `sys.exit` or `print` and undo it at teardown)."""
    for key, (mod, val) in _SNAPSHOT.items():
        name = ".".join(k for k in key if k)
        if name in _changed or internal_only and not key[0].startswith(("_pytest", "pluggy")):
            continue
        if sys.modules.get(key[0]) is not mod:
            _changed.append(name)
            continue
        _, now = _lookup(*key)
        if now is not val:
            _changed.append(name)
    if not internal_only and builtins.AssertionError is not _ASSERT:
        _changed.append("builtins.AssertionError")


_RANK = {"passed": 0, "skipped": 1, "xfailed": 2, "xpassed": 2, "error": 4, "failed": 4}


def _record(report, call):
    """Keep each test's worst outcome over its phases (setup, call, teardown)."""
    outcome = report.outcome
    xfail = hasattr(report, "wasxfail")
    if report.when == "call" and call.excinfo is not None and outcome == "passed" and not xfail:
        if "report rewritten: passed with an exception" not in _changed:
            _changed.append("report rewritten: passed with an exception")
        outcome = "failed"
    if xfail:
        outcome = {"skipped": "xfailed", "passed": "xpassed"}.get(outcome, outcome)
    elif report.when != "call" and outcome == "failed":
        outcome = "error"
    before = _outcomes.get(report.nodeid)
    if before is None or _RANK.get(outcome, 3) > _RANK.get(before, 3):
        _outcomes[report.nodeid] = outcome


try:
    import pytest

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_runtest_makereport(item, call):
        outcome = yield
        try:
            if call.when == "call":
                _check(True)
            _record(outcome.get_result(), call)
        except Exception as exc:  # noqa: BLE001 - never fail the run; say so instead
            _changed.append("guard error: " + repr(exc))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(session, exitstatus):
        global _finished
        _check(False)
        _finished = True
        if _OUT_FD is not None:
            data = json.dumps({"changed": _changed, "outcomes": _outcomes, "exitstatus": int(exitstatus)})
            os.write(_OUT_FD, data.encode())
            os.close(_OUT_FD)
except Exception:  # noqa: BLE001
    pass
