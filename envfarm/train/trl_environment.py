"""envfarm's coding tasks as a TRL environment: `GRPOTrainer(environment_factory=...)`.

TRL runs the multi-turn loop itself: it renders the environment's public methods as tools,
parses the model's tool calls, calls the methods and appends their results, and scores each
rollout with `get_reward`. This module maps that contract onto CodingEnv, whose tool runner,
limits, patch extraction, grading and blame rules apply unchanged (each tool call is one
`astep`). What TRL's contract implies, and how it is met:

- Instances are pooled and reused across batches, `reset(**row)` is called serially: `reset`
  takes a warm sandbox of the row's task (`instance_id`) from a pool shared by the factory's
  instances and fed in the background (`EnvRuntime`), and releases the previous episode's.
- Every public method is a tool: the only public ones are `bash`, `str_replace_editor` and
  `submit` (plus `reset` and `get_reward`, which TRL does not expose); everything else starts
  with an underscore. Their docstrings are what TRL shows the model.
- A tool that raises goes back to the model as `{"error": ...}` and the episode goes on: calls
  after the episode ended, or on an environment that could not start, raise.
- There is no end-of-episode hook but `get_reward`, called one rollout after another: `submit`
  takes the diff and grades it in the background, and the first `get_reward` of a batch ends
  every episode still open (the model stopped calling tools) at once, so the serial calls mostly
  collect finished grades. The episode's sandbox is released when it ends.
- `get_reward` returns None for an infrastructure fault (a masked ErrorKind: TRL turns it into
  NaN and gives it no advantage), never 0; a wrong or missing patch scores 0, a resolved one 1
  (`RewardWeights`, as the farm's trainer scores).
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import weakref
from collections.abc import Sequence
from typing import Any, Literal

from envfarm.env.coding_env import CodingEnv
from envfarm.env.config import EnvConfig
from envfarm.errors import ErrorKind, ImageMissingError, SandboxError
from envfarm.tasks.schema import Task
from envfarm.train.config import RewardWeights
from envfarm.train.rewards import combined
from envfarm.train.trl_runtime import EnvRuntime

log = logging.getLogger(__name__)

INSTRUCTIONS = ("You are a software engineer fixing a bug in the repository checked out at /testbed. Explore and "
                "change it with the tools, and call `submit` when the fix is done. Do not change the tests: hidden "
                "tests decide whether the bug is fixed.\n\n")

Outcome = tuple[float, dict[str, Any]]  # CodingEnv's final reward (NaN when masked) and info


class EnvfarmToolEnv:
    """One rollout's coding task at a time; made by `EnvfarmEnvironmentFactory`, reused by TRL."""

    def __init__(self, runtime: EnvRuntime, weights: RewardWeights) -> None:
        self._runtime = runtime
        self._weights = weights
        self._env = CodingEnv(tasks=[], config=runtime.env_config, sandbox_factory=runtime.sandbox_factory,
                              grader=runtime.grader)
        self._open = False  # an episode is running: tools act on its sandbox
        self._ending: concurrent.futures.Future[Outcome] | None = None
        self._outcome: Outcome | None = None
        self._failure = ""  # why the episode could not start

    # -- TRL's contract ----------------------------------------------------------------------
    def reset(self, instance_id: str, **row: Any) -> str:
        """Start the row's task on a warm sandbox; returns the issue (appended to the prompt)."""
        self._end_previous()
        self._outcome, self._failure = None, ""
        kind = ErrorKind.INFRASTRUCTURE
        for _ in range(2):  # one retry: a sandbox that died in the pool is the farm's fault
            try:
                task = self._runtime.task(instance_id)
                self._runtime.run(self._env.areset(options={"task": task}))
            except KeyError:
                raise
            except (SandboxError, OSError) as exc:
                kind = ErrorKind.IMAGE_MISSING if isinstance(exc, ImageMissingError) else ErrorKind.INFRASTRUCTURE
                self._failure = f"{type(exc).__name__}: {exc}"
                log.warning("episode of %s could not start: %s", instance_id, exc)
                continue
            self._open, self._failure = True, ""
            return _issue(task)
        self._outcome = (float("nan"), {"masked": True, "error_kind": kind, "error": self._failure, "resolved": False})
        return f"The environment could not be started ({self._failure}); this episode is not scored."

    def get_reward(self) -> float | None:
        """The graded reward of the episode; None when infrastructure failed (no signal)."""
        if self._open and self._ending is None:
            for env in list(self._runtime_envs()):  # TRL scores after the whole batch generated
                env._end()
        outcome = self._collect()
        if outcome is None:
            return None
        reward, info = outcome
        if info.get("masked") or reward != reward:
            return None
        grade = info.get("grade")
        row = {"reward_masked": False, "resolved": bool(info.get("resolved")),
               "fail_to_pass": grade.fail_to_pass if grade is not None else 0.0, "format_score": 0.0}
        return combined(row, self._weights)

    # -- tools -----------------------------------------------------------------------------
    def bash(self, command: str) -> str:
        """Run a command in a persistent bash shell in the repository (working directory /testbed).

        State such as the current directory and exported variables persists between calls. There is no network
        and no interactive input; long-running commands are killed at the time limit.

        Args:
            command: The bash command to run.
        """
        return self._step("bash", {"command": command})

    def str_replace_editor(self, command: Literal["view", "create", "str_replace", "insert", "undo_edit"], path: str,
                           file_text: str | None = None, old_str: str | None = None, new_str: str | None = None,
                           insert_line: int | None = None, view_range: list[int] | None = None) -> str:
        """View, create and edit files; paths are absolute or relative to /testbed.

        `view` shows a file with line numbers or lists a directory; `create` writes a file; `str_replace` replaces
        old_str, which must occur exactly once, with new_str; `insert` adds new_str after line insert_line;
        `undo_edit` reverts the last edit of a file.

        Args:
            command: The edit to make.
            path: File or directory path.
            file_text: Content for `create`.
            old_str: Exact text to replace (`str_replace`).
            new_str: Replacement (`str_replace`) or text to insert (`insert`).
            insert_line: Line after which to insert (`insert`), 0 for the top.
            view_range: [start, end] lines for `view`, 1-based, end -1 for the last line.
        """
        arguments = {"command": command, "path": path, "file_text": file_text, "old_str": old_str,
                     "new_str": new_str, "insert_line": insert_line, "view_range": view_range}
        return self._step("str_replace_editor", {k: v for k, v in arguments.items() if v is not None})

    def submit(self) -> str:
        """Submit the current state of the repository as the solution; this ends the episode."""
        self._check_open()
        self._ending = self._runtime.submit(self._env.astep(_action("submit", {})))
        self._open = False
        return "Submitted: the repository is being graded. The episode is over."

    # -- internals -------------------------------------------------------------------------
    def _step(self, name: str, arguments: dict[str, Any]) -> str:
        self._check_open()
        text, reward, terminated, truncated, info = self._runtime.run(self._env.astep(_action(name, arguments)))
        if terminated or truncated:  # a limit was reached, or the sandbox died: CodingEnv ended and graded it
            self._open, self._outcome = False, (reward, info)
            return f"{text}\n[The episode is over ({info.get('end_reason')}): no further tool calls run.]"
        return text

    def _check_open(self) -> None:
        if not self._open:
            raise RuntimeError(f"the environment could not be started: {self._failure}" if self._failure
                               else "the episode is over: no further tool calls run")

    def _end(self) -> None:
        """End an open episode as a truncation: graded as it stands, or not at all (config)."""
        if not self._open or self._ending is not None:
            return
        self._open = False
        if self._runtime.env_config.grade_on_truncation:
            self._ending = self._runtime.submit(self._env.astep(_action("submit", {})))
        else:
            self._runtime.run(self._env.aclose())
            self._outcome = (0.0, {"masked": False, "resolved": False, "error": "not graded: no submit"})

    def _collect(self) -> Outcome | None:
        """The ended episode's outcome, waiting for its grading; None when ending it failed."""
        if self._outcome is None and self._ending is not None:
            ending, self._ending = self._ending, None
            try:
                _, reward, _, _, info = ending.result()
            except Exception as exc:  # noqa: BLE001 - a fault of the machinery: no verdict on the agent
                log.exception("ending an episode failed; its reward is masked")
                info, reward = {"masked": True, "error_kind": ErrorKind.INFRASTRUCTURE, "error": str(exc)}, float("nan")
            self._outcome = (reward, info)
        return self._outcome

    def _end_previous(self) -> None:
        """Release what the previous episode held (its grading finishes first: it owns the env)."""
        if self._open:  # never scored (an interrupted batch): nothing to grade
            self._open = False
            self._runtime.run(self._env.aclose())
        if self._ending is not None:
            self._collect()

    def _runtime_envs(self) -> list[EnvfarmToolEnv]:
        return [env for env in _INSTANCES.get(self._runtime, ()) if env._open]

    def _close(self) -> None:
        self._end_previous()
        self._runtime.run(self._env.aclose())


