"""The farm as TRL's async-GRPO rollout worker, on a fake farm: the protocol, the rows, versions,
staleness (the producer's and the trainer's own dataset code), health and stop.

TRL's consumption path (`RolloutQueueDataset` -> `FixedCountBatcher` -> `DataCollatorForRollout`)
is imported and run here; it needs no CUDA. `AsyncGRPOTrainer` itself is not built (it needs CUDA).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import queue
import time
from collections import defaultdict
from types import SimpleNamespace

import numpy as np
import pytest
from fakes import FakePolicy
from trl.experimental.async_grpo.async_grpo_trainer import (
    DataCollatorForRollout,
    FixedCountBatcher,
    RolloutQueueDataset,
    RolloutWorkerProtocol,
)
from trl.experimental.async_grpo.async_rollout_worker import RolloutSample

from envfarm.rollout.trajectory import Trajectory, Turn
from envfarm.tasks.grade_result import GradeResult
from envfarm.tasks.loading import BUILTIN_DIR, load_jsonl
from envfarm.train.async_grpo_samples import SampleConverter
from envfarm.train.async_grpo_worker import FarmRolloutWorker
from envfarm.train.async_rollouts import AsyncFarmProducer, PolicyVersion, VersionedPolicy
from envfarm.train.config import TrainConfig

G = 4
TOKENIZER = SimpleNamespace(eos_token_id=2, pad_token_id=0)


@pytest.fixture(scope="module")
def tasks():
    return load_jsonl(BUILTIN_DIR / "fixtures.jsonl")[:2]


@pytest.fixture(scope="module")
def accelerate_state():
    """TRL's dataset logs through accelerate, which wants its (here single-process, CPU) state."""
    from accelerate import PartialState

    return PartialState(cpu=True)


def two_turn_play(policy: VersionedPolicy, *, seconds: float = 0.002, bump_between: bool = False):
    """Two turns: prompt [5, 6], reply [8, 2], tool output [7], reply [9, 2]; member 0 resolves."""
    counter = itertools.count()

    async def play(task, slot):
        turns = []
        for i in range(2):
            await policy.act([], [])
            if bump_between and i == 0:
                policy.clock.bump()  # an optimizer step lands between the episode's turns
            await asyncio.sleep(seconds)
            turns.append(Turn(index=i, completion="c", observation="o", context_ids=[5, 6] if i == 0 else [7],
                              completion_ids=[8 + i, 2], logprobs=[-1.0, -0.5], finish_reason="stop",
                              prefix_consistent=None if i == 0 else True))
        resolved = slot.member == 0
        next(counter)
        return Trajectory(episode_id=slot.episode_id, instance_id=task.instance_id, turns=turns,
                          messages=[{"role": "user", "content": "fix it"}, {"role": "assistant", "content": "c"},
                                    {"role": "tool", "content": "o"}, {"role": "assistant", "content": "c"}],
                          reward=float(resolved), resolved=resolved,
                          grade=GradeResult(instance_id=task.instance_id, fail_to_pass=float(resolved)),
                          group_index=slot.group_index, member=slot.member)

    return play


def make_worker(tasks, loop, *, play=None, max_staleness: int = 4, groups_per_step: int = 1, slots: int = 8,
                queue_maxsize: int = 0, closed: list | None = None, **play_kw) -> FarmRolloutWorker:
    policy = VersionedPolicy(FakePolicy(), PolicyVersion())
    producer = AsyncFarmProducer(tasks, play or two_turn_play(policy, **play_kw), policy.clock, group_size=G,
                                 slots=slots, groups_per_step=groups_per_step, max_staleness=max_staleness,
                                 loop=loop.loop)
    converter = SampleConverter(TrainConfig(num_generations=G), TOKENIZER)
    on_stop = [lambda: closed.append(True)] if closed is not None else []
    return FarmRolloutWorker(producer, converter, queue_maxsize=queue_maxsize, poll_s=0.05, on_stop=on_stop)


def get(worker: FarmRolloutWorker, n: int, timeout: float = 20) -> list[RolloutSample]:
    return [worker.rollout_buffer.get(timeout=timeout) for _ in range(n)]


def test_the_worker_has_the_protocol_s_members_and_signatures():
    for name in ("start", "stop", "update_model_version", "check_health"):
        expected = inspect.signature(getattr(RolloutWorkerProtocol, name))
        actual = inspect.signature(getattr(FarmRolloutWorker, name))
        assert list(actual.parameters) == list(expected.parameters), name
    assert set(RolloutWorkerProtocol.__annotations__) == {"rollout_buffer", "metrics_queue"}


def test_start_fills_the_buffer_with_trl_rows_and_stop_ends_it(tasks, loop):
    closed: list = []
    worker = make_worker(tasks, loop, closed=closed)
    worker.start()
    try:
        samples = get(worker, 2 * G)
        worker.check_health(30)
    finally:
        worker.stop()
    worker.stop()  # idempotent
    assert closed == [True]
    assert not worker._thread.is_alive()
    for s in samples:
        assert isinstance(s, RolloutSample)
        # prompt [5, 6]; reply [8, 2] trained; tool output [7] context; reply [9, 2] trained
        assert s.input_ids.tolist() == [5, 6, 8, 2, 7, 9, 2]
        assert s.completion_mask.tolist() == [0, 0, 1, 1, 0, 1, 1]
        assert s.old_log_probs.tolist() == [0.0, 0.0, -1.0, -0.5, 0.0, -1.0, -0.5]
        assert s.input_ids.dtype == np.int64 and s.old_log_probs.dtype == np.float32
        assert s.model_version == 0 and s.enqueued_at is not None
        assert [m["role"] for m in s.prompt] == ["user"] and [m["role"] for m in s.completion][0] == "assistant"
    by_group = defaultdict(list)
    for s in samples:
        by_group[s.group_id].append(s)
    assert len(by_group) == 2
    for rows in by_group.values():
        assert len(rows) == G
        # member 0 resolved, the rest not: GRPO's normalised advantage, as TRL's worker computes it
        rewards = sorted(r.metrics["reward"] for r in rows)
        assert rewards == [0.0, 0.0, 0.0, 1.0]
        assert sum(r.advantage for r in rows) == pytest.approx(0.0, abs=1e-6)
        assert max(r.advantage for r in rows) == pytest.approx(np.sqrt(3), rel=1e-5)
    metrics = worker.metrics_queue.get_nowait()
    assert metrics["envfarm/rows_total"] == G


