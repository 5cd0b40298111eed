"""One episode, one coroutine: policy and env take turns until the env says the episode is over.

The loop keeps the conversation in the chat format every template knows: system, user (the
first observation), then per turn the assistant message and one `tool` message per executed
call (or a `user` message with the format help when no call could be parsed). Everything is
recorded as it happens; whatever fails, the env's sandboxes are closed and a Trajectory comes
back with an error kind instead of an exception, so one bad episode never stops a farm.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from envfarm.env.coding_env import CodingEnv
from envfarm.errors import EndReason, ErrorKind, ImageMissingError, SandboxError
from envfarm.policy.base import Completion, policy_name
from envfarm.policy.oracle import oracle_episode
from envfarm.rollout.trajectory import Timings, ToolCallRecord, Trajectory, Turn
from envfarm.tasks.schema import Task


def _tool_messages(results: list[dict[str, Any]], assistant: dict[str, Any], observation: str) -> list[dict]:
    if not results:
        return [{"role": "user", "content": observation}]
    native_ids = [c.get("id") for c in assistant.get("tool_calls") or []]
    messages = []
    for n, r in enumerate(results):
        call_id = native_ids[n] if n < len(native_ids) and native_ids[n] else r["id"]
        messages.append({"role": "tool", "tool_call_id": call_id, "name": r["name"], "content": r["output"]})
    return messages


def _token_fields(completion: Completion, context: list[int] | None) -> tuple[dict[str, Any], list[int] | None]:
    """This turn's token record and the context after it (prompt + completion)."""
    if completion.prompt_ids is None or completion.completion_ids is None:
        return {}, None
    prompt, out = list(completion.prompt_ids), list(completion.completion_ids)
    fields: dict[str, Any] = {"completion_ids": out, "logprobs": completion.logprobs}
    if context is None:
        fields["context_ids"] = prompt
    elif prompt[: len(context)] == context:
        fields["context_ids"], fields["prefix_consistent"] = prompt[len(context):], True
    else:
        fields["context_ids"], fields["prefix_consistent"] = prompt, False
    return fields, prompt + out


async def run_episode(env: CodingEnv, policy: Any, task: Task, *, seed: int | None = None, run: str = "",
                      episode_id: str | None = None, **record_fields: Any) -> Trajectory:
    """Run one episode of `task` with `policy` in `env` and return its full record.

    `record_fields` are Trajectory fields the caller knows (the farm's group, attempt).
    """
    play = EpisodePlay(env, policy, new_record(env, policy, task, seed=seed, run=run, episode_id=episode_id,
                                               **record_fields))
    with oracle_episode(policy, task):  # only a declared oracle may see the task (gold patch included)
        try:
            await play.start(task, seed)
            await play.play()
        finally:
            await play.close()
    return play.traj


def new_record(env: CodingEnv, policy: Any, task: Task, *, seed: int | None = None, run: str = "",
               episode_id: str | None = None, **record_fields: Any) -> Trajectory:
    return Trajectory(episode_id=episode_id or uuid.uuid4().hex, run=run or env.config.run,
                      instance_id=task.instance_id, repo=task.repo, policy=policy_name(policy), seed=seed,
                      started_at=time.time(), **record_fields)


