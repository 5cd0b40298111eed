"""Cluster-wide gc survives a node that Ray still lists as alive but that is gone.

A worker lost mid-run is listed as alive for a while after it died; the farm's shutdown runs gc
on every listed node then, and a node that cannot be asked must be reported, never fail a run
whose episodes all finished.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import ray

from envfarm.farm.reaper import gc_cluster
from envfarm.sandbox.docker_backend import LABEL, LABEL_RUN, docker_client, list_containers

pytestmark = [pytest.mark.docker]


@pytest.fixture
def local_ray():
    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    ray.shutdown()


def _with_a_dead_node(monkeypatch) -> str:
    """Ray's node list gains a node that is listed alive but does not exist (died a moment ago)."""
    real = ray.nodes
    ghost = "ab" * 28
    monkeypatch.setattr(ray, "nodes", lambda: [*real(), {"NodeID": ghost, "Alive": True}])
    return ghost[:8]


def test_a_dead_node_is_reported_and_the_live_one_still_cleaned(local_ray, inflection_image, monkeypatch):
    run = f"gc-dead-node-{int(time.time())}"
    docker_client().containers.create(inflection_image, command=["true"], labels={LABEL: "1", LABEL_RUN: run})
    ghost = _with_a_dead_node(monkeypatch)
    report = gc_cluster(run, timeout_s=60)
    assert list(report.unreachable) == [ghost], report
    assert "Unschedulable" in report.unreachable[ghost] or "NodeDied" in report.unreachable[ghost], report
    assert list(report.removed.values()) == [1], report  # this node's container of the run went
    assert report.total == 1
    assert not list_containers(**{LABEL_RUN: run})


def test_a_node_that_never_answers_is_reported_not_waited_for(local_ray, monkeypatch):
    report = gc_cluster(f"gc-no-answer-{int(time.time())}", timeout_s=0.001)
    assert report.removed == {} and len(report.unreachable) == 1, report
    assert "no answer within" in next(iter(report.unreachable.values()))


def test_the_gc_command_cleans_every_node_of_a_running_cluster(local_ray, inflection_image):
    run = f"gc-command-{int(time.time())}"
    docker_client().containers.create(inflection_image, command=["true"], labels={LABEL: "1", LABEL_RUN: run})
    address = ray.get_runtime_context().gcs_address
    proc = subprocess.run([sys.executable, "-m", "envfarm.gc", "--address", address, "--run", run],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "found and removed 1 container(s) or image(s) left behind on 1 node(s)" in proc.stdout, proc.stdout
    assert not list_containers(**{LABEL_RUN: run})
