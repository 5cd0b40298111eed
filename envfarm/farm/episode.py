"""One farm episode on a host: image check, an env on pooled sandboxes, the episode loop."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from envfarm.env import CodingEnv, EnvConfig
from envfarm.farm.pool import WarmPool
from envfarm.farm.pooled import pool_factory
from envfarm.policy.base import Policy
from envfarm.rollout.episode import run_episode
from envfarm.tasks.schema import Task


async def run_farm_episode(task_row: dict[str, Any], *, episode_id: str, group_id: str, attempt: int,
                           pool: WarmPool, policy: Policy, grader: Callable[..., Awaitable[Any]],
                           env_config: dict[str, Any], run: str,
                           ensure_image: Callable[[str], Awaitable[Any]]) -> dict[str, Any]:
    """Run one episode; the agent's and the grader's sandboxes both come from the warm pool."""
    task = Task.parse(task_row, where=f"episode {episode_id}")
    await ensure_image(task.image)
    env = CodingEnv(tasks=[task], config=EnvConfig(**{**env_config, "run": run}),
                    sandbox_factory=pool_factory(pool), grader=grader)
    try:
        trajectory = await run_episode(env, policy, task)
    finally:
        await env.aclose()
    record = trajectory.to_dict()
    record.update({"episode_id": episode_id, "group_id": group_id, "attempt": attempt})
    return record
