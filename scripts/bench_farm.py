"""The farm at scale, in one run.

(a) sim backend at --sim-envs (default 20,000) concurrent environments through multiplexing host
    actors: time until all are running, acquire latency (median, p99), control-plane memory per
    environment (proportional set size of the host actors), driver CPU per episode;
(b) the same workload in the one-actor-per-environment design (a host actor with one slot per
    environment) at --per-actor-envs: memory per environment and driver CPU per episode, and
    the ratio to (a);
(c) real Docker on this machine: the most concurrent sandboxes that stay healthy (every one
    answers a command within a second) up to --docker-max, and warm-pool acquire vs cold create.
(d) with --creation-scale: creation at cluster scale, simulated (ROCK's protocol on 250 / 313
    modelled nodes; see scripts/creation_scale.py); --calibrate-engine first re-measures the
    engine curve it models.

    python scripts/bench_farm.py [--sim-envs 20000] [--per-actor-envs 48] [--docker-max 120] [--json]
    python scripts/bench_farm.py --sim-envs 0 --per-actor-envs 0 --docker-max 0 --creation-scale --json

With --cold-node, also a real two-node cluster on this machine (the worker on a second Docker
engine): how a task image reaches a cold node by registry, peer and build, and the two-node run
time against one node for the same episodes (scripts/bench_cold_node.py).

    python scripts/bench_farm.py --sim-envs 0 --per-actor-envs 0 --docker-max 0 --cold-node --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import time
from typing import Any

import ray
from benchlib import report

from envfarm.farm.admission import AdmissionControl
from envfarm.farm.pool import WarmPool
from envfarm.farm.scheduler import EnvFarm, FarmConfig
from envfarm.sandbox.base import SandboxSpec
from envfarm.tasks.loading import load_builtin

SIM_POLICY = {"think_s": 20.0, "turns": 4}  # 4 turns of 20 s: every env stays up while the rest start


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def sim_run(envs: int, hosts: int, episodes: int, per_actor: bool) -> dict[str, Any]:
    """Run `episodes` sim episodes with `envs` at once; hosts=envs gives one actor per environment."""
    cfg = FarmConfig(envs=envs, backend="sim", policy="sim", policy_kwargs=SIM_POLICY,
                     hosts_per_node=hosts, warm_fraction=0.0, max_retries=0)
    farm = EnvFarm(cfg)
    t_start = time.perf_counter()
    await farm.start()
    t_hosts = time.perf_counter() - t_start
    cpu0 = _cpu_s()
    t_run = time.perf_counter()
    all_running_s = None
    peak = 0
    peak_stats: list[dict[str, Any]] = []

    async def watch() -> None:
        nonlocal all_running_s, peak, peak_stats
        while all_running_s is None:
            stats = await farm.host_stats(timeout=30)
            running = sum(s.get("envs_running", 0) for s in stats)
            if running >= peak:
                peak, peak_stats = running, stats
            if running >= envs:
                all_running_s = time.perf_counter() - t_run
                return
            await asyncio.sleep(0.25)

    watcher = asyncio.create_task(watch())
    finished = 0
    async for _ in farm.run(load_builtin(), group_size=1, episodes=episodes):
        finished += 1
    wall = time.perf_counter() - t_run
    cpu = _cpu_s() - cpu0
    if not watcher.done():
        watcher.cancel()
    final = await farm.host_stats(timeout=60)
    await farm.shutdown()
    pss = sum(s.get("pss_bytes", 0) for s in peak_stats)
    acquire = sorted(s["acquire_p50_s"] for s in final if s.get("acquire_p50_s") is not None)
    acquire99 = max((s["acquire_p99_s"] for s in final if s.get("acquire_p99_s") is not None), default=None)
    return {
        "envs": envs, "hosts": len(final), "episodes": finished, "failed": farm.counters.failed,
        "hosts_start_s": t_hosts, "all_running_s": all_running_s, "peak_running": peak, "wall_s": wall,
        "acquire_p50_ms": statistics.median(acquire) * 1000 if acquire else None,
        "acquire_p99_ms": acquire99 * 1000 if acquire99 is not None else None,
        "host_pss_mb_at_peak": pss / 2**20,
        "memory_per_env_kb": pss / max(1, peak) / 1024,
        "driver_cpu_per_episode_ms": cpu / max(1, finished) * 1000,
        "per_actor": per_actor,
    }


async def docker_capacity(max_sandboxes: int, step: int) -> dict[str, Any]:
    """Hold ever more idle sandboxes; healthy while every one answers `true` within a second."""
    from envfarm.sandbox.docker_backend import DockerSandbox
    from envfarm.sandbox.images import build_repo, load_projects

    image = build_repo(load_projects()["inflection"])
    spec = SandboxSpec(image=image, memory="512m")
    held: list[DockerSandbox] = []
    healthy = 0
    reason = f"reached --docker-max {max_sandboxes}"
    adm = AdmissionControl(8, 20)

    async def create() -> DockerSandbox:
        async with adm.admit():
            return await DockerSandbox.create(spec, run="bench-capacity")

    try:
        while len(held) < max_sandboxes:
            n = min(step, max_sandboxes - len(held))
            made = await asyncio.gather(*(create() for _ in range(n)), return_exceptions=True)
            held += [m for m in made if not isinstance(m, BaseException)]
            errors = [m for m in made if isinstance(m, BaseException)]
            if errors:
                reason = f"create failed at {len(held) + len(errors)}: {errors[0]}"
                break
            checks = await asyncio.gather(*(sb.exec("true", timeout=1.0) for sb in held), return_exceptions=True)
            bad = [c for c in checks if isinstance(c, BaseException) or c.timed_out or c.exit_code != 0]
            if bad:
                reason = f"{len(bad)} of {len(held)} sandboxes did not answer within 1 s"
                break
            healthy = len(held)
            with open("/proc/meminfo") as fh:
                avail_kb = next(int(line.split()[1]) for line in fh if line.startswith("MemAvailable"))
            if avail_kb < 3 * 2**20:
                reason = f"stopped with {avail_kb // 1024} MiB of memory left"
                break
    finally:
        await asyncio.gather(*(sb.close() for sb in held), return_exceptions=True)
    return {"docker_max_healthy_sandboxes": healthy, "docker_capacity_stop": reason}


async def docker_warm_vs_cold(samples: int) -> dict[str, Any]:
    from envfarm.sandbox.docker_backend import DockerSandbox
    from envfarm.sandbox.images import build_repo, load_projects

    image = build_repo(load_projects()["inflection"])

    async def create(spec: SandboxSpec, task_id: str) -> DockerSandbox:
        return await DockerSandbox.create(spec, run="bench-pool")

    cold: list[float] = []
    for _ in range(samples):
        t = time.perf_counter()
        sb = await create(SandboxSpec(image=image), "cold")
        cold.append(time.perf_counter() - t)
        await sb.close()
    warm = {"stream": await _warm_acquires(create, image, samples, liveness_interval=30.0),
            "round_trip": await _warm_acquires(create, image, samples, liveness_interval=0.0)}
    return {"cold_create_p50_ms": statistics.median(cold) * 1000,
            "warm_acquire_p50_ms": statistics.median(warm["stream"]) * 1000,
            "warm_acquire_p99_ms": sorted(warm["stream"])[int(0.99 * (samples - 1))] * 1000,
            "warm_acquire_round_trip_p50_ms": statistics.median(warm["round_trip"]) * 1000,
            "cold_vs_warm_ratio": statistics.median(cold) / statistics.median(warm["stream"])}


async def _warm_acquires(create, image: str, samples: int, liveness_interval: float) -> list[float]:
    """Acquire times from a full pool: liveness by open stream (default), or a command round trip."""
    pool = WarmPool(create, AdmissionControl(4, 20), warm_size=samples, liveness_interval=liveness_interval)
    times = []
    try:
        pool.prewarm(image)
        while pool.stats()["warm"] < samples:
            await asyncio.sleep(0.1)
        pool.warm_size = 0  # stop refilling while we measure
        for _ in range(samples):
            t = time.perf_counter()
            sb = await pool.acquire(image)
            times.append(time.perf_counter() - t)
            await pool.release(sb)
    finally:
        await pool.close()
    return times


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        if args.sim_envs:
            a = await sim_run(args.sim_envs, args.sim_hosts, args.sim_envs, per_actor=False)
            print("(a) multiplexed:", json.dumps(a))
            figures.update({
                "sim_envs": a["envs"], "sim_hosts": a["hosts"], "sim_all_running_s": a["all_running_s"],
                "sim_peak_running": a["peak_running"], "sim_acquire_p50_ms": a["acquire_p50_ms"],
                "sim_acquire_p99_ms": a["acquire_p99_ms"], "sim_memory_per_env_kb": a["memory_per_env_kb"],
                "sim_driver_cpu_per_episode_ms": a["driver_cpu_per_episode_ms"], "sim_failed": a["failed"],
                "sim_wall_s": a["wall_s"],
            })
        if args.per_actor_envs:
            b = await sim_run(args.per_actor_envs, args.per_actor_envs, args.per_actor_envs, per_actor=True)
            print("(b) one actor per env:", json.dumps(b))
            figures.update({
                "per_actor_envs": b["envs"], "per_actor_memory_per_env_kb": b["memory_per_env_kb"],
                "per_actor_driver_cpu_per_episode_ms": b["driver_cpu_per_episode_ms"],
                "per_actor_hosts_start_s": b["hosts_start_s"],
            })
            if args.sim_envs:
                figures["memory_ratio_per_actor_vs_multiplexed"] = (
                    b["memory_per_env_kb"] / figures["sim_memory_per_env_kb"])
    finally:
        ray.shutdown()
    if args.docker_max:
        figures.update(await docker_capacity(args.docker_max, args.docker_step))
        figures.update(await docker_warm_vs_cold(args.pool_samples))
    if args.cold_node:
        figures.update(await asyncio.to_thread(cold_node, args))
    return figures


def creation_section(args: argparse.Namespace) -> dict[str, Any]:
    """(d): calibrate the engine model on this machine's engine, and/or run the creation table."""
    figures: dict[str, Any] = {}
    if args.calibrate_engine:
        from engine_calibration import calibrate

        figures.update(asyncio.run(calibrate(args.calibrate_rounds)))
    if args.creation_scale:
        from creation_scale import creation_scale

        levels = tuple(int(n) for n in args.creation_scale.split(","))
        figures.update(creation_scale(levels, tuple(args.creation_caps.split(","))))
    return figures


