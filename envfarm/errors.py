"""The ground floor: one vocabulary for what went wrong, and one base class for envfarm's errors.

Every layer imports this module and nothing else of envfarm imports below it. An episode that
ends without a clean verdict carries an `ErrorKind`; what the farm and the trainer do with it
follows from two properties, decided here and nowhere else:

- `retryable`: the farm failed on its own (engine, node, host): run the episode again elsewhere.
- `masked`: there is no verdict on the agent: its reward is None (never 0), and a trainer gives
  it no signal. Kinds that are not masked (a timeout, a patch that did not apply) are the
  agent's own outcome and score 0.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    """Why an episode (or a grading run) has no clean verdict."""

    INFRASTRUCTURE = "infrastructure"  # sandbox, engine, host or node failed: retried, then masked
    IMAGE_MISSING = "image_missing"  # the task's image could not be had on the node: masked, not retried
    POLICY = "policy"  # the policy could not answer (server down, crash): masked
    TOKEN_MISMATCH = "token_mismatch"  # the tokens to train on are not what the model generated: masked
    TASK_UNKNOWN = "task_unknown"  # a restarted host lost its task cache: the driver resends the row (no attempt spent)
    TIMEOUT = "timeout"  # the tests ran past their time limit: the agent's outcome, reward 0
    PATCH_FAILED = "patch_failed"  # the patch did not apply to the base commit: reward 0
    PATCH_REJECTED = "patch_rejected"  # paths outside the repository, or far too large: never applied, reward 0
    TAMPERING = "tampering"  # the patch or the test run tampered with the test machinery: reward 0
    SANDBOX_BROKEN = "sandbox_broken"  # the agent's own sandbox stopped working after it acted: reward 0
    TESTS_CRASHED = "tests_crashed"  # the grading run died while running the agent's code: reward 0

    @property
    def retryable(self) -> bool:
        """Worth running again on another host: the failure was the farm's, not the episode's."""
        return self in _RETRYABLE

    @property
    def masked(self) -> bool:
        """No verdict on the agent: the reward is None and trains nothing."""
        return self in _MASKED


_RETRYABLE = frozenset({ErrorKind.INFRASTRUCTURE})
_MASKED = frozenset({ErrorKind.INFRASTRUCTURE, ErrorKind.IMAGE_MISSING, ErrorKind.POLICY,
                     ErrorKind.TOKEN_MISMATCH, ErrorKind.TASK_UNKNOWN})


class EndReason(StrEnum):
    """How an episode ended."""

    SUBMIT = "submit"  # the agent called submit (terminated)
    MAX_TURNS = "max_turns"  # the turn limit (truncated)
    TIME_LIMIT = "time_limit"  # the wall-time limit (truncated)
    SANDBOX_ERROR = "sandbox_error"  # the agent's sandbox died under it
    POLICY_ERROR = "policy_error"  # the policy raised
    SETUP_ERROR = "setup_error"  # the episode never started (image, sandbox, repository)
    HOST_LOST = "host_lost"  # the host actor running it died (its node, usually)


class EnvfarmError(Exception):
    """Base of every error envfarm raises on purpose."""


class UserInputError(EnvfarmError, ValueError):
    """Bad input from the user (a task file, a flag, a config): the message says what and how to fix it.

    The command line prints it as one line and exits non-zero, without a traceback.
    """


class SandboxError(EnvfarmError, RuntimeError):
    """The sandbox itself failed (container gone, engine unreachable): an infrastructure fault."""


class ForkUnsupportedError(SandboxError, NotImplementedError):
    """This backend's sandboxes cannot be forked (`Sandbox.fork`); the message names the backend.
    Callers that can do without (a branched episode) run independent episodes instead."""


class SandboxBrokenError(SandboxError):
    """The sandbox stopped working while the engine and the farm were fine: its container exited
    (killed, out of memory) or runs but can no longer start a process (pids, memory exhausted).

    Once the agent has acted this is the agent's outcome (ErrorKind.SANDBOX_BROKEN, reward 0);
    `exited_at` (unix time, None while the container still runs) lets the env tell a container
    that died before the agent's first command (infrastructure) from one the agent broke.
    """

    def __init__(self, message: str, exited_at: float | None = None) -> None:
        super().__init__(message)
        self.exited_at = exited_at


class ImageMissingError(SandboxError):
    """The task's image is not on this machine and could not be had: a set-up error, not retried."""
