"""Debian's docker-registry on a free local port, holding images pushed from the main engine.

Loopback registries need no TLS: Docker engines pull from 127.0.0.0/8 without being told.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from cli_cluster import free_port


class LocalRegistry:
    def __init__(self, *images: str) -> None:
        exe = shutil.which("docker-registry")
        if exe is None:
            raise RuntimeError("Debian's docker-registry is not installed: `apt-get install docker-registry` "
                               "(scripts/bootstrap.sh installs it with the test extras)")
        self.dir = Path(tempfile.mkdtemp(prefix="envfarm-registry-"))
        self.address = f"127.0.0.1:{free_port()}"
        (self.dir / "config.yml").write_text(
            f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {self.dir / 'data'}\n"
            f"http:\n  addr: {self.address}\n")
        self._log = open(self.dir / "registry.log", "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen([exe, "serve", str(self.dir / "config.yml")], stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait()
            for image in images:
                self.push(image)
        except BaseException:
            self.close()
            raise

    def _wait(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"http://{self.address}/v2/", timeout=2).close()
                return
            except OSError as exc:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.dir / "registry.log").read_text()
                    raise RuntimeError(f"the registry did not answer: {log}") from exc
                time.sleep(0.2)

    def push(self, image: str) -> None:
        """Push `image` from the main engine, leaving no registry tag behind on it."""
        ref = f"{self.address}/{image}"
        subprocess.run(["docker", "tag", image, ref], check=True)
        try:
            push = subprocess.run(["docker", "push", ref], capture_output=True, text=True)
            if push.returncode != 0:
                raise RuntimeError(f"docker push {ref} failed: {push.stderr[-1000:]}")
        finally:
            subprocess.run(["docker", "rmi", ref], capture_output=True)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
