"""The scheduler's decisions as plain code: which host runs an episode, and what a result means.

No Ray and no I/O here, so every rule can be tested directly (tests/unit/farm): `EnvFarm`
(farm/scheduler.py) is the thin Ray part that spawns hosts, makes the calls and ships images,
and asks `Scheduling` what to do at each step.

- Episodes go to hosts whose node holds the task's image, the one with the most free slots
  first, avoiding hosts the episode already failed on. When no such host has a free slot, the
  episode waits and a cold host with free slots is asked to fetch the image (`fetch_hosts`):
  episodes are never placed on a node while it fetches, so a slow fetch (or a build, the last
  resort) holds no episode hostage while a node that has the image frees up. A node whose
  fetch failed takes the episode anyway when no node holds the image, so that it comes back
  `image_missing` instead of waiting for ever.
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
    tasks: set[str] = field(default_factory=set)  # task ids whose rows it has cached

    @property
    def free(self) -> int:
        return self.slots - self.inflight

    def replaced(self, node: str) -> None:
        """A new actor took this host's place (on `node`): it knows nothing yet."""
        self.node, self.down_until = node, 0.0
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
        # what each node's engine holds, is fetching (and by which host), or failed to get
        self.node_images: dict[str, set[str]] = collections.defaultdict(set)
        self.fetching: dict[tuple[str, str], int] = {}
        self.fetch_failed: set[tuple[str, str]] = set()
        self._inflight = 0
        self._slots = 0

    def add_host(self, node: str, slots: int) -> int:
        self.hosts.append(HostState(node=node, slots=slots))
        self._slots += slots
        return len(self.hosts) - 1

    @property
    def total_slots(self) -> int:
        return self._slots

    @property
    def has_free_slot(self) -> bool:
        """Some host has a free slot (kept as a count: the run loop asks after every result)."""
        return self._inflight < self.total_slots

    # -- images on nodes -------------------------------------------------------------------------
    def holds(self, host: int, image: str) -> bool:
        return image in self.node_images[self.hosts[host].node]

    def node_holds(self, node: str, images: Iterable[str]) -> None:
        """`node`'s engine has `images` (an inventory, a finished fetch, an episode that ran)."""
        for image in images:
            self.node_images[node].add(image)
            self.fetch_failed.discard((node, image))

    def holder_hosts(self, image: str) -> list[int]:
        """Hosts on nodes that hold `image` and are not down: where a cold node can stream it from."""
        now = time.time()
        return [i for i, h in enumerate(self.hosts) if image in self.node_images[h.node] and h.down_until <= now]

    def fetch_hosts(self, image: str, wanted: int, now: float | None = None) -> list[int]:
        """Up to `wanted` cold hosts (free slots, up, one per node, none fetching or failed on the
        image) to start fetching `image` on, less the fetches of it already under way."""
        now = time.time() if now is None else now
        if not any(image in imgs for imgs in self.node_images.values()):
            wanted = min(wanted, 1)  # the first copy (registry or build) on one node; the rest stream it
        wanted -= sum(1 for (_, img) in self.fetching if img == image)
        picked: list[int] = []
        nodes: set[str] = set()
        order = sorted(range(len(self.hosts)), key=lambda i: -self.hosts[i].free)
        for i in order:
            if len(picked) >= wanted:
                break
            h = self.hosts[i]
            key = (h.node, image)
            if (h.free <= 0 or h.down_until > now or h.node in nodes or image in self.node_images[h.node]
                    or key in self.fetching or key in self.fetch_failed):
                continue
            picked.append(i)
            nodes.add(h.node)
        return picked

    def fetch_started(self, host: int, image: str) -> None:
        self.fetching[(self.hosts[host].node, image)] = host

    def fetch_done(self, host: int, image: str, ok: bool | None) -> None:
        """A fetch ended: the node holds the image (ok), cannot get it (False), or the host's
        call failed (None: nothing learnt of the image, the host gets checked)."""
        node = self.hosts[host].node
        for key, who in list(self.fetching.items()):
            if who == host and key[1] == image:
                del self.fetching[key]
        if ok:
            self.node_holds(node, [image])
        elif ok is False:
            self.fetch_failed.add((node, image))

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
        """The host to run `ep` on now, or None: every host is full or down, or none with a free
        slot holds the image (then `fetch_hosts` says where to fetch it while `ep` waits)."""
        now = time.time() if now is None else now
        image = ep.task.image
        best, best_key = None, None
        failed_only: bool | None = None  # worked out only when a free host lacks the image
        for i, host in enumerate(self.hosts):
            if host.free <= 0 or host.down_until > now:
                continue
            if image not in self.node_images[host.node]:
                # a node that could not get the image takes it only when no node can: the host
                # then says image_missing (and the driver's copy is shipped) instead of a wait
                if failed_only is None:
                    failed_only = self._nobody_can_get(image, now)
                if not (failed_only and (host.node, image) in self.fetch_failed):
                    continue
            key = (i not in ep.excluded_hosts, host.free)
            if best_key is None or key > best_key:
                best, best_key = i, key
        return best

    def _nobody_can_get(self, image: str, now: float) -> bool:
        """No node holds or is fetching `image`, and every live node failed to get it."""
        return (not any(image in imgs for imgs in self.node_images.values())
                and not any(img == image for (_, img) in self.fetching)
                and all((h.node, image) in self.fetch_failed for h in self.hosts if h.down_until <= now))

    def row_for(self, ep: Episode, host: int) -> bool:
        """True when the host must be sent the task's row (it has not cached the task yet)."""
        tasks = self.hosts[host].tasks
        if ep.task.instance_id in tasks:
            return False
        tasks.add(ep.task.instance_id)
        return True

    def started(self, host: int) -> None:
        self.hosts[host].inflight += 1
        self._inflight += 1

    def host_back(self, host: int) -> None:
        self.hosts[host].down_until = 0.0

    # -- what a result means ---------------------------------------------------------------------
    def settle(self, ep: Episode, host: int, result: Trajectory | BaseException,
               now: float | None = None) -> Decision:
        """Decide what a finished call means; updates the host table, groups and counters."""
        state = self.hosts[host]
        state.inflight -= 1
        self._inflight -= 1
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
                self.node_holds(state.node, [ep.task.image])
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
