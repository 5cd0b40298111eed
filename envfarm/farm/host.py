"""EnvHost: one async Ray actor per node that hosts many sandboxes and runs their episodes.

Why one actor per node and not per environment: an actor is a process of about 125 MiB, so
20,000 of them would need terabytes. One async actor runs thousands of episodes as coroutines
(`max_concurrency`), and its sandboxes are tracked by the engine itself through container labels:
a host restarted by Ray (`max_restarts=-1`) finds what its predecessor left under its owner
label and removes it, since the driver retries those episodes elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from envfarm.env.config import EnvConfig
from envfarm.errors import EndReason, ErrorKind, ImageMissingError, SandboxError
from envfarm.farm.admission import AdmissionControl
from envfarm.farm.host_episode import EpisodeSlot
from envfarm.farm.pool import WarmPool
from envfarm.rollout.trajectory import Trajectory
from envfarm.sandbox.backends import BackendConfig, backend_config, make_backend
from envfarm.sandbox.base import SandboxBackend, SandboxFactory, SandboxSpec

if TYPE_CHECKING:
    from envfarm.tasks.schema import Task

log = logging.getLogger(__name__)


@dataclass
class HostConfig:
    """How one host runs: its slots, pool, admission control, backend and episode settings."""

    host_id: str  # stable across restarts: the owner label of its containers
    run: str
    slots: int  # episodes this host runs at once
    backend: str | BackendConfig = "docker"  # a name (docker | sim, with sim_profile) or a typed config
    warm_size: int = 0  # sandboxes kept ready beyond those in use
    max_starting: int = 16
    create_rate: float = 50.0
    policy: str = "scripted"
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    env_config: EnvConfig = field(default_factory=EnvConfig)  # a dict of its fields is accepted
    sim_profile: dict[str, Any] = field(default_factory=dict)  # SimProfile fields, with backend="sim"
    cpus_per_sandbox: float = 1.0
    memory_per_sandbox: str = "2g"
    registry: str | None = None
    # reset used sandboxes for the next episode of their image where the backend can verify the
    # reset (Docker, with this process root on the node: envfarm.sandbox.docker_recycle). Off by
    # default: the kernel's counters a reset cannot clear stay a narrow channel between episodes
    recycle_sandboxes: bool = False

    def __post_init__(self) -> None:
        self.env_config = EnvConfig.coerce(self.env_config, run=self.run)


class EnvHostImpl:
    """The actor's logic, kept free of Ray so it can be tested and benchmarked directly."""

    def __init__(self, config: HostConfig, policy: Any = None) -> None:
        """`policy`: an object to use instead of building one from `config.policy` (in-process
        farms, e.g. a trainer whose model generates in its own process)."""
        self.config = config
        self.node = _node_id()
        self.pid = os.getpid()
        self.started_at = time.time()
        self.episodes_done = 0
        self.episodes_failed = 0
        self.running = 0  # episodes in progress on this host
        self.envs_running = 0  # of which the agent has its sandbox
        self.images_ready: set[str] = set()
        self.image_arrivals: list[dict[str, Any]] = []  # images fetched or built here: how, seconds
        self._peers: list[Any] = []
        self._image_locks: dict[str, asyncio.Lock] = {}
        self._pool: WarmPool | None = None
        self._policy = policy
        self._tasks: dict[str, Any] = {}  # instance id -> Task, parsed once per host
        self._grader = None
        self._metrics = None
        self.backend: SandboxBackend = make_backend(backend_config(config.backend, config.sim_profile))
        self._reaped_at_start = self._reap_predecessor()

    # -- set-up ---------------------------------------------------------------------------------
    def _reap_predecessor(self) -> int:
        """Remove containers a previous incarnation of this host left (its episodes are retried)."""
        return self.backend.reap(owner=self.config.host_id)

    def _ensure_started(self) -> WarmPool:
        if self._pool is None:
            cfg = self.config
            admission = AdmissionControl(cfg.max_starting, cfg.create_rate)
            env = cfg.env_config
            self._pool = WarmPool(self._make_create(), admission, warm_size=cfg.warm_size,
                                  spec_for=self._spec_for, user_of=self.backend.image_user,
                                  min_life_left_s=env.episode_timeout_s + env.grading_timeout_s + 60,
                                  recycle=cfg.recycle_sandboxes)
            from envfarm.farm.metrics import HostMetrics

            self._metrics = HostMetrics(cfg.host_id)
        return self._pool

    def _spec_for(self, image: str) -> SandboxSpec:
        return SandboxSpec(image=image, cpus=self.config.cpus_per_sandbox, memory=self.config.memory_per_sandbox,
                           env=dict(self.config.env_config.sandbox_env))

    def _make_create(self) -> SandboxFactory:
        return self.backend.factory(owner=self.config.host_id, run=self.config.run)

    def _policy_for(self):
        if self._policy is None:
            from envfarm.policy.loader import load_policy

            self._policy = load_policy(self.config.policy, **self.config.policy_kwargs)
        return self._policy

    def check_policy(self) -> str | None:
        """Why this host cannot build its policy, or None: asked once at the farm's start, so that
        a plug-in the driver imports but this node cannot (a module not shipped, a missing
        dependency) stops the run with one clear error instead of masking every episode."""
        from envfarm.policy.loader import BUILTIN, check_spec

        try:
            if self._policy is None and self.config.policy not in BUILTIN:
                self._policy_for()  # built once, kept for the episodes
            elif self._policy is None:
                check_spec(self.config.policy, self.config.policy_kwargs)
        except Exception as exc:  # noqa: BLE001 - reported to the driver, which refuses the run
            return f"{type(exc).__name__}: {exc}"
        return None

    def _grader_for(self):
        if self._grader is None:
            from envfarm.tasks.grading import grader_for

            self._grader = grader_for(self.backend)
        return self._grader

    async def ensure_image(self, image: str, tarball: bytes | None = None,
                           peers: list[Any] | None = None) -> dict[str, Any]:
        """Make sure `image` exists on this node, once per image: registry, else a peer (host
        handles that may have it; default: the farm's other hosts, see set_peers), else a build,
        else `tarball` (see image_supply.ensure_image). Returns how and in how many seconds."""
        if image in self.images_ready:
            return {"image": image, "how": "present", "seconds": 0.0}
        lock = self._image_locks.setdefault(image, asyncio.Lock())
        async with lock:
            if image in self.images_ready:
                return {"image": image, "how": "present", "seconds": 0.0}
            started = time.monotonic()
            sources = [peer_source(h) for h in (self._peers if peers is None else peers)]
            how = await asyncio.to_thread(self.backend.ensure_image, image, self.config.registry, tarball, sources)
            self.images_ready.add(image)
            arrival = {"image": image, "how": how, "seconds": round(time.monotonic() - started, 3)}
            if how != "present":
                self.image_arrivals.append(arrival)
                log.info("image %s reached %s: %s in %.1f s", image, self.node, how, arrival["seconds"])
            return arrival

    def set_peers(self, peers: list[Any]) -> None:
        """The farm's other hosts: where a missing image is looked for before building it."""
        self._peers = list(peers)

    async def held_images(self, images: list[str]) -> list[str]:
        """Which of `images` this node holds now (the driver schedules around the others)."""
        held = await asyncio.to_thread(self.backend.held_images, images)
        self.images_ready |= held
        return sorted(held)

    async def export_image(self, image: str):
        """Stream `image` to a peer (`docker save` in chunks, each one object in Ray's store)."""
        chunks = self.backend.export_image(image)
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            yield chunk

    async def task_image(self, task: Task) -> Task:
        """`task` on an image this node can start its sandboxes from: present (ensure_image) and,
        for an image envfarm did not build, adapted once per node (SandboxBackend.adapt_image)."""
        from envfarm.tasks.sandbox_specs import sandbox_image_inputs

        await self.ensure_image(task.image)
        base_commit, activation = sandbox_image_inputs(task)
        image = await asyncio.to_thread(self.backend.adapt_image, task.image, base_commit, activation)
        return task if image == task.image else task.model_copy(update={"image": image})

    async def prewarm(self, images: list[str]) -> None:
        """Warm sandboxes of `images`; an image that must first be adapted to a task's commit
        (not built by envfarm) is warmed once its first episode adapted it."""
        pool = self._ensure_started()
        for image in images:
            if not await asyncio.to_thread(self.backend.needs_adapting, image):
                pool.prewarm(image)

    # -- episodes -------------------------------------------------------------------------------
    async def run_episode(self, task_row: dict[str, Any] | str, slot: EpisodeSlot) -> Trajectory:
        """Run one episode end to end; infrastructure faults come back as error_kind, not raised.

        `task_row` is the task's row the first time this host sees the task and its instance id
        after that: a row can hold thousands of test names, and is parsed and shipped once.
        """
        return (await self.run_group(task_row, [slot]))[0]

    async def run_group(self, task_row: dict[str, Any] | str, slots: list[EpisodeSlot],
                        branch_at: float | None = None) -> list[Trajectory]:
        """One episode per slot, as `run_episode`; with `branch_at`, as one branched group (a
        shared prefix forked at that turn, see envfarm.rollout.branching), one record per slot."""
        from envfarm.farm.host_episode import run_farm_episode, run_farm_group
        from envfarm.tasks.schema import Task

        if isinstance(task_row, str):
            task = self._tasks.get(task_row)
            if task is None:  # this host restarted and lost its cache: the driver resends the row
                return [Trajectory.failure(instance_id=task_row, kind=ErrorKind.TASK_UNKNOWN, run=self.config.run,
                                           error="this host does not know the task yet", **slot.record_fields())
                        for slot in slots]
        else:
            task = self._tasks[task_row["instance_id"]] = Task.parse(task_row, where=f"episode {slots[0].episode_id}")
        pool = self._ensure_started()
        self.running += len(slots)
        started = time.time()

        def failure(exc: BaseException, of: list[EpisodeSlot] = slots) -> list[Trajectory]:
            kind, error = _fault(exc)
            return [Trajectory.failure(instance_id=task.instance_id, repo=task.repo, run=self.config.run, kind=kind,
                                       error=error, end_reason=EndReason.SETUP_ERROR, **slot.record_fields())
                    for slot in of]

        common = dict(pool=pool, policy=self._policy_for(), grader=self._grader_for(),
                      env_config=self.config.env_config, task_image=self.task_image, on_running=self._count_running)
        try:
            if branch_at is None:  # one episode's fault is its own record, never its siblings'
                outcomes = await asyncio.gather(*(run_farm_episode(task, slot=slot, **common) for slot in slots),
                                                return_exceptions=True)
                records = []
                for outcome, slot in zip(outcomes, slots, strict=True):
                    if isinstance(outcome, BaseException):
                        if not isinstance(outcome, Exception):  # a cancellation goes on up as it came
                            raise outcome
                        outcome = failure(outcome, [slot])[0]
                    records.append(outcome)
            else:
                records = await run_farm_group(task, slots=slots, branch_at=branch_at, **common)
        except Exception as exc:  # noqa: BLE001 - a bug in one episode must not take the host down
            records = failure(exc)
        finally:
            self.running -= len(slots)
        for record in records:
            record.farm.host, record.farm.node = self.config.host_id, self.node
            record.farm.host_seconds = time.time() - started
            failed = record.error_kind in (ErrorKind.INFRASTRUCTURE, ErrorKind.IMAGE_MISSING)
            self.episodes_failed += failed
            self.episodes_done += not failed
            if self._metrics is not None:
                self._metrics.episode(record, pool.stats())
        return records

    def _count_running(self, delta: int) -> None:
        self.envs_running += delta

    # -- state ---------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        pool_stats = self._pool.stats() if self._pool else {}
        acquire = sorted(self._pool.acquire_seconds) if self._pool else []
        return {
            "host_id": self.config.host_id, "node": self.node, "pid": self.pid,
            "slots": self.config.slots, "running": self.running, "envs_running": self.envs_running,
            "episodes_done": self.episodes_done, "episodes_failed": self.episodes_failed,
            "images": sorted(self.images_ready), "image_arrivals": list(self.image_arrivals),
            "reaped_at_start": self._reaped_at_start,
            "rss_bytes": _rss_bytes(), "pss_bytes": _pss_bytes(), "open_files": _open_files(),
            "acquire_p50_s": acquire[len(acquire) // 2] if acquire else None,
            "acquire_p99_s": acquire[int(len(acquire) * 0.99)] if acquire else None,
            **pool_stats,
        }

    async def shutdown(self) -> int:
        """Close the pool and remove every container this host owns; returns how many were left."""
        if self._pool is not None:
            await self._pool.close()
        if not self.backend.leaves_orphans:
            return 0
        return await asyncio.to_thread(self.backend.reap, owner=self.config.host_id)

    def ping(self) -> str:
        return self.node


def peer_source(handle: Any):
    """A PeerSource (image_supply) reading `image` from another host's `export_image` stream.
    Runs in a worker thread: each chunk is fetched from Ray's store as the engine takes the last."""

    def stream(image: str):
        import ray

        for ref in handle.export_image.remote(image):
            yield ray.get(ref)

    return stream


def _node_id() -> str:
    """The Ray node this host runs on (several Ray nodes can share one machine and hostname)."""
    ray = sys.modules.get("ray")  # never imported: no Ray runtime here (and no seconds spent importing it)
    try:
        if ray is not None and ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - outside Ray the hostname will do
        pass
    return socket.gethostname()


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def _pss_bytes() -> int:
    """Proportional set size: shared library pages split among the processes that map them."""
    try:
        with open("/proc/self/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _open_files() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def _fault(exc: BaseException) -> tuple[ErrorKind, str]:
    """The error kind and text of an episode that raised instead of returning its record."""
    if isinstance(exc, ImageMissingError):
        return ErrorKind.IMAGE_MISSING, str(exc)
    if isinstance(exc, (SandboxError, OSError)):
        return ErrorKind.INFRASTRUCTURE, str(exc)
    trace = "".join(traceback.format_exception(exc, limit=5))
    return ErrorKind.INFRASTRUCTURE, f"{exc.__class__.__name__}: {exc}\n{trace}"


def make_host_actor_class(max_concurrency: int):
    """The Ray actor class: restartable, async, concurrency sized to the host's slots."""
    import ray

    @ray.remote(max_restarts=-1, max_task_retries=0, num_cpus=0, max_concurrency=max_concurrency)
    class EnvHost(EnvHostImpl):
        pass

    return EnvHost
