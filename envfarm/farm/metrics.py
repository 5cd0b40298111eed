"""Farm metrics through Ray's metrics API, so the Ray dashboard and Prometheus show them."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from envfarm.rollout.trajectory import Trajectory


class HostMetrics:
    """Counters and gauges one host updates after each episode (no-ops outside Ray)."""

    def __init__(self, host_id: str) -> None:
        self._tags = {"host": host_id}
        self.enabled = False
        ray = sys.modules.get("ray")  # never imported: not a Ray worker, so no metrics (nor seconds of import)
        if ray is None or not ray.is_initialized():
            return
        try:
            from ray.util import metrics

            self.finished = metrics.Counter("envfarm_episodes_finished", "episodes finished",
                                            tag_keys=("host", "outcome"))
            self.sandboxes = metrics.Gauge("envfarm_sandboxes", "sandboxes by state", tag_keys=("host", "state"))
            self.episode_seconds = metrics.Histogram(
                "envfarm_episode_seconds", "episode wall time", boundaries=[1, 5, 15, 30, 60, 120, 300, 900],
                tag_keys=("host",))
            self.enabled = True
        except Exception:  # noqa: BLE001 - metrics need a Ray worker; plain runs go without
            self.enabled = False

    def episode(self, record: Trajectory, pool_stats: dict[str, int]) -> None:
        if not self.enabled:
            return
        kind = record.error_kind
        outcome = "resolved" if record.resolved else (kind or "unresolved")
        self.finished.inc(1, tags={**self._tags, "outcome": outcome})
        for state in ("warm", "starting", "busy", "queued"):
            self.sandboxes.set(pool_stats.get(state, 0), tags={**self._tags, "state": state})
        seconds = record.farm.host_seconds
        if seconds is not None:
            self.episode_seconds.observe(seconds, tags=self._tags)
