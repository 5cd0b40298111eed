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

    python scripts/bench_train.py --mode sync async env [--max-staleness 2 1] [--repeats 3] [--json]

The three ways to train side by side on one defined workload (fixed-latency policy turns on
simulated sandboxes): see scripts/bench_train_modes.py.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time


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
    ap.add_argument("--max-staleness", type=int, nargs="+", default=[2],
                    help="async bounds to run (the first is reported as `async`, others as `async_s<b>`)")
    ap.add_argument("--repeats", type=int, default=1, help="run the modes in turn this many times (--mode)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.mode:
        args.num_generations = args.num_generations or 4
        from bench_train_modes import compare_modes

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


if __name__ == "__main__":
    raise SystemExit(main())
