"""What every environment instance of one TRL `environment_factory` shares.

TRL calls `reset` and the tools one rollout after another on its training thread, so an episode
must not wait for a container to start. One `EnvRuntime` per factory holds a private event loop
thread (sandboxes and their shell sessions live on it), a WarmPool per image that refills in the
background, the grader that goes with the backend, and the tasks by instance id, each made
ready once (its image present and, where envfarm did not build it, adapted) as the farm's hosts
do. Every episode's sandboxes, the agent's and the grader's, come from the pool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

from envfarm.env.config import EnvConfig
from envfarm.env.loop_thread import LoopThread
from envfarm.farm.admission import AdmissionControl
from envfarm.farm.pool import WarmPool
from envfarm.farm.pooled import pool_factory
from envfarm.sandbox.backends import backend_config, make_backend
from envfarm.sandbox.base import SandboxFactory, SandboxSpec
from envfarm.tasks.grading import grader_for
from envfarm.tasks.sandbox_specs import sandbox_image_inputs
from envfarm.tasks.schema import Task

T = TypeVar("T")


class EnvRuntime:
    """The loop, pool, grader and tasks behind one factory's environment instances."""

    def __init__(self, tasks: Iterable[Task], env_config: EnvConfig, *, warm: int, backend: str = "docker",
                 run: str = "trl") -> None:
        self.env_config = env_config.model_copy(update={"run": run})
        self.tasks = {t.instance_id: t for t in tasks}
        if not self.tasks:
            raise ValueError("an environment factory needs at least one task")
        self.backend = make_backend(backend_config(backend))
        self.owner = f"{run}/trl-{uuid.uuid4().hex[:8]}"  # the containers' owner label: reaped by it
        self.grader = grader_for(self.backend)
        self.loop = LoopThread("envfarm-trl-env")
        self.pool = WarmPool(self.backend.factory(owner=self.owner, run=run),
                             AdmissionControl(*self.backend.admission()), warm_size=warm,
                             spec_for=self._spec_for, user_of=self.backend.image_user,
                             min_life_left_s=env_config.episode_timeout_s + env_config.grading_timeout_s + 60)
        self.sandbox_factory: SandboxFactory = pool_factory(self.pool)
        self._ready: dict[str, concurrent.futures.Future[Task]] = {}
        self._closed = False
        for task in self.tasks.values():  # images checked and pools filled while the trainer loads
            self._ready[task.instance_id] = asyncio.run_coroutine_threadsafe(self._prepare(task), self.loop.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coro` on the runtime's loop and wait for it (from TRL's thread)."""
        return self.loop.run(coro, timeout)

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start `coro` on the runtime's loop without waiting (grading behind the next rollouts)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop.loop)

    def task(self, instance_id: str) -> Task:
        """The task ready to run: its image present and adapted (raises what preparing it raised)."""
        if instance_id not in self._ready:
            raise KeyError(f"instance_id {instance_id!r} is not one of this factory's tasks")
        return self._ready[instance_id].result()

    def _spec_for(self, image: str) -> SandboxSpec:
        return SandboxSpec(image=image, env=dict(self.env_config.sandbox_env))

    async def _prepare(self, task: Task) -> Task:
        await asyncio.to_thread(self.backend.ensure_image, task.image)
        base_commit, activation = sandbox_image_inputs(task)
        image = await asyncio.to_thread(self.backend.adapt_image, task.image, base_commit, activation)
        if not self._closed:
            self.pool.prewarm(image)
        return task if image == task.image else task.model_copy(update={"image": image})

    def close(self) -> None:
        """Stop filling and remove every warm sandbox; stop the loop. Safe to repeat."""
        if self._closed:
            return
        self._closed = True
        _, pending = concurrent.futures.wait(self._ready.values(), timeout=60)
        for future in pending:
            future.cancel()
        try:
            self.run(self.pool.close(), timeout=120)
        finally:
            self.loop.stop()
