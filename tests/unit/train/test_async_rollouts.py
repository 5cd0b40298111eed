"""The asynchronous producer's guarantees, with a fake farm: staleness bound, each sample once,
masking of infrastructure faults, versions per turn and the weight-sync callback."""

from __future__ import annotations

import asyncio
import random
import threading

import pytest
from fakes import FakePolicy

from envfarm.errors import ErrorKind
from envfarm.rollout.trajectory import Trajectory, Turn
from envfarm.tasks.grade_result import GradeResult
from envfarm.tasks.loading import BUILTIN_DIR, load_jsonl
from envfarm.train.async_rollouts import (
    AsyncFarmProducer,
    AsyncFarmRollout,
    PolicyVersion,
    VersionedPolicy,
    WeightSyncCallback,
    enable_importance_correction,
)
from envfarm.train.config import TrainConfig
from envfarm.train.rewards import resolved_reward

G = 4


@pytest.fixture(scope="module")
def tasks():
    return load_jsonl(BUILTIN_DIR / "fixtures.jsonl")[:3]


def fake_farm(policy: VersionedPolicy, *, turns=(1, 4), seconds=(0.001, 0.02), faulty_member: int | None = None,
              seed: int = 0):
    """`play`: a few policy turns of random length; member `faulty_member` of every group hits an
    infrastructure fault on every try."""
    rng = random.Random(seed)
    tries = {}

    async def play(task, slot):
        tries[slot.group_index, slot.member] = tries.get((slot.group_index, slot.member), 0) + 1
        if slot.member == faulty_member:
            return Trajectory.failure(episode_id=slot.episode_id, instance_id=task.instance_id,
                                      kind=ErrorKind.INFRASTRUCTURE, error="sandbox died", **slot.model_dump(
                                          exclude={"episode_id"}))
        out = []
        for i in range(rng.randint(*turns)):
            done = await policy.act([], [])
            await asyncio.sleep(rng.uniform(*seconds))
            out.append(Turn(index=i, completion=done.text, observation="o", context_ids=[5, 6] if i == 0 else [7],
                            completion_ids=[8, 2], logprobs=[-1.0, -0.5], finish_reason="stop",
                            prefix_consistent=None if i == 0 else True))
        resolved = rng.random() < 0.5
        return Trajectory(episode_id=slot.episode_id, instance_id=task.instance_id, turns=out,
                          reward=float(resolved), resolved=resolved,
                          grade=GradeResult(instance_id=task.instance_id, fail_to_pass=float(resolved)),
                          group_index=slot.group_index, member=slot.member)

    return play


def producer_for(tasks, loop, *, max_staleness: int, groups_per_step: int = 2, slots: int = 8, **farm):
    policy = VersionedPolicy(FakePolicy())
    producer = AsyncFarmProducer(tasks, fake_farm(policy, **farm), policy.clock, group_size=G, slots=slots,
                                 groups_per_step=groups_per_step, max_staleness=max_staleness,
                                 loop=loop.loop)
    return producer, policy


def train_steps(producer: AsyncFarmProducer, steps: int, groups_per_step: int, step_s: float = 0.0,
                seed: int = 1) -> list[tuple[int, list]]:
    """The trainer's side: take a batch, 'step' for a random while, bump the version."""
    rng = random.Random(seed)
    taken = []
    for _ in range(steps):
        now = producer.clock.value
        groups = producer.take(groups_per_step, timeout=30)
        taken.append((now, groups))
        threading.Event().wait(rng.uniform(0, step_s))
        producer.clock.bump()
    return taken


@pytest.mark.parametrize("max_staleness", [0, 1, 3])
def test_staleness_never_exceeds_the_bound_and_each_sample_is_used_once(tasks, loop, max_staleness):
    producer, _ = producer_for(tasks, loop, max_staleness=max_staleness, seconds=(0.001, 0.03))
    producer.start()
    try:
        taken = train_steps(producer, 12, 2, step_s=0.02)
    finally:
        producer.stop()
    ids = []
    for version, groups in taken:
        assert len(groups) == 2 and all(len(g.samples) == G for g in groups)
        for g in groups:
            assert version - g.version <= max_staleness
            assert all(version - s.version <= max_staleness for s in g.samples)
            ids += [s.record.episode_id for s in g.samples]
    assert len(ids) == len(set(ids)) == 12 * 2 * G
    stats = producer.stats()
    assert stats["samples_used_twice"] == 0 and stats["samples_used"] == len(ids)
    assert stats["max_staleness_seen"] <= max_staleness
    assert sum(stats["staleness"].values()) == len(ids)
    # the producer never ran further ahead than the bound allows
    assert producer.admitted - producer.groups_dropped_stale <= (producer.clock.value + max_staleness + 1) * 2


def test_the_producer_runs_ahead_when_allowed(tasks, loop):
    """With a slow trainer and a bound of 2, samples of older versions are trained on (that is the point)."""
    producer, _ = producer_for(tasks, loop, max_staleness=2, seconds=(0.001, 0.005), slots=16)
    producer.start()
    try:
        train_steps(producer, 6, 2, step_s=0.1)
    finally:
        producer.stop()
    assert max(producer.staleness) >= 1
    assert max(producer.staleness) <= 2


