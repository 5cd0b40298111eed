"""Grading throughput: envfarm's grade() against swebench's own run_instance, same tasks, same patches.

    python scripts/bench_grading.py --tasks 12 --workers 2 [--json]

Both graders get the same builtin tasks and the same gold patches, with 2 workers each (a thread
pool for the harness, as swebench runs it; asyncio for envfarm). The harness needs an image
already at the task's base commit (one image per task, as SWE-bench has), so one is made per
task before timing starts (commit_bug in a container, `docker commit`) and removed at the end;
envfarm grades on the shared repository image, bringing a fresh sandbox to the base commit itself;
its fresh sandboxes come from a warm pool (as in the farm), and used ones are removed in the background.
The verdicts must agree on every task. `envfarm_overhead_p50_s` is envfarm's time per task minus
the test suite's own runtime at the same parallelism (`suite_alone_p50_s`: each eval script run as
the harness runs it, 2 at a time, in containers prepared before the timer, nothing else running);
`envfarm_setup_overhead_p50_s` is the same against the eval script run as envfarm runs it (with
the byte code the images hold), so it counts only what envfarm adds around the tests;
`envfarm_overhead_vs_harness_runtime_p50_s` uses the eval script's wall time inside the harness's
run, where the other worker is mostly waiting.
With --json the last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import swebench.harness.run_evaluation as harness
from benchlib import phase_medians
from swebench.harness.utils import make_test_spec

from envfarm.farm.admission import AdmissionControl
from envfarm.farm.pool import WarmPool
from envfarm.farm.pooled import pool_factory
from envfarm.sandbox.base import SandboxSpec
from envfarm.sandbox.docker_backend import DockerSandbox, docker_client
from envfarm.tasks.grading import EVAL_ENV, EVAL_PATH, apply_patch, grade
from envfarm.tasks.images_needed import ensure_task_images
from envfarm.tasks.loading import load
from envfarm.tasks.schema import Task
from envfarm.tasks.setup import commit_bug, prepare_repository


def sample(tasks: list[Task], n: int) -> list[Task]:
    """Round-robin over projects (sorted), in file order: deterministic and spread out."""
    by_repo: dict[str, list[Task]] = {}
    for t in tasks:
        if t.bug_patch:
            by_repo.setdefault(t.repo, []).append(t)
    out: list[Task] = []
    i = 0
    while len(out) < n and any(i < len(v) for v in by_repo.values()):
        out += [v[i] for _, v in sorted(by_repo.items()) if i < len(v)][: n - len(out)]
        i += 1
    return out


def instance_image(task: Task) -> str:
    return f"envfarm/bench-{task.instance_id.lower()}:latest"


async def make_instance_image(task: Task) -> str:
    """An image whose /testbed is at the task's base commit, for the harness."""
    sandbox = await DockerSandbox.create(SandboxSpec(image=task.image), run="bench-grading-setup",
                                         task=task.instance_id)
    try:
        head = await commit_bug(sandbox, task.bug_patch)
        assert head == task.base_commit, f"{task.instance_id}: base commit {head} != {task.base_commit}"
        docker_client().api.commit(sandbox.container.id, repository=instance_image(task).split(":")[0],
                                   tag="latest")
    finally:
        await sandbox.close()
    return instance_image(task)


async def run_envfarm(tasks: list[Task], workers: int) -> tuple[float, dict[str, bool | None], dict[str, float],
                                                                 dict[str, dict[str, float]]]:
    """envfarm grades as the farm does: fresh sandboxes from a warm pool, removed in the background."""
    sem = asyncio.Semaphore(workers)
    verdicts: dict[str, bool | None] = {}
    seconds: dict[str, float] = {}
    phases: dict[str, dict[str, float]] = {}  # task -> GradeResult.phases

    async def create(spec: SandboxSpec, task_id: str) -> DockerSandbox:
        return await DockerSandbox.create(spec, run="bench-grading", task=task_id)

    pool = WarmPool(create, AdmissionControl(4, 20), warm_size=workers)
    factory = pool_factory(pool)

    async def one(task: Task) -> None:
        async with sem:
            started = time.perf_counter()
            res = await grade(task, task.patch, factory)
            seconds[task.instance_id] = time.perf_counter() - started
            verdicts[task.instance_id] = None if res.error_kind else res.resolved
            phases[task.instance_id] = res.phases

    images = {t.image for t in tasks}
    for image in images:
        pool.prewarm(image)
    try:
        while pool.stats()["warm"] < workers * len(images):  # warm before timing, as ahead of demand
            await asyncio.sleep(0.1)
        started = time.perf_counter()
        await asyncio.gather(*(one(t) for t in tasks))
        wall = time.perf_counter() - started
        for task_id, split in phases.items():
            print(f"  envfarm {task_id:38s} " + " ".join(f"{k} {v:.2f}" for k, v in split.items()), file=sys.stderr)
        return wall, verdicts, seconds, phases
    finally:
        await pool.close()


