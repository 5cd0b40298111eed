"""CodingEnv: one repository sandbox behind the gymnasium `Env` contract.

Observation and action are text. `reset(options={"task": task})` starts a sandbox at the task's
base commit and returns the problem statement with the tool descriptions; `step(text)` parses
the model's raw text into tool calls, runs them, and returns their output. The episode ends on
`submit` (terminated), on the turn or wall-time limit (truncated), or when the sandbox dies
(truncated).

Whose fault a failure is: before the agent's first command, a sandbox that fails is the farm's
(`error_kind="infrastructure"`: retried, then masked). Once the agent has acted, a sandbox that
breaks from within (its container killed for memory, or running but unable to run a command:
see `DockerSandbox.diagnose`) is the agent's outcome (`error_kind="sandbox_broken"`, reward 0,
the reason in `info["error"]`); only an engine that stopped answering, or a container removed or
killed from outside, stays infrastructure. A diff the agent's repository cannot give is its
outcome too (see `envfarm.env.patch`).

Exploit signals: every step's `info["exploit_signals"]` lists the agent's commands of that step
that probe the farm rather than the task (`envfarm.env.probes`), and at the end what the diff
found in the agent's `.git`; the episode loop gathers them into `Trajectory.exploit_signals`.

A masked episode (no verdict on the agent: the sandbox or the grader failed) ends with reward
`float("nan")` and `info["masked"] = True`: a NaN is a float gymnasium accepts and shows up in
any sum, where a 0 would silently score an infrastructure fault as the agent's failure. The
farm's records turn it into `reward=None`.

Reward comes only at the end, from grading: the agent's diff is taken from its sandbox, the
sandbox is closed, and the diff is graded in a fresh sandbox from the task's image (the agent's
container never grades itself). `info` carries the grade report and the error kind.

The async core (`areset`, `astep`, `aclose`) is what the farm drives on its event loop; the sync
API runs the same coroutines on a private loop thread. Use one or the other for an episode.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import gymnasium
from gymnasium import spaces

from envfarm.env.config import EnvConfig
from envfarm.env.loop_thread import LoopThread
from envfarm.env.parsing import parse_tool_calls
from envfarm.env.patch import PatchError, extract_patch
from envfarm.env.probes import probe_signals
from envfarm.env.prompt import first_observation, format_help, system_prompt
from envfarm.env.schemas import TOOL_NAMES, tool_schemas
from envfarm.env.tools import ToolResult, ToolRunner
from envfarm.errors import EndReason, ErrorKind, SandboxBrokenError, SandboxError
from envfarm.sandbox.backends import default_sandbox_factory
from envfarm.sandbox.base import Sandbox, SandboxFactory
from envfarm.tasks.grade_result import GradeResult
from envfarm.tasks.grading import grade
from envfarm.tasks.sandbox_specs import agent_spec
from envfarm.tasks.schema import Task
from envfarm.tasks.setup import prepare_repository

Grader = Callable[..., Awaitable[GradeResult]]  # grade(task, patch, sandbox_factory, timeout=...)

MAX_TEXT = 1 << 24

log = logging.getLogger(__name__)


class TextSpace(spaces.Text):
    """Any string up to `max_length` characters (gymnasium's Text only admits its charset)."""

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length


OBSERVATION_SPACE = TextSpace(MAX_TEXT)  # shared: building a Text space costs ~0.1 ms per env
ACTION_SPACE = TextSpace(4096)


class CodingEnv(gymnasium.Env):
    metadata = {"render_modes": ["ansi"]}

    def __init__(self, tasks: Sequence[Task] | str | None = None, config: EnvConfig | dict | None = None,
                 sandbox_factory: SandboxFactory | None = None, grader: Grader | None = None,
                 render_mode: str | None = None, **overrides: Any) -> None:
        """`tasks` (a list, or a spec for `envfarm.tasks.loading.load`; "builtin" by default) are
        what `reset` draws from when `options` names no task. `overrides` set EnvConfig fields."""
        cfg = config if isinstance(config, EnvConfig) else EnvConfig(**(config or {}))
        self.config = cfg.model_copy(update=overrides) if overrides else cfg
        EnvConfig.model_validate(self.config.model_dump())
        self.sandbox_factory = sandbox_factory or default_sandbox_factory(self.config.run)
        self.grader = grader or grade
        self.render_mode = render_mode
        self._task_source = tasks if tasks is not None else "builtin"
        self._tasks: list[Task] | None = list(tasks) if isinstance(tasks, Sequence) and not isinstance(tasks, str) \
            else None
        self.observation_space = OBSERVATION_SPACE
        self.action_space = ACTION_SPACE
        self._loop: LoopThread | None = None
        self._sandbox: Sandbox | None = None
        self._sandbox_loop: asyncio.AbstractEventLoop | None = None
        self._runner: ToolRunner | None = None
        self.task: Task | None = None
        self._base_commit = ""  # the commit the episode's repository started at
        self._turn = 0
        self._started = 0.0
        self._done = True
        self._last_observation = ""
        self._first_action_at: float | None = None  # time.time() of the agent's first command
        self._signals: list[str] = []  # this step's exploit signals

    # -- async core ------------------------------------------------------------------------
    async def areset(self, *, seed: int | None = None,
                     options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        await self._release()
        task = self._pick_task((options or {}).get("task"))
        started = time.perf_counter()
        spec = agent_spec(task, workdir=self.config.workdir, env=dict(self.config.sandbox_env))
        sandbox = await self.sandbox_factory(spec, task.instance_id)
        self._sandbox, self._sandbox_loop = sandbox, asyncio.get_running_loop()
        try:
            self._base_commit = await prepare_repository(sandbox, task, self.config.workdir)
        except BaseException:
            await self._release()
            raise
        self.task = task
        self._runner = ToolRunner(sandbox, self.config.command_timeout_s, self.config.max_observation_chars,
                                  self.config.workdir)
        self._turn, self._started, self._done = 0, time.monotonic(), False
        self._first_action_at = None
        tools = tool_schemas()
        self._last_observation = first_observation(task, tools)
        info = {"instance_id": task.instance_id, "repo": task.repo, "tools": tools,
                "system_prompt": system_prompt(self.config.workdir), "sandbox_id": sandbox.id,
                "setup_seconds": time.perf_counter() - started}
        return self._last_observation, info

    async def astep(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._done or self.task is None or self._runner is None:
            raise RuntimeError("the episode is over or was never started: call reset() first")
        self._turn += 1
        self._signals = []
        parsed = parse_tool_calls(action)
        results: list[ToolResult] = []
        submitted, reason = False, None
        if self.time_left() <= 0:
            reason, text = EndReason.TIME_LIMIT, "The episode's time limit was reached before this action ran."
        elif not parsed.calls:
            text = format_help(parsed.errors, TOOL_NAMES)
        else:
            try:
                results, submitted = await self._run_calls(parsed.calls)
            except SandboxError as exc:
                return await self._end_sandbox_failure(exc, results)
            text = _render(results, parsed.errors, len(parsed.calls) - len(results))
        if not reason:
            reason = EndReason.SUBMIT if submitted else EndReason.TIME_LIMIT if self.time_left() <= 0 else \
                EndReason.MAX_TURNS if self._turn >= self.config.max_turns else None
        info: dict[str, Any] = {"turn": self._turn, "tool_calls": [r.to_dict() for r in results],
                                "parse_errors": list(parsed.errors), "format_error": not parsed.calls,
                                "error_kind": None, "masked": False, "exploit_signals": self._signals}
        self._last_observation = text
        if not reason:
            return text, 0.0, False, False, info
        reward = await self._finish(reason, info)
        return text, reward, reason == EndReason.SUBMIT, reason != EndReason.SUBMIT, info

    async def aclose(self) -> None:
        await self._release()

    async def afork(self, n: int) -> list[CodingEnv]:
        """n envs that go on from this episode's current state, each in a fork of its sandbox
        (files and shell state, see Sandbox.fork) made by this env's sandbox factory. Each is a
        full episode of its own: same task, turn count, time budget and limits, graded on its
        own at its end (its diff alone goes to a fresh grading sandbox). Between steps only."""
        if self._done or self.task is None or self._sandbox is None:
            raise RuntimeError("only a running episode can be forked: call reset() first")
        children = await self._sandbox.fork(n, self.sandbox_factory)
        envs = []
        for sandbox in children:
            env = CodingEnv(tasks=[self.task], config=self.config, sandbox_factory=self.sandbox_factory,
                            grader=self.grader, render_mode=self.render_mode)
            env._sandbox, env._sandbox_loop = sandbox, asyncio.get_running_loop()
            env._runner = ToolRunner(sandbox, self.config.command_timeout_s, self.config.max_observation_chars,
                                     self.config.workdir)
            env.task, env._base_commit, env._turn, env._started = self.task, self._base_commit, self._turn, \
                self._started
            env._done, env._first_action_at = False, self._first_action_at
            env._last_observation = self._last_observation
            envs.append(env)
        return envs

    def time_left(self) -> float:
        return self.config.episode_timeout_s - (time.monotonic() - self._started)

    # -- sync gymnasium API ----------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        return self._sync(self.areset(seed=seed, options=options))

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        return self._sync(self.astep(action))

    def render(self) -> str | None:
        return self._last_observation if self.render_mode == "ansi" else None

    def close(self) -> None:
        """Release the sandbox (wherever its loop runs) and stop the private loop; safe to repeat."""
        loop = self._sandbox_loop
        if self._sandbox is not None and loop is not None and not loop.is_closed():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if loop is running:
                loop.create_task(self._release())  # cannot block the loop we are on
            elif loop.is_running():
                asyncio.run_coroutine_threadsafe(self._release(), loop).result(60)
        if self._loop is not None:
            self._loop.stop()
            self._loop = None
        super().close()

    def _sync(self, coro: Any) -> Any:
        if self._loop is None:
            self._loop = LoopThread()
        if self._sandbox is not None and self._sandbox_loop is not self._loop.loop:
            coro.close()
            raise RuntimeError("this episode was started with the async API; finish it with astep/aclose")
        return self._loop.run(coro)

    # -- internals -------------------------------------------------------------------------
    def _pick_task(self, task: Task | dict | None) -> Task:
        if isinstance(task, Task):
            return task
        if isinstance(task, dict):
            return Task.parse(task, where="reset(options={'task': ...})")
        if task is not None:
            raise TypeError(f"options['task'] must be a Task or a SWE-bench row dict, got {type(task).__name__}")
        if self._tasks is None:
            from envfarm.tasks.loading import load

            self._tasks = load(str(self._task_source))
        if not self._tasks:
            raise ValueError("no task given in options={'task': ...} and the env has no tasks to draw from")
        return self._tasks[int(self.np_random.integers(len(self._tasks)))]

    async def _run_calls(self, calls: list) -> tuple[list[ToolResult], bool]:
        assert self._runner is not None
        results: list[ToolResult] = []
        for n, call in enumerate(calls[: self.config.max_calls_per_turn]):
            if call.name != "submit" and self._first_action_at is None:
                self._first_action_at = time.time()
            self._signals.extend(probe_signals(call.name, call.arguments))
            timeout = min(self.config.command_timeout_s, max(self.time_left(), 1.0))
            result = await self._runner.run(call, call.id or f"call_{self._turn}_{n}", timeout)
            results.append(result)
            if call.name == "submit":
                return results, True
            if self.time_left() <= 0:
                break
        return results, False

    async def _finish(self, reason: EndReason, info: dict[str, Any]) -> float:
        """Take the agent's diff, close its sandbox, grade in a fresh one; fill `info`."""
        assert self.task is not None and self._sandbox is not None
        self._done = True
        task, started = self.task, time.perf_counter()
        info["end_reason"] = reason
        grade_result: GradeResult | None = None
        patch = ""
        try:
            patch = await extract_patch(self._sandbox, self._base_commit, self.config.workdir, signals=self._signals)
        except PatchError as exc:
            grade_result = GradeResult(instance_id=task.instance_id, error_kind=exc.kind, error=str(exc))
        except SandboxError as exc:
            grade_result = GradeResult(instance_id=task.instance_id, error_kind=self._blame(exc),
                                       error=f"could not read the agent's diff: {exc}")
        await self._release()
        if grade_result is None:
            if reason != EndReason.SUBMIT and not self.config.grade_on_truncation:
                grade_result = GradeResult(instance_id=task.instance_id, error="not graded: the episode hit a limit")
            elif not patch.strip():
                grade_result = GradeResult(instance_id=task.instance_id, error="empty patch: nothing was changed")
            else:
                grade_result = await self._grade(task, patch)
        masked = grade_result.error_kind is not None and grade_result.error_kind.masked
        reward = float("nan") if masked else float(grade_result.resolved)
        info.update(grade=grade_result, error_kind=grade_result.error_kind, patch=patch, masked=masked,
                    resolved=grade_result.resolved, reward=reward,
                    grading_seconds=time.perf_counter() - started)
        return reward

    async def _grade(self, task: Task, patch: str) -> GradeResult:
        try:
            return await self.grader(task, patch, self.sandbox_factory, timeout=self.config.grading_timeout_s)
        except SandboxError as exc:  # ImageMissingError included: the grader could not start
            return GradeResult(instance_id=task.instance_id, error_kind=ErrorKind.INFRASTRUCTURE, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - grading choked on what the agent's patch made
            # Anything else comes from the patch's own doing (a tree git cannot list, output the
            # parser cannot read): the agent's outcome, never a masked infrastructure fault.
            log.exception("grading %s failed on the agent's patch", task.instance_id)
            return GradeResult(instance_id=task.instance_id, error_kind=ErrorKind.TESTS_CRASHED,
                               error=f"grading failed on this patch: {type(exc).__name__}: {exc}"[:2000])

    def _blame(self, exc: SandboxError) -> ErrorKind:
        """SANDBOX_BROKEN when the sandbox broke from within after the agent's first command (a
        container that had already exited before it is not the agent's doing), else INFRASTRUCTURE."""
        if not isinstance(exc, SandboxBrokenError) or self._first_action_at is None:
            return ErrorKind.INFRASTRUCTURE
        if exc.exited_at is not None and exc.exited_at < self._first_action_at - 1.0:  # 1 s: engine's clock
            return ErrorKind.INFRASTRUCTURE
        return ErrorKind.SANDBOX_BROKEN

    async def _end_sandbox_failure(self, exc: SandboxError, results: list[ToolResult]):
        self._done = True
        kind = self._blame(exc)
        await self._release()
        masked = kind.masked
        reward = float("nan") if masked else 0.0
        text = f"The sandbox failed and the episode cannot go on: {exc}"
        self._last_observation = text
        info = {"turn": self._turn, "tool_calls": [r.to_dict() for r in results], "parse_errors": [],
                "format_error": False,
                "end_reason": EndReason.SANDBOX_ERROR, "error_kind": kind, "error": str(exc),
                "grade": None, "patch": "", "resolved": False, "reward": reward, "masked": masked,
                "grading_seconds": 0.0, "exploit_signals": self._signals}
        return text, reward, False, True, info

    async def _release(self) -> None:
        sandbox, self._sandbox, self._runner = self._sandbox, None, None
        if sandbox is not None:
            try:
                await sandbox.close()
            except SandboxError:
                pass  # already gone; the reaper finds anything left by its labels


def _render(results: list[ToolResult], errors: list[str], refused: int) -> str:
    """One observation from several tool outputs; a single call's output stands alone."""
    parts = []
    if len(results) == 1 and not errors and not refused:
        return results[0].output
    for r in results:
        parts.append(f"<tool_output name={r.name!r} id={r.id!r}>\n{r.output}\n</tool_output>")
    if refused:
        parts.append(f"[{refused} further tool call(s) in this reply were not run: one reply runs at most "
                     "the configured number of calls, and nothing after `submit`]")
    if errors:
        parts.append("[some tool calls could not be parsed: " + "; ".join(errors) + "]")
    return "\n".join(parts)