class EpisodePlay:
    """One episode in progress: its env, its record so far and the model's context.

    Split into start, turns and close so that an episode can be played up to a turn, forked
    (`branch`) and its branches played on (see envfarm.rollout.branching). `ended`: the record is
    final (the env finished it, or setup or the policy failed); `done`: the env finished it and
    has released its sandboxes itself.
    """

    def __init__(self, env: CodingEnv, policy: Any, traj: Trajectory) -> None:
        self.env, self.policy, self.traj = env, policy, traj
        self.timings = Timings()
        self.started = time.perf_counter()
        self.context: list[int] | None = None
        self.tools: list[dict[str, Any]] = []
        self.done = self.ended = False

    async def start(self, task: Task, seed: int | None) -> None:
        try:
            observation, info = await self.env.areset(seed=seed, options={"task": task})
        except ImageMissingError:
            raise
        except SandboxError as exc:
            self._end(EndReason.SETUP_ERROR, ErrorKind.INFRASTRUCTURE, str(exc))
            return
        self.timings.setup = info.get("setup_seconds", 0.0)
        self.tools = info["tools"]
        self.traj.messages = [{"role": "system", "content": info["system_prompt"]},
                              {"role": "user", "content": observation}]

    async def play(self, until_turn: int | None = None) -> None:
        """Turns until the episode ends (or it has `until_turn` turns)."""
        while not self.ended and (until_turn is None or len(self.traj.turns) < until_turn):
            await self.turn()

    async def turn(self) -> None:
        env, traj, timings = self.env, self.traj, self.timings
        t0 = time.perf_counter()
        try:  # asyncio.timeout, not wait_for: on 3.11 a cancel landing as the turn ends is lost
            async with asyncio.timeout(max(env.time_left(), 0.001)):
                completion = await self.policy.act(list(traj.messages), self.tools)
        except TimeoutError:
            completion = Completion(text="", finish_reason="episode_time_limit")
        except Exception as exc:  # noqa: BLE001 - any policy failure ends the episode, masked
            self._end(EndReason.POLICY_ERROR, ErrorKind.POLICY, f"{type(exc).__name__}: {exc}")
            return
        gen_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        observation, reward, terminated, truncated, info = await env.astep(completion.text)
        step_s = time.perf_counter() - t1 - info.get("grading_seconds", 0.0)
        assistant = completion.assistant_message()
        traj.messages.append(assistant)
        traj.messages.extend(_tool_messages(info["tool_calls"], assistant, observation))
        token_fields, self.context = _token_fields(completion, self.context)
        records = [ToolCallRecord(**{**r, "arguments": json.dumps(r["arguments"])}) for r in info["tool_calls"]]
        traj.turns.append(Turn(
            index=len(traj.turns), completion=completion.text, observation=observation, tool_calls=records,
            format_error=info["format_error"], parse_errors=info["parse_errors"], generation_seconds=gen_s,
            tool_seconds=step_s, finish_reason=completion.finish_reason, **token_fields))
        traj.exploit_signals.extend(info.get("exploit_signals") or [])
        timings.generation += gen_s
        timings.tools += step_s
        if terminated or truncated:
            self.done = self.ended = True
            grade = info.get("grade")
            # the env's masked reward is NaN (gymnasium wants a float); the record's is None
            traj.reward = None if info.get("masked") else reward
            traj.terminated, traj.truncated = terminated, truncated
            traj.end_reason, traj.error_kind = info.get("end_reason"), info.get("error_kind")
            traj.error = info.get("error") or (grade.error if grade is not None else "")
            traj.grade, traj.patch, traj.resolved = grade, info.get("patch", ""), info["resolved"]
            timings.grading = info.get("grading_seconds", 0.0)

    def branch(self, env: CodingEnv, **record_fields: Any) -> EpisodePlay:
        """This episode so far, played on in `env` (a fork of this one's env) under a record of
        its own: the turns so far are copied, the timings start afresh (the prefix is counted
        once, in this episode)."""
        other = EpisodePlay(env, self.policy, self.traj.model_copy(deep=True, update=record_fields))
        other.context = None if self.context is None else list(self.context)
        other.tools = self.tools
        return other

    async def close(self) -> None:
        """Release the env's sandbox unless the env already did, and seal the record's timings."""
        try:
            if not self.done:
                await self.env.aclose()
        finally:
            self.timings.total = time.perf_counter() - self.started
            self.traj.timings = self.timings

    def _end(self, reason: EndReason, kind: ErrorKind, error: str) -> None:
        self.traj.end_reason, self.traj.error_kind, self.traj.error = reason, kind, error
        self.ended = True
