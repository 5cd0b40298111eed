"""Sandbox round trips, lifecycle and grading, measured side by side in one run.

(a) a trivial command through the persistent session vs one `docker exec` per command, on the
    same container, interleaved so that machine noise hits both alike;
(b) sandbox create and close, and the machine's CPU they cost; side by side with the engine's
    `none` network (envfarm.sandbox.no_network: what a remote engine falls back to);
(c) grading one fixture task with its gold patch (fresh sandbox, bug commit, patch, tests);
(d) how long a sandbox whose owner is gone takes to remove itself (grace period 1 s here): its
    owner's lease connection is closed as a dying process's would be, nothing else is done;
(e) Sandbox.fork into 8 children vs replaying the parent's commands vs `docker commit`
    (scripts/fork_bench.py; `--forks` rounds, `--fork-only` for these figures alone);
(f) an episode's sandbox from the warm pool, fresh against recycled: machine CPU per episode,
    set-up (acquire + repository preparation), the reset (scripts/recycle_bench.py; `--episodes`
    each, `--recycle-only` for these figures alone).

    python scripts/bench_sandbox.py [--rounds 300] [--lifecycles 20] [--gradings 5] [--forks 3] [--json]
    python scripts/bench_sandbox.py --runtime crun [...]   # a second OCI runtime's create and close beside the default
    python scripts/bench_sandbox.py --fork-only [--forks 3] [--json]
    python scripts/bench_sandbox.py --recycle-only [--episodes 20] [--json]
    python scripts/bench_sandbox.py --density [--density-cap 600] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import docker.errors
import sandbox_density
from benchlib import machine_cpu_s, pct, phase_medians, report
from fork_bench import bench_fork
from recycle_bench import bench_recycle

from envfarm.env.patch import extract_patch
from envfarm.sandbox import no_network, owner_lease
from envfarm.sandbox.base import SandboxSpec
from envfarm.sandbox.docker_backend import DockerSandbox, docker_client
from envfarm.sandbox.images import build_repo, load_projects
from envfarm.tasks.grading import grade
from envfarm.tasks.loading import BUILTIN_DIR, load_jsonl
from envfarm.tasks.setup import prepare_repository


async def factory(spec: SandboxSpec, task_id: str) -> DockerSandbox:
    return await DockerSandbox.create(spec, run="bench", task=task_id)


async def bench(rounds: int, lifecycles: int, gradings: int, runtime: str | None = None) -> dict[str, float]:
    image = build_repo(load_projects()["inflection"])
    session, dexec = [], []
    sb = await DockerSandbox.create(SandboxSpec(image=image), run="bench")
    try:
        for _ in range(20):  # warm up both paths
            await sb.exec("true")
        await sb.docker_exec("true")
        for i in range(rounds):
            t = time.perf_counter()
            await sb.exec("true")
            session.append(time.perf_counter() - t)
            if i % max(1, rounds // 50) == 0:  # docker exec is ~100x slower: sample it less often
                t = time.perf_counter()
                await sb.docker_exec("true")
                dexec.append(time.perf_counter() - t)
    finally:
        await sb.close()
    # envfarm's way (network disabled, no engine network set-up) against the engine's `none`
    # network (what a process falls back to where the engine cannot bind its hosts file), and
    # with `runtime` a second OCI runtime: round-robin, so the machine's noise falls on all alike
    modes = ["default", "none_network"] + (["second_runtime"] if runtime else [])
    creates: dict[str, list[float]] = {m: [] for m in modes}
    closes: list[float] = []
    cpu = dict.fromkeys(modes, 0.0)
    try:
        for i in range(len(modes) * lifecycles):
            mode = modes[i % len(modes)]
            no_network._disabled_for_process = mode == "none_network"
            spec = SandboxSpec(image=image, runtime=runtime if mode == "second_runtime" else None)
            cpu_before = machine_cpu_s()
            t = time.perf_counter()
            sb = await DockerSandbox.create(spec, run="bench")
            creates[mode].append(time.perf_counter() - t)
            t = time.perf_counter()
            await sb.close()
            if mode == "default":
                closes.append(time.perf_counter() - t)
            cpu[mode] += machine_cpu_s() - cpu_before
    finally:
        no_network._disabled_for_process = False
    lifecycle_cpu = cpu["default"] / max(1, lifecycles)
    second: dict[str, float] = {}
    if runtime:
        second = {
            "create_second_runtime_p50_ms": statistics.median(creates["second_runtime"]) * 1000,
            "create_second_runtime_vs_default_ratio":
                statistics.median(creates["second_runtime"]) / statistics.median(creates["default"]),
            "lifecycle_second_runtime_machine_cpu_ms": cpu["second_runtime"] / max(1, lifecycles) * 1000,
        }
    orphaned = []
    for _ in range(3):
        sb = await DockerSandbox.create(SandboxSpec(image=image, orphan_grace_s=1), run="bench")
        t = time.perf_counter()
        owner_lease.drop(sb.container.id)  # as the kernel closes a killed owner's connection
        while True:
            try:
                docker_client().api.inspect_container(sb.container.id)
            except docker.errors.NotFound:
                break
            await asyncio.sleep(0.02)
        orphaned.append(time.perf_counter() - t)
        await sb.close()
    task = load_jsonl(BUILTIN_DIR / "fixtures.jsonl")[0]
    diffs = []  # the host's diff at submit (its own docker exec, outside the agent's session)
    sb = await DockerSandbox.create(SandboxSpec(image=task.image), run="bench")
    try:
        await prepare_repository(sb, task)
        await sb.exec("echo '# changed' >> /testbed/inflection/__init__.py")
        for _ in range(10):
            t = time.perf_counter()
            patch = await extract_patch(sb, task.base_commit)
            diffs.append(time.perf_counter() - t)
            assert "# changed" in patch, patch[:300]
    finally:
        await sb.close()
    grades: list[float] = []
    phases: list[dict[str, float]] = []
    for _ in range(gradings):
        t = time.perf_counter()
        result = await grade(task, task.patch, factory)
        grades.append(time.perf_counter() - t)
        assert result.resolved, result
        phases.append(result.phases)
    ms = 1000.0
    return {
        "session_exec_p50_ms": statistics.median(session) * ms,
        "session_exec_p95_ms": pct(session, 0.95) * ms,
        "docker_exec_p50_ms": statistics.median(dexec) * ms,
        "docker_exec_p95_ms": pct(dexec, 0.95) * ms,
        "docker_exec_vs_session_ratio": statistics.median(dexec) / statistics.median(session),
        "create_p50_ms": statistics.median(creates["default"]) * ms,
        "create_p95_ms": pct(creates["default"], 0.95) * ms,
        "create_engine_none_network_p50_ms": statistics.median(creates["none_network"]) * ms,
        "create_vs_engine_none_network_ratio":
            statistics.median(creates["default"]) / statistics.median(creates["none_network"]),
        "close_p50_ms": statistics.median(closes) * ms,
        "close_p95_ms": pct(closes, 0.95) * ms,
        # the machine's CPU per create + close (engine, runtime, kernel, this process): what a warm
        # pool moves off the critical path but not off the cores
        "lifecycle_machine_cpu_ms": lifecycle_cpu * ms,
        "lifecycle_engine_none_network_machine_cpu_ms": cpu["none_network"] / max(1, lifecycles) * ms,
        **second,
        # owner gone -> container removed by the engine, with a grace period of 1 s
        "orphan_removal_p50_s": statistics.median(orphaned),
        "submit_diff_p50_ms": statistics.median(diffs) * ms,
        "grade_p50_s": statistics.median(grades),
        "grade_p95_s": pct(grades, 0.95),
        # one grade's parts (GradeResult.phases): fresh sandbox, base commit, patch, tests, parse, removal
        **phase_medians(phases, "grade"),
        "session_samples": len(session),
        "docker_exec_samples": len(dexec),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=1000, help="session round trips")
    ap.add_argument("--lifecycles", type=int, default=20, help="create+close cycles")
    ap.add_argument("--gradings", type=int, default=5, help="gradings of one task")
    ap.add_argument("--density", action="store_true",
                    help="only the density run: live sandboxes added until one answers slower than 1 s "
                         "or memory runs low (see scripts/sandbox_density.py)")
    ap.add_argument("--density-cap", type=int, default=600, help="most sandboxes the density run adds")
    ap.add_argument("--forks", type=int, default=1, help="rounds of the fork figures (0: none)")
    ap.add_argument("--fork-only", action="store_true", help="only the fork figures")
    ap.add_argument("--episodes", type=int, default=10,
                    help="pool episodes of each kind, fresh and recycled, for the recycling figures (0: none)")
    ap.add_argument("--recycle-only", action="store_true", help="only the recycling figures")
    ap.add_argument("--runtime", metavar="NAME", default=None,
                    help="a second OCI runtime (as `docker info` lists it, e.g. crun) whose create and close "
                         "are measured side by side with the engine's default")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args()
    if args.density:
        figures = asyncio.run(sandbox_density.measure(cap=args.density_cap))
        report(figures, args.json)
        return
    only = args.fork_only or args.recycle_only
    figures = {} if only else asyncio.run(bench(args.rounds, args.lifecycles, args.gradings, args.runtime))
    if args.episodes > 0 and not args.fork_only:
        task = load_jsonl(BUILTIN_DIR / "fixtures.jsonl")[0]
        figures.update(asyncio.run(bench_recycle(task, args.episodes)))
    if args.forks > 0 and not args.recycle_only:
        image = build_repo(load_projects()["inflection"])
        figures.update(asyncio.run(bench_fork(image, args.forks)))
    report(figures, args.json)


if __name__ == "__main__":
    main()
