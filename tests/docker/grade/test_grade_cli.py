"""`python -m envfarm.grade` on real sandboxes: verdicts, swebench's report and per-instance files."""

from __future__ import annotations

import json

from grade_case import RUN_ID, GradedRun, grade_cli
from swebench.harness.constants import APPLY_PATCH_FAIL
from swebench.harness.grading import get_eval_report
from swebench.harness.reporting import make_run_report
from swebench.harness.utils import make_test_spec

from envfarm.sandbox.docker_backend import docker_client


def test_verdicts_and_exit_status(graded_run: GradedRun):
    run = graded_run
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    report = run.report
    assert report["resolved_ids"] == run.ids("resolved")
    assert report["unresolved_ids"] == run.ids("unresolved")
    assert report["error_ids"] == run.ids("error")  # the patch did not apply: an error, as in swebench
    assert report["empty_patch_ids"] == run.ids("empty")  # "" and null: not graded
    assert report["completed_ids"] == sorted(run.ids("resolved") + run.ids("unresolved"))
    assert report["total_instances"] == report["submitted_instances"] == 6 and report["incomplete_ids"] == []
    assert "[grade] 4/4 done, 2 resolved, 1 error(s)" in run.proc.stderr  # the progress line
    assert "Instances resolved: 2" in run.proc.stdout


def test_report_is_what_swebench_make_run_report_reads_from_the_logs(graded_run: GradedRun, monkeypatch, tmp_path):
    """swebench's own make_run_report, run over envfarm's logs, writes the same report: every key, every value."""
    run = graded_run
    monkeypatch.chdir(run.out)  # swebench reads logs/run_evaluation/ under the working directory
    predictions = {p["instance_id"]: p for p in run.predictions}
    path = make_run_report(predictions, [t.swebench_instance() for t in run.tasks], RUN_ID, docker_client(),
                           report_dir=str(tmp_path))
    theirs = json.loads(path.read_text())
    assert path.name == f"org__model-x.{RUN_ID}.json"
    assert set(run.report) == set(theirs)
    assert run.report == theirs


def test_per_instance_files_in_swebench_layout(graded_run: GradedRun):
    run = graded_run
    for pred in run.predictions:
        iid, verdict = pred["instance_id"], run.expected[pred["instance_id"]]
        folder = run.instance_dir(iid)
        if verdict == "empty":
            assert not folder.exists()  # swebench's run_evaluation never runs an empty patch
            continue
        assert (folder / "patch.diff").read_text() == pred["model_patch"]
        log = (folder / "run_instance.log").read_text()
        assert f"Result for {iid}: {verdict}" in log and (folder / "grade_result.json").is_file()
        if verdict == "error":
            assert not (folder / "report.json").exists() and APPLY_PATCH_FAIL in log
            continue
        # report.json is swebench's get_eval_report over test_output.txt, to the letter
        task = next(t for t in run.tasks if t.instance_id == iid)
        theirs = get_eval_report(make_test_spec(task.swebench_instance()), pred, str(folder / "test_output.txt"),
                                 include_tests_status=True)
        ours = json.loads((folder / "report.json").read_text())
        assert ours == theirs and ours[iid]["resolved"] == (verdict == "resolved")
        assert "Test runtime:" in log


def test_a_rerun_of_the_run_id_grades_only_what_has_no_report(graded_run: GradedRun):
    """As swebench's run_evaluation: instances with a report.json are kept; the error instance is graded again."""
    run = graded_run
    before = run.report
    proc = grade_cli("--tasks", str(run.tasks_file), "--predictions", str(run.predictions_file),
                     "--run-id", RUN_ID, "--out", str(run.out), "--workers", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "1 to grade, 2 with an empty patch (not graded), 3 already graded" in proc.stderr
    assert run.report == before


def test_an_image_that_cannot_be_had_is_an_error_instance_and_exit_status_1(graded_run: GradedRun, tmp_path):
    """No verdict (the grader's failing, not the patch's): an error instance, named, and the command exits 1."""
    task = graded_run.tasks[0].model_copy(update={"image": "envfarm/no-such-image:0"})
    tasks_file = tmp_path / "tasks.jsonl"
    tasks_file.write_text(task.model_dump_json() + "\n")
    proc = grade_cli("--tasks", str(tasks_file), "--predictions", "gold", "--run-id", "ci-missing",
                     "--out", str(tmp_path))
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "1 instance(s) have no verdict" in proc.stderr and task.instance_id in proc.stderr
    report = json.loads((tmp_path / "gold.ci-missing.json").read_text())
    assert report["error_ids"] == [task.instance_id] and report["completed_ids"] == []
    log = (tmp_path / "logs/run_evaluation/ci-missing/gold" / task.instance_id / "run_instance.log").read_text()
    assert "image_missing" in log and "envfarm/no-such-image:0" in log
