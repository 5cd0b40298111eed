"""The farm as a rollout worker for TRL's `AsyncGRPOTrainer` (`rollout_worker=`).

TRL's default worker plays single-model tool loops in a child process; on a GPU cluster we want
the farm's episodes instead (sandboxes, grading, token-exact rows, masking of faults) with the
trainer's own loss, packing and vLLM weight sync. This implements TRL's `RolloutWorkerProtocol`
on top of `AsyncFarmProducer`:

- `start()` starts the producer and a pump thread that takes finished groups, converts them
  (`SampleConverter`) and puts `RolloutSample`s on `rollout_buffer`;
- `update_model_version(v)` bumps envfarm's `PolicyVersion` to `v`, so the producer's admission
  and staleness drop use the trainer's version numbers and a sample's `model_version` is the
  version of its oldest turn;
- `check_health(s)` raises when the producer or pump failed, or when nothing progressed for `s`
  seconds (no group taken, no episode finished, not held back by a full buffer);
- `stop()` stops both and closes what the worker was given to close (the runner).

Staleness is bounded twice: the producer drops groups older than its `max_staleness` when it
hands them out, and the trainer drops rows older than its own `max_staleness` (TRL's default 4)
when it takes them off the queue; give both the same bound.

Weights: no `WeightTransferProtocol` is needed. The policy (`VLLMTokenPolicy`) generates on the
same vLLM server the trainer's default `WeightTransferClient` streams weights into over NCCL; the
trainer then calls `update_model_version`. Adapter-only (LoRA) sync, where TRL's requests name
`<lora>-v<version>`, is not handled: the policy keeps one model name.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from trl.experimental.async_grpo.async_rollout_worker import RolloutSample

from envfarm.tasks.schema import Task
from envfarm.train.async_grpo_samples import SampleConverter
from envfarm.train.async_rollouts import AsyncFarmProducer, Group, VersionedPolicy, farm_player
from envfarm.train.config import TrainConfig

log = logging.getLogger(__name__)


class FarmRolloutWorker:
    """`RolloutWorkerProtocol` over an `AsyncFarmProducer` whose loop is already running."""

    def __init__(self, producer: AsyncFarmProducer, converter: SampleConverter, *, queue_maxsize: int = 0,
                 poll_s: float = 1.0, on_stop: Iterable[Callable[[], None]] = ()) -> None:
        self.producer = producer
        self.converter = converter
        self.poll_s = poll_s
        self.rollout_buffer: queue.Queue[RolloutSample] = queue.Queue(maxsize=queue_maxsize)
        # bounded and dropped on full, as TRL's: a trainer that stops draining never blocks rollouts
        self.metrics_queue: queue.Queue[dict[str, float]] = queue.Queue(maxsize=4096)
        self._on_stop = list(on_stop)
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._heartbeat = time.time()
        self._episodes_seen = 0
        self._dropped_seen = 0
        self._version_lock = threading.Lock()
        self._stopped = False

    @property
    def model_version(self) -> int:
        return self.producer.clock.value

    # -- RolloutWorkerProtocol --------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            log.warning("FarmRolloutWorker.start() called twice; ignoring")
            return
        self._heartbeat = time.time()
        self.producer.start()
        self._thread = threading.Thread(target=self._pump, name="envfarm-async-grpo-pump", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._halt.set()
        try:
            self.producer.stop()
            if self._thread is not None:
                self._thread.join(timeout=max(30.0, 2 * self.poll_s))
        finally:
            for close in self._on_stop:
                try:
                    close()
                except Exception:  # noqa: BLE001 - one failing close must not leak the others
                    log.exception("closing after the rollout worker")

    def update_model_version(self, model_version: int) -> None:
        """Advance envfarm's clock to the trainer's version (one bump per update, so listeners see each)."""
        clock = self.producer.clock
        with self._version_lock:
            if model_version < clock.value:
                raise ValueError(f"model version went back from {clock.value} to {model_version}")
            while clock.value < model_version:
                clock.bump()

    def check_health(self, stale_after_s: float) -> None:
        if self._error is not None:
            raise RuntimeError("the farm rollout worker failed") from self._error
        if self.producer.error is not None:
            raise RuntimeError("the farm rollout producer failed") from self.producer.error
        if self._thread is None or not self._thread.is_alive():
            raise RuntimeError("the farm rollout worker is not running")
        self._tick_on_progress()
        age = time.time() - self._heartbeat
        if age > stale_after_s:
            raise RuntimeError(f"farm rollout worker made no progress for {age:.0f}s > {stale_after_s:.0f}s")

    # -- the pump (its own thread) ----------------------------------------------------------------
    def _pump(self) -> None:
        try:
            while not self._halt.is_set():
                try:
                    (group,) = self.producer.take(1, timeout=self.poll_s)
                except TimeoutError:
                    self._tick_on_progress()
                    continue
                self._heartbeat = time.time()
                samples = self.converter.convert(group)
                for sample in samples:
                    if not self._put(sample):
                        return
                self._push_metrics(group, len(samples))
        except BaseException as exc:  # surfaced by check_health, which the trainer calls while it waits
            if not self._halt.is_set():
                log.exception("farm rollout worker failed")
                self._error = exc

    def _put(self, sample: RolloutSample) -> bool:
        while not self._halt.is_set():
            sample.enqueued_at = time.time()
            try:
                self.rollout_buffer.put(sample, timeout=self.poll_s)
                return True
            except queue.Full:
                self._heartbeat = time.time()  # held back by the trainer, not hung
        return False

    def _tick_on_progress(self) -> None:
        played = self.producer.episodes_played
        if played != self._episodes_seen:
            self._episodes_seen = played
            self._heartbeat = time.time()

    def _push_metrics(self, group: Group, n_samples: int) -> None:
        dropped = self.producer.groups_dropped_stale
        values = {"envfarm/group_staleness_max": float(self.producer.clock.value - group.version),
                  "envfarm/rows_total": float(n_samples),
                  "envfarm/groups_dropped_stale_total": float(dropped - self._dropped_seen),
                  "envfarm/slot_utilisation": self.producer.utilisation()}
        self._dropped_seen = dropped
        try:
            self.metrics_queue.put_nowait(values)
        except queue.Full:
            pass


def farm_rollout_worker(tasks: list[Task], cfg: TrainConfig, tokenizer: Any, *, vllm_url: str,
                        groups_per_step: int, max_staleness: int = 4, model_name: str | None = None,
                        backend: str = "docker", sim_profile: dict[str, Any] | None = None,
                        policy: Any = None, queue_maxsize: int = 0, prewarm: bool = True) -> FarmRolloutWorker:
    """A worker playing `tasks` on an in-process farm with a vLLM-served policy.

    `groups_per_step`: GRPO groups per optimizer step (rows per step / `cfg.num_generations`),
    which with `max_staleness` (the trainer's) sets how far ahead the producer may run.
    `policy` replaces the vLLM policy (tests); it must expose the tokenizer methods the row check
    uses (`encode_tool_turn`, `eos_id`) or be None-safe for them.
    """
    from envfarm.policy.vllm_tokens import VLLMTokenPolicy
    from envfarm.train.runners import InProcessRunner

    inner = policy or VLLMTokenPolicy(vllm_url, tokenizer, model_name=model_name, max_new_tokens=cfg.max_new_tokens,
                                      temperature=cfg.temperature)
    versioned = VersionedPolicy(inner)
    # no demonstrations: TRL's loss importance-weights every trained token by the generator's logprob
    runner = InProcessRunner(versioned, envs=cfg.envs, env_config=cfg.env_config, run=cfg.run, backend=backend,
                             max_retries=0, sim_profile=sim_profile)
    try:
        group_size = cfg.num_generations
        producer = AsyncFarmProducer(tasks, farm_player(runner, group_size), versioned.clock, group_size=group_size,
                                     slots=cfg.envs, groups_per_step=max(1, groups_per_step),
                                     max_staleness=max_staleness, max_retries=cfg.max_retries,
                                     loop=runner._loop.loop)
        encoder = inner if hasattr(inner, "encode_tool_turn") else None
        worker = FarmRolloutWorker(producer, SampleConverter(cfg, tokenizer, encoder=encoder),
                                   queue_maxsize=queue_maxsize, on_stop=[runner.close])
        if prewarm:
            runner.prewarm([t.image for t in tasks])
    except BaseException:
        runner.close()
        raise
    return worker