async def run_suite_alone(tasks: list[Task], workers: int) -> tuple[dict[str, float], dict[str, float]]:
    """The suite's own runtime at the same parallelism: each task's eval script in a container
    already at the base commit with the gold patch applied (made before the timer), `workers` at
    a time, nothing else running. Twice: as envfarm runs it (EVAL_ENV: the byte code the images
    hold), then as the harness runs it (plain `bash eval.sh`; second, so it has the warmer page
    cache). The first is the like-for-like floor for envfarm's set-up overhead, the second the
    suite's plain runtime."""
    sandboxes: dict[str, DockerSandbox] = {}
    try:
        for task in tasks:
            sb = sandboxes[task.instance_id] = await DockerSandbox.create(
                SandboxSpec(image=task.image), run="bench-grading-suite", task=task.instance_id)
            await prepare_repository(sb, task, for_agent=False)
            applied, out = await apply_patch(sb, task.patch)
            assert applied, f"{task.instance_id}: gold patch did not apply: {out[-300:]}"
            await sb.write_file(EVAL_PATH, make_test_spec(task.swebench_instance()).eval_script, mode=0o755)
        sem = asyncio.Semaphore(workers)

        async def one(task: Task, env: str, seconds: dict[str, float]) -> None:
            async with sem:
                started = time.perf_counter()
                await sandboxes[task.instance_id].exec(f"{env} bash {EVAL_PATH}", timeout=900,
                                                       output_limit=8 << 20)
                seconds[task.instance_id] = time.perf_counter() - started

        cached: dict[str, float] = {}
        plain: dict[str, float] = {}
        await asyncio.gather(*(one(t, EVAL_ENV, cached) for t in tasks))
        await asyncio.gather(*(one(t, "", plain) for t in tasks))
        return plain, cached
    finally:
        await asyncio.gather(*(sb.close() for sb in sandboxes.values()))


def run_harness(tasks: list[Task], workers: int, log_dir: Path,
                run_id: str) -> tuple[float, dict[str, bool | None], dict[str, float]]:
    harness.RUN_EVALUATION_LOG_DIR = log_dir  # keep its logs out of the working directory
    client = docker_client()

    def one(task: Task) -> tuple[str, bool | None]:
        spec = make_test_spec({**task.swebench_instance(), "image": instance_image(task)})
        pred = {"instance_id": task.instance_id, "model_patch": task.patch, "model_name_or_path": "gold"}
        out = harness.run_instance(spec, pred, client, run_id, timeout=900)
        if not out:
            return task.instance_id, None
        return task.instance_id, bool(out[1][task.instance_id]["resolved"])

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        verdicts = dict(pool.map(one, tasks))
    wall = time.perf_counter() - started
    runtimes: dict[str, float] = {}
    for task in tasks:
        log = log_dir / run_id / "gold" / task.instance_id / "run_instance.log"
        m = re.search(r"Test runtime: ([\d_.]+) seconds", log.read_text()) if log.exists() else None
        if m:
            runtimes[task.instance_id] = float(m.group(1).replace("_", ""))
    return wall, verdicts, runtimes


def cleanup(run_id: str, images: list[str]) -> None:
    """Every container the harness started for this run, and the per-task images."""
    client = docker_client()
    for c in client.containers.list(all=True, filters={"name": f".{run_id}"}):
        c.remove(force=True)
    if images:
        subprocess.run(["docker", "rmi", "-f", *images], capture_output=True)


