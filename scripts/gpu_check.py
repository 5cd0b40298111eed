"""GRPO on one CUDA machine with no Docker, no vLLM, no Ray and no network: a few steps, timed.

    ENVFARM_ALLOW_UNISOLATED=1 python scripts/gpu_check.py --device cuda --sources DIR [--json]
    python scripts/gpu_check.py --preflight [--device cuda] [--sources DIR]
    python scripts/gpu_check.py --build-wheels DIR [--max-mb 60]
    python scripts/gpu_check.py --install-from DIR

Why a driver of its own: GPU nodes often run neither a Docker engine nor Ray and cannot download,
so the check runs a random Qwen2-shaped model (`--hidden`, `--layers`: ~320M parameters by default)
that generates with the trainer's own model (transformers), episodes on the `local` sandbox
backend (no isolation: it needs ENVFARM_ALLOW_UNISOLATED=1 or `--allow-unisolated`) over builtin
tasks, synchronously (FarmRollout through `build_training`) and asynchronously
(`build_async_training`). Its CPU side runs with `--device cpu` and a tiny size in the tests.

What cannot be fetched there travels: `--build-wheels` packs the wheels of envfarm's import
closure beyond torch/transformers (rebuilt from this environment's installed files, so versions
are the tested ones) and the projects' sdists from envfarm's source cache (`sources/`), and fails
past `--max-mb`. envfarm itself runs from this checkout: its images/projects.toml and builtin
tasks live beside the package, not in it. `--sources DIR` fills envfarm's cache from the carried
sdists; `--preflight` lists every missing piece and exits 2.

The last line is one JSON object: per mode steps, samples per minute, mean reward per step, the
step time split (generation, sandbox, grading, optimizer seconds) and peak GPU memory (GiB).
"""

from __future__ import annotations

import argparse
import base64
import csv
import gc
import hashlib
import importlib.metadata as metadata
import importlib.util
import io
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ALLOW_ENV = "ENVFARM_ALLOW_UNISOLATED"
# import name -> distribution, for what the check's path imports beyond torch and transformers
NEEDED = {"trl": "trl", "accelerate": "accelerate", "datasets": "datasets", "pyarrow": "pyarrow",
          "pandas": "pandas", "pydantic": "pydantic", "gymnasium": "gymnasium", "swebench": "swebench",
          "docker": "docker", "rich": "rich", "modal": "modal", "unidiff": "unidiff"}
# too big for the wheelhouse (~55 MB of wheels together): datasets' binary dependencies
HEAVY = {"pyarrow", "pandas", "numpy"}
# the modules a run imports; --build-wheels carries their distributions
RUN_MODULES = ["trl", "accelerate", "datasets", "envfarm.train.trainer", "envfarm.train.async_rollouts",
               "envfarm.sandbox.local_backend", "envfarm.policy.tiny", "envfarm.tasks.loading"]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements_closure(names: list[str]) -> set[str]:
    """Installed distributions `names` require, transitively (markers evaluated here)."""
    from packaging.requirements import Requirement

    seen: set[str] = set()
    pending = list(names)
    while pending:
        key = _norm(pending.pop())
        if key in seen:
            continue
        try:
            dist = metadata.distribution(key)
        except metadata.PackageNotFoundError:
            continue
        seen.add(key)
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                pending.append(req.name)
    return seen


# ---------------------------------------------------------------- preflight


def _projects_of(tasks: list[Any]) -> list[Any]:
    from envfarm.sandbox.local_trees import project_for_image

    return list({t.image: project_for_image(t.image) for t in tasks}.values())


def fill_sources(sources: Path, projects: list[Any]) -> list[str]:
    """Copy the carried sdists (and test-dependency wheels) into envfarm's cache where missing."""
    from envfarm.sandbox.images import CACHE_DIR

    copied = []
    for project in projects:
        name = f"{project.name}-{project.version}"
        src, dest = sources / name, CACHE_DIR / "sources" / name
        if src.is_dir() and not any(dest.glob("*.tar.gz")):
            shutil.copytree(src, dest, dirs_exist_ok=True)
            copied.append(name)
    return copied


