"""`bench_train.py --mode sync async env`: the three ways to train, side by side on one workload.

The workload, the same for every mode: the tiny random Qwen2, the fixture tasks, `--envs` slots,
groups of `--num-generations`, simulated sandboxes (the sim backend's latencies), and a policy
whose turns take `--turn-s` seconds each (a remote generator's stand-in) and end the episode
after a number of turns drawn uniformly from `--min-turns` to `--max-turns-drawn`.

- sync: `GRPOTrainer(rollout_func=FarmRollout)`: each step plays its batch, then optimizes.
- async: `build_async_training` (AsyncFarmProducer, one run per `--max-staleness` value).
- env: `GRPOTrainer(environment_factory=...)`: TRL's own tool loop over envfarm environments.
  TRL generates with the trained model there, so the model's `generate` is the stand-in: one
  `--turn-s` wait per call (TRL generates a turn of every rollout still going in one batch, as a
  server would) and the stand-in's tool calls for every row. Its rows carry no generator
  logprobs (TRL computes them in its own pass).

In the farm modes each turn's text is scored by the model (token ids and logprobs as a real
generator returns them), in the trainer's process: on a small machine that scoring shares the
cores with the optimizer. `--repeats` runs the modes in turn that many times (side by side on
the same machine load) and reports medians and the median of the per-repeat ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

SUBMIT = {"name": "submit", "arguments": {}}


class TurnDraw:
    """How many turns an episode plays: uniform on [lo, hi], drawn statelessly turn by turn
    (stop at turn t with hazard 1/(hi - t + 1)), so any loop can ask "is this the last one?"."""

    def __init__(self, lo: int, hi: int, seed: int) -> None:
        self.lo, self.hi = lo, hi
        self._rng = random.Random(seed)

    def last(self, turn: int) -> bool:
        return turn >= self.hi or (turn >= self.lo and self._rng.random() < 1.0 / (self.hi - turn + 1))

    @staticmethod
    def call(turn: int, last: bool) -> dict[str, Any]:
        return SUBMIT if last else {"name": "bash", "arguments": {"command": f"echo step {turn}"}}


class LatencyGuide:
    """A remote generator's stand-in for the farm modes: each turn takes `turn_s`."""

    def __init__(self, turn_s: float, draw: TurnDraw) -> None:
        self.turn_s, self.draw = turn_s, draw

    async def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Any:
        from envfarm.policy.base import Completion

        turn = 1 + sum(1 for m in messages if m.get("role") == "assistant")
        await asyncio.sleep(self.turn_s)
        call = TurnDraw.call(turn, self.draw.last(turn))
        return Completion(text=f"<tool_call>\n{json.dumps(call)}\n</tool_call>")


def _config(args: argparse.Namespace, mode: str) -> tuple[Any, ...]:
    from envfarm.tasks.loading import BUILTIN_DIR, load_jsonl
    from envfarm.train.config import TrainConfig
    from envfarm.train.trainer import grpo_config

    tasks = load_jsonl(BUILTIN_DIR / "fixtures.jsonl")
    cfg = TrainConfig(num_generations=args.num_generations, max_completion_length=args.max_completion_length,
                      max_new_tokens=args.max_new_tokens, envs=args.envs, max_retries=1,
                      env_config={"max_turns": args.max_turns_drawn + 2, "command_timeout_s": 30,
                                  "episode_timeout_s": 600, "max_observation_chars": 400, "grading_timeout_s": 120},
                      run=f"bench-train-{mode}-{int(time.time())}")
    out = tempfile.mkdtemp(prefix=f"bench_train_{mode}_")
    grpo_args = grpo_config(cfg, out, groups_per_step=args.groups_per_step, max_steps=args.steps,
                            learning_rate=1e-5, save_strategy="no", seed=args.seed)
    return tasks, cfg, grpo_args


def _farm_policy(args: argparse.Namespace, seed: int) -> tuple[Any, ...]:
    from envfarm.policy.tiny import make_tiny_model
    from envfarm.policy.transformers_policy import TransformersPolicy
    from envfarm.train.trainer_policies import GuidedPolicy

    model, tokenizer = make_tiny_model(seed=0)
    base = TransformersPolicy(model, tokenizer, max_new_tokens=args.max_new_tokens, score_cache=2 * args.envs)
    guide = LatencyGuide(args.turn_s, TurnDraw(args.min_turns, args.max_turns_drawn, seed))
    return model, tokenizer, base, GuidedPolicy(base, guide)


