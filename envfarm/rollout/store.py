"""TrajectoryStore: episodes written as they finish, so an interrupted run keeps what finished.

Layout of `rollouts/<run>/` (see rollouts/README.md):

    manifest.json                      config, task source, policy, versions; written once, atomically
    episodes-<writer>-<nnnnn>.jsonl    one Trajectory record a line

Each writer (process) has its own shards, so many hosts can write one run without locks; each
line is appended, flushed and fsynced before `write` returns. A reader skips a torn last line
(a process killed in the middle of a write) and reports it.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from envfarm.rollout.trajectory import Trajectory

FORMAT_VERSION = 2  # 2: the grade is an object (per-test statuses as pairs), error kinds validated
KEY_PACKAGES = ("envfarm", "gymnasium", "swebench", "torch", "transformers", "trl", "ray", "docker", "datasets")


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in KEY_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _atomic_write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with tmp.open("w") as fh:
        json.dump(data, fh, indent=2, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class TrajectoryStore:
    """Appends trajectories to one run directory."""

    def __init__(self, run_dir: str | Path, manifest: dict[str, Any] | None = None, shard_size: int = 1000) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.shard_size = shard_size
        self.writer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.written = 0
        self._shard = 0
        self._in_shard = 0
        self._fh: Any = None
        self._lock = threading.Lock()
        manifest_path = self.run_dir / "manifest.json"
        if not manifest_path.exists():
            _atomic_write_json(manifest_path, {"format_version": FORMAT_VERSION, "run": self.run_dir.name,
                                               "created": time.time(), "versions": versions(), **(manifest or {})})

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads((self.run_dir / "manifest.json").read_text())

    def update_manifest(self, **fields: Any) -> None:
        _atomic_write_json(self.run_dir / "manifest.json", {**self.manifest, **fields})

    def _open_shard(self) -> None:
        if self._fh is not None:
            self._fh.close()
        path = self.run_dir / f"episodes-{self.writer}-{self._shard:05d}.jsonl"
        self._fh = path.open("a", encoding="utf-8")
        self._shard += 1
        self._in_shard = 0

    def write(self, trajectory: Trajectory) -> None:
        """Append one episode durably (flush + fsync) before returning."""
        line = json.dumps(trajectory.to_dict(), ensure_ascii=False) + "\n"
        with self._lock:
            if self._fh is None or self._in_shard >= self.shard_size:
                self._open_shard()
            self._fh.write(line)
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._in_shard += 1
            self.written += 1

    async def awrite(self, trajectory: Trajectory) -> None:
        """`write` off the event loop (fsync blocks for milliseconds)."""
        import asyncio

        await asyncio.to_thread(self.write, trajectory)

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None

    def __enter__(self) -> TrajectoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def data_files(run_dir: str | Path) -> list[str]:
    """The run's shards, for `datasets.load_dataset("json", data_files=...)`."""
    return sorted(str(p) for p in Path(run_dir).glob("episodes-*.jsonl"))


def iter_records(run_dir: str | Path, torn: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Raw records of every shard; a line that is not complete JSON is skipped (and named in `torn`)."""
    for path in data_files(run_dir):
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    if torn is not None:
                        torn.append(f"{path}:{lineno}")


def read_run(run_dir: str | Path, torn: list[str] | None = None) -> list[Trajectory]:
    """Every trajectory of a run, shard by shard in write order."""
    return [Trajectory.from_dict(r) for r in iter_records(run_dir, torn)]


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {}
