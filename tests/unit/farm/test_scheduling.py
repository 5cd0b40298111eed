"""The scheduler's rules without Ray: placement, retries, resends, shipping, exactly-once, counters."""

from __future__ import annotations

import pytest

from envfarm.errors import ErrorKind
from envfarm.farm.scheduling import Action, Scheduling
from envfarm.rollout.trajectory import Trajectory
from envfarm.tasks.loading import BUILTIN_DIR, load_jsonl


@pytest.fixture(scope="module")
def tasks():
    return load_jsonl(BUILTIN_DIR / "fixtures.jsonl")


def result(ep, reward: float | None = 1.0, kind: ErrorKind | None = None) -> Trajectory:
    return Trajectory(instance_id=ep.task.instance_id, reward=reward, resolved=reward == 1.0, error_kind=kind,
                      **ep.slot().record_fields())


def two_hosts(max_retries: int = 2) -> Scheduling:
    s = Scheduling("run", max_retries=max_retries, retry_backoff_s=1.0)
    s.add_host("node-a", 2)
    s.add_host("node-b", 2)
    return s


def test_groups_cycle_tasks_and_carry_their_place(tasks):
    s = Scheduling("run")
    eps = list(s.episodes_for(tasks[:2], group_size=3, episodes=7))
    assert [(e.group_index, e.member) for e in eps] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0)]
    assert eps[6].task is tasks[0] and s.groups[eps[6].group_id].size == 1
    with pytest.raises(ValueError, match="no tasks"):
        list(s.episodes_for([], 1, 1))


def test_placement_prefers_free_slots_and_avoids_failed_hosts(tasks):
    s = two_hosts()
    ep = next(s.episodes_for(tasks[:1], 1, 1))
    s.node_holds("node-a", [ep.task.image])
    s.node_holds("node-b", [ep.task.image])
    s.started(0)
    assert s.pick_host(ep) == 1  # more free slots
    s.started(1), s.started(1)
    assert s.pick_host(ep) == 0
    s.hosts[1].inflight = 0
    ep.excluded_hosts.add(1)
    assert s.pick_host(ep) == 0  # never back where it failed while another host can take it
    s.started(0)
    assert s.pick_host(ep) == 1  # ... unless that host is the only one with room
    s.hosts[1].down_until = float("inf")
    assert s.pick_host(ep) is None


def test_episodes_go_only_to_nodes_that_hold_their_image(tasks):
    s = two_hosts()
    ep = next(s.episodes_for(tasks[:1], 1, 1))
    s.node_holds("node-a", [ep.task.image])
    s.started(0)
    assert s.pick_host(ep) == 0  # one free slot on the holder beats two on a cold node
    s.started(0)
    assert s.pick_host(ep) is None  # the holder is full: the episode waits ...
    assert s.fetch_hosts(ep.task.image, wanted=3) == [1]  # ... while the cold node fetches (once)
    s.fetch_started(1, ep.task.image)
    assert s.fetch_hosts(ep.task.image, wanted=3) == []
    assert s.pick_host(ep) is None  # a node still fetching takes no episode
    s.hosts[0].inflight = 1
    assert s.pick_host(ep) == 0  # the holder freed a slot first: the episode goes there at once
    s.fetch_done(1, ep.task.image, ok=True)
    s.hosts[0].inflight = 2
    assert s.pick_host(ep) == 1 and s.holder_hosts(ep.task.image) == [0, 1]


def test_an_image_no_node_holds_is_fetched_on_one_node_first(tasks):
    s = two_hosts()
    s.add_host("node-c", 2)
    ep = next(s.episodes_for(tasks[:1], 1, 1))
    assert s.pick_host(ep) is None
    first = s.fetch_hosts(ep.task.image, wanted=5)
    assert len(first) == 1  # one registry pull or build; the others stream it from that node
    s.fetch_started(first[0], ep.task.image)
    assert s.fetch_hosts(ep.task.image, wanted=5) == []
    s.fetch_done(first[0], ep.task.image, ok=True)
    assert sorted(s.fetch_hosts(ep.task.image, wanted=5)) == sorted({0, 1, 2} - set(first))


def test_a_node_that_cannot_get_the_image_takes_the_episode_only_when_none_can(tasks):
    s = two_hosts()
    ep = next(s.episodes_for(tasks[:1], 1, 1))
    s.fetch_started(0, ep.task.image)
    s.fetch_done(0, ep.task.image, ok=False)
    assert s.pick_host(ep) is None and s.fetch_hosts(ep.task.image, 1) == [1]  # node-b may still get it
    s.fetch_started(1, ep.task.image)
    assert s.pick_host(ep) is None  # not while node-b is fetching it
    s.fetch_done(1, ep.task.image, ok=False)
    assert s.pick_host(ep) in (0, 1)  # nobody can: the host says image_missing instead of a wait
    assert s.fetch_hosts(ep.task.image, 1) == []


