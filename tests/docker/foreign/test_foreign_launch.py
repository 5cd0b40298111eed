"""The scripted policy resolves public-style rows through the farm's command line."""

from __future__ import annotations

import json
import subprocess
import sys

from foreign_rows import build_swe_smith_row


def test_launch_resolves_public_style_rows(foreign_rows_file, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "envfarm.launch", "--envs", "3", "--episodes", "3", "--group-size", "1",
         "--policy", "scripted", "--tasks", str(foreign_rows_file), "--out", str(tmp_path), "--run", "foreign",
         "--no-live"],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for f in (tmp_path / "foreign").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert len(records) == 3, proc.stderr[-2000:]
    assert {r["instance_id"] for r in records} == {json.loads(line)["instance_id"]
                                                   for line in foreign_rows_file.read_text().splitlines()}
    assert all(r["resolved"] for r in records), [(r["instance_id"], r["error_kind"], r["error"]) for r in records]


def test_launch_resolves_a_swe_smith_row(tmp_path):
    row = build_swe_smith_row(tmp_path / "images")
    rows = tmp_path / "swesmith.jsonl"
    rows.write_text(json.dumps(row) + "\n")
    proc = subprocess.run(
        [sys.executable, "-m", "envfarm.launch", "--envs", "2", "--episodes", "2", "--group-size", "2",
         "--policy", "scripted", "--tasks", str(rows), "--out", str(tmp_path), "--run", "smith", "--no-live"],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for f in (tmp_path / "smith").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert len(records) == 2 and all(r["resolved"] for r in records), \
        [(r["error_kind"], r["error"], r["grade"]["log_tail"][-500:]) for r in records]
