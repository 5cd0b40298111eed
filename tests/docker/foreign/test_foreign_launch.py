"""The scripted policy resolves public-style rows through the farm's command line."""

from __future__ import annotations

import json
import subprocess
import sys


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
