"""One node's container engine, modelled: create latency as a function of creates in flight.

Why: a Docker daemon slows as creates pile up on it (each create is storage, namespaces and a
runtime start, serialised in places inside dockerd), so a farm that sends too many at once to
one node stretches every one of them. The curve is measured on a real engine
(`python scripts/bench_farm.py --calibrate-engine`) and stored next to this file in
`sim_engine_curve.json`; the sim backend uses it when its profile has a `create_curve`.

Model: a create that starts while `c - 1` others are in flight on the same engine (so `c` in
all, itself included) takes `latency(c)`, fixed when it starts. Between measured points the
latency is interpolated linearly; past the last point it grows along the last segment (so the
engine's throughput, c / latency(c), levels off as ROCK saw: latency linear in the load).
"""

from __future__ import annotations

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
        the best P50 and P99 over all creates (each the best over every steady concurrency c, up
        to the curve's last measured level: past it the curve is extrapolated) of running each
        node's creates in waves of c, each wave taking latency(c). No farm is involved: this is
        the floor that the farm's own overhead is measured from."""
        counts = collections.Counter(k for k in per_node if k > 0)
        total = sum(k * n for k, n in counts.items())
        if not total:
            return {"p50_s": 0.0, "p99_s": 0.0}
        top = self.points[-1][0]
        return {key: min(self._waves_quantile(counts, c, _rank(total, q)) for c in range(1, top + 1))
                for key, q in (("p50_s", 0.50), ("p99_s", 0.99))}

    def _waves_quantile(self, counts: collections.Counter, concurrency: int, rank: int) -> float:
        """The rank-th completion time when every node runs its creates in waves of `concurrency`."""
        done_at: list[tuple[float, int]] = []  # (time, creates completing then)
        for k, nodes in counts.items():
            c = min(concurrency, k)
            wave = self.latency(c)
            for w in range(math.ceil(k / c)):
                done_at.append(((w + 1) * wave, min(c, k - w * c) * nodes))
        seen = 0
        for t, n in sorted(done_at):
            seen += n
            if seen >= rank:
                return t
        return max(t for t, _ in done_at)

    @classmethod
    def load(cls, path: str | Path = CURVE_FILE) -> EngineCurve:
        data = json.loads(Path(path).read_text())
        return cls(tuple((int(p["concurrent"]), float(p["p50_s"])) for p in data["points"]))


def _rank(n: int, q: float) -> int:
    """1-based rank of the q-quantile of n values by nearest rank (as scripts/benchlib.pct)."""
    return min(n, int(q * n) + 1)


class SimEngine:
    """The creates in flight on one modelled engine (one per sim backend, i.e. per node)."""

    def __init__(self, curve: EngineCurve) -> None:
        self.curve = curve
        self.in_flight = 0
        self.peak = 0

    def begin(self) -> float:
        """A create starts now: count it, and return how long it takes."""
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        return self.curve.latency(self.in_flight)

    def end(self) -> None:
        self.in_flight -= 1


def curve_record(points: list[dict[str, Any]], how: dict[str, Any]) -> dict[str, Any]:
    """The JSON stored in CURVE_FILE: the points and how they were measured."""
    return {"how": how, "points": points}