# instances by runtime, to end a batch's open episodes together (weak: TRL owns the instances)
_INSTANCES: weakref.WeakKeyDictionary[EnvRuntime, weakref.WeakSet[EnvfarmToolEnv]] = weakref.WeakKeyDictionary()


class EnvfarmEnvironmentFactory:
    """`GRPOTrainer(environment_factory=factory)`; `factory.close()` when training is over."""

    def __init__(self, tasks: Sequence[Task] | str, env_config: EnvConfig | dict[str, Any] | None = None, *,
                 weights: RewardWeights | None = None, warm: int = 8, backend: str = "docker",
                 run: str = "trl") -> None:
        """`tasks`: Task objects or a spec for `envfarm.tasks.load`; `warm`: sandboxes kept ready per
        image (a batch's rollouts, as TRL resets them all before generating)."""
        if isinstance(tasks, str):
            from envfarm.tasks.loading import load

            tasks = load(tasks)
        self.weights = weights or RewardWeights()
        if self.weights.format:
            raise ValueError("the format reward does not apply: TRL parses the tool calls itself")
        self.tasks = list(tasks)
        self.runtime = EnvRuntime(self.tasks, EnvConfig.coerce(env_config), warm=warm, backend=backend, run=run)
        self._instances: weakref.WeakSet[EnvfarmToolEnv] = weakref.WeakSet()
        _INSTANCES[self.runtime] = self._instances

    def __call__(self) -> EnvfarmToolEnv:
        env = EnvfarmToolEnv(self.runtime, self.weights)
        self._instances.add(env)
        return env

    def dataset(self, repeat: int = 1) -> Any:
        """A `datasets.Dataset` of one row per task (`repeat` times): the instructions as the prompt
        (the issue is appended by `reset`) and the `instance_id` that `reset` reads."""
        from datasets import Dataset

        rows = [{"prompt": [{"role": "user", "content": INSTRUCTIONS}], "instance_id": t.instance_id}
                for t in self.tasks]
        return Dataset.from_list(rows * repeat)

    def close(self) -> None:
        """Release every episode's sandbox and the warm pool."""
        for env in list(self._instances):
            try:
                env._close()
            except Exception:  # noqa: BLE001 - closing the rest matters more
                log.exception("closing an environment failed")
        self.runtime.close()


def envfarm_environment_factory(tasks: Sequence[Task] | str, env_config: EnvConfig | dict[str, Any] | None = None,
                                **kwargs: Any) -> EnvfarmEnvironmentFactory:
    """The factory for `GRPOTrainer(environment_factory=...)` (see EnvfarmEnvironmentFactory)."""
    return EnvfarmEnvironmentFactory(tasks, env_config, **kwargs)


def _action(name: str, arguments: dict[str, Any]) -> str:
    """A tool call as CodingEnv parses it; `<` escaped so no argument can close the tag early."""
    return "<tool_call>" + json.dumps({"name": name, "arguments": arguments}).replace("<", "\\u003c") + "</tool_call>"


def _issue(task: Task) -> str:
    return f"<issue>\n{task.problem_statement.strip()}\n</issue>"
