"""A Ray cluster started with the `ray start` CLI, as a user stands one up, kept to itself.

Token authentication as Ray 2.60 sets it up for a multi-node cluster: `RAY_AUTH_MODE=token` and
the token for every process that joins (here a file of its own, `RAY_AUTH_TOKEN_PATH`, so that
`~/.ray/auth_token` and every other Ray instance on this machine stay untouched). Each node gets
its own temp dir and free ports; `stop()` ends only the processes this cluster started (by their
process groups and by its temp dir on their command lines), never `ray stop`, which would end
every Ray instance on the machine.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def node_ip() -> str:
    """The address Ray gives this machine's nodes (what `ray start --head` prints to join with)."""
    from ray.util import get_node_ip_address

    return get_node_ip_address()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_range(size: int = 40) -> tuple[int, int]:
    """`size` consecutive free ports (Ray's worker ports)."""
    for _ in range(200):
        base = 20000 + secrets.randbelow(30000)
        try:
            socks = []
            for port in range(base, base + size):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base, base + size - 1
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free range of ports for Ray's workers")


class CliCluster:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="efr-", dir="/tmp"))  # short: Ray's socket paths live under it
        self.token = self.dir / "auth_token"
        self.token.write_text(secrets.token_hex(32))
        self.token.chmod(0o600)
        self.port = free_port()
        self.ip = node_ip()
        self.address = f"{self.ip}:{self.port}"
        self.nodes: dict[str, subprocess.Popen] = {}

    @property
    def env(self) -> dict[str, str]:
        """What every process of this cluster (nodes, drivers) runs with."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        return {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token),
                # a lost node is noticed in about 15 s rather than Ray's 30 to 60 (tighter checks
                # mark a live node of a loaded machine dead, and its raylet then exits)
                "RAY_health_check_period_ms": "2000", "RAY_health_check_failure_threshold": "5",
                "RAY_health_check_timeout_ms": "5000"}

    def _start(self, name: str, args: list[str], env: dict[str, str] | None = None, timeout: float = 240) -> None:
        node_dir = self.dir / name
        node_dir.mkdir()
        lo, hi = free_port_range()
        cmd = [RAY, "start", "--block", "--disable-usage-stats", "--node-ip-address", self.ip,
               "--temp-dir", str(node_dir), "--num-cpus", "2", "--object-store-memory", str(400 << 20),
               "--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
               "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
               "--metrics-export-port", str(free_port()), "--runtime-env-agent-port", str(free_port()),
               "--min-worker-port", str(lo), "--max-worker-port", str(hi), *args]
        log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.nodes[name] = subprocess.Popen(cmd, env={**self.env, **(env or {})}, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.nodes[name].poll() is not None:
                raise RuntimeError(f"`ray start` of {name} exited: {self.log(name)[-3000:]}")
            if self.raylet_pid(name):
                return
            time.sleep(0.5)
        raise RuntimeError(f"{name} did not start within {timeout:.0f} s: {self.log(name)[-3000:]}\n"
                           f"{self.session_logs(name)}")

    def session_logs(self, name: str, tail: int = 1500) -> str:
        """The last lines of a node's raylet and GCS logs: why it did not come up."""
        parts = []
        for path in sorted((self.dir / name).glob("session_latest/logs/*")):
            if path.name.startswith(("raylet", "gcs_server")) and path.suffix in (".out", ".err"):
                text = path.read_text(errors="replace")
                fatal = [line for line in text.splitlines() if re.match(r"\[[^\]]* [FCE] ", line)][-5:]
                parts.append(f"--- {name}/{path.name}\n" + "\n".join(fatal) + f"\n...\n{text[-tail:]}")
        return "\n".join(parts)

    def start_head(self) -> None:
        self._start("head", ["--head", "--port", str(self.port), "--include-dashboard", "false",
                             "--dashboard-port", str(free_port()), "--ray-client-server-port", str(free_port())])

    def start_worker(self, name: str = "worker", env: dict[str, str] | None = None) -> None:
        self._start(name, ["--address", self.address], env)

    def log(self, name: str) -> str:
        return (self.dir / f"{name}.log").read_text(errors="replace")

    def alive_nodes(self) -> int:
        code = (f"import ray; ray.init(address='{self.address}', logging_level='ERROR', log_to_driver=False); "
                "print('ALIVE', sum(n['Alive'] for n in ray.nodes()))")
        out = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True, timeout=120)
        found = re.findall(r"^ALIVE (\d+)$", out.stdout, re.M)
        return int(found[-1]) if out.returncode == 0 and found else -1

    def wait_for_nodes(self, n: int, timeout: float = 180) -> None:
        """Until `n` nodes are alive; raises with the nodes' logs when they are not in time."""
        deadline = time.monotonic() + timeout
        while self.alive_nodes() != n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{n} nodes were not alive within {timeout:.0f} s:\n"
                                   + "\n".join(self.session_logs(name) for name in self.nodes))
            time.sleep(1)

    def _pids(self, needle: str) -> list[int]:
        pids = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit() and int(proc.name) != os.getpid():
                with contextlib.suppress(OSError):
                    if needle.encode() in (proc / "cmdline").read_bytes():
                        pids.append(int(proc.name))
        return pids

    def raylet_pid(self, name: str) -> int | None:
        node_dir = str(self.dir / name)
        for pid in self._pids(node_dir):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "raylet":
                    return pid
        return None

    def kill_node(self, name: str) -> None:
        """SIGKILL a node's raylet (its workers and actors die with it), then its `ray start`."""
        pid = self.raylet_pid(name)
        if pid:
            os.kill(pid, signal.SIGKILL)
        proc = self.nodes.get(name)
        if proc and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    def stop(self) -> None:
        """End every process this cluster started, and remove its folder."""
        for proc in self.nodes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                proc.wait(timeout=10)
        for _ in range(3):  # processes Ray started in sessions of their own carry the temp dir
            pids = self._pids(str(self.dir))
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if not pids:
                break
            time.sleep(0.5)
        shutil.rmtree(self.dir, ignore_errors=True)
