"""`python -m envfarm.launch --train --model PATH`: GRPO on the farm from the command line.

Synchronous farm rollouts by default (envfarm.train.trainer); `--async-rollouts` plays episodes
while the optimizer steps, within `--max-staleness` (envfarm.train.async_rollouts).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from envfarm.env.config import EnvConfig
from envfarm.errors import UserInputError
from envfarm.sandbox.backends import BackendConfig, backend_from_flags
from envfarm.train.config import RewardWeights, TrainConfig


def train_config(args: argparse.Namespace) -> TrainConfig:
    env_config = EnvConfig.from_args(args)
    return TrainConfig(
        num_generations=args.num_generations, max_completion_length=args.max_completion_length,
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, env_config=env_config,
        rewards=RewardWeights(resolved=args.reward_resolved, fail_to_pass=args.reward_fail_to_pass,
                              format=args.reward_format),
        max_masked_fraction=args.max_masked_fraction, max_retries=args.max_retries, envs=args.envs,
        demos_per_group=args.demos_per_group, run=args.run or time.strftime("train-%Y%m%d-%H%M%S"),
        branch_at=args.branch_at,
    )


def _check(args: argparse.Namespace) -> str | BackendConfig:
    """Every flag the run depends on, before a model is loaded; returns the backend to use."""
    if not args.model:
        raise UserInputError("--train needs --model (a local model folder; nothing is downloaded)")
    if args.num_generations < 2:
        raise UserInputError("--num-generations must be at least 2 (GRPO compares episodes within a group)")
    if args.demos_per_group >= args.num_generations:
        raise UserInputError("--demos-per-group must leave at least one episode of the model in each group")
    if args.vllm_server is None and args.farm_runner == "ray":
        raise UserInputError("--farm-runner ray needs --vllm-server: Ray hosts cannot reach the trainer's model")
    _check_async(args)
    _check_branching(args)
    return backend_from_flags(args.backend, args.allow_unisolated, getattr(args, "oci_runtime", None))


def _check_branching(args: argparse.Namespace) -> None:
    if args.branch_at is None:
        return
    from envfarm.rollout.branching import branch_turn

    try:
        branch_turn(args.branch_at, 2)
    except ValueError as exc:
        raise UserInputError(f"--branch-at: {exc}") from None
    for flag, set_ in (("--farm-runner ray", args.farm_runner != "local"), ("--async-rollouts", args.async_rollouts),
                       ("--demos-per-group", args.demos_per_group > 0)):
        if set_:
            raise UserInputError(f"--branch-at runs branched groups on the in-process farm: drop {flag}")


def _check_async(args: argparse.Namespace) -> None:
    """The asynchronous path generates with the trainer's own model on an in-process farm: say so
    rather than silently ignore flags it cannot honour."""
    if not args.async_rollouts:
        if args.max_staleness is not None:
            raise UserInputError("--max-staleness bounds asynchronous rollouts: add --async-rollouts")
        return
    if args.max_staleness is not None and args.max_staleness < 0:
        raise UserInputError(f"--max-staleness must be 0 or more (optimizer steps), not {args.max_staleness}")
    if args.vllm_server is not None:
        raise UserInputError("--async-rollouts generates with the trainer's own model: drop --vllm-server")
    if args.farm_runner != "local":
        raise UserInputError("--async-rollouts runs its farm in the trainer's process: drop --farm-runner ray")


def build_run(args: argparse.Namespace, model: Any, tokenizer: Any, tasks: list[Any], cfg: TrainConfig,
              grpo_args: Any, backend: str | BackendConfig) -> Any:
    """The trainer and its rollouts: asynchronous with --async-rollouts, synchronous otherwise."""
    if args.async_rollouts:
        from envfarm.train.async_rollouts import build_async_training

        max_staleness = 1 if args.max_staleness is None else args.max_staleness
        return build_async_training(model, tokenizer, tasks, cfg, grpo_args, max_staleness=max_staleness,
                                    backend=backend)
    from envfarm.train.trainer import build_training

    return build_training(model, tokenizer, tasks, cfg, grpo_args, vllm_server=args.vllm_server,
                          runner=args.farm_runner, backend=backend, tokenizer_path=args.model, address=args.address)


def run_training(args: argparse.Namespace) -> int:
    """Train; returns the exit status. Checkpoints, `train_log.jsonl` and the final model go to --output-dir."""
    backend = _check(args)
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.trainer_utils import get_last_checkpoint

    from envfarm.tasks.loading import load
    from envfarm.train.trainer import grpo_config

    tasks = load(args.tasks)
    if args.limit_tasks:
        tasks = tasks[: args.limit_tasks]
    cfg = train_config(args)
    model = AutoModelForCausalLM.from_pretrained(args.model)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    out = Path(args.output_dir)
    grpo_args = grpo_config(cfg, str(out), groups_per_step=args.groups_per_step, vllm_server=args.vllm_server,
                            max_steps=args.max_steps, learning_rate=args.learning_rate, loss_type=args.loss_type,
                            save_steps=args.save_steps)
    resume: Any = None
    if args.resume:
        resume = get_last_checkpoint(str(out)) if out.is_dir() else None
        if resume is None:
            print(f"--resume: no checkpoint in {out}; starting fresh", file=sys.stderr)
    run = build_run(args, model, tokenizer, tasks, cfg, grpo_args, backend)
    try:
        run.trainer.train(resume_from_checkpoint=resume)
        run.trainer.save_model(str(out / "final"))
        tokenizer.save_pretrained(str(out / "final"))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        run.close()
    summary = {"steps": run.trainer.state.global_step, "log": str(run.steplog.path), "final": str(out / "final"),
               "pass_rate": [r["pass_rate"] for r in run.steplog.records],
               "rollouts": "async" if args.async_rollouts else "sync"}
    producer = getattr(run, "producer", None)
    if producer is not None:  # what the staleness bound did: histogram, drops, reuse
        summary["async"] = {"max_staleness": producer.max_staleness, **producer.stats()}
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))
    return 0
