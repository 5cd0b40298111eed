"""The live view of a farm (rich) and its end-of-run summary.

On a terminal: a table refreshed every second. Elsewhere (CI, logs): one plain line every ten
seconds. Host statistics are polled, never pushed, so a slow display never slows the farm.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from envfarm.farm.scheduler import EnvFarm, FarmConfig

STATES = ("busy", "warm", "starting", "queued")


class FarmDisplay:
    def __init__(self, config: FarmConfig, episodes: int, live: bool = True) -> None:
        self.config = config
        self.episodes = episodes
        self.console = Console(stderr=True)
        self.live = live and self.console.is_terminal
        self.started = time.time()
        self.last_hosts: list[dict[str, Any]] = []
        self.peak_running = 0

    def _totals(self) -> dict[str, int]:
        hosts = [h for h in self.last_hosts if not h.get("unavailable")]
        totals = {s: sum(h.get(s, 0) for h in hosts) for s in STATES}
        totals["running"] = sum(h.get("running", 0) for h in hosts)
        totals["hosts_up"] = len(hosts)
        totals["hosts"] = len(self.last_hosts)
        self.peak_running = max(self.peak_running, totals["running"])
        return totals

    def _table(self, farm: EnvFarm) -> Table:
        c = farm.counters
        t = self._totals()
        elapsed = max(1e-9, time.time() - self.started)
        backend = self.config.backend_config.type
        table = Table(title=f"envfarm {self.config.run} ({backend}, policy {self.config.policy})", show_header=False)
        table.add_row("hosts up", f"{t['hosts_up']} / {t['hosts']}")
        table.add_row("sandboxes", "  ".join(f"{s} {t[s]}" for s in STATES))
        table.add_row("episodes running", str(t["running"]))
        table.add_row("episodes finished", f"{c.finished} / {self.episodes}   groups done {c.groups_done}")
        table.add_row("failed (infrastructure)", f"{c.failed}   retried {c.retried}")
        table.add_row("pass rate", f"{c.resolved / c.finished:.1%}" if c.finished else "-")
        table.add_row("throughput", f"{c.finished / elapsed * 60:.1f} episodes/min")
        table.add_row("elapsed", f"{elapsed:.0f} s")
        return table

    def _line(self, farm: EnvFarm) -> str:
        c, t = farm.counters, self._totals()
        return (f"[envfarm] {c.finished}/{self.episodes} finished, {t['running']} running, {c.resolved} resolved, "
                f"{c.failed} failed, {c.retried} retried; sandboxes busy {t['busy']} warm {t['warm']} "
                f"starting {t['starting']}; {time.time() - self.started:.0f} s")

    @contextlib.asynccontextmanager
    async def running(self, farm: EnvFarm):
        """Refresh the view in the background while the body runs the farm."""
        stop = asyncio.Event()

        async def poll(every: float, render) -> None:
            while not stop.is_set():
                self.last_hosts = await farm.host_stats()
                render()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), every)

        if self.live:
            with Live(self._table(farm), console=self.console, refresh_per_second=2) as live:
                task = asyncio.create_task(poll(1.0, lambda: live.update(self._table(farm))))
                try:
                    yield
                finally:
                    stop.set()
                    await task
                    await self._last_look(farm)
                    live.update(self._table(farm))
        else:
            task = asyncio.create_task(poll(10.0, lambda: self.console.print(self._line(farm))))
            try:
                yield
            finally:
                stop.set()
                await task
                await self._last_look(farm)

    async def _last_look(self, farm: EnvFarm) -> None:
        """The hosts' counters as the run ends (the summary's sandbox figures), before shutdown."""
        with contextlib.suppress(Exception):
            self.last_hosts = await farm.host_stats()

    def summary(self, farm: EnvFarm, seconds: float, cleanup: dict[str, Any], out: Path,
                interrupted: bool) -> dict[str, Any]:
        c = farm.counters
        summary = {
            "run": self.config.run, "backend": self.config.backend_config.type, "policy": self.config.policy,
            "envs": self.config.envs, "episodes_planned": self.episodes, "episodes_finished": c.finished,
            "resolved": c.resolved, "pass_rate": c.resolved / c.finished if c.finished else None,
            "failed_infrastructure": c.failed, "retried": c.retried, "duplicates_dropped": c.duplicates_dropped,
            "groups_done": c.groups_done, "errors_by_kind": dict(c.errors), "exploit_attempts": c.exploit_attempts,
            "seconds": round(seconds, 2),
            "episodes_per_min": c.finished / seconds * 60 if seconds else None,
            "peak_running": self.peak_running, "interrupted": interrupted, "out": str(out), **cleanup,
            # sandboxes started fresh, and used ones reset for another episode (or closed: failed reset)
            **{f"sandboxes_{k}": sum(h.get(k, 0) for h in self.last_hosts if not h.get("unavailable"))
               for k in ("created", "recycled", "recycle_failures")},
        }
        table = Table(title="envfarm run summary", show_header=False)
        # images fetched onto cold nodes: image, node, how, seconds
        summary["image_arrivals"] = list(getattr(farm, "image_arrivals", []))
        for key, value in summary.items():
            if key == "image_arrivals":
                value = ", ".join(f"{a['how']} {a['seconds']:.0f} s" for a in value) or "none"
            table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
        self.console.print(table)
        return summary
