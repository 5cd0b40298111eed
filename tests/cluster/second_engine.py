"""A second Docker engine on this machine, as a worker node of a real cluster has its own.

Its own data root, exec root, pid file, unix socket, cgroup parent and an empty config file, and
no bridge (`--bridge=none`, as the main engine on these machines: sandboxes run with `--network
none`), so nothing clashes with the main engine. `stop()` removes everything it made, even after
`kill()`: a SIGKILLed dockerd leaves its containers' shims and processes running and their
overlay mounts in place, so those are found (by this engine's paths and cgroup) and ended.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path


class SecondEngine:
    def __init__(self) -> None:
        # short paths: containerd's unix sockets live under the exec root (108-byte limit)
        self.run_dir = Path(tempfile.mkdtemp(prefix="efe-", dir="/tmp"))
        # the data root on the main engine's file system (overlay2 does not stack on every tmpfs)
        self.data_root = Path(tempfile.mkdtemp(prefix="envfarm-test-engine-", dir="/var/lib"))
        self.cgroup = f"envfarm-test-{self.run_dir.name}"
        self.socket = self.run_dir / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> SecondEngine:
        (self.run_dir / "daemon.json").write_text("{}")
        log = open(self.run_dir / "dockerd.log", "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            ["dockerd", "--config-file", str(self.run_dir / "daemon.json"), "--host", self.host,
             "--data-root", str(self.data_root), "--exec-root", str(self.run_dir / "exec"),
             "--pidfile", str(self.run_dir / "docker.pid"), "--iptables=false", "--ip-masq=false",
             "--bridge=none", f"--cgroup-parent=/{self.cgroup}", "--log-level=warn"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.docker("info", check=False).returncode == 0:
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.3)
        raise RuntimeError(f"the second dockerd did not come up: {(self.run_dir / 'dockerd.log').read_text()[-2000:]}")

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host}

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", *args], env=self.env, capture_output=True, text=True, check=check)

    def containers(self) -> list[str]:
        return self.docker("ps", "-aq").stdout.split()

    def images(self, *filters: str) -> list[str]:
        out = self.docker("images", "--format", "{{.Repository}}:{{.Tag}}", *filters).stdout
        return out.split()

    def kill(self) -> None:
        """SIGKILL the engine (its containerd dies with it; the containers' shims do not)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        """End the engine and everything it started, unmount what it mounted, remove its folders."""
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                ids = self.containers()
                if ids:
                    self.docker("rm", "-f", *ids, check=False)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._kill_leftovers()
        for mount in reversed(self._mounts()):
            subprocess.run(["umount", "-l", mount], capture_output=True)
        shutil.rmtree(self.data_root, ignore_errors=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def _kill_leftovers(self) -> None:
        pids = set()
        for controller in Path("/sys/fs/cgroup").glob(f"*/{self.cgroup}"):
            for procs in controller.rglob("cgroup.procs"):
                with contextlib.suppress(OSError, ValueError):
                    pids |= {int(p) for p in procs.read_text().split()}
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                with contextlib.suppress(OSError):
                    if str(self.run_dir).encode() in (proc / "cmdline").read_bytes():
                        pids.add(int(proc.name))
        pids.discard(os.getpid())
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.5 if pids else 0)
        for controller in Path("/sys/fs/cgroup").glob(f"*/{self.cgroup}"):
            for d in sorted(controller.rglob("*"), key=lambda p: -len(p.parts)):
                if d.is_dir():
                    with contextlib.suppress(OSError):
                        d.rmdir()
            with contextlib.suppress(OSError):
                controller.rmdir()

    def _mounts(self) -> list[str]:
        roots = (str(self.data_root), str(self.run_dir))
        with open("/proc/mounts") as fh:
            points = [line.split()[1] for line in fh]
        return [p for p in points if p.startswith(roots)]
