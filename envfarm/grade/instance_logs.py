"""Per-instance files in swebench's layout, so swebench's own tools read envfarm's runs.

    <out>/logs/run_evaluation/<run_id>/<model>/<instance_id>/
        patch.diff        the prediction's patch, as given
        report.json       swebench's per-instance report; absent for an error instance, as in swebench
        test_output.txt   the test log swebench's parser read (absent when the tests never ran)
        run_instance.log  what happened, in swebench's words where it has them (APPLY_PATCH_FAIL,
                          "Test runtime: ...", "Result for ...")
        grade_result.json envfarm's whole GradeResult (error kind, patch report, phases, tampering)

`<model>` is model_name_or_path with "/" as "__", as swebench spells it; `<out>/logs/...` is
where swebench's run_evaluation writes when run in `<out>`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from swebench.harness.constants import (
    APPLY_PATCH_FAIL,
    APPLY_PATCH_PASS,
    LOG_INSTANCE,
    LOG_REPORT,
    LOG_TEST_OUTPUT,
    RUN_EVALUATION_LOG_DIR,
)

from envfarm.errors import ErrorKind
from envfarm.grade.outcome import instance_report, outcome
from envfarm.grade.predictions import Prediction
from envfarm.grade.worker import Graded

PATCH_FILE = "patch.diff"
GRADE_RESULT_FILE = "grade_result.json"


def run_dir(out: Path, run_id: str) -> Path:
    return Path(out) / RUN_EVALUATION_LOG_DIR / run_id


def instance_dir(out: Path, run_id: str, pred: Prediction) -> Path:
    return run_dir(out, run_id) / pred.model_dir / pred.instance_id


def already_graded(out: Path, run_id: str, preds: list[Prediction]) -> set[str]:
    """Instances this run already has a report.json for (swebench's run_evaluation skips them)."""
    return {p.instance_id for p in preds if (instance_dir(out, run_id, p) / LOG_REPORT).is_file()}


def write_instance(out: Path, run_id: str, pred: Prediction, graded: Graded) -> Path:
    """Write one graded prediction's files; returns its folder. report.json last: its presence
    means the instance is done, to a re-run and to make_run_report alike."""
    folder = instance_dir(out, run_id, pred)
    folder.mkdir(parents=True, exist_ok=True)
    result = graded.result
    (folder / PATCH_FILE).write_text(pred.model_patch or "")
    (folder / GRADE_RESULT_FILE).write_text(result.model_dump_json(indent=2))
    (folder / LOG_INSTANCE).write_text(_instance_log(pred, graded))
    if graded.test_output is not None:
        (folder / LOG_TEST_OUTPUT).write_text(graded.test_output)
    else:
        (folder / LOG_TEST_OUTPUT).unlink(missing_ok=True)  # a re-run's: not this grading's log
    report = instance_report(result, graded.test_output)
    if report is not None:
        (folder / LOG_REPORT).write_text(json.dumps(report, indent=4))
    return folder


def _instance_log(pred: Prediction, graded: Graded) -> str:
    result = graded.result
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    lines = [f"envfarm grade of {pred.instance_id} ({pred.model_name_or_path}) on {graded.node}, "
             f"attempt(s): {graded.attempts}"]
    if result.error_kind in (ErrorKind.PATCH_FAILED, ErrorKind.PATCH_REJECTED):
        lines.append(f"{APPLY_PATCH_FAIL}:\n{result.error}\n{result.log_tail}")
    elif result.tests_ran or result.error_kind in (ErrorKind.TIMEOUT, ErrorKind.TESTS_CRASHED):
        lines.append(f"{APPLY_PATCH_PASS}")
    report = result.patch_report
    if report.reverted or report.test_files:
        lines.append(f"Put back to the base commit before the tests: harness files {report.reverted}, "
                     f"test files {report.test_files}")
    if "tests" in result.phases:
        lines.append(f"Test runtime: {result.phases['tests']:_.2f} seconds")
    if result.phases:
        lines.append("Phases (s): " + ", ".join(f"{k} {v:.2f}" for k, v in result.phases.items()))
    if result.error_kind is not None:
        lines.append(f"envfarm error kind: {result.error_kind.value}: {result.error}")
    for finding in result.tampering:
        lines.append(f"Tampering: {finding}")
    lines.append(f"Result for {pred.instance_id}: {outcome(result)} (resolved: {outcome(result) == 'resolved'})")
    return "".join(f"{stamp} - {line}\n" for line in lines)