def _counting(rollout: Any, ids: list[str], masked: list[bool], records: list[Any] | None = None) -> Any:
    def rollout_func(prompts: list[Any], trainer: Any) -> dict[str, list]:
        out = rollout(prompts, trainer)
        ids.extend(out["episode_id"])
        masked.extend(out["reward_masked"])
        if records is not None:
            records.extend(rollout.last_records)
        return out

    return rollout_func


def run_sync(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    from trl import GRPOTrainer

    from envfarm.train.rewards import reward_funcs
    from envfarm.train.rollout_func import FarmRollout
    from envfarm.train.runners import InProcessRunner
    from envfarm.train.trainer import task_dataset

    tasks, cfg, grpo_args = _config(args, "sync")
    model, tokenizer, base, policy = _farm_policy(args, seed)
    runner = InProcessRunner(policy, envs=cfg.envs, env_config=cfg.env_config, run=cfg.run, backend="sim",
                             max_retries=cfg.max_retries)
    played: list[Any] = []
    run_batch = runner.run

    def run(batch: list[Any], group_size: int) -> list[Any]:
        records = run_batch(batch, group_size)
        played.extend(records)
        return records

    runner.run = run  # type: ignore[method-assign]
    rollout = FarmRollout(tasks, runner, cfg, tokenizer, encoder=base)
    runner.prewarm([t.image for t in tasks])
    ids: list[str] = []
    masked: list[bool] = []
    funcs, _ = reward_funcs(cfg.rewards)
    trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=grpo_args, processing_class=tokenizer,
                          train_dataset=task_dataset(tasks, min_rows=grpo_args.per_device_train_batch_size),
                          rollout_func=_counting(rollout, ids, masked))
    wall, _ = _train_timed(trainer, runner.close)
    busy = sum(r.farm.host_seconds or 0.0 for r in played)
    return _figures("sync", wall, ids, sum(b["rollout_s"] for b in rollout.batches), busy / (cfg.envs * wall),
                    Counter({0: len(ids)}), 0, played, trainer, masked)


def run_async(args: argparse.Namespace, seed: int, max_staleness: int) -> dict[str, Any]:
    from envfarm.train.async_rollouts import build_async_training

    tasks, cfg, grpo_args = _config(args, "async")
    model, tokenizer, base, policy = _farm_policy(args, seed)
    run = build_async_training(model, tokenizer, tasks, cfg, grpo_args, max_staleness=max_staleness,
                               policy=policy, backend="sim", echo=False)
    ids: list[str] = []
    masked: list[bool] = []
    records: list[Any] = []
    run.trainer.rollout_func = _counting(run.rollout, ids, masked, records)
    wall, ended = _train_timed(run.trainer, run.close)
    span = ended - run.producer.started_at
    stats = run.producer.stats()
    figures = _figures("async", wall, ids, run.rollout.wait_s, run.producer.utilisation(span),
                       run.producer.staleness, stats["samples_dropped_stale"], records, run.trainer, masked)
    figures.update(samples_used_twice_producer=stats["samples_used_twice"], max_staleness=max_staleness,
                   generator_is_trained_model=run.policy.model is run.trainer.accelerator.unwrap_model(
                       run.trainer.model), policy_version=run.policy.version,
                   episodes_played=run.producer.episodes_played, episodes_cancelled=run.producer.episodes_cancelled,
                   score_cache_hits=base.prefix_cache.hits)
    return figures