def test_a_failed_fetch_call_teaches_nothing_about_the_image(tasks):
    s = two_hosts()
    ep = next(s.episodes_for(tasks[:1], 1, 1))
    s.fetch_started(0, ep.task.image)
    s.fetch_done(0, ep.task.image, ok=None)  # the host died: try again later, on it or elsewhere
    assert not s.fetching and not s.fetch_failed and len(s.fetch_hosts(ep.task.image, 1)) == 1


def test_a_finished_episode_marks_its_node_as_holding_the_image(tasks):
    s = two_hosts()
    ep = next(s.episodes_for(tasks[:1], 1, 1))
    s.started(1)
    s.settle(ep, 1, result(ep))
    assert s.holds(1, ep.task.image) and not s.holds(0, ep.task.image)


def test_retryable_failures_back_off_then_become_final(tasks):
    s = two_hosts(max_retries=2)
    ep = next(s.episodes_for(tasks[:1], 1, 1))
    delays = []
    for host in (0, 1):
        s.started(host)
        d = s.settle(ep, host, result(ep, None, ErrorKind.INFRASTRUCTURE))
        assert d.action is Action.RETRY
        delays.append(d.delay)
    assert delays == [1.0, 2.0] and ep.excluded_hosts == {0, 1}
    s.started(0)
    d = s.settle(ep, 0, result(ep, None, ErrorKind.INFRASTRUCTURE))
    assert d.action is Action.FINAL and d.record.retries == 2 and d.record.masked
    assert s.counters.failed == 1 and s.counters.retried == 2 and s.counters.finished == 1


def test_a_dead_host_call_is_a_host_lost_record_and_a_check(tasks):
    s = two_hosts(max_retries=0)
    ep = next(s.episodes_for(tasks[:1], 1, 1))
    s.started(0)
    d = s.settle(ep, 0, RuntimeError("actor died"), now=100.0)
    assert d.action is Action.FINAL and d.host_failed
    assert d.record.end_reason == "host_lost" and d.record.error_kind == ErrorKind.INFRASTRUCTURE
    assert s.hosts[0].down_until == 130.0 and s.hosts[0].inflight == 0


def test_each_episode_is_final_once(tasks):
    s = two_hosts()
    ep = next(s.episodes_for(tasks[:1], 1, 1))
    s.started(0), s.started(1)
    assert s.settle(ep, 0, result(ep)).action is Action.FINAL
    assert s.settle(ep, 1, result(ep)).action is Action.DROP
    assert s.counters.duplicates_dropped == 1 and s.counters.finished == 1 and s.counters.groups_done == 1


def test_a_restarted_host_gets_the_row_again_without_spending_a_try(tasks):
    s = two_hosts()
    ep = next(s.episodes_for(tasks[:1], 1, 1))
    assert s.row_for(ep, 0) and not s.row_for(ep, 0)
    s.started(0)
    d = s.settle(ep, 0, result(ep, None, ErrorKind.TASK_UNKNOWN))
    assert d.action is Action.RESEND and ep.attempt == 0 and s.row_for(ep, 0)


def test_a_missing_image_is_shipped_once_per_host_then_final(tasks):
    s = two_hosts()
    ep = next(s.episodes_for(tasks[:1], 1, 1))
    s.started(0)
    d = s.settle(ep, 0, result(ep, None, ErrorKind.IMAGE_MISSING))
    assert d.action is Action.SHIP_IMAGE
    s.started(0)
    d = s.settle(ep, 0, result(ep, None, ErrorKind.IMAGE_MISSING))
    assert d.action is Action.FINAL and d.record.error_kind == ErrorKind.IMAGE_MISSING
    assert not s.holds(0, ep.task.image) and s.counters.failed == 1


def test_a_replaced_host_forgets_tasks_and_knows_its_new_nodes_images(tasks):
    s = two_hosts()
    s.node_holds("node-a", ["img"])
    s.hosts[0].tasks.add("t")
    s.hosts[0].replaced("node-c")
    assert s.hosts[0].node == "node-c" and not s.holds(0, "img") and not s.hosts[0].tasks
    assert s.least_used_node(["node-b", "node-c"], excluding=1) == "node-b"
