"""An in-memory Sandbox for unit tests: files in a dict, commands answered by a handler, all recorded.

It fulfils the whole `Sandbox` protocol (`envfarm.sandbox.base`), so pools, tools and set-up can
be tested without Docker; tests make it fail, die or answer as they need.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

from envfarm.errors import SandboxError
from envfarm.policy.base import Completion
from envfarm.sandbox.base import DEFAULT_OUTPUT_LIMIT, ExecResult, HostResult, SandboxSpec

_ids = itertools.count()


class FakeSandbox:
    simulated = True  # no repository behind it: set-up skips the checks that read one

    def __init__(self, spec: SandboxSpec | None = None,
                 handler: Callable[[str], ExecResult] | None = None) -> None:
        self.spec = spec or SandboxSpec(image="fake")
        self.id = f"fake-{next(_ids)}"
        self.files: dict[str, bytes] = {}
        self.commands: list[str] = []
        self.handler = handler or (lambda cmd: ExecResult(output="", exit_code=0))
        self.alive = True
        self.closed = False
        self._last_ok = time.monotonic()

    def is_alive(self) -> bool:
        return self.alive and not self.closed

    @property
    def last_ok(self) -> float:
        return self._last_ok

    def age(self, seconds: float) -> None:
        """Pretend the last command came back `seconds` ago."""
        self._last_ok -= seconds

    async def exec(self, cmd: str, timeout: float = 60.0, output_limit: int = DEFAULT_OUTPUT_LIMIT) -> ExecResult:
        if not self.is_alive():
            raise SandboxError(f"sandbox {self.id} is gone")
        self.commands.append(cmd)
        result = self.handler(cmd)
        self._last_ok = time.monotonic()
        return result

    async def host_exec(self, argv: list[str], timeout: float = 60.0, output_limit: int = DEFAULT_OUTPUT_LIMIT,
                        env: dict[str, str] | None = None) -> HostResult:
        result = await self.exec(" ".join(argv), timeout, output_limit)
        return HostResult(exit_code=result.exit_code, stdout=result.output.encode())

    async def fork(self, n: int, factory=None) -> list[FakeSandbox]:
        """n children with copies of this one's files and the same handler."""
        if not self.is_alive():
            raise SandboxError(f"sandbox {self.id} is gone")
        children = [FakeSandbox(self.spec, self.handler) for _ in range(n)]
        for child in children:
            child.files = dict(self.files)
        return children

    async def read_file(self, path: str) -> bytes:
        if path not in self.files:
            raise SandboxError(f"{path}: no such file")
        return self.files[path]

    async def write_file(self, path: str, data: bytes | str, mode: int = 0o644) -> None:
        self.files[path] = data.encode() if isinstance(data, str) else data

    async def close(self) -> None:
        self.closed = True


class FakeFactory:
    """A SandboxFactory that makes FakeSandboxes and keeps them; `fail` makes the next creates fail."""

    def __init__(self) -> None:
        self.made: list[FakeSandbox] = []
        self.fail = 0

    async def __call__(self, spec: SandboxSpec, task_id: str) -> FakeSandbox:
        if self.fail:
            self.fail -= 1
            raise SandboxError("the engine refused the create")
        sandbox = FakeSandbox(spec)
        self.made.append(sandbox)
        return sandbox


class FakePolicy:
    """One token per turn, with its logprob, and no waiting."""

    name = "fake"

    async def act(self, messages, tools):
        return Completion(text="x", prompt_ids=[1], completion_ids=[2], logprobs=[-0.5])
