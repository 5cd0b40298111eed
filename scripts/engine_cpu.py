"""CPU spent on a set of sandboxes, counted where it is spent rather than machine-wide.

Why: on a shared machine the busy time in /proc/stat is mostly other people's work. This sums
the CPU of this process, of this node's Docker engine (dockerd and containerd, with the children
they waited for: runc, docker-untar), and of the given containers (their cgroup's CPU and their
shim, with the runc calls it waited for). Kernel work is counted in the process that asked for it.
Needs root (the engine's processes) and cgroup v1 or v2 accounting; what cannot be read counts 0.
"""

from __future__ import annotations

import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    """utime + stime + cutime + cstime of one process, in seconds (0 if gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(v) for v in fields[11:15]) / TICK


def _pid(path: str) -> int | None:
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


def _shims() -> dict[str, int]:
    """container id -> pid of its containerd shim."""
    out: dict[str, int] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith((b"containerd-shim", b"containerd-shim-runc-v2")) and b"-id" in argv:
            out[argv[argv.index(b"-id") + 1].decode()] = int(d.name)
    return out


def _cgroup_cpu(container_id: str) -> float:
    for path in (f"/sys/fs/cgroup/cpuacct/docker/{container_id}/cpuacct.usage",
                 f"/sys/fs/cgroup/cpu,cpuacct/docker/{container_id}/cpuacct.usage"):
        try:
            return int(Path(path).read_text()) / 1e9
        except (OSError, ValueError):
            continue
    try:
        stat = Path(f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cpu.stat").read_text()
        return int(stat.split()[1]) / 1e6  # usage_usec
    except (OSError, ValueError, IndexError):
        return 0.0


def engine_cpu_s(container_ids: list[str]) -> float:
    """CPU seconds so far of this process, the engine, and these containers (full ids)."""
    times = os.times()
    total = times.user + times.system + times.children_user + times.children_system
    for pid in {_pid("/var/run/docker.pid"), _pid("/var/run/docker/containerd/containerd.pid")} - {None}:
        total += _proc_cpu(pid)  # type: ignore[arg-type]
    shims = _shims()
    for cid in container_ids:
        total += _cgroup_cpu(cid) + (_proc_cpu(shims[cid]) if cid in shims else 0.0)
    return total
