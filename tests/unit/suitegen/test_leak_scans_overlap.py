"""A collect scans its images two at a time, each image once for all its kinds, and hands every
run the tasks its image's scan found safe."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

from envfarm.suitegen import suite
from envfarm.suitegen.leaks import ImageScan


@dataclass
class _Project:
    name: str
    image: str


@dataclass
class _Run:
    project: _Project
    kind: str
    tasks: list = field(default_factory=list)


@dataclass
class _Task:
    instance_id: str


def test_images_are_scanned_two_at_a_time_once_each(monkeypatch):
    runs = [_Run(_Project(f"p{i}", f"img{i}"), kind, [_Task(f"p{i}-{kind}")])
            for i in range(5) for kind in ("single", "reimplement")]
    lock = threading.Lock()
    running, most, scanned = [0], [0], []

    def scan(image, tasks):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            scanned.append(image)
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        unsafe = {t.instance_id for t in tasks if t.instance_id == "p3-single"}
        return ImageScan(image, {i: ["/usr/lib/copy.py"] for i in unsafe}, {}, 10, 0.05)

    safe_by_run: dict[str, set[str]] = {}

    async def drop(run, state, factory, sem, on_done, checked=None, scans=None):
        safe_by_run[f"{run.project.name} {run.kind}"] = set(checked or ())
        return 0

    monkeypatch.setattr(suite, "scan_image", scan)
    monkeypatch.setattr(suite, "accepted_tasks", lambda run, state: run.tasks)
    monkeypatch.setattr(suite, "drop_leaks", drop)
    dropped = asyncio.run(suite.drop_leaks_by_image(runs, None, None, asyncio.Semaphore(3), lambda r: None))
    assert sorted(scanned) == [f"img{i}" for i in range(5)]  # one scan per image, for both kinds
    assert most[0] == suite.SCANS_AT_ONCE == 2
    assert set(dropped) == {f"p{i} {k}" for i in range(5) for k in ("single", "reimplement")}
    assert safe_by_run["p3 single"] == {"p3-reimplement"}  # the leaking task is left for drop_leaks to reject
    assert safe_by_run["p0 reimplement"] == {"p0-single", "p0-reimplement"}
