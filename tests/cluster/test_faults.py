"""Faults mid-run: each episode finishes exactly once, finished trajectories stay, no container is left.

(A node removed: tests/cluster/test_farm_docker.py. Containers and host actors killed at random, at
volume: tests/cluster/test_soak.py.)
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker.errors
import pytest
import ray

from envfarm.farm.scheduler import EnvFarm, FarmConfig
from envfarm.sandbox.docker_backend import LABEL_RUN, docker_client, list_containers
from envfarm.tasks.loading import BUILTIN_DIR

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    ray.shutdown()


def kill_one_running_container(run: str) -> bool:
    """`docker kill` the first container of `run` still running; one may end between listing and kill."""
    for container in list_containers(**{LABEL_RUN: run}):
        if container.status != "running":
            continue
        try:
            docker_client().api.kill(container.id)
            return True
        except docker.errors.APIError:  # ended (409) or removed (404) since it was listed
            continue
    return False


def test_host_process_and_agent_container_killed_mid_run(local_ray, fixture_tasks):
    """SIGKILL to a host actor's process and `docker kill` of a running agent container."""
    cfg = FarmConfig(envs=4, backend="docker", policy="scripted", hosts_per_node=2, warm_fraction=0.0,
                     max_retries=3, env_config={"max_turns": 20}, run=f"test-faults-{int(time.time())}")

    async def main():
        async with EnvFarm(cfg) as farm:
            pids = [s["pid"] for s in await farm.host_stats()]
            records, faults = [], []
            async for rec in farm.run(fixture_tasks, group_size=2, episodes=8):
                records.append(rec)
                if len(records) == 1:
                    if kill_one_running_container(cfg.run):
                        faults.append("container")
                    os.kill(pids[1], signal.SIGKILL)
                    faults.append("host")
            return records, farm.counters, faults

    records, counters, faults = asyncio.run(main())
    ids = [r.episode_id for r in records]
    assert len(ids) == 8 and len(set(ids)) == 8 and counters.duplicates_dropped == 0
    assert "host" in faults and counters.retried >= 1
    assert counters.failed == 0, [r.error for r in records if r.error_kind]
    assert all(r.resolved for r in records)
    assert not list_containers(**{LABEL_RUN: cfg.run})


def test_ctrl_c_keeps_finished_trajectories_and_leaves_no_container(tmp_path: Path, fixture_tasks):
    run = f"test-sigint-{int(time.time())}"
    out = tmp_path / "rollouts"
    proc = subprocess.Popen([sys.executable, "-m", "envfarm.launch", "--envs", "2", "--episodes", "40",
                             "--tasks", str(BUILTIN_DIR / "fixtures.jsonl"), "--out", str(out), "--run", run,
                             "--no-live", "--max-turns", "20"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # as a foreground command gets it: a shell without job control starts
                            # background jobs with SIGINT ignored, and children inherit that
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    run_dir = out / run
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            lines = [x for f in run_dir.glob("*.jsonl") for x in f.read_text().splitlines()] if run_dir.exists() else []
            if lines:
                break
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            time.sleep(0.5)
        assert lines, "no episode finished in time"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    rows = [json.loads(x) for f in sorted(run_dir.glob("*.jsonl")) for x in f.read_text().splitlines()]
    assert rows and len({r["episode_id"] for r in rows}) == len(rows) < 40
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary.get("interrupted") is True, summary
    assert not list_containers(**{LABEL_RUN: run})
