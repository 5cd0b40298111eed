"""One farm episode on a host: image check, an env on pooled sandboxes, the episode loop."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel

from envfarm.env import CodingEnv, EnvConfig
from envfarm.farm.pool import WarmPool
from envfarm.farm.pooled import pool_factory
from envfarm.policy.base import Policy
from envfarm.rollout.branching import run_branched_group
from envfarm.rollout.episode import run_episode
from envfarm.rollout.trajectory import Trajectory
from envfarm.sandbox.base import Sandbox, SandboxSpec
from envfarm.tasks.schema import Task


class EpisodeSlot(BaseModel):
    """Which episode of the run this is: what the driver tells a host along with the task."""

    episode_id: str
    group_id: str
    group_index: int = 0  # the group's place in the run (or the training batch)
    member: int = 0  # this episode's place in its group
    attempt: int = 0  # 0 for the first try

    def record_fields(self) -> dict[str, Any]:
        return self.model_dump()


async def run_farm_episode(task: Task, *, slot: EpisodeSlot,
                           pool: WarmPool, policy: Policy, grader: Callable[..., Awaitable[Any]],
                           env_config: EnvConfig, task_image: Callable[[Task], Awaitable[Task]],
                           on_running: Callable[[int], None] = lambda delta: None) -> Trajectory:
    """Run one episode; the agent's and the grader's sandboxes both come from the warm pool.

    `on_running(+1)` is called once the agent has its sandbox, `on_running(-1)` when the episode
    ends: the host counts environments that are really running, not episodes waiting for one.
    """
    task = await task_image(task)  # present on this node, adapted where envfarm did not build it
    from_pool = pool_factory(pool)
    running = False

    async def factory(spec: SandboxSpec, task_id: str) -> Sandbox:
        nonlocal running
        sandbox = await from_pool(spec, task_id)
        if not running:
            running = True
            on_running(1)
        return sandbox

    env = CodingEnv(tasks=[task], config=env_config, sandbox_factory=factory, grader=grader)
    try:
        return await run_episode(env, policy, task, run=env_config.run, **slot.record_fields())
    finally:
        await env.aclose()
        if running:
            on_running(-1)


async def run_farm_group(task: Task, *, slots: list[EpisodeSlot], branch_at: float,
                         pool: WarmPool, policy: Policy, grader: Callable[..., Awaitable[Any]],
                         env_config: EnvConfig, task_image: Callable[[Task], Awaitable[Task]],
                         on_running: Callable[[int], None] = lambda delta: None) -> list[Trajectory]:
    """One branched group (envfarm.rollout.branching) on pooled sandboxes: every branch's
    sandbox, the fork's children included, comes from the warm pool as any episode's does."""
    task = await task_image(task)
    factory = pool_factory(pool)
    on_running(len(slots))
    try:
        return await run_branched_group(
            lambda: CodingEnv(tasks=[task], config=env_config, sandbox_factory=factory, grader=grader),
            policy, task, branches=len(slots), branch_at=branch_at, run=env_config.run,
            members=[slot.record_fields() for slot in slots])
    finally:
        on_running(-len(slots))
