"""From envfarm's GradeResult to swebench's words: resolved, unresolved or error, and report.json.

swebench's run_instance writes a per-instance report.json only when the tests ran and their log
was graded; an instance without one is an error instance (`error_ids`), and its
`make_run_report` reads nothing else. The mapping follows that line:

- a clean verdict (no `error_kind`) is `resolved` or `unresolved`, as swebench's functions say;
- TESTS_CRASHED (the patched code killed the test run) and TAMPERING (the patch or the test run
  attacked the grading) are verdicts on the patch, reward 0: `unresolved`, with a report.json
  whose `resolved` is false. swebench has no such check: on a patch that fools the log parser it
  says resolved where envfarm says unresolved, on purpose;
- PATCH_FAILED and PATCH_REJECTED (the patch did not apply, or was refused before applying it)
  and TIMEOUT are errors in swebench (run_instance raises before writing report.json): `error`;
- INFRASTRUCTURE and IMAGE_MISSING (no verdict at all: the sandbox or the image failed, still
  after retries) are `error` too. They are the only ones that are the grader's failing, not the
  patch's (`ErrorKind.masked`), and they alone make the command exit 1 (see `needs_rerun`).
"""

from __future__ import annotations

from typing import Any, Literal

from swebench.harness.infra_failure import TIER_ENVIRONMENT, classify_text

from envfarm.errors import ErrorKind
from envfarm.tasks.grade_result import GradeResult

Outcome = Literal["resolved", "unresolved", "error"]

# kinds whose result is still a verdict on the patch, from a run of (or a refusal to run) its tests
VERDICT_KINDS = frozenset({ErrorKind.TESTS_CRASHED, ErrorKind.TAMPERING})


def outcome(result: GradeResult) -> Outcome:
    if result.error_kind is None or result.error_kind in VERDICT_KINDS:
        return "resolved" if result.resolved and result.error_kind is None else "unresolved"
    return "error"


def needs_rerun(result: GradeResult) -> bool:
    """No verdict because the grader failed (masked kinds), not the patch: worth grading again."""
    return result.error_kind is not None and result.error_kind.masked


def instance_report(result: GradeResult, test_output: str | None) -> dict[str, Any] | None:
    """swebench's per-instance report (`get_eval_report`'s shape, tests_status included), or None
    where swebench writes none (an error instance)."""
    if outcome(result) == "error":
        return None
    entry: dict[str, Any] = {
        "patch_is_None": False,  # a null patch is never graded: it is an empty-patch instance
        "patch_exists": True,
        "patch_successfully_applied": result.tests_ran,  # swebench: the log showed a test run
        "resolved": outcome(result) == "resolved",
        "infra_failure": False,
    }
    if not result.tests_ran:  # as get_eval_report: classify an unparseable log, no tests_status
        found = classify_text(test_output or "")
        if found:
            entry["infra_failure"] = found[1] == TIER_ENVIRONMENT
            entry["infra_failure_reason"] = found[0]
        return {result.instance_id: entry}
    entry["tests_status"] = result.report
    return {result.instance_id: entry}
