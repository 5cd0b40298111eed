"""Grading public-style rows: envfarm's verdicts equal swebench's run_instance on the same images."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from foreign_rows import wrong_patch
from swebench.harness import run_evaluation as harness
from swebench.harness.utils import make_test_spec

from envfarm.sandbox.docker_backend import docker_client
from envfarm.tasks.grading import grade


@pytest.fixture
def harness_logs(tmp_path, monkeypatch):
    monkeypatch.setattr(harness, "RUN_EVALUATION_LOG_DIR", tmp_path)
    return tmp_path


def swebench_verdict(task, patch: str, run_id: str, model: str) -> bool:
    """run_instance's verdict (a model name per kind of patch: it reuses a report it finds)."""
    spec = make_test_spec(task.swebench_instance())
    pred = {"instance_id": task.instance_id, "model_patch": patch, "model_name_or_path": model}
    out = harness.run_instance(spec, pred, docker_client(), run_id, timeout=600)
    assert out, f"run_instance gave no result for {task.instance_id}"
    return bool(out[1][task.instance_id]["resolved"])


def test_verdicts_equal_run_instance(foreign_tasks, harness_logs):
    run_id = f"foreign-{uuid.uuid4().hex[:6]}"
    cases = [(name, kind, patch) for name, task in foreign_tasks.items()
             for kind, patch in (("gold", task.patch), ("empty", ""), ("wrong", wrong_patch(task)))]

    async def ours():
        return await asyncio.gather(*(grade(foreign_tasks[name], patch) for name, _, patch in cases))

    results = asyncio.run(ours())
    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        theirs = list(pool.map(lambda case: swebench_verdict(foreign_tasks[case[0]], case[2], f"{run_id}-{case[1]}",
                                                             case[1]), cases))
    for (name, kind, _), result, verdict in zip(cases, results, theirs, strict=True):
        assert result.error_kind is None or kind == "empty", (name, kind, result.error_kind, result.error)
        assert result.resolved == verdict == (kind == "gold"), (name, kind, result.resolved, verdict, result.log_tail)
