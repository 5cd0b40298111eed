"""A simulated sandbox backend: Docker's latencies without Docker's containers.

Why: the control plane (host actors, warm pools, admission control, the scheduler) must be
driven at 20,000 concurrent environments, which no single machine can hold as containers. A
SimSandbox sleeps for the time the real operation takes (medians measured on this project's
machines, see docs/BENCHMARKS.md) with a log-normal spread, keeps files in memory, and answers
every command with an empty output (files that commands would have made read as empty).
`envfarm.tasks.sim_grading` stands in for grading.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from envfarm.sandbox.base import (
    DEFAULT_OUTPUT_LIMIT,
    ExecResult,
    HostResult,
    Sandbox,
    SandboxBackend,
    SandboxError,
    SandboxFactory,
    SandboxSpec,
)
from envfarm.sandbox.sim_engine import EngineCurve, SimEngine

if TYPE_CHECKING:
    from envfarm.sandbox.backends import SimBackendConfig

_ids = itertools.count()
SIM_PATCH = b"diff --git a/sim.py b/sim.py\n--- a/sim.py\n+++ b/sim.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"


@dataclass(frozen=True)
class SimProfile:
    """Latency medians in seconds (measured with scripts/bench_sandbox.py) and failure odds."""

    create_s: float = 0.34
    close_s: float = 0.08
    exec_s: float = 0.0005
    grade_s: float = 1.8
    spread: float = 0.25  # sigma of the log-normal around each median
    resolve_rate: float = 0.5  # odds that sim grading says resolved
    create_failure_rate: float = 0.0  # odds that a create fails (an infrastructure fault)
    time_scale: float = 1.0  # multiply every latency (0 makes the backend instant)
    # (concurrent creates, seconds) of a real engine (envfarm.sandbox.sim_engine): when set,
    # creates share this backend's modelled engine (one per backend, i.e. per host) and take
    # what the curve gives for the creates in flight, instead of create_s
    create_curve: tuple[tuple[int, float], ...] = ()

    def draw(self, median: float, rng: random.Random) -> float:
        if self.time_scale == 0 or median == 0:
            return 0.0
        return median * self.time_scale * math.exp(rng.gauss(0.0, self.spread))


class SimSandbox:
    """Fulfils the Sandbox protocol with sleeps and an in-memory file system."""

    simulated = True  # holds no repository: set-up checks that read one are skipped (see Sandbox)

    def __init__(self, spec: SandboxSpec, profile: SimProfile, rng: random.Random) -> None:
        self.spec = spec
        self.profile = profile
        self.id = f"sim-{next(_ids)}"
        self._rng = rng
        self._files: dict[str, bytes] = {}
        self._closed = False
        self.created_at = time.time()

    @classmethod
    async def create(cls, spec: SandboxSpec, profile: SimProfile | None = None,
                     seed: int | None = None, create_s: float | None = None, **_: object) -> SimSandbox:
        """`create_s`: this create's median, where an engine model chose it (else the profile's)."""
        profile = profile or SimProfile()
        rng = random.Random(seed)
        await asyncio.sleep(profile.draw(profile.create_s if create_s is None else create_s, rng))
        if profile.create_failure_rate and rng.random() < profile.create_failure_rate:
            raise SandboxError("simulated create failure")
        return cls(spec, profile, rng)

    def is_alive(self) -> bool:
        return not self._closed

    @property
    def last_ok(self) -> float:
        """Always now: a simulated sandbox never goes quiet, so a pool never spends a round trip."""
        return time.monotonic()

    async def exec(self, cmd: str, timeout: float = 60.0,
                   output_limit: int = DEFAULT_OUTPUT_LIMIT) -> ExecResult:
        if self._closed:
            raise SandboxError(f"sandbox {self.id} is closed")
        seconds = self.profile.draw(self.profile.exec_s, self._rng)
        await asyncio.sleep(seconds)
        return ExecResult(output="", exit_code=0, seconds=seconds)

    async def host_exec(self, argv: list[str], timeout: float = 60.0, output_limit: int = DEFAULT_OUTPUT_LIMIT,
                        env: dict[str, str] | None = None) -> HostResult:
        """The time of a command; a diff (an argv that mentions one) prints a one-line change."""
        if self._closed:
            raise SandboxError(f"sandbox {self.id} is closed")
        seconds = self.profile.draw(self.profile.exec_s, self._rng)
        await asyncio.sleep(seconds)
        stdout = SIM_PATCH if any("diff" in a for a in argv) else b""
        return HostResult(exit_code=0, stdout=stdout, seconds=seconds)

    async def read_file(self, path: str) -> bytes:
        """What was written, else what a command would have left: a patch file holds a one-line
        change (so that episodes go on to grading), any other file is empty."""
        if path in self._files:
            return self._files[path]
        return SIM_PATCH if path.endswith((".patch", ".diff")) else b""

    async def write_file(self, path: str, data: bytes | str, mode: int = 0o644) -> None:
        self._files[path] = data.encode() if isinstance(data, str) else data

    async def fork(self, n: int, factory: SandboxFactory | None = None) -> list[Sandbox]:
        """n simulated children holding copies of this one's files (each costs a create's time)."""
        if self._closed:
            raise SandboxError(f"sandbox {self.id} is closed: it cannot be forked")
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"fork(n): n must be a positive whole number of children, got {n!r}")
        make = factory or (lambda spec, _task: SimSandbox.create(spec, self.profile))
        children = list(await asyncio.gather(*(make(self.spec, "") for _ in range(n))))
        for child in children:
            inner = getattr(child, "_inner", child)
            if isinstance(inner, SimSandbox):
                inner._files = dict(self._files)
        return children

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await asyncio.sleep(self.profile.draw(self.profile.close_s, self._rng))


class SimBackend(SandboxBackend):
    """Sandboxes that are objects in memory: nothing to reap, every image present.

    Admission only bounds the control plane here (there is no engine to protect), hence the
    high defaults.
    """

    name = "sim"
    simulated = True
    leaves_orphans = False
    max_starting = 2000
    create_rate = 5000.0

    def __init__(self, config: SimBackendConfig | None = None) -> None:
        from envfarm.sandbox.backends import SimBackendConfig

        self.config = config or SimBackendConfig()
        curve = self.config.profile.create_curve
        self.engine = SimEngine(EngineCurve(tuple(map(tuple, curve)))) if curve else None
        self._rng = random.Random()

    @property
    def profile(self) -> SimProfile:
        return self.config.profile

    async def create(self, spec: SandboxSpec, task_id: str = "", *, owner: str | None = None,
                     run: str = "adhoc") -> Sandbox:
        if self.engine is None:
            return await SimSandbox.create(spec, self.profile)
        await self.engine.create(self.profile.draw(1.0, self._rng))  # the curve's median, with the spread
        return await SimSandbox.create(spec, self.profile, create_s=0.0)

    def admission(self, max_starting: int | None = None, create_rate: float | None = None) -> tuple[int, float]:
        """With an engine model, at most its best level in flight (envfarm.sandbox.sim_engine)."""
        if self.engine is not None and max_starting is None:
            max_starting = self.engine.curve.best_concurrency()
        return super().admission(max_starting, create_rate)

    def reap(self, *, owner: str | None = None, run: str | None = None,
             older_than_s: float | None = None) -> int:
        return 0

    def ensure_image(self, image: str, registry: str | None = None, tarball: bytes | None = None,
                     peers: Sequence[Any] = ()) -> str:
        return "present"


def sim_resolves(instance_id: str, attempt_key: str, rate: float) -> bool:
    """Deterministic per (task, episode) so a retried episode gets the same verdict."""
    h = hashlib.sha256(f"{instance_id}/{attempt_key}".encode()).digest()
    return int.from_bytes(h[:4], "big") / 2**32 < rate
