"""Progress lines while a run grades: done/total, resolved, errors, rate and time left.

One line at most every `interval` seconds (and always the last), on stderr, so a run of
thousands of predictions stays readable in a log and stdout keeps the report's summary.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from envfarm.grade.outcome import Outcome


class Progress:
    def __init__(self, total: int, interval: float = 5.0, stream: TextIO | None = None) -> None:
        self.total, self.interval, self.stream = total, interval, stream or sys.stderr
        self.done = self.resolved = self.errors = self.no_verdict = 0
        self.started = time.monotonic()
        self._last = -float("inf")

    def restart(self) -> None:
        """Start the clock again (after a set-up that is not grading, such as Ray's start)."""
        self.started = time.monotonic()

    def add(self, outcome: Outcome, masked: bool = False) -> None:
        self.done += 1
        self.resolved += outcome == "resolved"
        self.errors += outcome == "error"
        self.no_verdict += masked
        now = time.monotonic()
        if now - self._last >= self.interval or self.done == self.total:
            self._last = now
            print(self.line(now), file=self.stream, flush=True)

    def line(self, now: float | None = None) -> str:
        elapsed = (now or time.monotonic()) - self.started
        rate = self.done / elapsed * 60 if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate * 60 if rate > 0 else float("nan")
        no_verdict = f" ({self.no_verdict} without a verdict: infrastructure)" if self.no_verdict else ""
        eta = f", about {left:.0f} s left" if self.done < self.total and left == left else ""
        return (f"[grade] {self.done}/{self.total} done, {self.resolved} resolved, {self.errors} error(s)"
                f"{no_verdict}; {rate:.1f}/min, {elapsed:.0f} s{eta}")
