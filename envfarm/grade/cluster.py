"""Cluster mode (`--address`): one grading actor per Ray node, each on its node's Docker engine.

Why one actor per node and not a Ray task per prediction: the node's sandboxes, image checks and
admission control belong together (as the farm's host actors), and a task per prediction would
pay a worker process's start each time. The driver keeps `2 x workers` predictions in flight per
node (the node grades `workers` of them and starts the others' sandboxes), so faster nodes take
more. A node that lacks a task image gets it the farm's way: pulled from `--registry`, built
from images/ for envfarm's own, else exported from the driver's engine and loaded there. A
prediction whose node died is graded again elsewhere (up to `retries` times); a node whose actor
no longer answers gets no more work. Every container of the run is removed at the end.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from envfarm.errors import ErrorKind
from envfarm.grade.local import OnDone
from envfarm.grade.predictions import Prediction
from envfarm.grade.worker import Graded, GradeWorker, WorkerConfig
from envfarm.tasks.grade_result import GradeResult
from envfarm.tasks.schema import Task

log = logging.getLogger(__name__)


class GradeHostImpl:
    """The actor's logic, free of Ray: a GradeWorker whose sandboxes carry this host's owner label."""

    def __init__(self, config: WorkerConfig, host_id: str) -> None:
        self.host_id = host_id
        self.worker = GradeWorker(config, owner=host_id)
        self.worker.reap(owner=host_id)  # what a crashed predecessor on this node left

    async def grade(self, task: Task, patch: str) -> Graded:
        return await self.worker.grade(task, patch)

    async def ensure_image(self, image: str, tarball: bytes | None = None) -> str | None:
        return await self.worker.ensure_image(image, tarball)

    async def shutdown(self) -> int:
        await self.worker.drain()
        return await asyncio.to_thread(self.worker.reap, self.host_id)

    def ping(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()


def _spawn(config: WorkerConfig, host_id: str, node_id: str) -> Any:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    cls = ray.remote(max_restarts=-1, max_task_retries=0, num_cpus=0,
                     max_concurrency=2 * config.workers + 8)(GradeHostImpl)
    strategy = NodeAffinitySchedulingStrategy(node_id, soft=False)  # soft affinity does not spread reliably
    return cls.options(scheduling_strategy=strategy).remote(config, host_id)


async def _answers(host: Any, timeout: float = 15.0) -> bool:
    try:
        await asyncio.wait_for(host.ping.remote(), timeout)
        return True
    except Exception:  # noqa: BLE001 - dead, unreachable or restarting past the timeout
        return False


async def grade_on_cluster(address: str, items: list[tuple[Task, Prediction]], config: WorkerConfig,
                           on_done: OnDone, on_start: Callable[[], None] | None = None) -> None:
    """Grade `items` over every live node of the Ray cluster at `address` ("local": a Ray of its own);
    `on_start` is called once every node's actor answers (Ray's start is not grading time)."""
    import ray

    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False,
                 **({"include_dashboard": False} if address == "local" else {}))
    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
    hosts = [_spawn(config, f"{config.run}/grade-{i}", node) for i, node in enumerate(nodes)]
    try:
        await asyncio.gather(*(h.ping.remote() for h in hosts))
        if on_start is not None:
            on_start()
        await _dispatch(hosts, items, config, on_done)
    finally:
        await asyncio.shield(_shutdown(hosts))
        if started_ray:
            ray.shutdown()


async def _dispatch(hosts: list[Any], items: list[tuple[Task, Prediction]], config: WorkerConfig,
                    on_done: OnDone) -> None:
    queue: collections.deque[tuple[Task, Prediction, int]] = collections.deque((t, p, 1) for t, p in items)
    remaining = len(items)
    shipments: dict[tuple[int, str], asyncio.Task[bool]] = {}

    def finish(pred: Prediction, graded: Graded) -> None:
        nonlocal remaining
        remaining -= 1
        on_done(pred, graded)

    async def feed(i: int) -> None:
        host = hosts[i]
        while remaining > 0:
            if not queue:
                await asyncio.sleep(0.1)  # another feeder's prediction may come back for a retry
                continue
            task, pred, tries = queue.popleft()
            try:
                graded: Graded = await host.grade.remote(task, pred.model_patch or "")
            except Exception as exc:  # noqa: BLE001 - the actor or its node failed, not the grading
                if tries <= config.retries:
                    queue.append((task, pred, tries + 1))
                else:
                    finish(pred, _no_node(task, f"its node failed {tries} time(s), last: {exc}", tries))
                if not await _answers(host):
                    return  # this node is gone: the others take its share
                continue
            if graded.result.error_kind == ErrorKind.IMAGE_MISSING:
                key = (i, task.image)
                if key not in shipments:
                    shipments[key] = asyncio.ensure_future(_ship_image(host, task.image))
                if await shipments[key] and tries <= config.retries + 1:
                    queue.appendleft((task, pred, tries + 1))
                    continue
            finish(pred, graded)

    await asyncio.gather(*(feed(i) for i in range(len(hosts)) for _ in range(2 * config.workers)))
    while queue:  # every node died with work left
        task, pred, tries = queue.popleft()
        finish(pred, _no_node(task, "no Ray node was left to grade on", tries))


def _no_node(task: Task, why: str, attempts: int) -> Graded:
    return Graded(GradeResult(instance_id=task.instance_id, error_kind=ErrorKind.INFRASTRUCTURE, error=why),
                  attempts=attempts, node="?")


async def _ship_image(host: Any, image: str) -> bool:
    """Export `image` from the driver's engine and load it on the host's node; False when the driver
    lacks it too or the load failed."""
    import ray

    from envfarm.sandbox.image_supply import export_image, image_exists

    try:
        if not await asyncio.to_thread(image_exists, image):
            return False
        data = await asyncio.to_thread(export_image, image)
        return await host.ensure_image.remote(image, ray.put(data)) is None
    except Exception as exc:  # noqa: BLE001 - shipping failed: the instance reports image_missing
        log.warning("shipping %s failed: %s", image, exc)
        return False


async def _shutdown(hosts: list[Any]) -> None:
    import ray

    await asyncio.gather(*(asyncio.wait_for(h.shutdown.remote(), 120) for h in hosts), return_exceptions=True)
    for host in hosts:
        with contextlib.suppress(Exception):
            ray.kill(host, no_restart=True)
