"""Where a training batch's episodes run: in the trainer's process, or on the Ray farm.

Both take the batch as one task per row (groups of `num_generations` consecutive rows) and
return one episode record per row, in row order, with infrastructure faults retried and,
past their retries, reported as records whose reward is None.

- `InProcessRunner`: an EnvHostImpl (the farm's host logic, without Ray) with a WarmPool of
  Docker sandboxes, on a private event loop. The policy is an object in this process (the
  trainer's model), which Ray hosts could not reach. A group's episodes run concurrently on
  different sandboxes; generation itself is serialised on the one model.
- `RayRunner`: the EnvFarm, for a policy every host can build from a spec (a vLLM server).
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Callable
from typing import Any

from envfarm.env.config import EnvConfig
from envfarm.env.loop_thread import LoopThread
from envfarm.farm.host import EnvHostImpl, HostConfig
from envfarm.farm.host_episode import EpisodeSlot
from envfarm.rollout.trajectory import Trajectory
from envfarm.sandbox.backends import BackendConfig
from envfarm.tasks.schema import Task
from envfarm.train.trainer_policies import PolicyRouter


class InProcessRunner:
    def __init__(self, policy: Any, *, envs: int, env_config: EnvConfig, run: str,
                 backend: str | BackendConfig = "docker", max_retries: int = 1,
                 demo_policy: Callable[[Any], Any] | None = None, demos_per_group: int = 0,
                 warm_fraction: float = 1.0, sim_profile: dict[str, Any] | None = None,
                 branch_at: float | None = None) -> None:
        self.router = PolicyRouter(policy)
        self.branch_at = branch_at  # groups share a prefix forked at this turn (envfarm.rollout.branching)
        self.max_retries = max_retries
        self.demo_policy = demo_policy
        self.demos_per_group = demos_per_group if demo_policy is not None else 0
        self.envs = envs
        self.host_id = f"{run}/trainer-{uuid.uuid4().hex[:6]}"
        self.host = EnvHostImpl(HostConfig(
            host_id=self.host_id, run=run, slots=envs, backend=backend,
            warm_size=math.ceil(envs * warm_fraction), env_config=env_config,
            sim_profile=sim_profile or {}), policy=self.router)
        self._loop = LoopThread("envfarm-train-episodes")
        self._batches = 0

    def set_policy(self, policy: Any) -> None:
        self.router.default = policy

    def prewarm(self, images: list[str]) -> None:
        self._loop.run(self.host.prewarm(sorted(set(images))))

    def run(self, tasks: list[Task], group_size: int) -> list[Trajectory]:
        return self._loop.run(self._run(tasks, group_size))

    async def _run(self, tasks: list[Task], group_size: int) -> list[Trajectory]:
        batch = self._batches
        self._batches += 1
        slots = asyncio.Semaphore(self.envs)

        async def one(i: int) -> Trajectory:
            group, k = divmod(i, group_size)
            if k >= group_size - self.demos_per_group and self.demo_policy is not None:
                # the guide scored by the current model; this task's context only
                self.router.use(self.demo_policy(self.router.default))
            row = tasks[i].model_dump()
            for attempt in range(self.max_retries + 1):
                slot = EpisodeSlot(episode_id=f"b{batch}/g{group}/e{k}", group_id=f"b{batch}/g{group}",
                                   group_index=group, member=k, attempt=attempt)
                async with slots:
                    record = await self.host.run_episode(row, slot)
                if not record.retryable:
                    break
            record.retries = attempt
            record.farm.demo = k >= group_size - self.demos_per_group
            return record

        if self.branch_at is not None:
            if self.demos_per_group:
                raise ValueError("branched groups (branch_at) and demonstrations (demos_per_group) do not mix: "
                                 "a demonstration would share the model's prefix")
            groups = await asyncio.gather(*(self._group(tasks[g], batch, g // group_size, group_size, slots)
                                            for g in range(0, len(tasks), group_size)))
            return [record for group in groups for record in group]
        return list(await asyncio.gather(*(one(i) for i in range(len(tasks)))))

    async def _group(self, task: Task, batch: int, group: int, size: int,
                     slots: asyncio.Semaphore) -> list[Trajectory]:
        """One branched group; played again whole while every record is a retryable fault."""
        row = task.model_dump()
        for attempt in range(self.max_retries + 1):
            members = [EpisodeSlot(episode_id=f"b{batch}/g{group}/e{k}", group_id=f"b{batch}/g{group}",
                                   group_index=group, member=k, attempt=attempt) for k in range(size)]
            async with slots:  # one slot per group: its branches share one prefix
                records = await self.host.run_group(row, members, branch_at=self.branch_at)
            if not all(r.retryable for r in records):
                break
        for record in records:
            record.retries = attempt
        return records

    def stats(self) -> dict[str, Any]:
        return self.host.stats()

    def close(self) -> None:
        try:
            self._loop.run(self.host.shutdown(), timeout=120)
        finally:
            self._loop.stop()


class RayRunner:
    """Episodes on an EnvFarm (Ray); the farm's own retries apply."""

    def __init__(self, farm_config: Any, address: str | None = None) -> None:
        from envfarm.farm.scheduler import EnvFarm

        self.farm = EnvFarm(farm_config, address=address)
        self._loop = LoopThread("envfarm-train-farm")
        self._loop.run(self.farm.start())

    def set_policy(self, policy: Any) -> None:
        raise TypeError("a Ray farm builds its policy on each host from a spec; it cannot take an object")

    def prewarm(self, images: list[str]) -> None:
        self._loop.run(self.farm.prewarm(images))

    def run(self, tasks: list[Task], group_size: int) -> list[Trajectory]:
        return self._loop.run(self._run(tasks, group_size))

    async def _run(self, tasks: list[Task], group_size: int) -> list[Trajectory]:
        unique = [tasks[g] for g in range(0, len(tasks), group_size)]
        out: list[Trajectory | None] = [None] * len(tasks)
        started = time.time()
        async for record in self.farm.run(unique, group_size=group_size, episodes=len(tasks)):
            out[record.group_index * group_size + record.member] = record
        missing = [i for i, r in enumerate(out) if r is None]
        if missing:
            raise RuntimeError(f"the farm returned no record for rows {missing} after {time.time() - started:.0f} s")
        return out  # type: ignore[return-value]

    def stats(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        try:
            self._loop.run(self.farm.shutdown(), timeout=300)
        finally:
            self._loop.stop()
