"""A farm of many simulated nodes in one process: EnvFarm's own scheduler loop, EnvHostImpl hosts
(the host actor's code without Ray), their warm pools, admission control and sim backends.

Why: to drive the real control plane at cluster scale (hundreds of nodes, each with its own
modelled engine) on one machine. Only the Ray transport is left out: a host is called directly
instead of through an actor handle (`.method.remote(...)` becomes a coroutine call), so what runs
is EnvFarm.run, Scheduling, EnvHostImpl.run_episode, WarmPool and AdmissionControl as they run
on a cluster. With envfarm.sandbox.sim_clock, time is virtual (see there for what that measures);
`charge_driver_cpu` then moves the virtual clock by the real CPU time of each of the driver's
placements (Scheduling.pick_host, most of the driver's work per episode), since on a cluster they
run one after another on the driver while the nodes wait for them.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from types import SimpleNamespace
from typing import Any

from envfarm.farm.host import EnvHostImpl
from envfarm.farm.scheduler import EnvFarm, FarmConfig


class _Direct:
    """A host object behind the `handle.method.remote(*args)` calls EnvFarm makes of an actor."""

    def __init__(self, impl: EnvHostImpl) -> None:
        self.impl = impl

    def __getattr__(self, name: str) -> SimpleNamespace:
        method = getattr(self.impl, name)

        async def remote(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result

        return SimpleNamespace(remote=remote)


class SimClusterFarm(EnvFarm):
    """EnvFarm over `nodes` in-process hosts, one per simulated node (sim backend only)."""

    def __init__(self, config: FarmConfig, nodes: int, host_class: type[EnvHostImpl] = EnvHostImpl,
                 charge_driver_cpu: bool = False) -> None:
        if config.backend_config.type != "sim":
            raise ValueError("a simulated cluster runs the sim backend only")
        super().__init__(config)
        self.nodes = nodes
        self.host_class = host_class
        self.driver_cpu_s = 0.0  # CPU spent placing episodes (Scheduling.pick_host)
        pick = self.scheduling.pick_host

        def timed_pick(ep: Any, now: float | None = None) -> int | None:
            started = time.process_time()
            host = pick(ep, now)
            spent = time.process_time() - started
            self.driver_cpu_s += spent
            advance = getattr(asyncio.get_running_loop(), "advance", None)
            if charge_driver_cpu and advance is not None:
                advance(spent)
            return host

        self.scheduling.pick_host = timed_pick  # type: ignore[method-assign]

    async def start(self) -> None:
        for i, host_cfg in enumerate(self.host_configs(self.nodes)):
            self.hosts.append(_Direct(self.host_class(host_cfg)))
            self.host_cfgs.append(host_cfg)
            self.scheduling.add_host(f"sim-node-{i}", host_cfg.slots)

    async def shutdown(self) -> dict[str, Any]:
        self._closing = True
        for host in self.hosts:
            await host.impl.shutdown()
        self.hosts.clear()
        return {"containers_removed_at_shutdown": 0}

    async def host_stats(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        return [h.impl.stats() for h in self.hosts]