def test_stale_groups_are_dropped_and_counted(tasks, loop):
    producer, _ = producer_for(tasks, loop, max_staleness=1, seconds=(0.001, 0.002))
    producer.start()
    try:
        producer.take(1, timeout=10)
        # the trainer jumps three versions while groups of version 0 wait in the buffer
        deadline = 50
        while len(producer._buffer) < 2 and deadline:
            threading.Event().wait(0.05)
            deadline -= 1
        old = {g.seq for g in producer._buffer if g.version == 0}
        assert old
        for _ in range(3):
            producer.clock.bump()
        fresh = producer.take(2, timeout=10)
    finally:
        producer.stop()
    assert all(producer.clock.value - g.version <= 1 for g in fresh)
    assert not old & {g.seq for g in fresh}
    assert producer.groups_dropped_stale >= len(old)
    assert producer.samples_dropped_stale == producer.groups_dropped_stale * G


def test_a_group_handed_out_again_is_refused_and_counted(tasks, loop):
    producer, _ = producer_for(tasks, loop, max_staleness=5)
    producer.start()
    try:
        first = producer.take(1, timeout=10)[0]
        with producer._cond:
            producer._buffer.appendleft(first)  # a bug upstream that re-queues a consumed group
        second = producer.take(1, timeout=10)[0]
    finally:
        producer.stop()
    assert second.seq != first.seq
    assert producer.samples_used_twice == G
    assert producer.samples_used == 2 * G


def test_a_sample_carries_the_version_of_its_oldest_turn(tasks, loop):
    clock = PolicyVersion()
    policy = VersionedPolicy(FakePolicy(), clock)

    async def play(task, slot):
        await policy.act([], [])
        clock.bump()  # an optimizer step lands between the episode's turns
        await policy.act([], [])
        return Trajectory(episode_id=slot.episode_id, instance_id=task.instance_id, reward=1.0, resolved=True)

    producer = AsyncFarmProducer(tasks, play, clock, group_size=1, slots=1, groups_per_step=1, max_staleness=10,
                                 loop=loop.loop)
    producer.start()
    try:
        groups = producer.take(3, timeout=10)
    finally:
        producer.stop()
    starts = [g.samples[0].version for g in groups]
    assert starts == sorted(starts) and len(set(starts)) == 3
    # each sample's last turn ran one version later than its first; the first counts
    assert all(s + 1 <= clock.value for s in starts)


def test_infrastructure_faults_are_masked_never_scored_zero(tasks, loop):
    from envfarm.policy.tiny import make_tokenizer

    tokenizer = make_tokenizer()
    producer, _ = producer_for(tasks, loop, max_staleness=1, faulty_member=2)
    rollout = AsyncFarmRollout(tasks, producer, TrainConfig(num_generations=G, max_masked_fraction=0.5), tokenizer)
    producer.start()
    try:
        rows = rollout([t.instance_id for t in tasks[:2] for _ in range(G)], trainer=None)
    finally:
        producer.stop()
    faults = [i for i, k in enumerate(rows["error_kind"]) if k == ErrorKind.INFRASTRUCTURE]
    assert faults == [2, G + 2]
    rewards = resolved_reward([None] * len(faults), rows["resolved"], rows["reward_masked"])
    for i in faults:
        assert rows["reward_masked"][i] and rewards[i] is None
    scored = [r for r, m in zip(rewards, rows["reward_masked"], strict=True) if not m]
    assert all(r in (0.0, 1.0) for r in scored)
    assert rows["policy_version"] == [0] * (2 * G)
    assert rollout.batches[-1]["masked"] == len(faults)
    assert all(rollout.last_records[i].retries == 1 for i in faults)  # retried once, then masked


def test_weight_sync_keeps_generation_out_of_the_optimizer_step_and_bumps_the_version():
    class Locked(FakePolicy):
        def __init__(self):
            self._lock = threading.Lock()

    policy = VersionedPolicy(Locked())
    assert policy.weights_lock is policy.inner._lock
    sync = WeightSyncCallback(policy)
    sync.on_pre_optimizer_step(None, None, None)
    assert policy.weights_lock.locked()
    sync.on_optimizer_step(None, None, None)
    assert not policy.weights_lock.locked()
    sync.on_step_end(None, None, None)
    assert policy.version == 1


def test_importance_correction_is_switched_on_without_a_vllm_server():
    class Trainer:
        class state:
            global_step = 0

        use_vllm = False

    trainer = Trainer()
    enable_importance_correction(trainer)
    assert trainer.use_vllm and trainer.vllm_importance_sampling_correction
    assert trainer.vllm_generation.sync_weights() is None
    # a stale sample's weight is per token (clipped), never its sequence's product, which vanishes
    assert trainer.vllm_importance_sampling_mode == "token_truncate"


def test_a_slow_group_is_trained_on_not_dropped_after_faster_ones(tasks, loop):
    """Groups finish out of order: the first admitted plays longest. The trainer takes the oldest
    finished group first, and waits for the slow one once a later batch would have no room left
    for it within the bound, instead of training on fresher groups until it is too stale."""
    clock = PolicyVersion()
    policy = VersionedPolicy(FakePolicy(), clock)

    async def play(task, slot):
        await policy.act([], [])
        await asyncio.sleep(0.6 if slot.group_index == 0 else 0.01)
        return Trajectory(episode_id=slot.episode_id, instance_id=task.instance_id, reward=1.0, resolved=True)

    producer = AsyncFarmProducer(tasks, play, clock, group_size=2, slots=8, groups_per_step=1, max_staleness=1,
                                 loop=loop.loop)
    producer.start()
    try:
        taken = []
        for _ in range(4):
            taken += [(clock.value, g) for g in producer.take(1, timeout=10)]
            clock.bump()
    finally:
        producer.stop()
    seqs = [g.seq for _, g in taken]
    assert seqs[0] == 1  # group 1 (as old as group 0) had finished: the trainer did not wait
    assert 0 in seqs and producer.groups_dropped_stale == 0
    assert all(now - g.version <= 1 for now, g in taken)