def run_env(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """TRL's environment_factory path on the same workload (see the module docstring)."""
    from trl import GRPOTrainer
    from trl.chat_template_utils import qwen2_5_chat_template

    from envfarm.policy.tiny import make_tiny_model
    from envfarm.train.trl_environment import envfarm_environment_factory

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    tasks, cfg, grpo_args = _config(args, "env")
    tiny, tokenizer = make_tiny_model(seed=0)
    tokenizer.chat_template = qwen2_5_chat_template  # Qwen's tool-calling template: TRL parses its calls
    model = _stand_in_model(tiny, tokenizer, args.turn_s, TurnDraw(args.min_turns, args.max_turns_drawn, seed))
    factory = envfarm_environment_factory(tasks, cfg.env_config, warm=cfg.envs, backend="sim", run=cfg.run)
    grpo_args.max_tool_calling_iterations = args.max_turns_drawn + 1
    grpo_args.reward_weights = None  # the environment's get_reward is the only reward
    trainer = GRPOTrainer(model=model, args=grpo_args, processing_class=tokenizer,
                          train_dataset=factory.dataset(repeat=args.steps), environment_factory=factory)
    rollout_s = [0.0]
    generate = trainer._generate

    def timed(prompts: list) -> Any:  # the rollout: generation and TRL's serial tool calls
        began = time.perf_counter()
        try:
            return generate(prompts)
        finally:
            rollout_s[0] += time.perf_counter() - began

    trainer._generate = timed
    wall, _ = _train_timed(trainer, factory.close)
    samples = trainer.state.global_step * grpo_args.per_device_train_batch_size
    calls = [h["tools/call_frequency"] for h in trainer.state.log_history if "tools/call_frequency" in h]
    return {"mode": "env", "steps": trainer.state.global_step, "samples": samples, "wall_s": round(wall, 1),
            "samples_per_min": round(samples / wall * 60, 2), "trainer_idle_share": round(rollout_s[0] / wall, 3),
            "trainer_busy_s_per_step": round((wall - rollout_s[0]) / max(trainer.state.global_step, 1), 2),
            "turns_mean": round(statistics.fmean(calls), 2) if calls else None, "samples_used_twice": 0,
            "max_staleness_seen": 0, **_steady(trainer, grpo_args.per_device_train_batch_size)}


def _train_timed(trainer: Any, close: Callable[[], Any]) -> tuple[float, float]:
    """`trainer.train()`'s wall seconds and when it ended (perf_counter, before `close`, which
    runs whatever happens: the farm's clean-up is not the run's time)."""
    started = time.perf_counter()
    try:
        trainer.train()
        ended = time.perf_counter()
        return ended - started, ended
    finally:
        close()


def _stand_in_model(tiny: Any, tokenizer: Any, turn_s: float, draw: TurnDraw) -> Any:
    """The tiny model (same weights) whose `generate` writes the stand-in's turns for every row."""
    import torch

    class StandIn(type(tiny)):
        def generate(self, input_ids: Any = None, attention_mask: Any = None, **kwargs: Any) -> Any:
            rows = [self._turn(tokenizer.decode(ids)) for ids in input_ids.tolist()]
            if any(r is not None for r in rows):
                time.sleep(turn_s)  # one generator call serves the turn of every rollout still going
            said = [tokenizer(r or "Done.", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
                    for r in rows]
            width = max(len(r) for r in said)
            tail = [r + [tokenizer.pad_token_id] * (width - len(r)) for r in said]
            return torch.cat([input_ids, torch.tensor(tail, dtype=input_ids.dtype)], dim=1)

        def _turn(self, text: str) -> str | None:
            if "Submitted" in text or "episode is over" in text:
                return None  # the episode ended: the closing reply is not a generator turn
            turn = 1 + text.count("<tool_response>")
            return f"<tool_call>\n{json.dumps(TurnDraw.call(turn, draw.last(turn)))}\n</tool_call>"

    model = StandIn(tiny.config)
    model.load_state_dict(tiny.state_dict())
    return model


def _figures(mode: str, wall: float, ids: list[str], idle_s: float, utilisation: float, staleness: Counter,
             dropped: int, records: list[Any], trainer: Any, masked: list[bool]) -> dict[str, Any]:
    turns = [len(r.turns) for r in records]
    steps = trainer.state.global_step
    return {
        "mode": mode, "steps": steps, "samples": len(ids), "wall_s": round(wall, 1),
        "samples_per_min": round(len(ids) / wall * 60, 2), "trainer_idle_share": round(idle_s / wall, 3),
        "trainer_busy_s_per_step": round((wall - idle_s) / max(steps, 1), 2),
        "slot_utilisation": round(utilisation, 3), "staleness_histogram": dict(sorted(staleness.items())),
        "max_staleness_seen": max(staleness, default=0), "samples_dropped_stale": dropped,
        "samples_used_twice": len(ids) - len(set(ids)), "samples_masked": sum(masked),
        "turns_mean": round(statistics.fmean(turns), 2) if turns else None,
        **_steady(trainer, len(ids) // max(steps, 1)),
    }


def _steady(trainer: Any, batch: int) -> dict[str, Any]:
    """Samples per minute after the first step (TRL's `step_time` of each step): the first step
    of an asynchronous run also fills its pipeline, which a longer run pays only once."""
    times = [h["step_time"] for h in trainer.state.log_history if "step_time" in h][1:]
    return {"steady_samples_per_min": round(batch * len(times) / sum(times) * 60, 2) if times else None}


def _median(values: list[Any]) -> Any:
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return round(statistics.median(numbers), 3) if len(numbers) == len(values) and numbers else values[-1]


def compare_modes(args: argparse.Namespace) -> int:
    import torch

    result: dict[str, Any] = {"slots": args.envs, "group_size": args.num_generations,
                              "groups_per_step": args.groups_per_step, "steps": args.steps, "turn_s": args.turn_s,
                              "turns_drawn": [args.min_turns, args.max_turns_drawn], "backend": "sim",
                              "model": "tiny-random-qwen2", "device": "cuda" if torch.cuda.is_available() else "cpu",
                              "cpus": os.cpu_count(), "python": platform.python_version(), "repeats": args.repeats}
    bounds = args.max_staleness  # the first is "async"; any other b is "async_s<b>"
    names = ["sync"] if "sync" in args.mode else []
    if "async" in args.mode:
        names += ["async"] + [f"async_s{b}" for b in bounds[1:]]
    names += ["env"] if "env" in args.mode else []
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for repeat in range(args.repeats):
        seed = args.seed + repeat  # every mode of one repeat draws its episode lengths from the same seed
        for name in names:
            if name == "sync":
                figures = run_sync(args, seed)
            elif name == "env":
                figures = run_env(args, seed)
            else:
                figures = run_async(args, seed, bounds[0] if name == "async" else int(name.removeprefix("async_s")))
            runs[name].append(figures)
            if not args.json:
                print(json.dumps({"repeat": repeat, **figures}), flush=True)
    for name, figures in runs.items():
        for key in figures[0]:
            if key == "mode":
                continue
            values = [f[key] for f in figures]
            result[f"{key}_{name}"] = _median(values) if key != "staleness_histogram" else \
                dict(sorted(sum((Counter(v) for v in values), Counter()).items()))
            if args.repeats > 1 and key in ("samples_per_min", "steady_samples_per_min", "trainer_idle_share",
                                            "trainer_busy_s_per_step"):
                result[f"{key}_{name}_runs"] = values
    for name in names if "sync" in runs else []:
        if name == "sync":
            continue
        for figure, key in (("samples_per_min", f"{name}_vs_sync_samples_ratio"),
                            ("steady_samples_per_min", f"{name}_vs_sync_steady_samples_ratio")):
            ratios = [a[figure] / s[figure] for a, s in zip(runs[name], runs["sync"], strict=True)]
            result[key] = round(statistics.median(ratios), 2)  # the median of the side-by-side ratios
            result[f"{key}_runs"] = [round(r, 2) for r in ratios]
    every = [f for figures in runs.values() for f in figures]
    result["max_staleness_seen"] = max((f.get("max_staleness_seen", 0) for f in every), default=0)
    result["samples_used_twice"] = sum(f.get("samples_used_twice", 0) for f in every)
    result["samples_masked"] = sum(f.get("samples_masked", 0) for f in every)  # farm modes: no reward, no loss
    if not args.json:
        for name in names:
            print(f"{name:>9}: {result[f'samples_per_min_{name}']:6.1f} samples/min  "
                  f"trainer idle {result[f'trainer_idle_share_{name}']:.0%}  "
                  f"busy {result[f'trainer_busy_s_per_step_{name}']:.1f} s/step  "
                  f"staleness {result.get(f'staleness_histogram_{name}', {0: 'all'})}")
    print(json.dumps(result))
    return 0
