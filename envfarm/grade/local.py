"""Local mode: every prediction graded on this machine's Docker engine, in one asyncio loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from envfarm.grade.predictions import Prediction
from envfarm.grade.worker import Graded, GradeWorker, WorkerConfig
from envfarm.tasks.schema import Task

OnDone = Callable[[Prediction, Graded], None]


async def grade_locally(items: list[tuple[Task, Prediction]], config: WorkerConfig, on_done: OnDone) -> None:
    """Grade `items` (`config.workers` at once) and hand each to `on_done` as it finishes."""
    from envfarm.sandbox.docker_backend import docker_client

    await asyncio.to_thread(docker_client)  # no engine: one error now, not one per instance
    worker = GradeWorker(config)

    async def one(task: Task, pred: Prediction) -> None:
        on_done(pred, await worker.grade(task, pred.model_patch or ""))

    try:
        await asyncio.gather(*(one(task, pred) for task, pred in items))
        await worker.drain()
    finally:  # after an interruption: the sandboxes still starting or grading
        await asyncio.shield(asyncio.to_thread(worker.reap))
