"""`python -m envfarm.grade` on public-style rows: gold resolved, empty not graded, wrong unresolved."""

from __future__ import annotations

import json
import subprocess
import sys

from foreign_rows import wrong_patch


def test_grade_cli_on_public_style_rows(foreign_rows_file, foreign_tasks, tmp_path):
    plain, conda, future = foreign_tasks["plain"], foreign_tasks["conda"], foreign_tasks["future"]
    preds = [{"instance_id": plain.instance_id, "model_name_or_path": "m", "model_patch": plain.patch},
             {"instance_id": conda.instance_id, "model_name_or_path": "m", "model_patch": wrong_patch(conda)},
             {"instance_id": future.instance_id, "model_name_or_path": "m", "model_patch": ""}]
    path = tmp_path / "preds.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in preds))
    proc = subprocess.run([sys.executable, "-m", "envfarm.grade", "--tasks", str(foreign_rows_file), "--predictions",
                           str(path), "--run-id", "foreign", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [report_file] = (tmp_path / "out").glob("m.foreign.json")
    report = json.loads(report_file.read_text())
    assert report["resolved_ids"] == [plain.instance_id]
    assert report["unresolved_ids"] == [conda.instance_id]
    assert report["empty_patch_ids"] == [future.instance_id] and report["error_ids"] == []
