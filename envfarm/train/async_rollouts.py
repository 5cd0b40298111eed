"""Asynchronous rollouts: the farm plays episodes while the optimizer steps, within a staleness bound.

Synchronous GRPO (`FarmRollout`) leaves the trainer idle while a batch plays and the sandboxes
idle while the optimizer runs, and every step waits for the batch's slowest episode. Here a
producer keeps the farm's slots busy on its own event loop; finished GRPO groups go into a
buffer and the trainer's `rollout_func` takes them from there.

Off-policy bound: every weight update bumps a `PolicyVersion`. A sample's version is the version
in force when its *first* turn was generated (`VersionedPolicy` records one per turn; the
oldest counts). The producer starts a group only while the groups it has promised to the trainer
would be consumed within `max_staleness` updates; the consumer takes the oldest finished groups
first and waits for an unfinished old one rather than let it go stale, and drops (and counts)
any group with a sample staler than the bound, so no trained sample is older than that. Each episode is
handed out once. Masking is the synchronous path's: an infrastructure fault is a masked row
(reward None), never a 0.

The trainer's rows carry the generator's logprobs; `enable_importance_correction` turns on TRL's
importance-sampling correction with them (TRL ties it to vLLM mode), which is what corrects the
off-policy gap for samples one or more versions old.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainerCallback

from envfarm.farm.host_episode import EpisodeSlot
from envfarm.policy.base import Completion
from envfarm.policy.oracle import is_oracle
from envfarm.rollout.trajectory import Trajectory
from envfarm.sandbox.backends import BackendConfig
from envfarm.tasks.schema import Task
from envfarm.train.config import TrainConfig
from envfarm.train.groups import settle_groups
from envfarm.train.rollout_func import FarmRollout

log = logging.getLogger(__name__)

# the versions of the current episode's turns, one per policy call (a list per episode)
_turn_versions: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("envfarm_turn_versions",
                                                                                   default=None)

PlayFn = Callable[[Task, EpisodeSlot], Awaitable[Trajectory]]
STOP_WAIT_S = 10.0  # how long stop() waits for the episodes in flight to end


class PolicyVersion:
    """How many weight updates the generator has received; listeners hear every bump."""

    def __init__(self) -> None:
        self.value = 0
        self._listeners: list[Callable[[int], None]] = []
        self._lock = threading.Lock()

    def subscribe(self, listener: Callable[[int], None]) -> None:
        self._listeners.append(listener)

    def bump(self) -> int:
        with self._lock:
            self.value += 1
            value = self.value
        for listener in list(self._listeners):
            listener(value)
        return value


class VersionedPolicy:
    """A generator that records, per turn, the weights' version it generated with.

    The version is read before the call: an update landing during the call makes the recorded
    version older than the weights used, never newer (staleness is over-, never under-stated).
    `weights_lock` is held by generation and by the optimizer step, so no turn sees half-updated
    weights.
    """

    def __init__(self, inner: Any, clock: PolicyVersion | None = None, weights_lock: Any = None) -> None:
        self.inner = inner
        self.clock = clock or PolicyVersion()
        # the lock the model's generate/score calls take (TransformersPolicy's), if none is given
        base = getattr(inner, "base", inner)
        self.weights_lock = weights_lock or getattr(base, "_lock", None) or threading.RLock()
        self.name = getattr(inner, "name", type(inner).__name__)

    @property
    def version(self) -> int:
        return self.clock.value

    @property
    def model(self) -> Any:
        """The generating model (for the in-process trainer, the trainer's own model object)."""
        return getattr(getattr(self.inner, "base", self.inner), "model", None)

    @property
    def oracle(self) -> bool:
        return is_oracle(self.inner)

    def __getattr__(self, name: str) -> Any:
        # the rest of the inner policy (prompt_ids, score, tokenizer...): a guide scores with it
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Completion:
        versions = _turn_versions.get()
        if versions is not None:
            versions.append(self.clock.value)
        return await self.inner.act(messages, tools)


@dataclass
class Sample:
    record: Trajectory
    version: int  # the policy version of the sample's oldest turn


@dataclass
class Group:
    seq: int
    task: Task
    admitted_at: int = 0  # the policy version when the producer started it (its samples are no older)
    samples: list[Sample] = field(default_factory=list)

    @property
    def version(self) -> int:
        return min(s.version for s in self.samples)


class AsyncFarmProducer:
    """Keeps `slots` episodes running, GRPO group by group, at most `max_staleness` versions ahead.

    `play(task, slot)` runs one episode (see `farm_player`). Groups are admitted while the
    groups owed to the trainer (admitted, not dropped) fit in the batches of the next
    `max_staleness + 1` optimizer steps. Groups finish out of order (a group waits for its longest
    episode); the trainer takes the oldest finished ones first and waits for an unfinished one only
    when a later batch would have no room left for it within the bound (see `_plan`), so a slow
    group is trained on, not dropped as stale after fresher ones took its place.
    """

    def __init__(self, tasks: list[Task], play: PlayFn, clock: PolicyVersion, *, group_size: int, slots: int,
                 groups_per_step: int, max_staleness: int, max_retries: int = 1,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        if not tasks:
            raise ValueError("no tasks to play")
        self.tasks = tasks
        self.play = play
        self.clock = clock
        self.group_size = group_size
        self.slots = slots
        self.groups_per_step = groups_per_step
        self.max_staleness = max_staleness
        self.max_retries = max_retries
        self._loop = loop
        self._cond = threading.Condition()
        self._buffer: deque[Group] = deque()  # finished groups, in the order they finished
        self._pending: dict[int, Group] = {}  # admitted, not handed out or dropped: buffered or playing
        self._consumed: set[str] = set()
        self._seq = itertools.count()
        self._next_task = itertools.cycle(range(len(tasks)))
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._error: BaseException | None = None
        self._stopped = False
        # counters
        self.admitted = 0
        self.groups_dropped_stale = 0
        self.samples_dropped_stale = 0
        self.samples_used = 0
        self.samples_used_twice = 0
        self.staleness = Counter[int]()
        self.in_flight = 0  # episodes admitted and not finished
        self.episodes_played = 0
        self.episodes_cancelled = 0  # stopped mid-episode: no record, no reward
        self.episode_seconds = 0.0  # summed wall time of played episodes on their slots
        self.started_at = 0.0
        clock.subscribe(self._on_bump)

    # -- the producer (on its event loop) ---------------------------------------------------------
    def start(self) -> None:
        """Start producing on `loop` (a running loop on another thread)."""
        if self._loop is None:
            raise RuntimeError("start() needs the loop the episodes run on; use `await run()` otherwise")
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)

    async def _start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run())

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.started_at = time.perf_counter()
        slots = asyncio.Semaphore(self.slots)
        groups: set[asyncio.Task] = set()
        try:
            while not self._stopped:
                if self.in_flight < self.slots and self._owed() < self._allowed():
                    group = Group(next(self._seq), self.tasks[next(self._next_task)], admitted_at=self.clock.value)
                    with self._cond:
                        self._pending[group.seq] = group
                    self.admitted += 1
                    self.in_flight += self.group_size
                    t = asyncio.create_task(self._play_group(group, slots))
                    groups.add(t)
                    t.add_done_callback(groups.discard)
                    continue
                self._wake.clear()
                await self._wake.wait()
        except BaseException as exc:
            self._fail(exc)
            raise
        finally:
            for t in list(groups):
                t.cancel()
            await asyncio.gather(*groups, return_exceptions=True)

    def _owed(self) -> int:
        return self.admitted - self.groups_dropped_stale

    def _allowed(self) -> int:
        return (self.clock.value + self.max_staleness + 1) * self.groups_per_step

    async def _play_group(self, group: Group, slots: asyncio.Semaphore) -> None:
        try:
            samples = await asyncio.gather(*(self._play_one(group, k, slots) for k in range(self.group_size)))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a bug, not a fault: stop the trainer instead of starving it
            self._fail(exc)
            return
        group.samples = list(samples)
        with self._cond:
            self._buffer.append(group)
            self._cond.notify_all()

    async def _play_one(self, group: Group, member: int, slots: asyncio.Semaphore) -> Sample:
        try:
            async with slots:
                versions: list[int] = []
                token = _turn_versions.set(versions)
                try:
                    start_version = self.clock.value
                    for attempt in range(self.max_retries + 1):
                        slot = EpisodeSlot(episode_id=f"a/g{group.seq}/e{member}/t{attempt}",
                                           group_id=f"a/g{group.seq}", group_index=group.seq, member=member,
                                           attempt=attempt)
                        versions.clear()
                        start_version = self.clock.value
                        began = time.perf_counter()
                        try:
                            record = await self.play(group.task, slot)
                        except asyncio.CancelledError:
                            self.episodes_cancelled += 1
                            raise
                        self.episodes_played += 1
                        self.episode_seconds += time.perf_counter() - began
                        if not record.retryable:
                            break
                    record.retries = attempt
                finally:
                    _turn_versions.reset(token)
        finally:
            self.in_flight -= 1
            self._nudge()
        return Sample(record, min(versions) if versions else start_version)

    def _on_bump(self, value: int) -> None:
        self._nudge()

    def _nudge(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or loop.is_closed():
            return
        try:
            if _running_loop() is loop:
                wake.set()
            else:
                loop.call_soon_threadsafe(wake.set)
        except RuntimeError:
            pass  # the loop is shutting down

    @property
    def error(self) -> BaseException | None:
        """What stopped the producer, if anything did (a consumer that only polls needs to see it)."""
        return self._error

    def _fail(self, exc: BaseException) -> None:
        with self._cond:
            if self._error is None and not isinstance(exc, asyncio.CancelledError):
                self._error = exc
            self._cond.notify_all()

    # -- the consumer (the trainer's thread) --------------------------------------------------------
    def take(self, n_groups: int, timeout: float | None = None) -> list[Group]:
        """`n_groups` complete groups, each within the staleness bound of the current version.

        Blocks until they are there (see `_plan`: oldest first). Staler groups are dropped and
        counted; each episode is handed out once (an episode id seen twice is counted in
        `samples_used_twice` and not handed out).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._error is not None:
                    raise RuntimeError("the rollout producer failed") from self._error
                self._discard_unusable()
                picks = self._plan(n_groups)
                if picks is not None:
                    break
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"no {n_groups} rollout group(s) within {timeout} s")
                self._cond.wait(left)
            now = self.clock.value
            for group in picks:
                self._buffer.remove(group)
                self._pending.pop(group.seq, None)
                self._consumed.update(s.record.episode_id for s in group.samples)
                for s in group.samples:
                    self.staleness[now - s.version] += 1
                self.samples_used += len(group.samples)
        return picks

    def _discard_unusable(self) -> None:
        """Drop (and count) finished groups staler than the bound, and refuse any handed out before."""
        now = self.clock.value
        for group in list(self._buffer):
            ids = [s.record.episode_id for s in group.samples]
            if any(i in self._consumed for i in ids):
                self.samples_used_twice += sum(i in self._consumed for i in ids)
                self._buffer.remove(group)
                continue
            if now - group.version > self.max_staleness:
                self._buffer.remove(group)
                self._pending.pop(group.seq, None)
                self.groups_dropped_stale += 1
                self.samples_dropped_stale += len(group.samples)
                log.info("group %d (%s) dropped: version %d, now %d (bound %d)", group.seq,
                         group.task.instance_id, group.version, now, self.max_staleness)
                self._nudge()  # one fewer owed: the producer may admit another

    def _plan(self, n: int) -> list[Group] | None:
        """The `n` oldest finished groups, or None while the batch must wait for an older one.

        A group admitted at version u must be trained on by the step at version u + max_staleness.
        The steps at versions now .. now + k take at most (k + 1) * groups_per_step groups, this
        one included, so of the groups admitted at or before now - max_staleness + k, all but
        k * groups_per_step must be in this batch. Oldest first satisfies that whenever the old
        ones have finished; otherwise the batch waits for them rather than leave them to go stale.
        """
        if len(self._buffer) < n:
            return None
        picks = sorted(self._buffer, key=lambda g: (g.admitted_at, g.seq))[:n]
        now = self.clock.value
        for k in range(self.max_staleness + 1):
            limit = now - self.max_staleness + k
            owed = sum(1 for g in self._pending.values() if g.admitted_at <= limit)
            taken = sum(1 for g in picks if g.admitted_at <= limit)
            if taken < min(owed - k * self.groups_per_step, n):
                return None
        return picks

    def stop(self) -> None:
        self._stopped = True
        self._nudge()
        if self._task is not None and self._loop is not None and not self._loop.is_closed():
            task = self._task

            async def cancel() -> None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

            try:  # the episodes end at once (each closes its sandbox on the way out); the bound is
                # for a sandbox call stuck in its thread: what it holds is the runner's close's to remove
                asyncio.run_coroutine_threadsafe(cancel(), self._loop).result(STOP_WAIT_S)
            except TimeoutError:
                log.warning("the rollout producer's episodes did not end within %s s of the stop; "
                            "left to the runner's close", STOP_WAIT_S)
            except Exception:  # noqa: BLE001 - stopping must not raise over the trainer's own error
                log.exception("stopping the rollout producer")

    def utilisation(self, span: float | None = None) -> float:
        """Slot-seconds spent in episodes over the slot-seconds available (since the start)."""
        span = span if span is not None else time.perf_counter() - self.started_at
        return self.episode_seconds / (self.slots * span) if span > 0 else 0.0

    def stats(self) -> dict[str, Any]:
        return {"admitted_groups": self.admitted, "buffered_groups": len(self._buffer), "version": self.clock.value,
                "samples_used": self.samples_used, "samples_used_twice": self.samples_used_twice,
                "groups_dropped_stale": self.groups_dropped_stale,
                "samples_dropped_stale": self.samples_dropped_stale,
                "staleness": dict(sorted(self.staleness.items())),
                "max_staleness_seen": max(self.staleness, default=0), "slot_utilisation": self.utilisation()}


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def farm_player(runner: Any, group_size: int) -> PlayFn:
    """`play` for an `InProcessRunner`: its host and policy router; the last `demos_per_group`
    members of each group are the runner's demonstrations, as in its synchronous batches."""

    async def play(task: Task, slot: EpisodeSlot) -> Trajectory:
        demo = runner.demo_policy is not None and slot.member >= group_size - runner.demos_per_group
        if demo:
            runner.router.use(runner.demo_policy(runner.router.default))
        record = await runner.host.run_episode(task.model_dump(), slot)
        record.farm.demo = demo
        return record

    return play


class AsyncFarmRollout(FarmRollout):
    """`rollout_func` fed by an `AsyncFarmProducer`: the batch's size picks how many groups to take.

    The producer chooses the tasks (it cycles through them), so the batch's prompts only fix the
    number of groups; the rows say which task they played (`instance_id`).
    """

    def __init__(self, tasks: list[Task], producer: AsyncFarmProducer, config: TrainConfig, tokenizer: Any,
                 encoder: Any = None, take_timeout: float | None = None) -> None:
        super().__init__(tasks, runner=None, config=config, tokenizer=tokenizer, encoder=encoder)
        self.producer = producer
        self.take_timeout = take_timeout
        self.wait_s = 0.0  # the trainer's time blocked on rollouts

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, list]:
        started = time.perf_counter()
        group_size = self.producer.group_size
        if len(prompts) % group_size:
            raise ValueError(f"the batch of {len(prompts)} is not made of groups of {group_size}")
        groups = self.producer.take(len(prompts) // group_size, timeout=self.take_timeout)
        waited = time.perf_counter() - started
        self.wait_s += waited
        records = [s.record for g in groups for s in g.samples]
        versions = [s.version for g in groups for s in g.samples]
        rows = [self._row(r) for r in records]
        masked, verdicts = settle_groups(records, [r["reward_masked"] for r in rows], group_size,
                                         self.config.max_masked_fraction)
        now = self.producer.clock.value
        for row, m, v in zip(rows, masked, versions, strict=True):
            row["reward_masked"] = m
            row["policy_version"] = v
            row["staleness"] = now - v
        self.last_rows, self.last_records = rows, records
        summary = self._summary(records, rows, verdicts, group_size, waited)
        summary["staleness"] = [r["staleness"] for r in rows]
        self.batches.append(summary)
        keys = ["prompt_ids", "completion_ids", "logprobs", "env_mask", "instance_id", "resolved", "fail_to_pass",
                "format_score", "reward_masked", "error_kind", "num_turns", "episode_id", "policy_version"]
        return {k: [row[k] for row in rows] for k in keys}


class WeightSyncCallback(TrainerCallback):
    """Hands each optimizer step's weights to the generator and bumps its version.

    In process the generator holds the trainer's model object, so the weights are already its
    own: the callback keeps generation out of the optimizer step (the policy's weights lock) and
    counts the update. `push(model)` sends them elsewhere (a remote generator), if given.
    """

    def __init__(self, policy: VersionedPolicy, push: Callable[[Any], None] | None = None) -> None:
        self.policy = policy
        self.push = push
        self._held = False

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.policy.weights_lock.acquire()
        self._held = True

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._release()

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self._release()
        if self.push is not None:
            self.push(model)
        self.policy.clock.bump()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._release()

    def _release(self) -> None:
        if self._held:
            self._held = False
            self.policy.weights_lock.release()


class _NoWeightSync:
    """The in-process generator shares the trainer's model: nothing to send."""

    def sync_weights(self) -> None:
        return None


def enable_importance_correction(trainer: Any) -> None:
    """Turn on TRL's importance-sampling correction for rows whose logprobs came from the generator.

    TRL computes it (`exp(old_logps - sampling_logps)`, truncated per its config) only in vLLM
    mode; with a farm rollout the generation path is ours, so only the correction is enabled and
    the weight sync it would do is a no-op (the callback above does the work). Per token and
    truncated: TRL's default ratio is the sequence's (the product over its tokens), which for a
    sample one version stale is about zero, so stale samples taught nothing (measured on an H200
    with a 320M model: ratio mean 5e-6, gradient norm 2e-5 at the first stale step).
    """
    trainer.use_vllm = True
    trainer.vllm_generation = _NoWeightSync()
    trainer._last_loaded_step = trainer.state.global_step
    trainer.vllm_importance_sampling_correction = True
    trainer.vllm_importance_sampling_mode = "token_truncate"


@dataclass
class AsyncTrainingRun:
    trainer: Any
    rollout: AsyncFarmRollout
    producer: AsyncFarmProducer
    policy: VersionedPolicy
    runner: Any
    steplog: Any

    def close(self) -> None:
        try:
            self.producer.stop()
        finally:
            self.runner.close()


def build_async_training(model: Any, tokenizer: Any, tasks: list[Task], cfg: TrainConfig, args: Any, *,
                         max_staleness: int = 1, policy: Any = None, backend: str | BackendConfig = "docker",
                         sim_profile: dict[str, Any] | None = None, importance_correction: bool = True,
                         echo: bool = True) -> AsyncTrainingRun:
    """A GRPOTrainer fed by an `AsyncFarmProducer` on an in-process farm; the producer is running.

    `policy` generates (default: the trainer's own model through TransformersPolicy, so the
    generator holds the trained model object); it must expose the model's tokenizer methods
    (prompt_ids, encode_tool_turn) or pass through to a policy that does.
    """
    import os

    from trl import GRPOTrainer

    from envfarm.policy.transformers_policy import TransformersPolicy
    from envfarm.train.rewards import reward_funcs
    from envfarm.train.runners import InProcessRunner
    from envfarm.train.steplog import StepLogCallback
    from envfarm.train.trainer import task_dataset
    from envfarm.train.trainer_policies import GuidedPolicy

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    funcs, _ = reward_funcs(cfg.rewards)
    inner = policy or TransformersPolicy(model, tokenizer, max_new_tokens=cfg.max_new_tokens,
                                         temperature=cfg.temperature)
    versioned = VersionedPolicy(inner)
    runner = InProcessRunner(versioned, envs=cfg.envs, env_config=cfg.env_config, run=cfg.run, backend=backend,
                             max_retries=0, demos_per_group=cfg.demos_per_group,
                             demo_policy=GuidedPolicy if cfg.demos_per_group else None, sim_profile=sim_profile)
    group_size = cfg.num_generations
    groups_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps // group_size
    producer = AsyncFarmProducer(tasks, farm_player(runner, group_size), versioned.clock, group_size=group_size,
                                 slots=cfg.envs, groups_per_step=groups_per_step, max_staleness=max_staleness,
                                 max_retries=cfg.max_retries, loop=runner._loop.loop)
    encoder = getattr(inner, "base", inner)
    rollout = AsyncFarmRollout(tasks, producer, cfg, tokenizer, encoder=encoder)
    runner.prewarm([t.image for t in tasks])
    steplog = StepLogCallback(rollout, os.path.join(args.output_dir, "train_log.jsonl"), echo=echo)
    trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=args, processing_class=tokenizer,
                          train_dataset=task_dataset(tasks, min_rows=args.per_device_train_batch_size),
                          rollout_func=rollout, callbacks=[steplog, WeightSyncCallback(versioned)])
    if importance_correction:
        enable_importance_correction(trainer)
    producer.start()
    return AsyncTrainingRun(trainer, rollout, producer, versioned, runner, steplog)