async def main_async(args: argparse.Namespace) -> dict:
    tasks = sample(load(args.spec), args.tasks)
    if not tasks:
        raise SystemExit(f"no tasks with a bug_patch in {args.spec!r}")
    ensure_task_images(tasks)
    print(f"{len(tasks)} tasks from {len({t.repo for t in tasks})} projects; making per-task images for the "
          "harness (not timed)", file=sys.stderr)
    images = [await make_instance_image(t) for t in tasks]
    run_id = f"envfarm-bench-{uuid.uuid4().hex[:8]}"
    try:
        alone, alone_cached = await run_suite_alone(tasks, args.workers)
        print(f"suite alone: {len(tasks)} tasks, p50 {statistics.median(alone.values()):.2f} s plain, "
              f"{statistics.median(alone_cached.values()):.2f} s as envfarm runs it", file=sys.stderr)
        ef_wall, ef_verdicts, ef_seconds, ef_phases = await run_envfarm(tasks, args.workers)
        print(f"envfarm: {len(tasks)} tasks in {ef_wall:.1f} s", file=sys.stderr)
        with tempfile.TemporaryDirectory(prefix="envfarm-bench-") as tmp:
            h_wall, h_verdicts, runtimes = await asyncio.to_thread(run_harness, tasks, args.workers, Path(tmp),
                                                                  run_id)
        print(f"harness: {len(tasks)} tasks in {h_wall:.1f} s", file=sys.stderr)
    finally:
        cleanup(run_id, images)
    disagree = [t.instance_id for t in tasks if ef_verdicts.get(t.instance_id) != h_verdicts.get(t.instance_id)
                or ef_verdicts.get(t.instance_id) is None]
    overhead = [ef_seconds[i] - alone[i] for i in ef_seconds if i in alone]
    overhead_vs_harness = [ef_seconds[i] - runtimes[i] for i in ef_seconds if i in runtimes]
    setup_overhead = [ef_seconds[i] - alone_cached[i] for i in ef_seconds if i in alone_cached]
    ef_rate, h_rate = len(tasks) / ef_wall * 60, len(tasks) / h_wall * 60
    for t in tasks:
        i = t.instance_id
        print(f"  {i:38s} envfarm {ef_verdicts.get(i)!s:5s} {ef_seconds.get(i, 0):5.1f} s   "
              f"harness {h_verdicts.get(i)!s:5s}   suite alone {alone.get(i, float('nan')):5.1f} s, "
              f"in the harness {runtimes.get(i, float('nan')):5.1f} s", file=sys.stderr)
    return {
        "tasks": len(tasks), "projects": len({t.repo for t in tasks}), "workers": args.workers,
        "envfarm_tasks_per_min": round(ef_rate, 2), "harness_tasks_per_min": round(h_rate, 2),
        "throughput_ratio": round(ef_rate / h_rate, 2),
        "verdicts_agree": not disagree, "disagreements": disagree,
        "envfarm_resolved": sum(bool(v) for v in ef_verdicts.values()),
        "harness_resolved": sum(bool(v) for v in h_verdicts.values()),
        "envfarm_p50_s": round(statistics.median(ef_seconds.values()), 2),
        "suite_alone_p50_s": round(statistics.median(alone.values()), 2),
        "suite_alone_as_envfarm_runs_it_p50_s": round(statistics.median(alone_cached.values()), 2),
        "suite_in_harness_p50_s": round(statistics.median(runtimes.values()), 2) if runtimes else None,
        "envfarm_overhead_p50_s": round(statistics.median(overhead), 2) if overhead else None,
        # like for like: the same eval, same byte code, in a container prepared before the timer
        "envfarm_setup_overhead_p50_s": round(statistics.median(setup_overhead), 2) if setup_overhead else None,
        "envfarm_overhead_vs_harness_runtime_p50_s":
            round(statistics.median(overhead_vs_harness), 2) if overhead_vs_harness else None,
        # where one grade's time went (GradeResult.phases): medians in seconds
        **{k: round(v, 3) for k, v in phase_medians(list(ef_phases.values()), "envfarm").items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", default="builtin", help="task spec for envfarm.tasks.load")
    parser.add_argument("--tasks", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)
    result = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")
    return 0 if result["verdicts_agree"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