def preflight(args: argparse.Namespace) -> list[str]:
    """Every missing piece, one line each with what to do; empty when the check can run."""
    missing: list[str] = []
    if tuple(map(int, sys.version.split()[0].split(".")[:2])) < (3, 11):  # envfarm needs 3.11+
        missing.append(f"python >= 3.11 (this is {sys.version.split()[0]})")
    for mod in ("torch", "transformers"):
        if importlib.util.find_spec(mod) is None:
            missing.append(f"{mod}: not installed (it must be on the machine; the wheelhouse does not carry it)")
    if args.device == "cuda" and importlib.util.find_spec("torch") is not None:
        import torch

        if not torch.cuda.is_available():
            missing.append(f"CUDA: torch {torch.__version__} sees no CUDA device (a CPU build, or no driver)")
    deps = [f"{dist} (import {mod})" for mod, dist in NEEDED.items() if importlib.util.find_spec(mod) is None]
    if deps:
        missing.append("envfarm deps: " + ", ".join(deps) + " -- install them with "
                       "`python scripts/gpu_check.py --install-from WHEELHOUSE`"
                       + ("; pyarrow and pandas are not carried (too big): they must be on the machine"
                          if {"pyarrow", "pandas"} & {d.split()[0] for d in deps} else ""))
    if shutil.which("git") is None:
        missing.append("git: not on PATH (the local backend makes each project tree a git repository)")
    if not (args.allow_unisolated or os.environ.get(ALLOW_ENV) == "1"):
        missing.append(f"acknowledgement: the local backend isolates nothing; set {ALLOW_ENV}=1 "
                       "(or pass --allow-unisolated) to run episodes on it")
    if not deps:
        try:
            tasks = _tasks(args)
            projects = _projects_of(tasks)
            if args.sources:
                fill_sources(Path(args.sources), projects)
            from envfarm.sandbox.images import CACHE_DIR

            for project in projects:
                dest = CACHE_DIR / "sources" / f"{project.name}-{project.version}"
                if not any(dest.glob("*.tar.gz")):
                    missing.append(f"sdist cache: no {project.name}=={project.version} sdist in {dest} "
                                   "(carry the wheelhouse's sources/ and pass --sources DIR)")
                elif project.test_deps and not any((dest / "wheels").glob("*.whl")):
                    missing.append(f"sdist cache: no test-dependency wheels of {project.name} in {dest}/wheels")
        except ImportError as exc:
            missing.append(f"envfarm deps: importing envfarm failed: {exc}")
    return missing


# ---------------------------------------------------------------- wheelhouse


def wheel_from_installed(dist: metadata.Distribution, out: Path) -> Path:
    """A wheel rebuilt from an installed distribution's files: offline, and the version tested here."""
    name, version = dist.metadata["Name"], dist.version
    info = next((Path(str(f)).parts[0] for f in dist.files or [] if str(f).endswith(".dist-info/METADATA")), None)
    if info is None:
        raise RuntimeError(f"{name} has no .dist-info RECORD (an egg or editable install cannot be packed)")
    wheel_meta = dist.read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip() for line in wheel_meta.splitlines() if line.startswith("Tag:")]
    tag = tags[0] if tags else "py3-none-any"
    path = out / f"{re.sub(r'[-.]+', '_', name)}-{version}-{tag}.whl"
    rows: list[list[str]] = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel in dist.files or []:
            parts = Path(str(rel)).parts
            if ".." in parts or "__pycache__" in parts or str(rel) == f"{info}/RECORD":
                continue
            src = Path(str(dist.locate_file(rel)))
            if not src.is_file() or parts[0].endswith(".dist-info") and parts[0] != info:
                continue
            data = src.read_bytes()
            zf.writestr(str(rel), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            rows.append([str(rel), f"sha256={digest}", str(len(data))])
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows([*rows, [f"{info}/RECORD", "", ""]])
        zf.writestr(f"{info}/RECORD", buf.getvalue())
    return path


def carried_distributions() -> list[str]:
    """Distributions the run imports beyond torch, transformers (and what they require) and HEAVY."""
    import importlib

    sys.path.insert(0, str(ROOT))
    before = set(sys.modules)
    for mod in RUN_MODULES:
        importlib.import_module(mod)
    top = {m.split(".")[0] for m in set(sys.modules) - before} | {m.split(".")[0] for m in before}
    owners = metadata.packages_distributions()
    dists = {_norm(d) for m in top for d in owners.get(m, [])}
    # what torch and transformers require here need not be on the GPU machine (this typer requires
    # pydantic, an older one does not): envfarm's own dependencies travel with what they require
    own = _requirements_closure([d for d in NEEDED.values() if d not in {"trl", "accelerate", "datasets"} | HEAVY])
    skip = _requirements_closure(["torch", "transformers"]) - own
    return sorted(dists - skip - HEAVY - {"envfarm", "pip", "setuptools"})


def build_wheels(out: Path, max_mb: float, tasks_spec: str) -> int:
    """The wheelhouse: wheels of `carried_distributions()` and the projects' sdists under sources/."""
    out.mkdir(parents=True, exist_ok=True)
    sizes: dict[str, int] = {}
    for name in carried_distributions():
        wheel = wheel_from_installed(metadata.distribution(name), out)
        sizes[wheel.name] = wheel.stat().st_size
    from envfarm.sandbox.images import CACHE_DIR

    for project in _projects_of(_load_tasks(tasks_spec)):
        name = f"{project.name}-{project.version}"
        src = CACHE_DIR / "sources" / name
        if not any(src.glob("*.tar.gz")):
            print(f"gpu_wheels: no {name} sdist in {src}: fill the cache first (any run of the local or Docker "
                  f"backend on a machine with network does)", file=sys.stderr)
            return 1
        shutil.copytree(src, out / "sources" / name, dirs_exist_ok=True)
        sizes[f"sources/{name}"] = sum(f.stat().st_size for f in (out / "sources" / name).rglob("*") if f.is_file())
    total = sum(sizes.values())
    for name, size in sorted(sizes.items(), key=lambda kv: -kv[1]):
        print(f"{size / 1e6:8.2f} MB  {name}")
    print(f"gpu_wheels: {len(sizes)} items, {total / 1e6:.1f} MB in {out} (limit {max_mb:g} MB); not carried: "
          f"torch, transformers and their requirements, {', '.join(sorted(HEAVY))}")
    if total > max_mb * 1e6:
        print(f"gpu_wheels: FAILED: {total / 1e6:.1f} MB is past the {max_mb:g} MB limit; the biggest items are "
              "listed first", file=sys.stderr)
        return 1
    return 0


def install_from(wheelhouse: Path) -> int:
    """pip-install, offline and without resolving, the carried wheels whose distribution is absent here."""
    import subprocess

    wanted = []
    for wheel in sorted(wheelhouse.glob("*.whl")):
        name = wheel.name.split("-")[0]
        try:
            metadata.distribution(name)
        except metadata.PackageNotFoundError:
            wanted.append(str(wheel))
    if not wanted:
        print("install: every carried distribution is already installed")
        return 0
    print(f"install: {len(wanted)} wheel(s) from {wheelhouse}", flush=True)
    cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(wheelhouse), "--no-deps",
           *wanted]
    return subprocess.run(cmd).returncode


