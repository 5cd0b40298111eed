"""Grade a SWE-bench predictions file: `python -m envfarm.grade`, a drop-in for swebench's run_evaluation.

    python -m envfarm.grade --tasks tasks.jsonl --predictions preds.jsonl --run-id my-run
    python -m envfarm.grade --tasks builtin --predictions gold --workers 8
    python -m envfarm.grade --tasks tasks/ --predictions preds.json --address auto   # a Ray cluster

Every prediction (`instance_id`, `model_name_or_path`, `model_patch`) is graded by envfarm's
grader (`envfarm.tasks.grading.grade`: a fresh sandbox from the task's image, the patch applied,
the task's eval script run, swebench's own log parser and resolution rules), many at once:
locally with asyncio (`--workers` at a time, each prediction's sandbox started while earlier ones
are graded), or with `--address` over a Ray cluster, one grading actor per node on that node's
Docker engine. Progress lines go to stderr while it runs.

What it writes is what swebench's run_evaluation writes, so swebench's tools read it:
`<out>/logs/run_evaluation/<run id>/<model>/<instance id>/` with patch.diff, report.json
(swebench's per-instance report), test_output.txt and run_instance.log (plus grade_result.json,
envfarm's whole verdict), and `<out>/<model>.<run id>.json`, the run report with
make_run_report's keys. Predictions are checked first (unknown instances, missing fields,
differing duplicates: one error naming the file and line); empty patches are not graded and
count as empty_patch_instances. A run id used before grades only the instances without a
report.json yet, as swebench's run_evaluation does.

envfarm's verdicts map to swebench's categories (`envfarm.grade.outcome`): a patch that does
not apply, is refused or runs past --timeout is an error instance, as in swebench; a test run
crashed by the patched code or tampered with is unresolved; INFRASTRUCTURE and IMAGE_MISSING
(the sandbox or the image failed, after --retries) are error instances too, and only they make
the exit status 1.

Exit status: 0 graded (whatever the verdicts), 1 instances without a verdict (infrastructure),
2 bad input (one line naming what to fix), 130 interrupted.
"""
