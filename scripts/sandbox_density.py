"""How many live sandboxes one machine keeps healthy, and what an idle one costs in memory.

Used by `python scripts/bench_sandbox.py --density`. Sandboxes are the farm's agent sandboxes for
a builtin task (its spec, limits and owner's lease), each with its shell session open and its
repository prepared as an episode's set-up leaves it. They are added in batches; after each batch
every live sandbox is asked `echo ok` (eight at a time, the liveness check a pool does, here
through the agent's session): the machine is healthy while every answer comes within
`answer_limit_s`. Adding stops at the first unhealthy round, when the next batch would leave less
than `reserve_gib` of memory available, or at `cap`.

Memory per idle sandbox is split by where it lives: the container's own cgroup (PID 1, the
shell, the repository's page cache), its runc shim, the engine (dockerd and containerd growth),
this process (the session's stream and bookkeeping), the kernel's slab (namespaces, mounts,
cgroups), and the machine in all (MemAvailable, which other work on the machine moves too: run it
on a quiet machine).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from envfarm.sandbox.docker_backend import DockerSandbox
from envfarm.tasks.loading import BUILTIN_DIR, load_jsonl
from envfarm.tasks.sandbox_specs import agent_spec
from envfarm.tasks.setup import prepare_repository

MIB = 1024 * 1024


def meminfo(field: str) -> int:
    """One /proc/meminfo field, bytes (MemAvailable: what the kernel could give new work now)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/meminfo")


def mem_available() -> int:
    return meminfo("MemAvailable")


def _proc_rss(pid: int) -> int:
    """Proportional set size of `pid` (shared pages split among their users), bytes; 0 when gone."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _pids_named(*names: str) -> dict[int, str]:
    """Processes whose command name is one of `names`: {pid: command line}."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() in names:
                found[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
    return found


def _cgroup_bytes(container_id: str) -> int:
    """The container's memory cgroup usage (cgroup v1 or v2), bytes; 0 when not found."""
    for path in (f"/sys/fs/cgroup/memory/docker/{container_id}/memory.usage_in_bytes",
                 f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/memory.current",
                 f"/sys/fs/cgroup/docker/{container_id}/memory.current"):
        try:
            return int(Path(path).read_text())
        except OSError:
            continue
    return 0


def memory_split(sandboxes: list[DockerSandbox], before: dict[str, int]) -> dict[str, float]:
    """Mean MiB per sandbox by place, against the `before` snapshot taken with none alive."""
    n = max(1, len(sandboxes))
    ids = {sb.container.id for sb in sandboxes}
    shims = sum(_proc_rss(pid) for pid, cmd in _pids_named("containerd-shim", "containerd-shim-runc-v2").items()
                if any(cid in cmd for cid in ids))
    now = snapshot()
    return {
        "container_cgroup_mb": sum(_cgroup_bytes(cid) for cid in ids) / n / MIB,
        "shim_mb": shims / n / MIB,
        "engine_mb": (now["engine"] - before["engine"]) / n / MIB,
        "owner_process_mb": (now["self"] - before["self"]) / n / MIB,
        # namespaces, overlay mounts, cgroups, sockets: the kernel's own objects
        "kernel_slab_mb": (now["slab"] - before["slab"]) / n / MIB,
        "machine_mb": (before["available"] - now["available"]) / n / MIB,
    }


def snapshot() -> dict[str, int]:
    """The engine's and this process's memory and the machine's available memory, bytes."""
    engine = sum(_proc_rss(pid) for pid in _pids_named("dockerd", "containerd"))
    return {"engine": engine, "self": _proc_rss(os.getpid()), "available": mem_available(),
            "slab": meminfo("Slab")}


async def _health(sandboxes: list[DockerSandbox], answer_limit_s: float) -> tuple[float, int]:
    """Ask every sandbox `echo ok`, eight at a time: (slowest answer s, unhealthy count)."""
    gate = asyncio.Semaphore(8)

    async def ask(sb: DockerSandbox) -> float:
        async with gate:
            t = time.perf_counter()
            try:
                res = await sb.exec("echo ok", timeout=answer_limit_s * 5)
                ok = res.exit_code == 0 and res.output.strip() == "ok"
            except Exception:  # noqa: BLE001 - a sandbox that cannot answer is unhealthy
                ok = False
            took = time.perf_counter() - t
            return took if ok else float("inf")

    took = await asyncio.gather(*(ask(sb) for sb in sandboxes))
    return max(took, default=0.0), sum(1 for t in took if t > answer_limit_s)


async def measure(cap: int = 600, batch: int = 20, reserve_gib: float = 3.0,
                  answer_limit_s: float = 1.0, log=print) -> dict[str, Any]:
    """Add sandboxes until the machine stops being healthy (see the module's docstring)."""
    task = load_jsonl(BUILTIN_DIR / "fixtures.jsonl")[0]
    spec = agent_spec(task)
    live: list[DockerSandbox] = []
    before = snapshot()
    reserve = int(reserve_gib * 1024 * MIB)
    per_sandbox = 64 * MIB  # a first guess, replaced by what the machine shows after a batch
    rounds: list[dict[str, Any]] = []
    stop = f"cap of {cap} reached"
    create_gate = asyncio.Semaphore(4)

    async def add() -> DockerSandbox:
        async with create_gate:
            sb = await DockerSandbox.create(spec, run="bench-density", task=task.instance_id)
            try:
                await prepare_repository(sb, task)
            except BaseException:
                await sb.close()
                raise
            return sb

    try:
        while len(live) < cap:
            n = min(batch, cap - len(live))
            if mem_available() - n * per_sandbox < reserve:
                stop = f"the next {n} would leave less than {reserve_gib} GiB available"
                break
            made = await asyncio.gather(*(add() for _ in range(n)), return_exceptions=True)
            live += [sb for sb in made if isinstance(sb, DockerSandbox)]
            failed = [m for m in made if not isinstance(m, DockerSandbox)]
            slowest, unhealthy = await _health(live, answer_limit_s)
            per_sandbox = max(per_sandbox // 2, (before["available"] - mem_available()) // max(1, len(live)))
            answered = None if slowest == float("inf") else round(slowest, 3)  # None: one did not answer
            rounds.append({"live": len(live), "slowest_answer_s": answered, "unhealthy": unhealthy,
                           "create_failures": len(failed), "available_gib": round(mem_available() / 1024**3, 2)})
            log(f"[density] {len(live)} live, slowest answer {slowest:.3f} s (inf: one did not answer), "
                f"{unhealthy} unhealthy, "
                f"{mem_available() / 1024**3:.1f} GiB available")
            if failed or unhealthy:
                stop = (f"{len(failed)} creates failed ({failed[0]!r:.200})" if failed
                        else f"{unhealthy} sandboxes answered slower than {answer_limit_s} s")
                break
        healthy = [r["live"] for r in rounds if not r["unhealthy"] and not r["create_failures"]]
        await asyncio.sleep(2)  # let page cache and the engine settle before the split is read
        split = memory_split(live, before)
        return {
            "max_healthy_sandboxes": max(healthy, default=0),
            "idle_sandbox_memory_mb": split["machine_mb"],
            **{f"idle_sandbox_{k}": v for k, v in split.items() if k != "machine_mb"},
            "density_slowest_answer_s": rounds[-1]["slowest_answer_s"] if rounds else None,
            "density_available_gib_at_stop": round(mem_available() / 1024**3, 2),
            "density_stop_reason": stop,
            "density_rounds": rounds,
        }
    finally:
        await asyncio.gather(*(sb.close() for sb in live), return_exceptions=True)
