"""A real two-node cluster, each node with its own Docker engine, started as a user starts one.

Head and worker come up with `ray start` (token authentication as Ray sets it up); the worker's
engine is a second dockerd that starts with no image at all. `python -m envfarm.launch --address`
then runs episodes across both: the task image must reach the cold engine by peer transfer (or
from a registry), never by a rebuild, every episode must finish exactly once and no container
may be left on either engine, also when the worker (its raylet and its engine) is killed mid-run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_cluster import CliCluster
from local_registry import LocalRegistry
from second_engine import SecondEngine

from envfarm.sandbox.docker_backend import LABEL_RUN, list_containers
from envfarm.sandbox.images import BASE_TAG, ROOTFS_TAG
from envfarm.tasks.loading import BUILTIN_DIR

pytestmark = [pytest.mark.docker, pytest.mark.slow]

FIXTURES = str(BUILTIN_DIR / "fixtures.jsonl")
IMAGE = "envfarm/repo-inflection:0.5.1"  # every fixture task's


@pytest.fixture(scope="module")
def two_nodes(inflection_image):
    """(cluster, worker engine): torn down whatever happens, only what was started here."""
    engine = SecondEngine()
    cluster = CliCluster()
    try:
        engine.start()
        assert engine.images() == [], "the worker's engine must start cold"
        cluster.start_head()
        cluster.start_worker(env={"DOCKER_HOST": engine.host})
        cluster.wait_for_nodes(2)
        yield cluster, engine
    finally:
        cluster.stop()
        engine.stop()


@pytest.fixture(scope="module")
def local_registry(inflection_image):
    """Debian's docker-registry on a free local port, holding the fixtures' image: HOST:PORT."""
    registry = LocalRegistry(IMAGE)
    try:
        yield registry.address
    finally:
        registry.close()


def launch(cluster: CliCluster, out: Path, run: str, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "envfarm.launch", "--address", cluster.address, "--tasks", FIXTURES,
           "--out", str(out), "--run", run, "--no-live", "--warm-fraction", "0", *args]
    return subprocess.Popen(cmd, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 420) -> tuple[str, str]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-4000:]
    return out, err


def records(out: Path, run: str) -> list[dict]:
    return [json.loads(line) for f in sorted((out / run).glob("episodes-*.jsonl"))
            for line in f.read_text().splitlines() if line.strip()]


def assert_nothing_left(run: str, engine: SecondEngine) -> None:
    assert not list_containers(**{LABEL_RUN: run}), "containers left on the head's engine"
    assert engine.proc is None or engine.proc.poll() is not None or engine.containers() == [], \
        "containers left on the worker's engine"


def test_images_reach_the_cold_engine_by_peer_and_every_episode_runs_once(two_nodes, tmp_path):
    cluster, engine = two_nodes
    run = f"two-engines-{int(time.time())}"
    _, err = finish(launch(cluster, tmp_path, run, "--envs", "4", "--episodes", "4", "--prefetch-images"))
    recs = records(tmp_path, run)
    ids = [r["episode_id"] for r in recs]
    assert len(ids) == 4 == len(set(ids))
    assert all(r["resolved"] and not r["error_kind"] for r in recs), [r["error"] for r in recs if r["error_kind"]]
    assert len({r["farm"]["node"] for r in recs}) == 2, "both nodes must have run episodes"
    summary = json.loads((tmp_path / run / "summary.json").read_text())
    assert [a["how"] for a in summary["image_arrivals"]] == ["peer"], summary["image_arrivals"]
    assert "[prefetch]" in err and "peer" in err
    assert IMAGE in engine.images()
    assert BASE_TAG not in engine.images() and ROOTFS_TAG not in engine.images(), "built, not transferred"
    assert engine.images("-f", "dangling=true") == []
    assert_nothing_left(run, engine)


def test_a_registry_serves_a_cold_engine(two_nodes, tmp_path, local_registry):
    cluster, engine = two_nodes
    engine.docker("rmi", IMAGE, check=False)  # cold again
    run = f"registry-{int(time.time())}"
    _, err = finish(launch(cluster, tmp_path, run, "--envs", "2", "--episodes", "1", "--prefetch-images",
                           "--registry", local_registry))
    summary = json.loads((tmp_path / run / "summary.json").read_text())
    assert [a["how"] for a in summary["image_arrivals"]] == ["pulled"], (summary["image_arrivals"], err[-2000:])
    assert IMAGE in engine.images() and not any(t.startswith(local_registry) for t in engine.images())
    assert engine.images("-f", "dangling=true") == []
    assert len(records(tmp_path, run)) == 1
    assert_nothing_left(run, engine)


def test_a_worker_killed_mid_run_loses_no_episode(two_nodes, tmp_path):
    """Last in this module: the worker (raylet and engine) does not come back."""
    cluster, engine = two_nodes
    run = f"kill-worker-{int(time.time())}"
    proc = launch(cluster, tmp_path, run, "--envs", "4", "--episodes", "6", "--max-retries", "3")
    deadline = time.monotonic() + 240
    while not engine.containers():  # the worker has episodes in flight
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no episode ever reached the worker"
        time.sleep(0.3)
    cluster.kill_node("worker")
    engine.kill()
    finish(proc)
    recs = records(tmp_path, run)
    ids = [r["episode_id"] for r in recs]
    assert len(ids) == 6 == len(set(ids))
    assert all(not r["error_kind"] for r in recs), [r["error"] for r in recs if r["error_kind"]]
    summary = json.loads((tmp_path / run / "summary.json").read_text())
    assert summary["retried"] >= 1 and summary["failed_infrastructure"] == 0
    assert not list_containers(**{LABEL_RUN: run}), "containers left on the head's engine"
