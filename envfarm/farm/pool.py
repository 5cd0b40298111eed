"""Warm pools: sandboxes created ahead of demand, per image, liveness-checked before hand-out.

An agent's sandbox and a grading sandbox both need a pristine copy of the image: a released
sandbox is closed and the pool refills behind it, unless the pool recycles (`recycle=True`) and
the sandbox can be reset to its first state and verified so (a Docker sandbox where this process
may read the engine's storage, see envfarm.sandbox.docker_recycle); then it goes back to its
image's queue, and one that fails the reset is closed. Every create goes through
AdmissionControl, so a burst of demand never becomes a burst stuck in "starting".
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from envfarm.farm.admission import AdmissionControl
from envfarm.sandbox.base import Sandbox, SandboxError, SandboxFactory, SandboxSpec

log = logging.getLogger(__name__)


class WarmPool:
    """Per-image queues of ready sandboxes with a target size each."""

    def __init__(self, create: SandboxFactory, admission: AdmissionControl, warm_size: int = 0,
                 liveness_timeout: float = 5.0, spec_for: Callable[[str], SandboxSpec] | None = None,
                 liveness_interval: float = 30.0, min_life_left_s: float = 0.0,
                 user_of: Callable[[str], str] | None = None, recycle: bool = False) -> None:
        """`min_life_left_s`: a warm sandbox closer than this to its maximum lifetime (a sandbox's
        `expires_at`, where it has one) is not handed out: it would remove itself mid-episode.
        `user_of(image)`: the image's own user (SandboxBackend.image_user), for specs that ask
        for it (`user=None`, grading): the same user as the pool's is served from the pool.
        `recycle`: reset released sandboxes for the next acquire of their image (see above)."""
        self._create = create
        self.admission = admission
        self.warm_size = warm_size
        self.liveness_timeout = liveness_timeout
        self.liveness_interval = liveness_interval
        self.min_life_left_s = min_life_left_s
        self._spec_for = spec_for or (lambda image: SandboxSpec(image=image))
        self._user_of = user_of or (lambda image: "agent")
        self._ready: dict[str, collections.deque[Sandbox]] = collections.defaultdict(collections.deque)
        self._filling: dict[str, int] = collections.defaultdict(int)
        self._returning: dict[str, int] = collections.defaultdict(int)  # released, being recycled
        self._tasks: set[asyncio.Task] = set()
        self._closing: set[asyncio.Task] = set()  # removals of released sandboxes, never cancelled
        self.busy = 0
        self.created = 0
        self.create_failures = 0
        self.dead_on_acquire = 0
        self.acquire_seconds: collections.deque[float] = collections.deque(maxlen=100_000)
        self.warm_hits = 0
        self.cold_creates = 0
        self.recycle = recycle
        self.recycled = 0  # resets that passed their verification
        self.recycle_failures = 0  # released sandboxes closed because their reset failed
        self.recycled_hits = 0  # acquires served by a recycled sandbox
        self.recycle_seconds: collections.deque[float] = collections.deque(maxlen=100_000)
        self._closed = False

    # -- hand-out ------------------------------------------------------------------------------
    async def acquire(self, image: str, task_id: str = "", user: str | None = "agent") -> Sandbox:
        """A live sandbox of `image` whose commands run as `user` (None: the image's own user): a
        warm one when there is one, else created now. Warm sandboxes are the pool spec's user;
        another user's sandbox is created now (grading as root in a public image)."""
        started = time.perf_counter()
        spec = self._spec_for(image)
        wanted = user if user is not None else await asyncio.to_thread(self._user_of, image)
        if wanted != spec.user:
            async with self.admission.admit():
                sandbox = await self._create(dataclasses.replace(spec, user=wanted), task_id)
            self.created += 1
            self.cold_creates += 1
            return self._handed_out(sandbox, started)
        ready = self._ready[image]
        while ready:
            sandbox = ready.popleft()
            self._refill(image)
            if await self._alive(sandbox):
                self.warm_hits += 1
                self.recycled_hits += getattr(sandbox, "uses", 0) > 0
                return self._handed_out(sandbox, started)
            self.dead_on_acquire += 1
            await self._discard(sandbox)
        self._refill(image)
        sandbox = await self._create_one(image, task_id)
        self.cold_creates += 1
        return self._handed_out(sandbox, started)

    def _handed_out(self, sandbox: Sandbox, started: float) -> Sandbox:
        self.busy += 1
        self.acquire_seconds.append(time.perf_counter() - started)
        return sandbox

    async def release(self, sandbox: Sandbox) -> None:
        """Close a used sandbox, or with `recycle` reset it for the next acquire of its image
        (closed if the reset fails), in the background: the episode or grading that used it
        need not wait."""
        self.busy -= 1
        if self._recyclable(sandbox):
            self._returning[sandbox.requested_spec.image] += 1  # type: ignore[attr-defined]
            work = self._recycle(sandbox)
        else:
            work = self._discard(sandbox)
        task = asyncio.get_running_loop().create_task(work)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _recyclable(self, sandbox: Sandbox) -> bool:
        spec = getattr(sandbox, "requested_spec", None)
        return (self.recycle and not self._closed and spec is not None
                and getattr(sandbox, "recyclable", False) and spec == self._spec_for(spec.image))

    async def _recycle(self, sandbox: Any) -> None:
        image = sandbox.requested_spec.image
        started = time.perf_counter()
        ok = False
        try:
            await sandbox.recycle()
            ok = True
        except Exception as exc:  # noqa: BLE001 - a failed reset only costs the sandbox
            self.recycle_failures += 1
            log.warning("sandbox %s not recycled (closed instead): %s", sandbox.id, exc)
        finally:
            self._returning[image] -= 1
            if not ok:  # failed, or cancelled mid-way: never handed out again
                await self._discard(sandbox)
                self._refill(image)
        if not ok:
            return
        self.recycle_seconds.append(time.perf_counter() - started)
        self.recycled += 1
        if self._closed or len(self._ready[image]) >= self.warm_size + self.busy + 1:
            await self._discard(sandbox)  # more ready than any demand seen: not kept idle
        else:
            self._ready[image].append(sandbox)

    async def _alive(self, sandbox: Sandbox) -> bool:
        """Dead if its stream closed (a killed container or engine closes it), or too near its
        maximum lifetime; a command round trip as well when it has not answered one for
        `liveness_interval` seconds."""
        if not sandbox.is_alive():
            return False
        if getattr(sandbox, "expires_at", math.inf) - time.monotonic() < self.min_life_left_s:
            return False
        if time.monotonic() - sandbox.last_ok < self.liveness_interval:
            return True
        try:
            res = await sandbox.exec("true", timeout=self.liveness_timeout)
        except (TimeoutError, SandboxError, OSError):
            return False
        return res.exit_code == 0

    async def _discard(self, sandbox: Sandbox) -> None:
        try:
            await sandbox.close()
        except Exception as exc:  # noqa: BLE001 - closing must never take an episode down
            log.warning("closing sandbox %s failed: %s", sandbox.id, exc)

    # -- filling -------------------------------------------------------------------------------
    def prewarm(self, image: str, count: int | None = None) -> None:
        """Start filling the pool of `image` up to `count` (default: warm_size)."""
        if count is not None:
            self.warm_size = max(self.warm_size, count)
        self._refill(image)

    def _refill(self, image: str) -> None:
        if self._closed:
            return
        deficit = self.warm_size - len(self._ready[image]) - self._filling[image] - self._returning[image]
        for _ in range(max(0, deficit)):
            self._filling[image] += 1
            task = asyncio.get_running_loop().create_task(self._fill_one(image))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _fill_one(self, image: str) -> None:
        try:
            sandbox = await self._create_one(image, "warm")
        except SandboxError as exc:
            log.warning("warm create of %s failed: %s", image, exc)
            return
        finally:
            self._filling[image] -= 1
        if self._closed:
            await self._discard(sandbox)
        else:
            self._ready[image].append(sandbox)

    async def _create_one(self, image: str, task_id: str) -> Sandbox:
        async with self.admission.admit():
            try:
                sandbox = await self._create(self._spec_for(image), task_id)
            except SandboxError:
                self.create_failures += 1
                raise
        self.created += 1
        if self.recycle and hasattr(sandbox, "mark_pristine"):
            await sandbox.mark_pristine()  # its first state, before anyone used it
        return sandbox

    # -- state ---------------------------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        return {
            "warm": sum(len(q) for q in self._ready.values()),
            "starting": self.admission.starting,
            "queued": self.admission.waiting,
            "busy": self.busy,
            "created": self.created,
            "create_failures": self.create_failures,
            "dead_on_acquire": self.dead_on_acquire,
            "warm_hits": self.warm_hits,
            "cold_creates": self.cold_creates,
            "recycled": self.recycled,
            "recycle_failures": self.recycle_failures,
            "recycled_hits": self.recycled_hits,
        }

    async def close(self) -> None:
        """Stop filling and close every warm sandbox."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        warm = [sb for q in self._ready.values() for sb in q]
        self._ready.clear()
        await asyncio.gather(*(self._discard(sb) for sb in warm), *self._closing)
