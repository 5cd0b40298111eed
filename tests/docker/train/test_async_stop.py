"""Stopping the asynchronous producer mid-episode on real Docker sandboxes: every episode in
flight ends with the stop, none leaves a container, and a cancelled episode has no record, so
no reward (never a 0).

The stop's cancel is made to land in the event-loop iteration in which an agent's turn ends: on
Python 3.11 `asyncio.wait_for` around the turn returned the turn's result and dropped the
cancel, and the episode played on past the stop.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading
import time

import pytest

from envfarm.policy.base import Completion

pytestmark = [pytest.mark.docker, pytest.mark.slow]

_episode_task: contextvars.ContextVar[asyncio.Task | None] = contextvars.ContextVar("test_episode_task", default=None)


class EndsTurnAtTheStop:
    """`echo` turns of `turn_s` seconds, never a submit. The first episode to reach turn `at`
    sets `reached` and ends that turn the moment its episode is cancelled."""

    name = "ends-turn-at-the-stop"

    def __init__(self, at: int, turn_s: float) -> None:
        self.at, self.turn_s = at, turn_s
        self.reached = threading.Event()

    async def act(self, messages, tools):
        turn = 1 + sum(1 for m in messages if m.get("role") == "assistant")
        call = {"name": "bash", "arguments": {"command": f"echo turn {turn}"}}
        done = Completion(text=f"<tool_call>\n{json.dumps(call)}\n</tool_call>")
        if turn == self.at and not self.reached.is_set():
            self.reached.set()
            episode = _episode_task.get()
            deadline = time.monotonic() + 60
            while not episode.cancelling() and time.monotonic() < deadline:
                await asyncio.sleep(0)
            return done
        await asyncio.sleep(self.turn_s)
        return done


def test_stop_ends_every_episode_in_flight_and_leaves_no_container(fixture_tasks):
    from envfarm.sandbox.docker_backend import LABEL_OWNER, list_containers
    from envfarm.train.async_rollouts import AsyncFarmProducer, VersionedPolicy, farm_player
    from envfarm.train.runners import InProcessRunner

    agent = EndsTurnAtTheStop(at=3, turn_s=0.3)
    policy = VersionedPolicy(agent)
    runner = InProcessRunner(policy, envs=2, run="pytest-async-stop", backend="docker", max_retries=0,
                             env_config={"max_turns": 80, "command_timeout_s": 30, "episode_timeout_s": 300,
                                         "max_observation_chars": 400, "grading_timeout_s": 60})
    play = farm_player(runner, group_size=2)
    records = []

    async def recording(task, slot):
        _episode_task.set(asyncio.current_task())
        record = await play(task, slot)
        records.append(record)
        return record

    producer = AsyncFarmProducer(fixture_tasks[:1], recording, policy.clock, group_size=2, slots=2,
                                 groups_per_step=1, max_staleness=0, loop=runner._loop.loop)
    try:
        producer.start()
        assert agent.reached.wait(180), "no episode reached its third turn"
        producer.stop()
        in_flight, running = producer.in_flight, runner.host.running
    finally:
        runner.close()
    assert (in_flight, running) == (0, 0), "an episode played on after the stop"
    assert producer.episodes_cancelled == 2
    assert records == []  # no record: the cancelled episodes are scored neither 0 nor anything else
    assert producer.samples_used == 0 and not producer.stats()["buffered_groups"]
    assert list_containers(**{LABEL_OWNER: runner.host_id}) == []
