"""EnvFarm: the driver-side Ray part of the scheduler, thin around `farm.scheduling`.

It starts one host actor per node (hard affinity), makes the calls, replaces hosts that died
with their node, ships images to hosts that lack them, and removes every container at shutdown.
Every decision (which host, retry or not, what counts) is `Scheduling`'s, in plain code. At
most `envs` episodes are in flight and tasks are pulled lazily, so the backlog never outgrows
the farm; an episode id is yielded at most once, whatever happens.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from envfarm.env.config import EnvConfig
from envfarm.farm.host import HostConfig, make_host_actor_class
from envfarm.farm.scheduling import Action, Episode, FarmCounters, GroupState, Scheduling
from envfarm.rollout.trajectory import Trajectory
from envfarm.sandbox.backends import BackendConfig, backend_config, make_backend
from envfarm.tasks.schema import Task

__all__ = ["EnvFarm", "Episode", "FarmConfig", "FarmCounters", "GroupState"]

log = logging.getLogger(__name__)

PLACEMENTS_PER_YIELD = 64  # episodes placed between two chances for the calls to go out


@dataclass
class FarmConfig:
    """What a farm is made of. `envs` is the number of episodes (sandboxes) running at once."""

    envs: int = 8
    backend: str | BackendConfig = "docker"  # a name (docker | sim, with sim_profile) or a typed config
    policy: str = "scripted"
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    run: str = field(default_factory=lambda: time.strftime("run-%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:4])
    hosts_per_node: int = 1
    max_hosts: int | None = None
    warm_fraction: float = 0.25  # warm sandboxes per host, as a fraction of its slots
    max_starting: int | None = None  # per host; default by backend
    create_rate: float | None = None  # per host, creates per second; default by backend
    max_retries: int = 3
    retry_backoff_s: float = 1.0  # first retry waits this long, each next one twice as long
    env_config: EnvConfig = field(default_factory=EnvConfig)  # a dict of its fields is accepted
    sim_profile: dict[str, Any] = field(default_factory=dict)
    registry: str | None = None  # HOST:PORT: nodes lacking an image pull it from here before asking peers
    prefetch_images: bool = False  # put every task image on every node before the first episode
    cpus_per_sandbox: float = 1.0
    memory_per_sandbox: str = "2g"
    recycle_sandboxes: bool = False  # see HostConfig.recycle_sandboxes

    def __post_init__(self) -> None:
        self.env_config = EnvConfig.coerce(self.env_config)

    @cached_property
    def backend_config(self) -> BackendConfig:
        """`backend` (and `sim_profile`) as a typed backend config, converted once."""
        return backend_config(self.backend, self.sim_profile)

    def admission(self) -> tuple[int, float]:
        """max_starting and create_rate per host, the backend's defaults where unset."""
        return make_backend(self.backend_config).admission(self.max_starting, self.create_rate)


