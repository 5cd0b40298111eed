"""scripts/gpu_check.py's CPU side for real: a tiny model, one GRPO step synchronous and one
asynchronous on the local backend (acknowledged), and the JSON line with its figures.

Needs the inflection sdist in envfarm's cache and a python3 on the host, as test_local_sandbox does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_driver_runs_sync_and_async_steps_on_cpu_and_prints_its_figures() -> None:
    env = {**os.environ, "ENVFARM_ALLOW_UNISOLATED": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--device", "cpu", "--hidden", "32", "--layers", "2",
         "--intermediate", "64", "--vocab", "600", "--steps", "1", "--groups-per-step", "1", "--max-new-tokens", "16",
         "--max-turns", "2",
         "--json"],
        capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["device"] == "cpu" and result["backend"] == "local"
    assert result["ray_imported"] is False
    for mode in ("sync", "async"):
        figures = result[mode]
        assert figures["steps"] == 1 and figures["samples"] == 2
        assert figures["samples_per_min"] > 0
        assert len(figures["reward_mean_per_step"]) == 1
        for key in ("generation_s", "sandbox_s", "grading_s", "optimizer_s"):
            assert figures[key] >= 0
        assert "gpu_mem_peak_gib" in figures and figures["gpu_mem_peak_gib"] is None