def cold_node(args: argparse.Namespace) -> dict[str, Any]:
    """Image arrival on a cold node by way, and two nodes against one (scripts/bench_cold_node.py)."""
    from bench_cold_node import cold_node_figures

    return cold_node_figures(envs=args.cold_envs, episodes=args.cold_episodes, repeats=args.cold_repeats,
                             build=not args.cold_no_build)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sim-envs", type=int, default=20000, help="(a) concurrent sim environments (0: skip)")
    ap.add_argument("--sim-hosts", type=int, default=4, help="(a) host actors")
    ap.add_argument("--per-actor-envs", type=int, default=48,
                    help="(b) environments, one actor each (each is a ~100 MiB process: size to the machine)")
    ap.add_argument("--docker-max", type=int, default=120, help="(c) most sandboxes to try (0: skip Docker)")
    ap.add_argument("--docker-step", type=int, default=20, help="(c) sandboxes added per step")
    ap.add_argument("--pool-samples", type=int, default=20, help="(c) warm and cold acquisitions to time")
    ap.add_argument("--creation-scale", nargs="?", const="1000,4000,8000,16000,20000", default=None,
                    metavar="N,N,...", help="(d) simulated creations at cluster scale, at these levels "
                    "(default levels: ROCK's 1000,4000,8000,16000,20000)")
    ap.add_argument("--creation-caps", default="curve,docker", metavar="CAP,CAP",
                    help="(d) creates in flight per node, one run of the levels each: 'curve' (the engine "
                    "curve's best level), 'docker' (the Docker backend's default) or a number (default: both)")
    ap.add_argument("--calibrate-engine", action="store_true",
                    help="(d) measure this machine's engine (create latency at 1-16 at once) and store the curve")
    ap.add_argument("--calibrate-rounds", type=int, default=4, help="(d) rounds per concurrency level")
    ap.add_argument("--cold-node", action="store_true",
                    help="a real two-node cluster here, the worker on its own Docker engine: image arrival by "
                         "registry, peer and build, and the two-node vs one-node run time (needs root)")
    ap.add_argument("--cold-envs", type=int, default=4, help="--cold-node: envs of the compared runs")
    ap.add_argument("--cold-episodes", type=int, default=16, help="--cold-node: episodes of the compared runs")
    ap.add_argument("--cold-repeats", type=int, default=2, help="--cold-node: one-node/two-node pairs")
    ap.add_argument("--cold-no-build", action="store_true", help="--cold-node: skip the (minutes long) build way")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args()
    ran = args.sim_envs or args.per_actor_envs or args.docker_max or args.cold_node
    figures = asyncio.run(main_async(args)) if ran else {}
    figures.update(creation_section(args))
    report(figures, args.json)


if __name__ == "__main__":
    main()
