"""`python -m envfarm.grade --address`: the same verdicts and files when grading goes through Ray actors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from envfarm.tasks.loading import load

pytestmark = [pytest.mark.docker, pytest.mark.slow]

WRONG = "diff --git a/NOTES.txt b/NOTES.txt\nnew file mode 100644\n--- /dev/null\n+++ b/NOTES.txt\n@@ -0,0 +1 @@\n+x\n"


def test_grading_over_a_ray_cluster(tmp_path, inflection_image):
    tasks = [t for t in load("builtin:inflection") if t.bug_patch][:3]
    (tmp_path / "tasks.jsonl").write_text("".join(t.model_dump_json() + "\n" for t in tasks))
    preds = [{"instance_id": t.instance_id, "model_name_or_path": "m", "model_patch": p}
             for t, p in zip(tasks, [tasks[0].patch, WRONG, ""], strict=True)]
    (tmp_path / "preds.json").write_text(json.dumps(preds))
    proc = subprocess.run([sys.executable, "-m", "envfarm.grade", "--tasks", str(tmp_path / "tasks.jsonl"),
                           "--predictions", str(tmp_path / "preds.json"), "--address", "local", "--workers", "2",
                           "--run-id", "ci-ray", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "m.ci-ray.json").read_text())
    assert report["resolved_ids"] == [tasks[0].instance_id] and report["unresolved_ids"] == [tasks[1].instance_id]
    assert report["empty_patch_ids"] == [tasks[2].instance_id] and report["error_ids"] == []
    assert report["unstopped_containers"] == []  # the actors removed what they made
    log = (tmp_path / "logs/run_evaluation/ci-ray/m" / tasks[0].instance_id / "run_instance.log").read_text()
    assert "attempt(s): 1" in log and "Result for" in log
