"""An asyncio event loop on a virtual clock, for sim runs at cluster scale on one machine.

Why: 20,000 simulated creates on 313 simulated nodes, run in real time in one process, would
measure this machine's CPU (every node's host code queued on one core), not the farm. On this
loop, time moves only when every coroutine waits: a sleep of 3 s ends at once, 3 virtual seconds
later, and code that runs takes no time. What is measured is then what the farm makes things
wait for (admission caps, rate limits, placement, queues, the modelled engines), deterministic
and fast; the CPU the farm's code spends has to be measured apart (see
scripts/creation_scale.py).

Threads (`asyncio.to_thread`, run_in_executor) still run in real time; while one is out, the
clock stands still and the loop waits for it for real, so a thread hop costs no virtual time.
`loop.time()` is the virtual clock; `time.monotonic()` is not (code that must follow the
simulated time reads the loop's clock, as AdmissionControl does).
"""

from __future__ import annotations

import asyncio
import selectors
import time
from typing import Any


class _VirtualSelector:
    """Answers the loop's `select(timeout)` by moving the clock instead of sleeping."""

    def __init__(self, real: selectors.BaseSelector, loop: VirtualClockLoop) -> None:
        self._real = real
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        events = self._real.select(0)
        if events or timeout == 0:
            return events
        if self._loop.threads_out or timeout is None:  # what comes next arrives in real time
            return self._real.select(None if timeout is None else min(timeout, 0.05))
        self._loop.advance(timeout)
        return []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """`asyncio.Runner(loop_factory=VirtualClockLoop)`; the clock starts at time.monotonic()."""

    def __init__(self) -> None:
        super().__init__()
        self._now = time.monotonic()
        self.threads_out = 0
        self._selector = _VirtualSelector(self._selector, self)  # type: ignore[assignment]

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    def run_in_executor(self, executor: Any, func: Any, *args: Any) -> asyncio.Future:
        future = super().run_in_executor(executor, func, *args)
        self.threads_out += 1
        future.add_done_callback(self._thread_back)
        return future

    def _thread_back(self, _: asyncio.Future) -> None:
        self.threads_out -= 1


def run_virtual(main: Any) -> Any:
    """Run the coroutine `main` to the end on a VirtualClockLoop; its result."""
    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        return runner.run(main)
