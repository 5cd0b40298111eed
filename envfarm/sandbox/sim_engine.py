"""One node's container engine, modelled: create latency as a function of creates in flight.

Why: a Docker daemon slows as creates pile up on it (each create is storage, namespaces and a
runtime start, serialised in places inside dockerd), so a farm that sends too many at once to
one node stretches every one of them. The curve is measured on a real engine
(`python scripts/bench_farm.py --calibrate-engine`) and stored next to this file in
`sim_engine_curve.json`; the sim backend uses it when its profile has a `create_curve`.

Model (processor sharing): the engine shares itself among the creates in flight. While `c`
are in flight, each progresses at 1 / latency(c) of a create per second, so `c` creates started
together all take latency(c), as measured; a create that runs alone for a while and then has
company finishes in between. Between measured points the latency is interpolated linearly; past
the last point it grows along the last segment (so the engine's throughput, c / latency(c),
levels off as ROCK saw: latency linear in the load).
"""

from __future__ import annotations

import asyncio
import collections
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CURVE_FILE = Path(__file__).with_name("sim_engine_curve.json")


@dataclass(frozen=True)
class EngineCurve:
    """(concurrent creates, median seconds per create) points, measured on one engine."""

    points: tuple[tuple[int, float], ...]

    def __post_init__(self) -> None:
        if not self.points or self.points[0][0] != 1:
            raise ValueError("an engine curve starts at 1 concurrent create")
        if any(b[0] <= a[0] for a, b in zip(self.points, self.points[1:], strict=False)):
            raise ValueError("an engine curve's concurrency levels must increase")

    def latency(self, concurrent: int) -> float:
        """Seconds a create takes when `concurrent` creates (itself included) are in flight."""
        pts = self.points
        c = max(1, concurrent)
        if len(pts) == 1:
            return pts[0][1]
        for (c0, s0), (c1, s1) in zip(pts, pts[1:], strict=False):
            if c <= c1:
                return s0 + (s1 - s0) * (c - c0) / (c1 - c0)
        (c0, s0), (c1, s1) = pts[-2], pts[-1]
        return s1 + max(0.0, (s1 - s0) / (c1 - c0)) * (c - c1)

    def throughput(self, concurrent: int) -> float:
        """Creates per second the engine completes when kept at `concurrent` in flight."""
        return concurrent / self.latency(concurrent)

    def best_concurrency(self) -> int:
        """The measured level at which the engine completes the most creates per second: the
        most creates worth having in flight on one node (more only stretch each one)."""
        return max((c for c, _ in self.points), key=self.throughput)

    def schedule_bound(self, per_node: Sequence[int]) -> dict[str, float]:
        """What the curve alone gives when `per_node[i]` creates are requested at once on node i:
        the earliest time by which half (P50) and 99% (P99) of all of them can be done, when each
        node runs its creates in waves of any sizes up to the curve's last measured level (past
        it the curve is extrapolated), a wave of c taking latency(c). No farm is involved: this
        is the floor that the farm's own overhead is measured from."""
        counts = collections.Counter(k for k in per_node if k > 0)
        total = sum(k * n for k, n in counts.items())
        if not total:
            return {"p50_s": 0.0, "p99_s": 0.0}
        best = self._fastest_waves(max(counts))
        times = sorted(set(best[1:]))

        def earliest(rank: int) -> float:
            for t in times:  # done by t on a node of k: its first r creates with best[r] <= t
                if sum(n * sum(1 for r in range(1, k + 1) if best[r] <= t) for k, n in counts.items()) >= rank:
                    return t
            return times[-1]

        return {"p50_s": earliest(_rank(total, 0.50)), "p99_s": earliest(_rank(total, 0.99))}

    def _fastest_waves(self, creates: int) -> list[float]:
        """best[r]: the soonest one engine can have r creates done, in waves of 1 to the last
        measured level (best[r] = min over c of best[r - c] + latency(c))."""
        top = self.points[-1][0]
        best = [0.0] + [math.inf] * creates
        for r in range(1, creates + 1):
            best[r] = min(best[r - c] + self.latency(c) for c in range(1, min(r, top) + 1))
        return best

    @classmethod
    def load(cls, path: str | Path = CURVE_FILE) -> EngineCurve:
        data = json.loads(Path(path).read_text())
        return cls(tuple((int(p["concurrent"]), float(p["p50_s"])) for p in data["points"]))


def _rank(n: int, q: float) -> int:
    """1-based rank of the q-quantile of n values by nearest rank (as scripts/benchlib.pct)."""
    return min(n, int(q * n) + 1)


class SimEngine:
    """The creates in flight on one modelled engine (one per sim backend, i.e. per node), shared
    as the module's docstring says. Runs on the event loop's clock (a virtual one in sim runs)."""

    def __init__(self, curve: EngineCurve) -> None:
        self.curve = curve
        self.peak = 0
        self._left: dict[asyncio.Future, float] = {}  # each create in flight: work left (1 = one create)
        self._at = 0.0  # loop time the work left was last brought up to date
        self._timer: asyncio.TimerHandle | None = None

    @property
    def in_flight(self) -> int:
        return len(self._left)

    async def create(self, work: float = 1.0) -> None:
        """Return when a create of `work` (1.0: one create of the curve's median) is done."""
        loop = asyncio.get_running_loop()
        self._update(loop.time())
        done = loop.create_future()
        self._left[done] = work
        self.peak = max(self.peak, len(self._left))
        self._reschedule(loop)
        try:
            await done
        finally:
            if self._left.pop(done, None) is not None:  # cancelled: the rest speed up
                self._update(loop.time())
                self._reschedule(loop)

    def _rate(self) -> float:
        return 1.0 / self.curve.latency(len(self._left)) if self._left else 0.0

    def _update(self, now: float) -> None:
        step = (now - self._at) * self._rate()
        for fut in self._left:
            self._left[fut] -= step
        self._at = now

    def _reschedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._left:
            self._timer = loop.call_at(self._at + max(0.0, min(self._left.values())) / self._rate(), self._finish)

    def _finish(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = None
        self._update(loop.time())
        for fut in [f for f, left in self._left.items() if left <= 1e-9]:
            del self._left[fut]
            if not fut.done():
                fut.set_result(None)
        self._reschedule(loop)


def curve_record(points: list[dict[str, Any]], how: dict[str, Any]) -> dict[str, Any]:
    """The JSON stored in CURVE_FILE: the points and how they were measured."""
    return {"how": how, "points": points}
