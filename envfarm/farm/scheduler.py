"""EnvFarm: the driver-side scheduler that spreads episodes over host actors.

- Episodes go to the host with the most free slots, preferring hosts that already have the
  task's image; at most `envs` episodes are in flight (backpressure: tasks are pulled lazily).
- An infrastructure failure (a sandbox or engine fault, a host that died with its node) is
  retried on another host up to `max_retries` times, and reported; an episode id is yielded at
  most once, whatever happens.
- A group (the same task `group_size` times, for GRPO) is the unit of reporting.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from envfarm.farm.host import HostConfig, make_host_actor_class
from envfarm.tasks.schema import Task

log = logging.getLogger(__name__)

RETRYABLE = {"infrastructure"}


@dataclass
class FarmConfig:
    """What a farm is made of. `envs` is the number of episodes (sandboxes) running at once."""

    envs: int = 8
    backend: str = "docker"
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
    env_config: dict[str, Any] = field(default_factory=dict)
    sim_profile: dict[str, Any] = field(default_factory=dict)
    registry: str | None = None
    cpus_per_sandbox: float = 1.0
    memory_per_sandbox: str = "2g"

    def admission(self) -> tuple[int, float]:
        if self.backend == "sim":  # no engine to protect: admission only bounds the control plane
            return self.max_starting or 2000, self.create_rate or 5000.0
        return self.max_starting or 8, self.create_rate or 20.0


@dataclass
class Episode:
    episode_id: str
    group_id: str
    task: Task
    attempt: int = 0
    excluded_hosts: set[int] = field(default_factory=set)


@dataclass
class GroupState:
    group_id: str
    task_id: str
    size: int
    rewards: list[float | None] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return len(self.rewards) >= self.size


@dataclass
class FarmCounters:
    finished: int = 0
    resolved: int = 0
    failed: int = 0  # infrastructure failures that exhausted their retries
    retried: int = 0
    duplicates_dropped: int = 0
    groups_done: int = 0
    started_at: float = field(default_factory=time.time)
    errors: collections.Counter = field(default_factory=collections.Counter)


class EnvFarm:
    """Driver-side handle on a farm of host actors. Use as `async with EnvFarm(cfg) as farm:`."""

    def __init__(self, config: FarmConfig, address: str | None = None) -> None:
        self.config = config
        self.address = address
        self.hosts: list[Any] = []
        self.host_slots: list[int] = []
        self.host_inflight: list[int] = []
        self.host_images: list[set[str]] = []
        self.host_down_until: list[float] = []
        self.host_cfgs: list[HostConfig] = []
        self.host_tasks: list[set[str]] = []  # task ids whose rows each host has cached
        self.host_nodes: list[str] = []
        self._checking: set[int] = set()
        self._checks: set[asyncio.Task] = set()  # host checks in flight: cancelled at shutdown
        self._closing = False
        self.hosts_replaced = 0
        self.counters = FarmCounters()
        self.groups: dict[str, GroupState] = {}
        self._finished_ids: set[str] = set()
        self._started_ray = False
        self._shipped: set[tuple[int, str]] = set()
        self._backoff: list[tuple[Episode, float]] = []

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        import ray

        if not ray.is_initialized():
            # "local": a Ray of its own, never one that already runs on this machine (`ray start`, a test's)
            ray.init(address=self.address or "local", logging_level="ERROR", log_to_driver=False,
                     include_dashboard=False if self.address is None else None)
            self._started_ray = True
        if self.config.backend == "docker":
            from envfarm.farm.gc import gc_cluster

            # containers of runs whose farm died long ago: older than any episode may live
            await asyncio.to_thread(gc_cluster, None, self.max_sandbox_lifetime_s() * 2)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        placements = [n["NodeID"] for n in nodes for _ in range(self.config.hosts_per_node)]
        if self.config.max_hosts:
            placements = placements[: self.config.max_hosts]
        placements = placements[: max(1, self.config.envs)]
        n_hosts = len(placements)
        base, extra = divmod(self.config.envs, n_hosts)
        slots = [base + (1 if i < extra else 0) for i in range(n_hosts)]
        max_starting, rate = self.config.admission()
        for i, (node_id, n_slots) in enumerate(zip(placements, slots, strict=True)):
            host_cfg = HostConfig(
                host_id=f"{self.config.run}/host-{i}", run=self.config.run, slots=n_slots,
                backend=self.config.backend, warm_size=math.ceil(n_slots * self.config.warm_fraction),
                max_starting=max_starting, create_rate=rate, policy=self.config.policy,
                policy_kwargs=self.config.policy_kwargs,
                env_config=self.config.env_config, sim_profile=self.config.sim_profile,
                cpus_per_sandbox=self.config.cpus_per_sandbox, memory_per_sandbox=self.config.memory_per_sandbox,
                registry=self.config.registry,
            )
            self.hosts.append(self._spawn_host(host_cfg, node_id))
            self.host_cfgs.append(host_cfg)
            self.host_nodes.append(node_id)
            self.host_slots.append(n_slots)
            self.host_inflight.append(0)
            self.host_images.append(set())
            self.host_down_until.append(0.0)
            self.host_tasks.append(set())
        await asyncio.gather(*(h.ping.remote() for h in self.hosts))

    @staticmethod
    def _spawn_host(host_cfg: HostConfig, node_id: str) -> Any:
        """A host pinned to one node (hard affinity: soft affinity does not spread reliably)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        cls = make_host_actor_class(max_concurrency=host_cfg.slots * 2 + 16)
        return cls.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote(host_cfg)

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
                self.host_down_until[i] = 0.0
                return
            except Exception:  # noqa: BLE001 - dead, unreachable or restarting: replace it
                pass
            alive = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
            if not alive or self._closing:  # a host spawned during shutdown would outlive the farm
                return
            load = {n: sum(1 for j, hn in enumerate(self.host_nodes) if hn == n and j != i) for n in alive}
            node = min(alive, key=lambda n: load[n])
            with contextlib.suppress(Exception):
                ray.kill(self.hosts[i], no_restart=True)
            self.hosts[i] = self._spawn_host(self.host_cfgs[i], node)
            self.host_nodes[i] = node
            self.host_images[i] = set()
            self.host_tasks[i] = set()
            self.hosts_replaced += 1
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.hosts[i].ping.remote(), 60)
            self.host_down_until[i] = 0.0
        finally:
            self._checking.discard(i)

    def max_sandbox_lifetime_s(self) -> float:
        """Agent time plus grading time plus margin: no reaper may remove a sandbox younger than this."""
        env = self.config.env_config
        return float(env.get("episode_timeout_s", 1800)) + float(env.get("grading_timeout_s", 600)) + 300

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
        left = 0
        results = await asyncio.gather(*(h.shutdown.remote() for h in self.hosts), return_exceptions=True)
        left += sum(r for r in results if isinstance(r, int))
        if self.config.backend == "docker":
            from envfarm.farm.gc import gc_cluster

            left += sum((await asyncio.to_thread(gc_cluster, self.config.run)).values())
        for h in self.hosts:
            ray.kill(h, no_restart=True)
        self.hosts.clear()
        if self._started_ray:
            ray.shutdown()
        return {"containers_removed_at_shutdown": left}

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

    # -- scheduling ------------------------------------------------------------------------------
    def episodes_for(self, tasks: list[Task], group_size: int, episodes: int | None) -> Iterable[Episode]:
        """Groups of `group_size` episodes per task, cycling the tasks until `episodes` are made."""
        if not tasks:
            raise ValueError("no tasks to run")
        if group_size < 1:
            raise ValueError("group_size must be >= 1")
        n_groups = math.ceil(episodes / group_size) if episodes else len(tasks)
        made = 0
        for gi, task in zip(range(n_groups), itertools.cycle(tasks)):
            gid = f"{task.instance_id}#g{gi}"
            size = min(group_size, episodes - made) if episodes else group_size
            self.groups[gid] = GroupState(gid, task.instance_id, size)
            for k in range(size):
                made += 1
                yield Episode(f"{gid}/e{k}", gid, task)

    def _pick_host(self, ep: Episode) -> int | None:
        now = time.time()
        best, best_key = None, None
        for i in range(len(self.hosts)):
            free = self.host_slots[i] - self.host_inflight[i]
            if free <= 0 or self.host_down_until[i] > now:
                continue
            key = (i not in ep.excluded_hosts, ep.task.image in self.host_images[i], free)
            if best_key is None or key > best_key:
                best, best_key = i, key
        return best

    async def run(self, tasks: list[Task], group_size: int = 1,
                  episodes: int | None = None) -> AsyncIterator[dict[str, Any]]:
        """Yield one record per episode as it finishes (each episode exactly once)."""
        pending: collections.deque[Episode] = collections.deque()
        source = iter(self.episodes_for(tasks, group_size, episodes))
        done_q: asyncio.Queue[tuple[Episode, int, dict[str, Any] | BaseException]] = asyncio.Queue()
        inflight = 0
        exhausted = False
        rows: dict[str, dict[str, Any]] = {}

        async def call(ep: Episode, host: int) -> None:
            tid = ep.task.instance_id
            if tid in self.host_tasks[host]:
                row: dict[str, Any] | str = tid
            else:  # first time on this host: ship the row (hosts cache parsed tasks by id)
                row = rows.setdefault(tid, ep.task.model_dump())
                self.host_tasks[host].add(tid)
            try:
                result: dict[str, Any] | BaseException = await self.hosts[host].run_episode.remote(
                    row, ep.episode_id, ep.group_id, ep.attempt)
            except BaseException as exc:  # noqa: BLE001 - actor death, node loss: retried below
                result = exc
            await done_q.put((ep, host, result))

        async def retry_later(ep: Episode, delay: float) -> None:
            await asyncio.sleep(delay)
            await done_q.put((ep, -1, None))  # host -1: a backed-off retry is due

        while True:
            # fill free slots (lazily pulling new episodes: the backlog never outgrows the farm)
            while True:
                if not pending and not exhausted:
                    nxt = next(source, None)
                    if nxt is None:
                        exhausted = True
                    else:
                        pending.append(nxt)
                if not pending:
                    break
                host = self._pick_host(pending[0])
                if host is None:
                    break
                ep = pending.popleft()
                self.host_inflight[host] += 1
                inflight += 1
                asyncio.get_running_loop().create_task(call(ep, host))
            if inflight == 0:
                if exhausted and not pending:
                    return
                await asyncio.sleep(0.5)  # every host is down: wait for Ray to restart them
                continue
            ep, host, result = await done_q.get()
            inflight -= 1
            if host == -1:
                pending.appendleft(ep)
                continue
            self.host_inflight[host] -= 1
            record = await self._settle(ep, host, result, pending)
            if record is not None:
                yield record
            while self._backoff:  # retries wait (1, 2, 4 ... s): a restarting engine gets time to return
                ep, delay = self._backoff.pop()
                inflight += 1
                asyncio.get_running_loop().create_task(retry_later(ep, delay))

    async def _settle(self, ep: Episode, host: int, result: dict[str, Any] | BaseException,
                      pending: collections.deque[Episode]) -> dict[str, Any] | None:
        """Decide what a finished call means: a final record, a retry, or a duplicate to drop."""
        if isinstance(result, BaseException):
            if isinstance(result, (KeyboardInterrupt, asyncio.CancelledError)):
                raise result
            self.host_down_until[host] = time.time() + 30.0
            check = asyncio.get_running_loop().create_task(self._check_host(host))
            self._checks.add(check)
            check.add_done_callback(self._checks.discard)
            record = {"episode_id": ep.episode_id, "group_id": ep.group_id, "instance_id": ep.task.instance_id,
                      "repo": ep.task.repo, "attempt": ep.attempt, "reward": None, "resolved": False,
                      "end_reason": "host_lost", "error_kind": "infrastructure",
                      "error": f"host {host} failed: {result.__class__.__name__}: {str(result)[:500]}"}
        else:
            record = result
            if record.get("error_kind") == "task_unknown":  # the host restarted: resend the row
                self.host_tasks[host].clear()
                pending.appendleft(ep)
                return None
            if record.get("error_kind") == "image_missing" and (host, ep.task.image) not in self._shipped:
                self._shipped.add((host, ep.task.image))
                if await self._ship_image(host, ep.task.image):
                    pending.appendleft(ep)
                    return None
            if record.get("error_kind") != "image_missing":
                self.host_images[host].add(ep.task.image)
        if ep.episode_id in self._finished_ids:
            self.counters.duplicates_dropped += 1
            return None
        if record.get("error_kind") in RETRYABLE and ep.attempt < self.config.max_retries:
            self.counters.retried += 1
            ep.attempt += 1
            ep.excluded_hosts.add(host)
            self._backoff.append((ep, min(self.config.retry_backoff_s * 2 ** (ep.attempt - 1), 30.0)))
            return None
        self._finished_ids.add(ep.episode_id)
        record.setdefault("episode_id", ep.episode_id)
        record["retries"] = ep.attempt
        self._count(ep, record)
        return record

    async def _ship_image(self, host: int, image: str) -> bool:
        """Export the image from the driver's node and load it on the host's node."""
        import ray

        from envfarm.sandbox.images import export_image, image_exists

        if not await asyncio.to_thread(image_exists, image):
            return False
        data = await asyncio.to_thread(export_image, image)
        try:
            await self.hosts[host].ensure_image.remote(image, ray.put(data))
            return True
        except Exception as exc:  # noqa: BLE001 - shipping failed: the episode reports image_missing
            log.warning("shipping %s to host %d failed: %s", image, host, exc)
            return False

    def _count(self, ep: Episode, record: dict[str, Any]) -> None:
        c = self.counters
        c.finished += 1
        c.resolved += bool(record.get("resolved"))
        kind = record.get("error_kind")
        if kind:
            c.errors[kind] += 1
        if kind in RETRYABLE or kind == "image_missing":
            c.failed += 1
        group = self.groups[ep.group_id]
        group.rewards.append(record.get("reward"))
        if group.done:
            c.groups_done += 1
