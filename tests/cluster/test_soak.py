"""The soak run, short: sim volume with host actors killed, Docker with containers and a host killed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "soak.py"


def test_short_soak_loses_nothing_and_leaks_nothing(inflection_image):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--episodes", "60", "--docker-episodes", "4",
                           "--container-kills", "2", "--container-kill-s", "3", "--json"],
                          capture_output=True, text=True, timeout=420)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert result["episodes"] == 64 and result["finished"] == 64
    assert result["lost"] == 0 and result["leaked_containers"] == 0
    assert result["host_actor_kills"] >= 2 and result["container_kills"] >= 1
    assert result["retried"] >= 1  # the faults really hit running episodes
    for phase in result["phases"]:
        assert phase["duplicates"] == 0
