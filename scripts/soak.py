"""Soak run: many episodes through the farm while faults are injected at random; nothing may be lost.

Two phases share one local Ray:

1. volume, on the sim backend (no containers): `--episodes` episodes on two host actors, with
   sandbox creates failing at random and one host actor killed (Ray restarts it) every
   `--host-kill-every` finished episodes;
2. containers, on real Docker with the scripted policy: `--docker-episodes` episodes while a
   random running container of the run is killed every `--container-kill-s` seconds (at most
   `--container-kills` in all, so that no episode can meet more kills than it has retries by
   construction of the figures, not by luck) and one host actor is killed once.

Reported: episodes finished, retried and lost (an episode never yielded, yielded twice, or still
failed after its retries), containers left behind, and resident memory and open files of the
host actors after the first tenth of the episodes (modules imported, pools full) and at the end
(a host that was killed and restarted is marked so).

    python scripts/soak.py --episodes 500 --docker-episodes 40 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from envfarm.errors import ErrorKind  # noqa: E402
from envfarm.farm.scheduler import EnvFarm, FarmConfig  # noqa: E402
from envfarm.tasks.loading import load_builtin  # noqa: E402

FAST = {"create_s": 0.02, "close_s": 0.005, "grade_s": 0.05, "exec_s": 0.0002, "create_failure_rate": 0.05}


def _host_figures(stats: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"host": s.get("host_id"), "pid": s.get("pid"), "rss_mb": round(s.get("rss_bytes", 0) / 2**20, 1),
             "open_files": s.get("open_files")} for s in stats if not s.get("unavailable")]


async def _phase(cfg: FarmConfig, tasks: list, episodes: int, group_size: int, rng: random.Random,
                 host_kill_every: int, container_kill_s: float | None, container_kills: int = 0) -> dict[str, Any]:
    import ray

    farm = EnvFarm(cfg)
    await farm.start()
    started = time.time()
    ids: list[str] = []
    lost_after_retries = 0
    kills = {"host_actors": 0, "containers": 0}
    stopper = asyncio.Event()

    async def kill_containers() -> None:
        from envfarm.sandbox.docker_backend import LABEL_RUN, docker_client, list_containers

        while not stopper.is_set() and kills["containers"] < container_kills:
            await asyncio.sleep(container_kill_s * rng.uniform(0.5, 1.5))
            running = [c for c in await asyncio.to_thread(list_containers, **{LABEL_RUN: cfg.run})
                       if c.status == "running"]
            if running and not stopper.is_set():
                victim = rng.choice(running)
                try:
                    await asyncio.to_thread(docker_client().api.kill, victim.id)
                    kills["containers"] += 1
                except Exception:  # noqa: BLE001 - it may have ended on its own meanwhile
                    pass

    killer = asyncio.get_running_loop().create_task(kill_containers()) if container_kill_s else None
    try:
        start_stats: list[dict[str, Any]] = []
        warm_after = max(1, episodes // 10)  # start figures once every module is imported and pools are full
        async for record in farm.run(tasks, group_size=group_size, episodes=episodes):
            ids.append(record.episode_id)
            if len(ids) == warm_after:
                start_stats = _host_figures(await farm.host_stats())
            lost_after_retries += record.error_kind in (ErrorKind.INFRASTRUCTURE, ErrorKind.IMAGE_MISSING)
            if host_kill_every and len(ids) % host_kill_every == 0 and len(ids) < episodes:
                victim = farm.hosts[-1]  # host 0 is never killed: its figures show growth, if any
                ray.kill(victim, no_restart=False)
                kills["host_actors"] += 1
        stopper.set()
        await asyncio.sleep(0.5)
        end_stats = _host_figures(await farm.host_stats())
        counters = farm.counters
    finally:
        stopper.set()
        if killer is not None:
            killer.cancel()
        cleanup = await farm.shutdown()
    leaked = 0
    if cfg.backend == "docker":
        from envfarm.sandbox.docker_backend import LABEL_RUN, list_containers

        leaked = len(list_containers(**{LABEL_RUN: cfg.run}))
    restarted = {s["host"] for s in end_stats} - {s["host"] for s in start_stats if
                                                  any(e["pid"] == s["pid"] for e in end_stats)}
    return {
        "backend": cfg.backend, "episodes": episodes, "finished": len(set(ids)), "yielded": len(ids),
        "duplicates": len(ids) - len(set(ids)), "retried": counters.retried,
        "lost": episodes - len(set(ids)) + lost_after_retries + (len(ids) - len(set(ids))),
        "faults": kills, "errors": dict(counters.errors), "hosts_replaced": farm.hosts_replaced,
        "leaked_containers": leaked, "removed_at_shutdown": cleanup.get("containers_removed_at_shutdown", 0),
        "seconds": round(time.time() - started, 1), "hosts_start": start_stats, "hosts_end": end_stats,
        "hosts_restarted": sorted(restarted),
    }


async def soak(episodes: int, docker_episodes: int, host_kill_every: int, container_kill_s: float,
               container_kills: int, seed: int) -> dict[str, Any]:
    import ray

    rng = random.Random(seed)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        stamp = time.strftime("%H%M%S")
        sim_cfg = FarmConfig(envs=40, backend="sim", policy="sim", policy_kwargs={"think_s": 0.02, "turns": 3},
                             hosts_per_node=2, sim_profile=FAST, max_retries=5, run=f"soak-sim-{stamp}")
        phases = [await _phase(sim_cfg, load_builtin(), episodes, 4, rng, host_kill_every, None)]
        if docker_episodes:
            from envfarm.tasks.loading import BUILTIN_DIR, load_jsonl

            docker_cfg = FarmConfig(envs=4, backend="docker", policy="scripted", hosts_per_node=2, max_retries=5,
                                    warm_fraction=0.25, env_config={"max_turns": 20}, run=f"soak-docker-{stamp}")
            kill_every = max(2, docker_episodes // 2)  # one host-actor kill in the middle
            phases.append(await _phase(docker_cfg, load_jsonl(BUILTIN_DIR / "fixtures.jsonl"), docker_episodes, 2,
                                       rng, kill_every, container_kill_s, container_kills))
    finally:
        ray.shutdown()
    total = {k: sum(p[k] for p in phases) for k in ("episodes", "finished", "retried", "lost", "leaked_containers")}
    return {**total, "host_actor_kills": sum(p["faults"]["host_actors"] for p in phases),
            "container_kills": sum(p["faults"]["containers"] for p in phases), "phases": phases}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=500, help="episodes of the sim phase (default: 500)")
    ap.add_argument("--docker-episodes", type=int, default=None,
                    help="episodes of the Docker phase (default: episodes // 12, at least 4; 0 skips it)")
    ap.add_argument("--host-kill-every", type=int, default=None,
                    help="kill a host actor every N finished sim episodes (default: episodes // 5)")
    ap.add_argument("--container-kill-s", type=float, default=4.0, help="mean seconds between container kills")
    ap.add_argument("--container-kills", type=int, default=None,
                    help="containers killed in all (default: docker episodes // 2)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args(argv)
    docker_episodes = max(4, args.episodes // 12) if args.docker_episodes is None else args.docker_episodes
    result = asyncio.run(soak(args.episodes, docker_episodes, args.host_kill_every or max(10, args.episodes // 5),
                              args.container_kill_s,
                              docker_episodes // 2 if args.container_kills is None else args.container_kills,
                              args.seed))
    for p in result["phases"]:
        print(f"[{p['backend']}] {p['finished']}/{p['episodes']} finished, {p['retried']} retried, {p['lost']} lost, "
              f"faults {p['faults']}, {p['leaked_containers']} containers left, {p['seconds']} s", file=sys.stderr)
        for s, e in zip(p["hosts_start"], p["hosts_end"], strict=False):
            print(f"    {e['host']}: rss {s['rss_mb']} -> {e['rss_mb']} MB, open files {s['open_files']} -> "
                  f"{e['open_files']}{' (restarted)' if e['host'] in p['hosts_restarted'] else ''}", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    return 0 if result["lost"] == 0 and result["leaked_containers"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
