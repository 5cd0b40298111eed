"""The Sandbox contract every backend (docker, sim) fulfils.

A sandbox is one isolated copy of a repository that an agent may run commands in. Everything is
async because a host multiplexes thousands of sandboxes on one event loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

DEFAULT_OUTPUT_LIMIT = 64 * 1024


@dataclass
class ExecResult:
    """What one command produced.

    `output` is stdout and stderr interleaved as the terminal would show them, decoded as UTF-8
    with undecodable bytes replaced. When `truncated`, the middle of the output was cut and
    `output` says how many bytes were dropped.
    """

    output: str
    exit_code: int | None
    timed_out: bool = False
    truncated: bool = False
    seconds: float = 0.0
    note: str = ""  # what the session had to do besides running the command (e.g. restart)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


@dataclass
class SandboxSpec:
    """How to start a sandbox: image, limits and the labels that name its owner."""

    image: str
    cpus: float = 1.0
    memory: str = "2g"
    pids: int = 512
    user: str = "agent"
    workdir: str = "/testbed"
    network: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)


class SandboxError(RuntimeError):
    """The sandbox itself failed (container gone, engine unreachable): an infrastructure fault."""


class ImageMissingError(SandboxError):
    """The task's image is not on this machine and could not be had: a set-up error, not retried."""


@runtime_checkable
class Sandbox(Protocol):
    """One isolated repository copy with a persistent shell session."""

    id: str

    async def exec(self, cmd: str, timeout: float = 60.0,
                   output_limit: int = DEFAULT_OUTPUT_LIMIT) -> ExecResult: ...

    async def read_file(self, path: str) -> bytes: ...

    async def write_file(self, path: str, data: bytes | str, mode: int = 0o644) -> None: ...

    async def close(self) -> None: ...
