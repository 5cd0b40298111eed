"""envfarm's verdicts in swebench's categories: which kinds are verdicts, errors, or reruns."""

from __future__ import annotations

import pytest

from envfarm.errors import ErrorKind
from envfarm.grade.outcome import instance_report, needs_rerun, outcome
from envfarm.tasks.grade_result import GradeResult


def _result(kind: ErrorKind | None = None, resolved: bool = False, ran: bool = True) -> GradeResult:
    return GradeResult(instance_id="i", error_kind=kind, resolved=resolved, tests_ran=ran,
                       report={"FAIL_TO_PASS": {"success": [], "failure": ["t"]}})


@pytest.mark.parametrize("kind, expected, rerun", [
    (None, "unresolved", False),
    (ErrorKind.TESTS_CRASHED, "unresolved", False),
    (ErrorKind.TAMPERING, "unresolved", False),
    (ErrorKind.PATCH_FAILED, "error", False),
    (ErrorKind.PATCH_REJECTED, "error", False),
    (ErrorKind.TIMEOUT, "error", False),
    (ErrorKind.INFRASTRUCTURE, "error", True),
    (ErrorKind.IMAGE_MISSING, "error", True),
])
def test_kinds_map_to_swebench_categories(kind, expected, rerun):
    result = _result(kind)
    assert outcome(result) == expected and needs_rerun(result) is rerun
    assert (instance_report(result, "") is None) is (expected == "error")  # swebench writes no report.json


def test_a_resolved_log_with_tampering_is_unresolved():
    assert outcome(_result(None, resolved=True)) == "resolved"
    report = instance_report(_result(ErrorKind.TAMPERING, resolved=True), "log")
    assert report == {"i": {"patch_is_None": False, "patch_exists": True, "patch_successfully_applied": True,
                            "resolved": False, "infra_failure": False,
                            "tests_status": {"FAIL_TO_PASS": {"success": [], "failure": ["t"]}}}}


def test_a_log_without_a_test_run_is_classified_as_swebench_does():
    report = instance_report(_result(ErrorKind.TESTS_CRASHED, ran=False), "Cannot allocate memory\n")["i"]
    assert report["patch_successfully_applied"] is False and "tests_status" not in report
    assert report["infra_failure"] is True and report["infra_failure_reason"] == "out_of_memory"