def test_version_updates_bump_envfarm_s_clock_and_samples_carry_their_oldest_turn(tasks, loop):
    worker = make_worker(tasks, loop, bump_between=True)
    heard: list[int] = []
    worker.producer.clock.subscribe(heard.append)
    worker.update_model_version(3)
    assert worker.producer.clock.value == 3 and heard == [1, 2, 3]
    with pytest.raises(ValueError):
        worker.update_model_version(2)
    worker.start()
    try:
        samples = get(worker, G)
    finally:
        worker.stop()
    # each episode bumped the clock after its first turn: the first turn's version counts
    assert all(3 <= s.model_version < worker.producer.clock.value for s in samples)
    assert worker.producer.clock.value >= 3 + G


def test_trl_s_dataset_batcher_and_collator_consume_the_rows(tasks, loop, accelerate_state):
    worker = make_worker(tasks, loop)
    metrics: dict = defaultdict(list)
    dataset = RolloutQueueDataset(worker.rollout_buffer, model_version_fn=lambda: worker.model_version,
                                  check_health_fn=worker.check_health, stale_after_s=30, metrics=metrics,
                                  max_staleness=4, poll_interval_s=0.1)
    batcher = FixedCountBatcher(dataset, num_processes=1, microbatch_size=2 * G)
    trained_groups: set = set()
    collator = DataCollatorForRollout(pad_token_id=0, num_processes=1, groups_trained=trained_groups,
                                      metrics=metrics)
    worker.start()
    try:
        rows = next(iter(batcher))
    finally:
        worker.stop()
    batch = collator([rows])
    examples = [e for row in rows for e in row.samples]
    assert len(examples) == 2 * G and len(trained_groups) == 2
    # every trained token (mask 1) is a loss term carrying the generator's logprob and the row's advantage
    assert batch["global_n_tokens"].tolist() == [float(4 * 2 * G)]
    assert sorted(set(batch["old_log_probs"][0].tolist())) == [-1.0, -0.5]
    assert set(np.round(batch["advantages"][0].tolist(), 4)) == {round(np.sqrt(3), 4), round(-1 / np.sqrt(3), 4)}
    assert metrics["reward"] == [0.25]
    assert metrics["sample/staleness_max"] == [0.0] * 2 * G
    assert "sample/dropped_stale_total" not in metrics


def test_stale_rows_are_dropped_by_the_producer_and_by_trl_s_dataset(tasks, loop, accelerate_state):
    # the trainer's queue holds one group; further groups wait in the pump and the producer's buffer
    worker = make_worker(tasks, loop, max_staleness=1, queue_maxsize=G, groups_per_step=2)
    metrics: dict = defaultdict(list)
    dataset = RolloutQueueDataset(worker.rollout_buffer, model_version_fn=lambda: worker.model_version,
                                  check_health_fn=worker.check_health, stale_after_s=30, metrics=metrics,
                                  max_staleness=1, poll_interval_s=0.1)
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while (worker.rollout_buffer.qsize() < G or not worker.producer._buffer) and time.monotonic() < deadline:
            time.sleep(0.02)
        queued_at_v0 = worker.rollout_buffer.qsize()
        assert queued_at_v0 == G and worker.producer._buffer
        worker.update_model_version(2)  # two optimizer steps: version-0 rows are now 2 > 1 behind
        fresh = list(itertools.islice(iter(dataset), G))
    finally:
        worker.stop()
    assert len(metrics["sample/dropped_stale_total"]) >= queued_at_v0
    assert worker.producer.groups_dropped_stale >= 1
    assert len(fresh) == G
    assert all(v <= 1 for v in metrics["sample/staleness_max"])


def test_health_reports_a_failed_producer(tasks, loop):
    async def broken(task, slot):
        raise KeyError("a bug in the episode code")

    worker = make_worker(tasks, loop, play=broken)
    with pytest.raises(RuntimeError, match="not running"):
        worker.check_health(30)
    worker.start()
    try:
        with pytest.raises(queue.Empty):
            worker.rollout_buffer.get(timeout=0.3)
        with pytest.raises(RuntimeError, match="failed") as info:
            worker.check_health(30)
    finally:
        worker.stop()
    chain, exc = [], info.value
    while exc is not None:
        chain.append(exc)
        exc = exc.__cause__
    assert any(isinstance(e, KeyError) for e in chain)


def test_health_reports_a_hung_farm_and_not_a_slow_one(tasks, loop):
    async def hung(task, slot):
        await asyncio.sleep(3600)

    worker = make_worker(tasks, loop, play=hung)
    worker.start()
    try:
        worker.check_health(5)  # just started: not stale yet
        time.sleep(0.4)
        with pytest.raises(RuntimeError, match="no progress"):
            worker.check_health(0.2)
    finally:
        worker.stop()
