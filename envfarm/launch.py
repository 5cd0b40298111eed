"""Run episodes on an envfarm: `python -m envfarm.launch --envs N`.

Starts one host actor per Ray node, spreads the episodes over them, writes every finished
episode to rollouts/<run>/ as it finishes, shows the farm live, and removes every container it
made when it ends (Ctrl-C included). With `--train`, runs GRPO training on the farm instead.

Examples:
  python -m envfarm.launch --envs 8                            # builtin tasks, scripted policy, local Ray
  python -m envfarm.launch --envs 20000 --backend sim          # the control plane at scale, no containers
  python -m envfarm.launch --envs 20000 --address auto         # a Ray cluster with Docker on every node
  python -m envfarm.launch --envs 64 --tasks my_tasks.jsonl --policy my_pkg.agent:MyPolicy --group-size 8
  python -m envfarm.launch --envs 8 --train --model ./my-model # GRPO on the farm (see --help of the flags)
  python -m envfarm.launch --envs 8 --train --model ./my-model --async-rollouts --max-staleness 2
  python -m envfarm.launch --envs 4 --backend local --allow-unisolated  # no Docker, NO isolation: trusted only
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from envfarm.env.config import EnvConfig
from envfarm.errors import UserInputError
from envfarm.farm.display import FarmDisplay
from envfarm.farm.scheduler import EnvFarm, FarmConfig
from envfarm.sandbox.backends import backend_from_flags


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m envfarm.launch", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    farm = ap.add_argument_group("the farm")
    farm.add_argument("--envs", type=int, default=8,
                      help="episodes (each with its own sandbox) running at once across the farm (default: 8)")
    farm.add_argument("--address", default=None,
                      help="Ray cluster to join ('auto' for the one on this machine); absent: start a local Ray")
    farm.add_argument("--backend", choices=["docker", "sim", "local"], default="docker",
                      help="docker: real containers; sim: modelled latencies, no containers; local: working "
                           "copies on this machine, no Docker and NO isolation (needs --allow-unisolated) "
                           "(default: docker)")
    farm.add_argument("--allow-unisolated", action="store_true",
                      help="acknowledge that --backend local isolates nothing: no container, no resource "
                           "limits, no network cut, task files (gold patches) readable; trusted policies only")
    farm.add_argument("--hosts-per-node", type=int, default=1,
                      help="host actors per Ray node; each multiplexes many sandboxes (default: 1)")
    farm.add_argument("--warm-fraction", type=float, default=0.25,
                      help="warm sandboxes each host keeps ready, as a fraction of its slots (default: 0.25)")
    farm.add_argument("--oci-runtime", metavar="NAME", default=None,
                      help="the Docker engine's OCI runtime for sandboxes, as `docker info` lists it (e.g. crun "
                           "on cgroup v2 nodes; default: the engine's own)")
    farm.add_argument("--recycle", action="store_true",
                      help="reset used sandboxes for the next episode of their image instead of closing them: "
                           "0.4x the machine CPU per episode; verified from the node (root there), and the "
                           "kernel's counters stay a narrow channel between episodes (README, docs/CLUSTER.md)")
    farm.add_argument("--max-retries", type=int, default=3,
                      help="times an episode hit by an infrastructure fault is retried on another host, after "
                           "1, 2, 4 ... s (default: 3)")
    farm.add_argument("--registry", default=None, metavar="HOST:PORT",
                      help="registry to pull task images from on nodes that lack them; else a node that has "
                           "the image streams it, and a build is the last resort (docs/IMAGES.md)")
    farm.add_argument("--prefetch-images", action="store_true",
                      help="put every task image on every node before the first episode, with a line per image "
                           "and node (default: a node gets an image when episodes wait for it)")
    farm.add_argument("--max-starting", type=int, default=None,
                      help="sandbox creates in flight per host at most (default: the backend's; Docker: 8); "
                           "a node's best level: scripts/bench_farm.py --calibrate-engine (docs/CLUSTER.md)")
    farm.add_argument("--cpus-per-sandbox", type=float, default=1.0, help="CPU limit of each sandbox (default: 1)")
    farm.add_argument("--memory-per-sandbox", default="2g", help="memory limit of each sandbox (default: 2g)")

    work = ap.add_argument_group("the work")
    work.add_argument("--tasks", default="builtin",
                      help="'builtin', 'builtin:<project>', a JSONL file, a SWE-bench task directory, "
                           "or a Hugging Face dataset name, optionally filtered by difficulty labels: "
                           "'builtin?kind=multi_location&min_locations=2&statement=issue' "
                           "(keys: see envfarm.tasks.difficulty) (default: builtin)")
    work.add_argument("--limit-tasks", type=int, default=None, help="use only the first N tasks")
    work.add_argument("--policy", default=None,
                      help="'scripted' (solves tasks from their gold patch), 'openai', 'transformers', 'sim', "
                           "or any 'package.module:attr', built once here to check it, its package shipped to "
                           "every node (default: scripted; sim with --backend sim)")
    work.add_argument("--policy-arg", action="append", default=[], metavar="KEY=VALUE",
                      help="keyword argument for the policy (repeatable; values parsed as JSON when they can be)")
    work.add_argument("--group-size", type=int, default=1,
                      help="episodes per task that form one group (GRPO's num_generations) (default: 1)")
    work.add_argument("--episodes", type=int, default=None,
                      help="episodes to run in all (default: 2 x --envs), tasks cycled in groups")
    work.add_argument("--max-turns", type=int, default=30, help="turns before an episode is truncated (default: 30)")
    work.add_argument("--episode-timeout", type=float, default=1800.0, help="seconds per episode (default: 1800)")
    work.add_argument("--command-timeout", type=float, default=120.0, help="seconds per command (default: 120)")

    out = ap.add_argument_group("output")
    out.add_argument("--out", default="rollouts",
                     help="folder for runs; each run gets a sub-folder (default: rollouts)")
    out.add_argument("--run", default=None, help="run name (default: run-<date>-<time>-<random>)")
    out.add_argument("--no-live", action="store_true", help="plain progress lines instead of the live display")

    train = ap.add_argument_group("training (GRPO with TRL)")
    train.add_argument("--train", action="store_true", help="train a model with GRPO on the farm's episodes")
    train.add_argument("--model", help="model path or name for --train (a local folder; nothing is downloaded)")
    train.add_argument("--num-generations", type=int, default=4, help="episodes per task per step (default: 4)")
    train.add_argument("--max-completion-length", type=int, default=2048,
                       help="tokens of a whole multi-turn completion (default: 2048)")
    train.add_argument("--learning-rate", type=float, default=1e-6, help="default: 1e-6")
    train.add_argument("--loss-type", default="dapo", help="TRL GRPO loss type (default: dapo)")
    train.add_argument("--max-steps", type=int, default=10, help="optimizer steps (default: 10)")
    train.add_argument("--output-dir", default="checkpoints", help="checkpoints and logs (default: checkpoints)")
    train.add_argument("--resume", action="store_true", help="resume from the last checkpoint in --output-dir")
    train.add_argument("--vllm-server", default=None, help="URL of a `trl vllm-serve` server for generation")
    train.add_argument("--max-new-tokens", type=int, default=512, help="tokens per model turn (default: 512)")
    train.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default: 1.0)")
    train.add_argument("--groups-per-step", type=int, default=1,
                       help="tasks (groups of --num-generations episodes) per optimizer step (default: 1)")
    train.add_argument("--save-steps", type=int, default=50, help="checkpoint every N steps (default: 50)")
    train.add_argument("--reward-resolved", type=float, default=1.0, help="weight of resolved 1/0 (default: 1)")
    train.add_argument("--reward-fail-to-pass", type=float, default=0.0,
                       help="weight of the fraction of FAIL_TO_PASS tests passing (default: 0, off)")
    train.add_argument("--reward-format", type=float, default=0.0,
                       help="weight of the fraction of turns with a parseable tool call (default: 0, off)")
    train.add_argument("--max-masked-fraction", type=float, default=0.5,
                       help="drop a group when more of its episodes than this failed for infrastructure "
                            "reasons (default: 0.5)")
    train.add_argument("--demos-per-group", type=int, default=0,
                       help="episodes per group played from the gold patch and scored by the model (cold start; "
                            "default: 0)")
    train.add_argument("--branch-at", type=float, default=None,
                       help="groups share a prefix: one episode to this turn (>= 1) or fraction of --max-turns "
                            "(< 1), then forked into --num-generations branches; Docker backend, local farm "
                            "runner, synchronous rollouts (default: off)")
    train.add_argument("--farm-runner", choices=["local", "ray"], default="local",
                       help="local: episodes in the trainer's process; ray: on the Ray farm (needs --vllm-server)")
    train.add_argument("--async-rollouts", action="store_true",
                       help="play episodes while the optimizer steps (envfarm.train.async_rollouts) instead of "
                            "batch by batch; in-process farm, the trainer's own model generates")
    train.add_argument("--max-staleness", type=int, default=None,
                       help="with --async-rollouts: optimizer steps a trained sample's weights may lag the "
                            "trained ones; staler groups are dropped (default: 1; 0: on-policy)")
    return ap


def parse_policy_args(pairs: list[str]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserInputError(f"--policy-arg {pair!r}: expected KEY=VALUE")
        try:
            kwargs[key] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key] = value
    return kwargs


def registry_flag(value: str | None) -> str | None:
    """--registry as Docker names registries (HOST:PORT, or a host), refused with the fix otherwise."""
    if value is None:
        return None
    value = value.rstrip("/")
    if "://" in value or not re.fullmatch(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[a-z0-9._/-]+)?", value):
        raise UserInputError(f"--registry {value!r}: give the registry as Docker names it, HOST:PORT "
                             "(e.g. 127.0.0.1:5000), without a scheme")
    return value


def farm_config(args: argparse.Namespace) -> FarmConfig:
    if args.envs < 1:
        raise UserInputError("--envs must be at least 1")
    if args.max_starting is not None and args.max_starting < 1:
        raise UserInputError("--max-starting must be at least 1")
    if args.group_size < 1:
        raise UserInputError("--group-size must be at least 1")
    policy = args.policy or ("sim" if args.backend == "sim" else "scripted")
    from envfarm.policy.loader import check_spec

    policy_kwargs = parse_policy_args(args.policy_arg)
    check_spec(policy, policy_kwargs)  # refused here, before a host or sandbox starts
    env_config = EnvConfig.from_args(args)
    backend = backend_from_flags(args.backend, args.allow_unisolated, args.oci_runtime)
    cfg = FarmConfig(envs=args.envs, backend=backend, policy=policy,
                     policy_kwargs=policy_kwargs, hosts_per_node=args.hosts_per_node,
                     warm_fraction=args.warm_fraction, max_retries=args.max_retries, env_config=env_config,
                     registry=registry_flag(args.registry), prefetch_images=args.prefetch_images,
                     max_starting=args.max_starting, cpus_per_sandbox=args.cpus_per_sandbox,
                     memory_per_sandbox=args.memory_per_sandbox, recycle_sandboxes=args.recycle)
    if args.run:
        cfg.run = args.run
    return cfg


async def run_farm(args: argparse.Namespace) -> int:
    from envfarm.rollout.store import TrajectoryStore
    from envfarm.tasks.loading import load, round_robin_by_project

    cfg = farm_config(args)  # bad flags (an unacknowledged local backend) fail before any task loads
    tasks = round_robin_by_project(load(args.tasks))
    if args.limit_tasks:
        tasks = tasks[: args.limit_tasks]
    episodes = args.episodes or 2 * args.envs
    store = TrajectoryStore(Path(args.out) / cfg.run, manifest={
        "config": {k: v for k, v in vars(args).items()},
        "farm": {**vars(cfg), "env_config": cfg.env_config.model_dump(),
                 "backend": cfg.backend_config.model_dump()}, "task_source": args.tasks,
        "n_tasks": len(tasks), "policy": cfg.policy, "episodes": episodes,
    })
    display = FarmDisplay(cfg, episodes, live=not args.no_live)
    farm = EnvFarm(cfg, address=args.address)
    started = time.time()
    interrupted = False
    try:
        await farm.start()
        if cfg.prefetch_images:
            await farm.prefetch_images((t.image for t in tasks), say=lambda line: print(line, file=sys.stderr))
        await farm.prewarm(t.image for t in tasks)
        async with display.running(farm):
            async for record in farm.run(tasks, group_size=args.group_size, episodes=episodes):
                store.write(record)
    except (KeyboardInterrupt, asyncio.CancelledError):
        interrupted = True
    finally:
        cleanup = await asyncio.shield(farm.shutdown()) if farm.hosts else {}
        store.close()
    summary = display.summary(farm, time.time() - started, cleanup, store.run_dir, interrupted)
    (store.run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return 130 if interrupted else 0


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 done, 2 bad input (one line on stderr naming what to fix), 130 interrupted."""
    args = build_parser().parse_args(argv)
    try:
        if not args.train and (args.async_rollouts or args.max_staleness is not None):
            flag = "--async-rollouts" if args.async_rollouts else "--max-staleness"
            raise UserInputError(f"{flag} is a training option: add --train (and --model)")
        if args.train:
            from envfarm.train.cli import run_training

            return run_training(args)
        return asyncio.run(run_farm(args))
    except UserInputError as exc:
        print(f"envfarm: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
