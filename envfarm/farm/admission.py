"""Admission control for sandbox creates: a cap on how many start at once and a rate limit.

Why: the failure mode of every large farm is a burst of creates stuck in "starting" (ROCK's
latency grows linearly past about 4,000 concurrent creates). Capping the starting phase and
spacing creates keeps the engine responsive and the tail latency bounded.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager


class AdmissionControl:
    """At most `max_starting` creates in flight, and at most `rate` new creates per second."""

    def __init__(self, max_starting: int = 16, rate: float = 50.0) -> None:
        if max_starting < 1 or rate <= 0:
            raise ValueError("max_starting must be >= 1 and rate > 0")
        self.max_starting = max_starting
        self.rate = rate
        self._slots = asyncio.Semaphore(max_starting)
        self._next_at = 0.0  # earliest time the next create may begin (token bucket of size 1)
        self._lock = asyncio.Lock()
        self.starting = 0
        self.waiting = 0

    @asynccontextmanager
    async def admit(self):
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        try:
            async with self._lock:
                now = asyncio.get_running_loop().time()  # the loop's clock (a simulation's may be virtual)
                delay = self._next_at - now
                self._next_at = max(now, self._next_at) + 1.0 / self.rate
            if delay > 0:
                await asyncio.sleep(delay)
            self.starting += 1
            try:
                yield
            finally:
                self.starting -= 1
        finally:
            self._slots.release()
