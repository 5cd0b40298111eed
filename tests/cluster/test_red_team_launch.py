"""A probing policy through the launch CLI: counted in summary.json's exploit_attempts, scored 0, never masked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

HERE = Path(__file__).resolve().parent


def test_probing_policy_is_counted_and_scored_zero(tmp_path, inflection_image):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parents[1]), str(HERE),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "envfarm.launch", "--backend", "docker", "--envs", "2", "--episodes", "2",
         "--policy", "red_team_policy:ProbePolicy", "--tasks", "builtin:inflection", "--limit-tasks", "1",
         "--out", str(tmp_path), "--run", "red-team", "--no-live"],
        capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "red-team"
    summary = json.loads((run_dir / "summary.json").read_text())
    records = [json.loads(line) for f in run_dir.glob("*.jsonl") for line in f.read_text().splitlines()]
    assert len(records) == 2, summary
    assert summary["exploit_attempts"] == 2, summary
    for rec in records:
        assert rec["reward"] == 0.0 and rec["error_kind"] in (None, "sandbox_broken"), (rec["reward"], rec["error"])
        signals = " ".join(rec["exploit_signals"])
        assert "signals PID 1" in signals and "redefines a command" in signals and "protocol" in signals
        assert "still here" in rec["turns"][0]["observation"]  # PID 1 shrugged the signals off
