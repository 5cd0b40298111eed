"""Oracle policies: the few allowed to see a task's answer, and the one way they see it.

A policy sees the conversation and nothing else. An oracle (the scripted solver, the guide that
plays demonstrations in training) knows the gold patch by design and declares it with
`oracle = True`. For those alone, the episode loop makes the episode's Task available through
`episode_task()`: a context variable set for that episode's coroutine, so one oracle object
serves any number of concurrent episodes without matching prompts to tasks, and a policy that
is not an oracle never gets the task, gold patch included.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from envfarm.policy.base import PolicyError
from envfarm.tasks.schema import Task

_episode_task: ContextVar[Task | None] = ContextVar("envfarm_episode_task", default=None)


def is_oracle(policy: Any) -> bool:
    """True when `policy` declares itself an oracle (`oracle = True`, a class attribute or a property)."""
    return getattr(policy, "oracle", False) is True


@contextmanager
def oracle_episode(policy: Any, task: Task) -> Iterator[None]:
    """Within this block (this episode's coroutine), an oracle `policy` can read `task`; others cannot."""
    if not is_oracle(policy):
        yield
        return
    token = _episode_task.set(task)
    try:
        yield
    finally:
        _episode_task.reset(token)


def episode_task() -> Task:
    """The current episode's Task, for oracles only."""
    task = _episode_task.get()
    if task is None:
        raise PolicyError("no episode task: oracle policies run inside the episode loop (run_episode), "
                          "which hands them the task")
    return task
