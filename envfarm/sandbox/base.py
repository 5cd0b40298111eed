"""The Sandbox contract every backend (docker, sim) fulfils.

A sandbox is one isolated copy of a repository that an agent may run commands in. Everything is
async because a host multiplexes thousands of sandboxes on one event loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from envfarm.errors import ImageMissingError, SandboxError

__all__ = ["ExecResult", "ImageMissingError", "LIMITS", "Sandbox", "SandboxError", "SandboxSpec", "parse_size"]

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
    limit: str | None = None  # the limit the command ran into: one of LIMITS, or None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


# What a command can run into: its time limit, the output cap, or one of the sandbox's cgroup
# limits (memory: the OOM killer ended a process; pids: a fork failed; disk: the writable layer
# outgrew SandboxSpec.disk and the command was killed). The agent sees it; nothing is retried.
LIMITS = ("timeout", "output", "memory", "pids", "disk")


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
    # Cap on the container's writable layer. overlay2 on ext4 has no per-container quota
    # (--storage-opt size needs xfs with pquota), so the backend measures the layer while commands
    # run and kills them past the cap; the overshoot is bounded by write speed x disk_check_s.
    disk: str | None = "4g"
    disk_check_s: float = 1.0
    labels: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Sandbox(Protocol):
    """One isolated repository copy with a persistent shell session."""

    id: str

    async def exec(self, cmd: str, timeout: float = 60.0,
                   output_limit: int = DEFAULT_OUTPUT_LIMIT) -> ExecResult: ...

    async def read_file(self, path: str) -> bytes: ...

    async def write_file(self, path: str, data: bytes | str, mode: int = 0o644) -> None: ...

    async def close(self) -> None: ...


def parse_size(size: str) -> int:
    """'4g', '512m', '100k' or a plain byte count, as bytes (Docker's units, powers of 1024)."""
    text = size.strip().lower().removesuffix("b")
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)
