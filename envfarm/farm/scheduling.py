"""The scheduler's decisions as plain code: which host runs an episode, and what a result means.

No Ray and no I/O here, so every rule can be tested directly (tests/unit/farm): `EnvFarm`
(farm/scheduler.py) is the thin Ray part that spawns hosts, makes the calls and ships images,
and asks `Scheduling` what to do at each step.

- Episodes go to the host with the most free slots, preferring hosts that already have the
  task's image and avoiding hosts the episode already failed on.
- A result is settled into one `Decision`: a final record (yielded exactly once per episode id),
  a retry after a backoff (retryable faults, up to `max_retries`), a resend of the task row to
  a host that restarted, a request to ship the image to a host that lacks it, or a duplicate to
  drop.
"""

from __future__ import annotations

import collections
import itertools
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum

from envfarm.errors import EndReason, ErrorKind
from envfarm.farm.host_episode import EpisodeSlot
from envfarm.rollout.trajectory import Trajectory
from envfarm.tasks.schema import Task

HOST_DOWN_S = 30.0  # a host whose call failed gets no episodes this long (or until a check says it is back)
MAX_BACKOFF_S = 30.0


@dataclass
class Episode:
    """One episode to run: its place in the run, its task, and its history of tries."""

    episode_id: str
    group_id: str
    task: Task
    group_index: int = 0
    member: int = 0
    attempt: int = 0
    excluded_hosts: set[int] = field(default_factory=set)

    def slot(self) -> EpisodeSlot:
        return EpisodeSlot(episode_id=self.episode_id, group_id=self.group_id, group_index=self.group_index,
                           member=self.member, attempt=self.attempt)


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
    failed: int = 0  # infrastructure failures that exhausted their retries, and missing images
    retried: int = 0
    duplicates_dropped: int = 0
    groups_done: int = 0
    exploit_attempts: int = 0  # episodes whose commands or patch tripped a tampering check
    started_at: float = field(default_factory=time.time)
    errors: collections.Counter = field(default_factory=collections.Counter)


@dataclass
class HostState:
    """What the driver knows of one host actor."""

    node: str
    slots: int
    inflight: int = 0
    down_until: float = 0.0
    images: set[str] = field(default_factory=set)  # images it has run episodes of
    tasks: set[str] = field(default_factory=set)  # task ids whose rows it has cached

    @property
    def free(self) -> int:
        return self.slots - self.inflight

    def replaced(self, node: str) -> None:
        """A new actor took this host's place (on `node`): it knows nothing yet."""
        self.node, self.down_until = node, 0.0
        self.images.clear()
        self.tasks.clear()


class Action(Enum):
    FINAL = "final"  # yield the record
    RETRY = "retry"  # run again after `delay` seconds on another host
    RESEND = "resend"  # the host lost its task cache: queue again at once, with the row
    SHIP_IMAGE = "ship_image"  # the host lacks the image: ship it, then queue again at once
    DROP = "drop"  # a duplicate of an episode already yielded


@dataclass
class Decision:
    action: Action
    record: Trajectory | None = None
    delay: float = 0.0
    host_failed: bool = False  # the call itself failed: check the host (and replace it if dead)


