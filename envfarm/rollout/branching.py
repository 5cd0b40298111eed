"""A GRPO group that shares a prefix: one episode played to turn k, forked G ways, played on.

Why: the G episodes of a group start from the same task, and their first turns (reading the
code, running the tests) are much alike; playing them once and forking the sandbox (see
`Sandbox.fork`) saves G-1 copies of that work, and the branches' rewards then compare
continuations from one shared state. Branch 0 is the episode itself; branches 1..G-1 play on in
forks of its env with their own samples. Every record carries `branch_of` (branch 0's episode
id), `prefix_turns` and `branch`; the token assembly (`envfarm.rollout.tokens.build_row`)
masks the prefix in every branch but branch 0, so it counts once in the loss.

Where the episode ends before turn k, or the backend cannot fork, the other members are played
as independent episodes from the start (no shared prefix, `branch_of` empty): a group always
has G records, and nothing the agent does in the prefix can mask the group.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from envfarm.env.coding_env import CodingEnv
from envfarm.policy.oracle import oracle_episode
from envfarm.rollout.episode import EpisodePlay, new_record
from envfarm.rollout.trajectory import Trajectory
from envfarm.tasks.schema import Task

log = logging.getLogger(__name__)


def branch_turn(branch_at: float, max_turns: int) -> int:
    """The turn after which a group forks: `branch_at` turns when it is a whole number >= 1, else
    that fraction of the episode's turn limit (at least 1 turn, fewer than `max_turns`)."""
    if isinstance(branch_at, bool) or not isinstance(branch_at, int | float) or branch_at <= 0:
        raise ValueError(f"branch_at must be a number of turns (>= 1) or a fraction of max_turns in (0, 1), "
                         f"got {branch_at!r}")
    if branch_at >= 1:
        if branch_at != int(branch_at):
            raise ValueError(f"branch_at={branch_at!r}: a number of turns must be whole (or a fraction below 1)")
        turn = int(branch_at)
    else:
        turn = round(branch_at * max_turns)
    return max(1, min(turn, max_turns - 1)) if max_turns > 1 else 1


async def run_branched_group(make_env: Callable[[], CodingEnv], policy: Any, task: Task, *, branches: int,
                             branch_at: float, seed: int | None = None, run: str = "",
                             members: list[dict[str, Any]] | None = None) -> list[Trajectory]:
    """`branches` records of `task`: one episode to turn `branch_turn(branch_at)`, then forked.

    `make_env()` gives a fresh env (the group's first, and any independent member's);
    `members[i]` are record fields of branch i (episode id, the farm's group and member).
    """
    if branches < 1:
        raise ValueError(f"a branched group needs at least one branch, got {branches}")
    members = members or [{} for _ in range(branches)]
    if len(members) != branches:
        raise ValueError(f"{branches} branches but {len(members)} member records")
    env = make_env()
    k = branch_turn(branch_at, env.config.max_turns)
    root = EpisodePlay(env, policy, new_record(env, policy, task, seed=seed, run=run, **members[0]))
    plays = [root]
    with oracle_episode(policy, task):
        try:
            await root.start(task, seed)
            await root.play(until_turn=k)
            forked = await _fork(root, branches - 1, k, members) if not root.ended and branches > 1 else None
            if forked is None:
                others = [EpisodePlay(e := make_env(), policy, new_record(e, policy, task, seed=seed, run=run, **m))
                          for m in members[1:]]
                plays += others
                await asyncio.gather(root.play(), *(_from_start(p, task, seed) for p in others))
            else:
                plays += forked
                await asyncio.gather(*(p.play() for p in plays))
        finally:
            await asyncio.gather(*(p.close() for p in plays), return_exceptions=True)
    return [p.traj for p in plays]


async def _fork(root: EpisodePlay, n: int, k: int, members: list[dict[str, Any]]) -> list[EpisodePlay] | None:
    """The root's branches 1..n in forks of its env; None where the sandbox cannot be forked."""
    started = time.perf_counter()
    try:
        envs = await root.env.afork(n)
    except Exception as exc:  # noqa: BLE001 - whatever stops a fork (the agent can cause some) is not the group's fault
        log.warning("episode %s: no fork at turn %d (%s); its group plays independent episodes",
                    root.traj.episode_id, k, exc)
        return None
    seconds = time.perf_counter() - started
    prefix = len(root.traj.turns)
    root.traj.branch_of, root.traj.prefix_turns, root.traj.branch = root.traj.episode_id, prefix, 0
    branches = []
    for i, env in enumerate(envs, start=1):
        fields = {"episode_id": members[i].get("episode_id") or f"{root.traj.episode_id}/b{i}", **members[i],
                  "branch_of": root.traj.episode_id, "prefix_turns": prefix, "branch": i,
                  "started_at": time.time()}
        play = root.branch(env, **fields)
        play.timings.setup = seconds  # a branch's set-up is the fork
        branches.append(play)
    return branches


async def _from_start(play: EpisodePlay, task: Task, seed: int | None) -> None:
    await play.start(task, seed)
    await play.play()