# ---------------------------------------------------------------- the run


def _load_tasks(spec: str) -> list[Any]:
    from envfarm.tasks.loading import load

    return load(spec)


def _tasks(args: argparse.Namespace) -> list[Any]:
    return _load_tasks(args.tasks)[: args.groups_per_step]


def build_model(args: argparse.Namespace, device: str = "cpu") -> tuple[Any, Any]:
    """A random Qwen2-shaped model with envfarm's offline tokenizer (no downloads), initialised on
    `device` (on a GPU in a fraction of the CPU's time; "meta" to count parameters for free)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from envfarm.policy.tiny import make_tokenizer

    torch.manual_seed(args.seed)
    tokenizer = make_tokenizer(vocab_size=args.vocab)
    heads = max(1, args.hidden // 64)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=args.hidden,
                         intermediate_size=args.intermediate or args.hidden * 11 // 2,
                         num_hidden_layers=args.layers, num_attention_heads=heads,
                         num_key_value_heads=max(1, heads // 4), max_position_embeddings=8192,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         tie_word_embeddings=True)
    with torch.device(device):
        return Qwen2ForCausalLM(config), tokenizer


def run_mode(mode: str, args: argparse.Namespace, tasks: list[Any]) -> dict[str, Any]:
    """A few GRPO steps in one rollout mode; its figures."""
    import torch

    from envfarm.train.async_rollouts import build_async_training
    from envfarm.train.config import TrainConfig
    from envfarm.train.trainer import build_training, grpo_config

    cuda = args.device == "cuda"
    model, tokenizer = build_model(args, args.device)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    cfg = TrainConfig(num_generations=args.num_generations, max_completion_length=args.max_completion_length,
                      max_new_tokens=args.max_new_tokens, envs=args.envs, demos_per_group=args.demos_per_group,
                      env_config={"max_turns": args.max_turns, "command_timeout_s": 30, "episode_timeout_s": 180,
                                  "max_observation_chars": 1000, "grading_timeout_s": 120},
                      run=f"gpu-check-{mode}-{int(time.time())}")
    out = tempfile.mkdtemp(prefix=f"gpu_check_{mode}_")
    grpo_args = grpo_config(cfg, out, groups_per_step=args.groups_per_step, max_steps=args.steps,
                            learning_rate=1e-5, save_strategy="no", use_cpu=not cuda,
                            bf16=cuda and torch.cuda.is_bf16_supported(), seed=args.seed)
    echo = not args.json
    t0 = time.perf_counter()
    if mode == "sync":
        run: Any = build_training(model, tokenizer, tasks, cfg, grpo_args, backend="local", echo=echo)
    else:
        run = build_async_training(model, tokenizer, tasks, cfg, grpo_args, max_staleness=1, backend="local",
                                   echo=echo)
    started = time.perf_counter()
    try:
        run.trainer.train()
    finally:
        wall = time.perf_counter() - started
        run.close()
        closed = time.perf_counter()
        shutil.rmtree(out, ignore_errors=True)
    records = run.steplog.records
    samples = sum(r["episodes"] for r in records)
    split = {k: round(sum(r["time_s"].get(k, 0.0) for r in records), 2)
             for k in ("generation", "sandbox", "grading", "optimizer")}
    figures = {
        "steps": run.trainer.state.global_step, "samples": samples, "wall_s": round(wall, 1),
        "samples_per_min": round(samples / wall * 60, 2) if wall else None,
        "reward_mean_per_step": [_reward(r) for r in records],
        "pass_rate_per_step": [r["pass_rate"] for r in records],
        "step_s_per_step": [round(r["step_s"], 2) for r in records],
        **{f"{k}_s": v for k, v in split.items()},
        "setup_s": round(started - t0, 1), "close_s": round(closed - started - wall, 1),
        "gpu_mem_peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
    }
    if mode == "async":
        figures["staleness_histogram"] = {str(k): v for k, v in sorted(run.producer.staleness.items())}
    del run, model
    gc.collect()
    return figures


def _reward(record: dict[str, Any]) -> float | None:
    """TRL's logged mean reward of the step, else the mean of the groups' means."""
    value = record["trainer"].get("reward")
    if value is None:
        means = [g["mean"] for g in record["groups"] if g.get("mean") is not None]
        value = statistics.fmean(means) if means else None
    return None if value is None else round(float(value), 4)


def check(args: argparse.Namespace) -> int:
    import torch
    import transformers
    import trl

    started = time.perf_counter()
    tasks = _tasks(args)
    model, _ = build_model(args, "meta")
    params = sum(p.numel() for p in model.parameters())
    del model
    print(f"gpu_check: model {params / 1e6:.1f}M parameters (hidden {args.hidden}, {args.layers} layers), "
          f"{len(tasks)} task(s) {[t.instance_id for t in tasks]}, device {args.device}", flush=True)
    result: dict[str, Any] = {
        "device": args.device, "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
        "model_params": params, "model_params_m": round(params / 1e6, 1), "hidden": args.hidden, "layers": args.layers,
        "backend": "local", "generation": "trainer-model", "tasks": [t.instance_id for t in tasks],
        "group_size": args.num_generations, "groups_per_step": args.groups_per_step,
        "torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__,
    }
    for mode in args.modes:
        t0 = time.perf_counter()
        result[mode] = run_mode(mode, args, tasks)
        print(f"gpu_check: {mode} done in {time.perf_counter() - t0:.1f} s: {json.dumps(result[mode])}", flush=True)
    result["ray_imported"] = "ray" in sys.modules  # the in-process path needs no Ray
    result["total_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result), flush=True)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--preflight", action="store_true", help="only list what is missing (exit 2 if anything)")
    ap.add_argument("--build-wheels", metavar="DIR", help="write the wheelhouse (wheels + sources/) to DIR")
    ap.add_argument("--max-mb", type=float, default=60.0, help="the wheelhouse's size limit")
    ap.add_argument("--install-from", metavar="DIR", help="pip-install the absent carried wheels, offline")
    ap.add_argument("--sources", metavar="DIR", help="carried sdists (a wheelhouse's sources/) to fill the cache")
    ap.add_argument("--allow-unisolated", action="store_true", help=f"the acknowledgement, as {ALLOW_ENV}=1")
    ap.add_argument("--modes", nargs="+", choices=["sync", "async"], default=["sync", "async"])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--intermediate", type=int, default=None, help="MLP width (default 5.5 x hidden)")
    ap.add_argument("--vocab", type=int, default=2000, help="tokenizer vocabulary trained offline")
    ap.add_argument("--tasks", default="builtin:inflection")
    ap.add_argument("--groups-per-step", type=int, default=2)
    ap.add_argument("--num-generations", type=int, default=2)
    ap.add_argument("--demos-per-group", type=int, default=1)
    ap.add_argument("--max-turns", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--max-completion-length", type=int, default=512)
    ap.add_argument("--envs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="quiet steps; the JSON object is printed either way")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(var, "1")
    if args.build_wheels:
        return build_wheels(Path(args.build_wheels), args.max_mb, args.tasks)
    if args.install_from:
        return install_from(Path(args.install_from))
    missing = preflight(args)
    for line in missing:
        print(f"gpu_check: MISSING {line}", file=sys.stderr)
    if missing:
        print(f"gpu_check: preflight failed: {len(missing)} missing piece(s)", file=sys.stderr)
        return 2
    if args.preflight:
        print("gpu_check: preflight ok")
        return 0
    os.environ[ALLOW_ENV] = "1"  # acknowledged above (flag or environment)
    return check(args)


if __name__ == "__main__":
    raise SystemExit(main())
