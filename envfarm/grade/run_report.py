"""The run report: swebench's `make_run_report`, key for key, read from the per-instance files.

Computed from the files (not from memory) exactly as make_run_report does, so a run resumed
with the same run id reports every instance it has graded so far, and swebench's own
make_run_report run in `<out>` gives the same report. Written to `<out>/<model>.<run_id>.json`,
`<model>` being the first prediction's model_name_or_path with "/" as "__", as swebench names it.

The two machine-state keys read this machine's engine, as swebench's do: `unstopped_containers`
lists this run's sandboxes still there (none after a clean run; on a Ray cluster, this node's
only), `unremoved_images` the task images present (envfarm keeps its shared repository images
on purpose; swebench's run_evaluation keeps its instance images as well).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from swebench.harness.constants import LOG_INSTANCE, LOG_REPORT, LOG_TEST_OUTPUT
from swebench.harness.infra_failure import TIER_ENVIRONMENT, classify_logs

from envfarm.grade.instance_logs import instance_dir
from envfarm.grade.predictions import Prediction


def make_report(preds: list[Prediction], dataset_ids: list[str], run_id: str, out: Path,
                unstopped_containers: list[str], unremoved_images: list[str]) -> dict[str, Any]:
    """make_run_report's dictionary (with a Docker client's keys) for these predictions."""
    by_id = {p.instance_id: p for p in preds}
    completed, resolved, unresolved, errors, incomplete, empty = set(), set(), set(), set(), set(), set()
    for iid in dataset_ids:
        pred = by_id.get(iid)
        if pred is None:
            incomplete.add(iid)
            continue
        if pred.empty:
            empty.add(iid)
            continue
        report_file = instance_dir(out, run_id, pred) / LOG_REPORT
        if not report_file.exists():
            errors.add(iid)
            continue
        completed.add(iid)
        try:
            content = report_file.read_text().strip()
            if not content:
                errors.add(iid)
                continue
            (resolved if json.loads(content)[iid]["resolved"] else unresolved).add(iid)
        except (json.JSONDecodeError, KeyError):
            errors.add(iid)
    reasons: dict[str, str] = {}
    infra, ambiguous = set(), set()
    for iid in unresolved | errors:
        folder = instance_dir(out, run_id, by_id[iid])
        found = classify_logs(folder / LOG_TEST_OUTPUT, folder / LOG_INSTANCE)
        if found:
            reasons[iid] = found[0]
            (infra if found[1] == TIER_ENVIRONMENT else ambiguous).add(iid)
    return {
        "total_instances": len(dataset_ids),
        "submitted_instances": len(by_id),
        "completed_instances": len(completed),
        "resolved_instances": len(resolved),
        "unresolved_instances": len(unresolved),
        "infra_failure_instances": len(infra),
        "ambiguous_failure_instances": len(ambiguous),
        "empty_patch_instances": len(empty),
        "error_instances": len(errors),
        "completed_ids": sorted(completed),
        "incomplete_ids": sorted(incomplete),
        "empty_patch_ids": sorted(empty),
        "submitted_ids": sorted(by_id),
        "resolved_ids": sorted(resolved),
        "unresolved_ids": sorted(unresolved),
        "infra_failure_ids": sorted(infra),
        "ambiguous_failure_ids": sorted(ambiguous),
        "failure_reasons": dict(sorted(reasons.items())),
        "error_ids": sorted(errors),
        "schema_version": 2,
        "unstopped_instances": len(unstopped_containers),
        "unstopped_containers": sorted(unstopped_containers),
        "unremoved_images": sorted(unremoved_images),
    }


def report_path(out: Path, run_id: str, preds: list[Prediction]) -> Path:
    return Path(out) / f"{preds[0].model_dir}.{run_id}.json"


def write_report(report: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=4) + "\n")
    return path


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The lines make_run_report prints, in its words (scripts that read them keep working)."""
    return [
        f"Total instances: {report['total_instances']}",
        f"Instances submitted: {len(report['submitted_ids'])}",
        f"Instances completed: {report['completed_instances']}",
        f"Instances incomplete: {len(report['incomplete_ids'])}",
        f"Instances resolved: {report['resolved_instances']}",
        f"Instances unresolved: {report['unresolved_instances']}",
        f"Instances with likely infrastructure failures: {report['infra_failure_instances']}",
        f"Instances with ambiguous failures: {report['ambiguous_failure_instances']}",
        f"Instances with empty patches: {report['empty_patch_instances']}",
        f"Instances with errors: {report['error_instances']}",
        f"Unstopped containers: {report['unstopped_instances']}",
        f"Unremoved images: {len(report['unremoved_images'])}",
    ]