class Scheduling:
    """Hosts, groups, counters and the rules that tie them together."""

    def __init__(self, run: str, max_retries: int = 3, retry_backoff_s: float = 1.0) -> None:
        self.run = run
        self.max_retries = max_retries
        self.retry_backoff_s = retry_backoff_s
        self.hosts: list[HostState] = []
        self.groups: dict[str, GroupState] = {}
        self.counters = FarmCounters()
        self._finished_ids: set[str] = set()
        self._shipped: set[tuple[int, str]] = set()

    def add_host(self, node: str, slots: int) -> int:
        self.hosts.append(HostState(node=node, slots=slots))
        return len(self.hosts) - 1

    # -- what to run -----------------------------------------------------------------------------
    def episodes_for(self, tasks: list[Task], group_size: int, episodes: int | None) -> Iterator[Episode]:
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
                yield Episode(f"{gid}/e{k}", gid, task, group_index=gi, member=k)

    def pick_host(self, ep: Episode, now: float | None = None) -> int | None:
        """The host to run `ep` on now, or None when every host is full or down."""
        now = time.time() if now is None else now
        best, best_key = None, None
        for i, host in enumerate(self.hosts):
            if host.free <= 0 or host.down_until > now:
                continue
            key = (i not in ep.excluded_hosts, ep.task.image in host.images, host.free)
            if best_key is None or key > best_key:
                best, best_key = i, key
        return best

    def row_for(self, ep: Episode, host: int) -> bool:
        """True when the host must be sent the task's row (it has not cached the task yet)."""
        tasks = self.hosts[host].tasks
        if ep.task.instance_id in tasks:
            return False
        tasks.add(ep.task.instance_id)
        return True

    def started(self, host: int) -> None:
        self.hosts[host].inflight += 1

    def host_back(self, host: int) -> None:
        self.hosts[host].down_until = 0.0

    # -- what a result means ---------------------------------------------------------------------
    def settle(self, ep: Episode, host: int, result: Trajectory | BaseException,
               now: float | None = None) -> Decision:
        """Decide what a finished call means; updates the host table, groups and counters."""
        state = self.hosts[host]
        state.inflight -= 1
        host_failed = isinstance(result, BaseException)
        if isinstance(result, BaseException):
            state.down_until = (time.time() if now is None else now) + HOST_DOWN_S
            record = Trajectory.failure(
                instance_id=ep.task.instance_id, repo=ep.task.repo, run=self.run, kind=ErrorKind.INFRASTRUCTURE,
                end_reason=EndReason.HOST_LOST,
                error=f"host {host} failed: {result.__class__.__name__}: {str(result)[:500]}",
                **ep.slot().record_fields())
        else:
            record = result
            if record.error_kind == ErrorKind.TASK_UNKNOWN:  # the host restarted: resend the row
                state.tasks.clear()
                return Decision(Action.RESEND)
            if record.error_kind == ErrorKind.IMAGE_MISSING and (host, ep.task.image) not in self._shipped:
                self._shipped.add((host, ep.task.image))
                return Decision(Action.SHIP_IMAGE, record)
            if record.error_kind != ErrorKind.IMAGE_MISSING:
                state.images.add(ep.task.image)
        if ep.episode_id in self._finished_ids:
            self.counters.duplicates_dropped += 1
            return Decision(Action.DROP, host_failed=host_failed)
        if record.retryable and ep.attempt < self.max_retries:
            self.counters.retried += 1
            ep.attempt += 1
            ep.excluded_hosts.add(host)
            delay = min(self.retry_backoff_s * 2 ** (ep.attempt - 1), MAX_BACKOFF_S)
            return Decision(Action.RETRY, delay=delay, host_failed=host_failed)
        return Decision(Action.FINAL, self.finish(ep, record), host_failed=host_failed)

    def ship_failed(self, ep: Episode, record: Trajectory) -> Decision:
        """The image could not be shipped to the host: the image_missing record is final."""
        if ep.episode_id in self._finished_ids:
            self.counters.duplicates_dropped += 1
            return Decision(Action.DROP)
        return Decision(Action.FINAL, self.finish(ep, record))

    def finish(self, ep: Episode, record: Trajectory) -> Trajectory:
        """Record `record` as the episode's final one."""
        self._finished_ids.add(ep.episode_id)
        record.retries = ep.attempt
        c = self.counters
        c.finished += 1
        c.resolved += record.resolved
        c.exploit_attempts += record.exploit_attempt
        if record.error_kind:
            c.errors[record.error_kind] += 1
        if record.error_kind in (ErrorKind.INFRASTRUCTURE, ErrorKind.IMAGE_MISSING):
            c.failed += 1
        group = self.groups[ep.group_id]
        group.rewards.append(record.reward)
        if group.done:
            c.groups_done += 1
        return record

    def least_used_node(self, alive: Iterable[str], excluding: int) -> str:
        """Where to put a replacement for host `excluding`: the live node with the fewest other hosts."""
        alive = list(alive)
        load = {n: sum(1 for j, h in enumerate(self.hosts) if h.node == n and j != excluding) for n in alive}
        return min(alive, key=lambda n: load[n])
