"""envfarm.grade against swebench's own run_evaluation (run_instance underneath), same predictions, same images.

swebench needs an image at each task's base commit: made from envfarm's repository image before
the run (`envfarm.grade.reference`) and removed after. The verdicts (every key of the run report
but the machine's containers and images) and the per-instance report.json files must be equal.
"""

from __future__ import annotations

import asyncio
import json

from grade_case import RUN_ID, GradedRun

from envfarm.grade import reference


def test_same_verdicts_as_swebench_run_evaluation(graded_run: GradedRun):
    run = graded_run
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    graded = [t for t in run.tasks if run.expected[t.instance_id] != "empty"]
    images = asyncio.run(reference.make_instance_images(graded))
    ref_dir = run.folder / "swebench"
    ref_dir.mkdir()
    try:
        rows = reference.write_rows(run.tasks, images, run.folder / "swebench_rows.jsonl")
        theirs, _ = reference.run_swebench(rows, run.predictions_file, RUN_ID, workers=len(graded), cwd=ref_dir)
    finally:
        reference.remove_containers(RUN_ID)
        reference.remove_images(images, graded)
    assert reference.verdicts(run.report) == reference.verdicts(theirs)
    assert theirs["resolved_ids"] == run.ids("resolved") and theirs["error_ids"] == run.ids("error")
    for iid in theirs["completed_ids"]:
        path = f"logs/run_evaluation/{RUN_ID}/org__model-x/{iid}/report.json"
        assert json.loads((ref_dir / path).read_text()) == json.loads((run.out / path).read_text())