class EnvFarm:
    """Driver-side handle on a farm of host actors. Use as `async with EnvFarm(cfg) as farm:`."""

    def __init__(self, config: FarmConfig, address: str | None = None) -> None:
        self.config = config
        self.address = address
        self.scheduling = Scheduling(config.run, config.max_retries, config.retry_backoff_s)
        self.hosts: list[Any] = []  # actor handles, by the index of their state in self.scheduling.hosts
        self.host_cfgs: list[HostConfig] = []
        self._checking: set[int] = set()
        self._checks: set[asyncio.Task] = set()  # host checks in flight: cancelled at shutdown
        self._closing = False
        self.hosts_replaced = 0
        self.image_arrivals: list[dict[str, Any]] = []  # fetches the driver asked for: image, node, how, s
        self._started_ray = False
        self._host_runtime_env: dict[str, Any] | None = None  # see start()

    @property
    def counters(self) -> FarmCounters:
        return self.scheduling.counters

    @property
    def groups(self) -> dict[str, GroupState]:
        return self.scheduling.groups

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        import ray

        from envfarm.policy.shipping import policy_runtime_env, uploaded_runtime_env

        code = policy_runtime_env(self.config.policy)  # a plug-in policy's code, for every node
        if not ray.is_initialized():
            # "local": a Ray of its own, never one that already runs on this machine (`ray start`, a test's)
            ray.init(address=self.address or "local", logging_level="ERROR", log_to_driver=False,
                     include_dashboard=False if self.address is None else None, runtime_env=code)
            self._started_ray = True
        elif code:  # a Ray started by the caller: upload the code and hand it to each host
            self._host_runtime_env = await asyncio.to_thread(uploaded_runtime_env, code)
        if make_backend(self.config.backend_config).leaves_orphans:
            from envfarm.farm.reaper import gc_cluster

            # containers of runs whose farm died long ago: older than any episode may live
            await asyncio.to_thread(gc_cluster, None, self.max_sandbox_lifetime_s() * 2,
                                    backend=self.config.backend_config)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        placements = [n["NodeID"] for n in nodes for _ in range(self.config.hosts_per_node)]
        if self.config.max_hosts:
            placements = placements[: self.config.max_hosts]
        placements = placements[: max(1, self.config.envs)]
        for node_id, host_cfg in zip(placements, self.host_configs(len(placements)), strict=True):
            self.hosts.append(self._spawn_host(host_cfg, node_id, self._host_runtime_env))
            self.host_cfgs.append(host_cfg)
            self.scheduling.add_host(node_id, host_cfg.slots)
        await asyncio.gather(*(h.ping.remote() for h in self.hosts))
        await self._refuse_unbuildable_policy()
        self._tell_peers()

    async def _refuse_unbuildable_policy(self) -> None:
        """Every host builds (or, for a builtin, checks) its policy before any episode: the driver's
        own check cannot see a node where the plug-in does not import."""
        from envfarm.policy.loader import PolicyLoadError

        problems = await asyncio.gather(*(h.check_policy.remote() for h in self.hosts))
        bad = [(cfg.host_id, why) for cfg, why in zip(self.host_cfgs, problems, strict=True) if why]
        if not bad:
            return
        await self.shutdown()
        host, why = bad[0]
        raise PolicyLoadError(
            f"policy {self.config.policy!r} cannot be built on {len(bad)} of {len(self.hosts)} host(s) "
            f"(first: {host}: {why}); the driver built it, a host could not: what is installed in the "
            "driver's environment (site-packages) is not shipped, so install the policy's "
            "dependencies on every node, or keep its code as a package folder on the driver's path, "
            "which is shipped (docs/CLUSTER.md)")

    def host_configs(self, n_hosts: int) -> list[HostConfig]:
        """The config of each of `n_hosts` hosts: `envs` slots spread evenly, the rest shared."""
        base, extra = divmod(self.config.envs, n_hosts)
        max_starting, rate = self.config.admission()
        cfgs = []
        for i in range(n_hosts):
            n_slots = base + (1 if i < extra else 0)
            cfgs.append(HostConfig(
                host_id=f"{self.config.run}/host-{i}", run=self.config.run, slots=n_slots,
                backend=self.config.backend_config, warm_size=math.ceil(n_slots * self.config.warm_fraction),
                max_starting=max_starting, create_rate=rate, policy=self.config.policy,
                policy_kwargs=self.config.policy_kwargs,
                env_config=EnvConfig.coerce(self.config.env_config, run=self.config.run),
                sim_profile=self.config.sim_profile,
                cpus_per_sandbox=self.config.cpus_per_sandbox, memory_per_sandbox=self.config.memory_per_sandbox,
                registry=self.config.registry, recycle_sandboxes=self.config.recycle_sandboxes,
            ))
        return cfgs

    def _tell_peers(self) -> None:
        """Every host learns the others: where it looks for an image before building it."""
        for i, h in enumerate(self.hosts):
            h.set_peers.remote([p for j, p in enumerate(self.hosts) if j != i])

    @staticmethod
    def _spawn_host(host_cfg: HostConfig, node_id: str, runtime_env: dict[str, Any] | None = None) -> Any:
        """A host pinned to one node (hard affinity: soft affinity does not spread reliably), with a
        plug-in policy's code shipped to it (envfarm.policy.shipping)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        cls = make_host_actor_class(max_concurrency=host_cfg.slots * 2 + 16)
        options: dict[str, Any] = {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id, soft=False)}
        if runtime_env:
            options["runtime_env"] = runtime_env
        return cls.options(**options).remote(host_cfg)

    async def _check_host(self, i: int, timeout: float = 15.0) -> None:
        """After a failed call: if host i does not answer, replace it on the least-used live node.

        Ray restarts a crashed host in place (max_restarts); a host whose node is gone cannot come
        back there, so a new one with the same host id (it reaps what its predecessor left) is
        started elsewhere, and the farm keeps its slots.
        """
        import ray

        if i in self._checking:
            return
        self._checking.add(i)
        try:
            try:
                await asyncio.wait_for(self.hosts[i].ping.remote(), timeout)
                self.scheduling.host_back(i)
                return
            except Exception:  # noqa: BLE001 - dead, unreachable or restarting: replace it
                pass
            alive = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
            if not alive or self._closing:  # a host spawned during shutdown would outlive the farm
                return
            # a host that does not answer makes its node suspect: Ray may not have noticed a dead
            # node yet (its health checks take seconds to a minute), so go elsewhere if possible
            suspect = self.scheduling.hosts[i].node
            node = self.scheduling.least_used_node([n for n in alive if n != suspect] or alive, excluding=i)
            with contextlib.suppress(Exception):
                ray.kill(self.hosts[i], no_restart=True)
            self.hosts[i] = self._spawn_host(self.host_cfgs[i], node, self._host_runtime_env)
            self.scheduling.hosts[i].replaced(node)
            self.hosts_replaced += 1
            self._tell_peers()
            try:
                await asyncio.wait_for(self.hosts[i].ping.remote(), 60)
            except Exception:  # noqa: BLE001 - not up (yet): it stays down; its next failed call checks again
                return
            self.scheduling.host_back(i)
        finally:
            self._checking.discard(i)

    def max_sandbox_lifetime_s(self) -> float:
        """Agent time plus grading time plus margin: no reaper may remove a sandbox younger than this."""
        env = self.config.env_config
        return env.episode_timeout_s + env.grading_timeout_s + 300

    async def prewarm(self, images: Iterable[str]) -> None:
        images = sorted(set(images))
        await asyncio.gather(*(h.prewarm.remote(images) for h in self.hosts))

    async def shutdown(self) -> dict[str, Any]:
        """Close every host's pool and remove every container of this run, on every node."""
        import ray

        self._closing = True
        for check in list(self._checks):
            check.cancel()
        await asyncio.gather(*self._checks, return_exceptions=True)
        results = await asyncio.gather(*(h.shutdown.remote() for h in self.hosts), return_exceptions=True)
        left = sum(r for r in results if isinstance(r, int))
        unreachable: dict[str, str] = {}
        if make_backend(self.config.backend_config).leaves_orphans:
            from envfarm.farm.reaper import gc_cluster

            report = await asyncio.to_thread(gc_cluster, self.config.run, backend=self.config.backend_config)
            left += report.total
            unreachable = report.unreachable
        for h in self.hosts:
            ray.kill(h, no_restart=True)
        self.hosts.clear()
        if self._started_ray:
            ray.shutdown()
        cleanup: dict[str, Any] = {"containers_removed_at_shutdown": left}
        if unreachable:  # lost nodes: their sandboxes end with their owners, gc on that machine for the rest
            cleanup["nodes_not_cleaned"] = unreachable
        return cleanup

    async def __aenter__(self) -> EnvFarm:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    # -- stats -----------------------------------------------------------------------------------
    async def host_stats(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        import ray

        refs = [h.stats.remote() for h in self.hosts]
        ready, _ = await asyncio.to_thread(ray.wait, refs, num_returns=len(refs), timeout=timeout)
        out = []
        for ref in refs:
            try:
                out.append(ray.get(ref, timeout=0) if ref in ready else {"unavailable": True})
            except Exception:  # noqa: BLE001 - a dead host just reports as unavailable
                out.append({"unavailable": True})
        return out

    # -- running -------------------------------------------------------------------------------
    def episodes_for(self, tasks: list[Task], group_size: int, episodes: int | None) -> Iterable[Episode]:
        return self.scheduling.episodes_for(tasks, group_size, episodes)

    async def run(self, tasks: list[Task], group_size: int = 1,
                  episodes: int | None = None) -> AsyncIterator[Trajectory]:
        """Yield one record per episode as it finishes (each episode exactly once)."""
        sched = self.scheduling
        await self.take_inventory(t.image for t in tasks)
        pending = _Pending()  # episodes waiting, by image: one image's wait never blocks another's
        source = iter(sched.episodes_for(tasks, group_size, episodes))
        done_q: asyncio.Queue[tuple[Episode | None, int, Any]] = asyncio.Queue()
        inflight = 0  # episode calls, backed-off retries and fetches under way
        placed = 0
        exhausted = False
        rows: dict[str, dict[str, Any]] = {}
        loop = asyncio.get_running_loop()

        async def call(ep: Episode, host: int) -> None:
            tid = ep.task.instance_id
            # the row the first time on a host (hosts cache parsed tasks by id), its id after that
            row: dict[str, Any] | str = rows.setdefault(tid, ep.task.model_dump()) if sched.row_for(ep, host) else tid
            try:
                result: Trajectory | BaseException = await self.hosts[host].run_episode.remote(row, ep.slot())
            except BaseException as exc:  # noqa: BLE001 - actor death, node loss: settled below
                result = exc
            await done_q.put((ep, host, result))

        async def retry_later(ep: Episode, delay: float) -> None:
            await asyncio.sleep(delay)
            await done_q.put((ep, -1, None))  # host -1: a backed-off retry is due

        async def fetch(host: int, image: str) -> None:
            await self._fetch_image(host, image)
            await done_q.put((None, host, None))

        while True:
            # pull episodes lazily (at most one per slot waits: the backlog never outgrows the farm),
            # place every one whose image a host with a free slot holds, fetch images for the rest
            while len(pending) < max(1, sched.total_slots) and not exhausted:
                nxt = next(source, None)
                if nxt is None:
                    exhausted = True
                else:
                    pending.append(nxt)
            for image, waiting in pending.by_image():
                while waiting and (host := sched.pick_host(waiting[0])) is not None:
                    ep = waiting.popleft()
                    sched.started(host)
                    inflight += 1
                    loop.create_task(call(ep, host))
                    placed += 1
                    if placed % PLACEMENTS_PER_YIELD == 0:
                        # let the calls placed so far go out while the rest are placed: in a burst
                        # of 20,000 the last placement comes seconds after the first
                        await asyncio.sleep(0)
                for host in sched.fetch_hosts(image, len(waiting)) if waiting and sched.has_free_slot else ():
                    sched.fetch_started(host, image)
                    inflight += 1
                    loop.create_task(fetch(host, image))
            if inflight == 0:
                if exhausted and not pending:
                    return
                await asyncio.sleep(0.5)  # every host is down: wait for Ray to restart them
                continue
            ep, host, result = await done_q.get()
            inflight -= 1
            if ep is None:  # a fetch ended
                continue
            if host == -1 or result is None:
                pending.appendleft(ep)
                continue
            if isinstance(result, (KeyboardInterrupt, asyncio.CancelledError)):
                raise result
            decision = sched.settle(ep, host, result)
            if decision.host_failed:
                self._start_check(host)
            if decision.action is Action.SHIP_IMAGE:
                assert decision.record is not None
                if await self._ship_image(host, ep.task.image):
                    pending.appendleft(ep)
                    continue
                decision = sched.ship_failed(ep, decision.record)
            if decision.action is Action.RESEND:
                pending.appendleft(ep)
            elif decision.action is Action.RETRY:  # after 1, 2, 4 ... s: a restarting engine gets time to return
                inflight += 1
                loop.create_task(retry_later(ep, decision.delay))
            elif decision.action is Action.FINAL:
                assert decision.record is not None
                yield decision.record

    # -- images ------------------------------------------------------------------------------------
    async def take_inventory(self, images: Iterable[str]) -> None:
        """Ask every host which of `images` its node holds, so episodes go where their image is."""
        images = sorted(set(images))
        results = await asyncio.gather(*(h.held_images.remote(images) for h in self.hosts), return_exceptions=True)
        for i, held in enumerate(results):
            if isinstance(held, list):
                self.scheduling.node_holds(self.scheduling.hosts[i].node, held)

    async def _fetch_image(self, host: int, image: str) -> dict[str, Any] | None:
        """Have host `host` get `image` (registry, else streamed from a host that holds it, else a
        build); its arrival (how, seconds) when it did, None when it could not or its call failed."""
        from envfarm.errors import ImageMissingError

        sched = self.scheduling
        holders = [self.hosts[j] for j in sched.holder_hosts(image) if sched.hosts[j].node != sched.hosts[host].node]
        arrival = None
        try:
            arrival = await self.hosts[host].ensure_image.remote(image, None, holders or None)
            arrival = {**arrival, "node": sched.hosts[host].node}
            ok: bool | None = True
            self.image_arrivals.append(arrival)
        except ImageMissingError as exc:  # Ray re-raises the host's error as a subclass of it
            log.warning("host %d cannot get %s: %s", host, image, str(exc)[:300])
            ok = False
        except Exception as exc:  # noqa: BLE001 - the host died or its node went: check it
            log.warning("fetching %s on host %d failed: %s", image, host, str(exc)[:300])
            ok = None
        sched.fetch_done(host, image, ok)
        if ok is None:
            sched.hosts[host].down_until = time.time() + 5.0
            self._start_check(host)
        return arrival

    async def prefetch_images(self, images: Iterable[str], say: Callable[[str], None] = print) -> list[dict[str, Any]]:
        """Put every image on every node before the first episode, with a line per arrival: a node
        that holds none of an image gets it first (registry or build), the others then stream it
        from nodes that hold it. Returns the arrivals (image, node, how, seconds)."""
        images = sorted(set(images))
        await self.take_inventory(images)
        sched = self.scheduling
        one_per_node = list({h.node: i for i, h in reversed(list(enumerate(sched.hosts)))}.values())
        todo = [(i, img) for img in images for i in one_per_node if not sched.holds(i, img)]
        total, done = len(todo), 0
        say(f"[prefetch] {len(images)} image(s) on {len(one_per_node)} node(s): {total} to fetch")
        before = len(self.image_arrivals)

        async def one(host: int, image: str) -> None:
            nonlocal done
            sched.fetch_started(host, image)
            how = await self._fetch_image(host, image) or {"how": "failed", "seconds": 0.0}
            done += 1
            say(f"[prefetch] {image} on node {sched.hosts[host].node[:12]}: {how['how']} "
                f"in {how['seconds']:.1f} s ({done}/{total})")

        async def image_everywhere(image: str) -> None:
            cold = [i for i, img in todo if img == image]
            if cold and not sched.holder_hosts(image):
                await one(cold.pop(0), image)  # the first copy: registry or build
            await asyncio.gather(*(one(i, image) for i in cold))

        await asyncio.gather(*(image_everywhere(img) for img in images))
        return self.image_arrivals[before:]

    def _start_check(self, host: int) -> None:
        check = asyncio.get_running_loop().create_task(self._check_host(host))
        self._checks.add(check)
        check.add_done_callback(self._checks.discard)

    async def _ship_image(self, host: int, image: str) -> bool:
        """Export the image from the driver's node and load it on the host's node."""
        import ray

        from envfarm.sandbox.image_supply import export_image, image_exists

        if not await asyncio.to_thread(image_exists, image):
            return False
        data = await asyncio.to_thread(export_image, image)
        try:
            await self.hosts[host].ensure_image.remote(image, ray.put(data))
            return True
        except Exception as exc:  # noqa: BLE001 - shipping failed: the episode reports image_missing
            log.warning("shipping %s to host %d failed: %s", image, host, exc)
            return False


class _Pending:
    """Episodes waiting to be placed, one queue per image, in arrival order of the images."""

    def __init__(self) -> None:
        self._queues: dict[str, collections.deque[Episode]] = {}
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def _queue(self, ep: Episode) -> collections.deque[Episode]:
        return self._queues.setdefault(ep.task.image, collections.deque())

    def append(self, ep: Episode) -> None:
        self._queue(ep).append(ep)
        self._n += 1

    def appendleft(self, ep: Episode) -> None:
        self._queue(ep).appendleft(ep)
        self._n += 1

    def by_image(self) -> Iterator[tuple[str, collections.deque[Episode]]]:
        """Each image's queue; episodes the caller pops are counted out, emptied queues dropped."""
        for image, queue in list(self._queues.items()):
            before = len(queue)
            yield image, queue
            self._n -= before - len(queue)
            if not queue:
                del self._queues[image]
