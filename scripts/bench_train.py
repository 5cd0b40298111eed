"""Where a GRPO step's time goes: generation, sandboxes, grading and the optimizer, side by side.

    python scripts/bench_train.py [--steps 4] [--model PATH] [--vllm-server URL] [--json]

A short training run on the fixture tasks (groups of `--num-generations` episodes, one of them
a gold-patch demonstration so groups have a spread) with a tiny random Qwen2 model unless
`--model` is given. Each step's wall time is split as envfarm.train.steplog does: the rollout's
wall time in proportion to the episodes' summed generation, sandbox (create + tools) and
grading seconds, and the rest of the step (TRL's logprob passes, backward, update) as the
optimizer. Shares are means over the steps (so they add up to 1) and the step time a median;
the first step (cold caches, first sandboxes) is left out of both when there are three or
more. `--json` prints one JSON object as the last line.

    python scripts/bench_train.py --mode sync async [env] [--turn-s 1] [--envs 16] [--json]

Synchronous against asynchronous rollouts (envfarm.train.async_rollouts), side by side: the same
tiny model, tasks, slots and group size; simulated sandboxes (the sim backend's latencies) and a
policy whose turns take `--turn-s` seconds (standing in for a remote generator), ending each
episode after a number of turns drawn uniformly from 2 to 20. Each turn's text is scored by the
model, so the rows carry real token ids and logprobs and the optimizer does real work. Reports
samples per minute, the trainer's idle share (blocked on rollouts), farm slot utilisation,
the staleness histogram and samples used twice. `env` (TRL's environment_factory) is reported as
not measured: TRL generates there with the trained model itself, so this workload's fixed-latency
stand-in generator (and its drawn episode lengths) cannot be put in its place; a tiny random
model would make no tool calls, and the figures would compare different work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import platform
import random
import statistics
import tempfile
import time
from collections import Counter
from typing import Any


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--num-generations", type=int, default=None, help="group size (default 2; 4 with --mode)")
    ap.add_argument("--groups-per-step", type=int, default=2)
    ap.add_argument("--demos-per-group", type=int, default=1)
    ap.add_argument("--max-turns", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--max-completion-length", type=int, default=1024)
    ap.add_argument("--envs", type=int, default=4)
    ap.add_argument("--model", default=None, help="model folder (default: a tiny random Qwen2 built here)")
    ap.add_argument("--vllm-server", default=None, help="generate on this `trl vllm-serve` server")
    ap.add_argument("--tasks", default="builtin")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--mode", nargs="+", choices=["sync", "async", "env"], default=None,
                    help="compare rollout modes on simulated sandboxes with a fixed-latency policy")
    ap.add_argument("--turn-s", type=float, default=1.0, help="seconds per policy turn (--mode)")
    ap.add_argument("--min-turns", type=int, default=2)
    ap.add_argument("--max-turns-drawn", type=int, default=20)
    ap.add_argument("--max-staleness", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.mode:
        args.num_generations = args.num_generations or 4
        return compare_modes(args)
    args.num_generations = args.num_generations or 2

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from envfarm.policy.tiny import make_tiny_model
    from envfarm.tasks.loading import BUILTIN_DIR, load, load_jsonl
    from envfarm.train.config import TrainConfig
    from envfarm.train.trainer import build_training, grpo_config

    tasks = load_jsonl(BUILTIN_DIR / "fixtures.jsonl") if args.tasks == "builtin" else load(args.tasks)
    tasks = tasks[: args.groups_per_step]
    if args.model:
        model, tokenizer = AutoModelForCausalLM.from_pretrained(args.model), AutoTokenizer.from_pretrained(args.model)
    else:
        model, tokenizer = make_tiny_model(seed=0)
    if torch.cuda.is_available():
        model = model.to("cuda")
    cfg = TrainConfig(num_generations=args.num_generations, max_completion_length=args.max_completion_length,
                      max_new_tokens=args.max_new_tokens, envs=args.envs, demos_per_group=args.demos_per_group,
                      env_config={"max_turns": args.max_turns, "command_timeout_s": 30, "episode_timeout_s": 300,
                                  "max_observation_chars": 2000, "grading_timeout_s": 120},
                      run=f"bench-train-{int(time.time())}")
    out = tempfile.mkdtemp(prefix="bench_train_")
    grpo_args = grpo_config(cfg, out, groups_per_step=args.groups_per_step, vllm_server=args.vllm_server,
                            max_steps=args.steps, learning_rate=1e-5, save_strategy="no")
    started = time.perf_counter()
    run = build_training(model, tokenizer, tasks, cfg, grpo_args, vllm_server=args.vllm_server,
                         tokenizer_path=args.model, echo=not args.json)
    try:
        run.trainer.train()
    finally:
        run.close()
    records = run.steplog.records
    kept = records[1:] if len(records) >= 3 else records
    shares = {k: statistics.fmean(r["share"][k] for r in kept) for k in ("generation", "sandbox", "grading",
                                                                           "optimizer")}
    result = {
        "steps": len(records), "steps_measured": len(kept),
        "generation_share": round(shares["generation"], 3), "sandbox_share": round(shares["sandbox"], 3),
        "grading_share": round(shares["grading"], 3), "optimizer_share": round(shares["optimizer"], 3),
        "step_p50_s": round(statistics.median(r["step_s"] for r in kept), 2),
        "step_first_s": round(records[0]["step_s"], 2) if records else None,
        "episodes_per_step": records[0]["episodes"] if records else 0,
        "turns_mean": round(statistics.fmean(r["turns_mean"] for r in kept), 2),
        "completion_tokens_mean": round(statistics.fmean(r["completion_tokens_mean"] for r in kept), 1),
        "pass_rate_mean": round(statistics.fmean(r["pass_rate"] or 0.0 for r in kept), 3),
        "token_mismatches": sum(r["token_mismatches"] for r in records),
        "generation": "vllm-server" if args.vllm_server else "trainer-model",
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "model": args.model or "tiny-random-qwen2", "total_s": round(time.perf_counter() - started, 1),
        "python": platform.python_version(),
    }
    if not args.json:
        print(f"{'step':>4} {'wall s':>7} {'gen':>6} {'sandbox':>8} {'grading':>8} {'optim':>6}")
        for r in records:
            s = r["share"]
            print(f"{r['step']:>4} {r['step_s']:7.1f} {s['generation']:6.0%} {s['sandbox']:8.0%} "
                  f"{s['grading']:8.0%} {s['optimizer']:6.0%}")
    print(json.dumps(result))
    return 0


class LatencyGuide:
    """A remote generator's stand-in: each turn takes `turn_s`; the episode submits after a number
    of turns drawn uniformly from [lo, hi] (stateless: stop at turn t with hazard 1/(hi - t + 1))."""

    def __init__(self, turn_s: float, lo: int, hi: int, seed: int) -> None:
        self.turn_s, self.lo, self.hi = turn_s, lo, hi
        self._rng = random.Random(seed)

    async def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Any:
        from envfarm.policy.base import Completion

        turn = 1 + sum(1 for m in messages if m.get("role") == "assistant")
        await asyncio.sleep(self.turn_s)
        stop = turn >= self.hi or (turn >= self.lo and self._rng.random() < 1.0 / (self.hi - turn + 1))
        call = {"name": "submit", "arguments": {}} if stop else \
            {"name": "bash", "arguments": {"command": f"echo step {turn}"}}
        return Completion(text=f"<tool_call>\n{json.dumps(call)}\n</tool_call>")


def _setup(args: argparse.Namespace, mode: str) -> tuple[Any, ...]:
    from envfarm.policy.tiny import make_tiny_model
    from envfarm.policy.transformers_policy import TransformersPolicy
    from envfarm.tasks.loading import BUILTIN_DIR, load_jsonl
    from envfarm.train.config import TrainConfig
    from envfarm.train.trainer import grpo_config
    from envfarm.train.trainer_policies import GuidedPolicy

    tasks = load_jsonl(BUILTIN_DIR / "fixtures.jsonl") if args.tasks == "builtin" else None
    model, tokenizer = make_tiny_model(seed=0)
    base = TransformersPolicy(model, tokenizer, max_new_tokens=args.max_new_tokens)
    policy = GuidedPolicy(base, LatencyGuide(args.turn_s, args.min_turns, args.max_turns_drawn, args.seed))
    cfg = TrainConfig(num_generations=args.num_generations, max_completion_length=args.max_completion_length,
                      max_new_tokens=args.max_new_tokens, envs=args.envs, max_retries=1,
                      env_config={"max_turns": args.max_turns_drawn + 2, "command_timeout_s": 30,
                                  "episode_timeout_s": 600, "max_observation_chars": 400, "grading_timeout_s": 120},
                      run=f"bench-train-{mode}-{int(time.time())}")
    out = tempfile.mkdtemp(prefix=f"bench_train_{mode}_")
    grpo_args = grpo_config(cfg, out, groups_per_step=args.groups_per_step, max_steps=args.steps,
                            learning_rate=1e-5, save_strategy="no", seed=args.seed)
    return tasks, model, tokenizer, base, policy, cfg, grpo_args


def _counting(rollout: Any, ids: list[str]) -> Any:
    def rollout_func(prompts: list[Any], trainer: Any) -> dict[str, list]:
        out = rollout(prompts, trainer)
        ids.extend(out["episode_id"])
        return out

    return rollout_func


def run_sync(args: argparse.Namespace) -> dict[str, Any]:
    from trl import GRPOTrainer

    from envfarm.train.rewards import reward_funcs
    from envfarm.train.rollout_func import FarmRollout
    from envfarm.train.runners import InProcessRunner
    from envfarm.train.trainer import task_dataset

    tasks, model, tokenizer, base, policy, cfg, grpo_args = _setup(args, "sync")
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
    funcs, _ = reward_funcs(cfg.rewards)
    trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=grpo_args, processing_class=tokenizer,
                          train_dataset=task_dataset(tasks, min_rows=grpo_args.per_device_train_batch_size),
                          rollout_func=_counting(rollout, ids))
    started = time.perf_counter()
    try:
        trainer.train()
    finally:
        wall = time.perf_counter() - started
        runner.close()
    busy = sum(r.farm.host_seconds or 0.0 for r in played)
    return _figures("sync", args, wall, ids, sum(b["rollout_s"] for b in rollout.batches),
                    busy / (cfg.envs * wall), Counter({0: len(ids)}), 0, played, trainer)


def run_async(args: argparse.Namespace) -> dict[str, Any]:
    from envfarm.train.async_rollouts import build_async_training

    tasks, model, tokenizer, base, policy, cfg, grpo_args = _setup(args, "async")
    run = build_async_training(model, tokenizer, tasks, cfg, grpo_args, max_staleness=args.max_staleness,
                               policy=policy, backend="sim", echo=False)
    ids: list[str] = []
    run.trainer.rollout_func = _counting(run.rollout, ids)
    started = time.perf_counter()
    try:
        run.trainer.train()
    finally:
        wall = time.perf_counter() - started
        span = time.perf_counter() - run.producer.started_at
        run.close()
    stats = run.producer.stats()
    figures = _figures("async", args, wall, ids, run.rollout.wait_s, run.producer.utilisation(span),
                       run.producer.staleness, stats["samples_dropped_stale"], run.rollout.last_records, run.trainer)
    figures.update(samples_used_twice_producer=stats["samples_used_twice"], max_staleness=args.max_staleness,
                   generator_is_trained_model=run.policy.model is run.trainer.accelerator.unwrap_model(
                       run.trainer.model), policy_version=run.policy.version,
                   episodes_played=run.producer.episodes_played)
    return figures


def _figures(mode: str, args: argparse.Namespace, wall: float, ids: list[str], idle_s: float, utilisation: float,
             staleness: Counter, dropped: int, records: list[Any], trainer: Any) -> dict[str, Any]:
    turns = [len(r.turns) for r in records]
    return {
        "mode": mode, "steps": trainer.state.global_step, "samples": len(ids), "wall_s": round(wall, 1),
        "samples_per_min": round(len(ids) / wall * 60, 2), "trainer_idle_share": round(idle_s / wall, 3),
        "slot_utilisation": round(utilisation, 3), "staleness_histogram": dict(sorted(staleness.items())),
        "max_staleness_seen": max(staleness, default=0), "samples_dropped_stale": dropped,
        "samples_used_twice": len(ids) - len(set(ids)),
        "turns_mean": round(statistics.fmean(turns), 2) if turns else None,
    }


ENV_NOT_MEASURED = ("not measured: in environment_factory mode TRL generates with the trained model, so the "
                    "fixed-latency turns and drawn episode lengths of this workload cannot be reproduced there")


def compare_modes(args: argparse.Namespace) -> int:
    import torch

    result: dict[str, Any] = {"slots": args.envs, "group_size": args.num_generations,
                              "groups_per_step": args.groups_per_step, "turn_s": args.turn_s,
                              "turns_drawn": [args.min_turns, args.max_turns_drawn], "backend": "sim",
                              "model": "tiny-random-qwen2", "device": "cuda" if torch.cuda.is_available() else "cpu",
                              "cpus": __import__("os").cpu_count(), "python": platform.python_version()}
    runs: dict[str, dict[str, Any]] = {}
    for mode in args.mode:
        if mode == "env":
            runs["env"] = {"mode": "env", "skipped": ENV_NOT_MEASURED}
            continue
        runs[mode] = (run_sync if mode == "sync" else run_async)(args)
        if not args.json:
            print(json.dumps(runs[mode]), flush=True)
    for mode, figures in runs.items():
        for key, value in figures.items():
            if key != "mode":
                result[f"{key}_{mode}"] = value
    if "sync" in runs and "async" in runs:
        s, a = runs["sync"], runs["async"]
        result["async_vs_sync_samples_ratio"] = round(a["samples_per_min"] / s["samples_per_min"], 2) \
            if s["samples_per_min"] else math.inf
    result["max_staleness_seen"] = max((r.get("max_staleness_seen", 0) for r in runs.values()), default=0)
    result["samples_used_twice"] = sum(r.get("samples_used_twice", 0) for r in runs.values())
    if not args.json:
        for mode, r in runs.items():
            if "skipped" in r:
                print(f"{mode:>6}: skipped ({r['skipped']})")
                continue
            print(f"{mode:>6}: {r['samples_per_min']:6.1f} samples/min  trainer idle {r['trainer_idle_share']:.0%}  "
                  f"slots busy {r['slot_utilisation']:.0%}  staleness {r['staleness_histogram']}  "
                  f"used twice {r['samples_used_twice']}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
