"""One farm episode on a host: image check, an env on pooled sandboxes, the episode loop."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from envfarm.env import CodingEnv, EnvConfig
from envfarm.farm.pool import WarmPool
from envfarm.farm.pooled import pool_factory
from envfarm.policy.base import Policy
from envfarm.rollout.episode import run_episode
from envfarm.sandbox.base import Sandbox, SandboxSpec
from envfarm.tasks.schema import Task


async def run_farm_episode(task: Task, *, episode_id: str, group_id: str, attempt: int,
                           pool: WarmPool, policy: Policy, grader: Callable[..., Awaitable[Any]],
                           env_config: dict[str, Any], run: str,
                           ensure_image: Callable[[str], Awaitable[Any]],
                           on_running: Callable[[int], None] = lambda delta: None) -> dict[str, Any]:
    """Run one episode; the agent's and the grader's sandboxes both come from the warm pool.

    `on_running(+1)` is called once the agent has its sandbox, `on_running(-1)` when the episode
    ends: the host counts environments that are really running, not episodes waiting for one.
    """
    await ensure_image(task.image)
    from_pool = pool_factory(pool)
    running = False

    async def factory(spec: SandboxSpec, task_id: str) -> Sandbox:
        nonlocal running
        sandbox = await from_pool(spec, task_id)
        if not running:
            running = True
            on_running(1)
        return sandbox

    env = CodingEnv(tasks=[task], config=EnvConfig(**{**env_config, "run": run}),
                    sandbox_factory=factory, grader=grader)
    try:
        trajectory = await run_episode(env, policy, task)
    finally:
        await env.aclose()
        if running:
            on_running(-1)
    record = trajectory.to_dict()
    record.update({"episode_id": episode_id, "group_id": group_id, "attempt": attempt})
    return record
