"""Validate mutants in parallel sandboxes and collect the accepted ones as tasks, resumably.

Every finished candidate, accepted or rejected (with the reason), is appended to a JSONL state
file as soon as it finishes, so an interrupted run resumes without redoing any of them. At most
`workers` sandboxes run at once across all projects (one asyncio semaphore); each project stops
launching candidates once it has enough accepted tasks.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from envfarm.sandbox.images import Project
from envfarm.suitegen import levels
from envfarm.suitegen.baseline import Baseline, project_sources, source_texts
from envfarm.suitegen.derive import Candidate, Rejected, derive_task
from envfarm.suitegen.generate import Mutant, mutants_of_file, order
from envfarm.suitegen.leaks import scan_image
from envfarm.suitegen.rates import TIMED_OUT, ran_out_of_time
from envfarm.suitegen.statement import describe
from envfarm.tasks.grading import SandboxFactory
from envfarm.tasks.schema import Task

# Compiling a mutant takes up to a quarter of a second on large files: off the event loop, but in
# one thread, because CPython 3.11's parser is not safe to run in several threads at once.
_CHECKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="envfarm-synth-check")


class Proposal(Protocol):
    """A bug to validate, of any kind (a Mutant, a combination, a removed body...)."""

    instance_id: str
    kind: str

    def check(self) -> bool: ...

    def candidate(self) -> Candidate: ...


class StateFile:
    """Append-only record of finished candidates: {instance_id, project, status, reason, task?}.

    A path ending in `.gz` is kept gzip-compressed, one gzip member appended per record (gzip
    readers join members), so the suite's state can live in the repository at a tenth of its size
    and an interruption costs at most the record being written.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.run_id = f"{os.getpid()}-{time.time():.0f}"  # marks the records this run adds (for rates)
        self.records: dict[str, dict[str, Any]] = {}
        self.validated: dict[str, dict[str, Any]] = {}  # each id's last validation that accepted it
        self.added: list[dict[str, Any]] = []  # this run's records, in order
        for rec in read_state_records(path):
            self._keep(rec)

    def _keep(self, record: dict[str, Any]) -> None:
        self.records[record["instance_id"]] = record
        if record["status"] == "accepted" and record.get("task") and not record.get("restated"):
            self.validated[record["instance_id"]] = record

    def add(self, record: dict[str, Any]) -> None:
        record = {**record, "run": self.run_id, "at": round(time.time(), 1)}  # `at`: a run's wall time, later
        self._keep(record)
        self.added.append(record)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(record) + "\n").encode()
        with self.path.open("ab") as fh:
            fh.write(gzip.compress(line, mtime=0) if self.path.suffix == ".gz" else line)


def read_state_records(path: Path) -> list[dict[str, Any]]:
    """The records of a state file (plain or gzip JSONL); a record cut by an interruption is
    skipped, so that candidate is redone."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, gzip.BadGzipFile):  # the last member cut short: keep the whole ones
            with gzip.open(path, "rb") as fh:
                chunks = []
                try:
                    while chunk := fh.read(1 << 20):
                        chunks.append(chunk)
                except (EOFError, gzip.BadGzipFile):
                    pass
            raw = b"".join(chunks)
    out = []
    for line in raw.decode().splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


@dataclass
class ProjectRun:
    """One project's candidates in seeded order and its progress."""

    project: Project
    mutants: Sequence[Proposal]
    baseline: Baseline
    target: int
    max_candidates: int
    kind: str = "single"
    accepted: int = 0
    tried: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.accepted >= self.target


def candidates_for(project: Project, baseline: Baseline, seed: int) -> list[Mutant]:
    """All valid mutants in functions the suite executes, in the seed's order."""
    mutants: list[Mutant] = []
    texts = source_texts(project)
    for path in project_sources(project.name):
        mutants += mutants_of_file(project.name, path, texts[path], baseline.covered_lines(path))
    return order(mutants, seed)


def _reason_key(reason: str) -> str:
    return reason.split(":")[0].split(" (")[0][:60]


async def validate_one(run: ProjectRun, mutant: Proposal, state: StateFile, factory: SandboxFactory,
                       sem: asyncio.Semaphore, on_done: Callable[[ProjectRun], None]) -> None:
    async with sem:
        if run.done:
            return
        started = time.perf_counter()
        cand = mutant.candidate()
        timeout = max(180.0, 20 * run.baseline.seconds)
        record: dict[str, Any] = {"instance_id": mutant.instance_id, "project": run.project.name,
                                  "kind": mutant.kind}
        try:
            task = await derive_task(cand, run.project, factory, clean_results=run.baseline.clean,
                                     describe=describe, test_timeout=timeout, check_empty=False)
            record.update(status="accepted", reason="", task=task.model_dump())
        except Rejected as exc:
            # a time limit hit on a busy machine says little about the candidate: it is retried on
            # resume, up to TIMEOUT_ATTEMPTS in all (a mutant that loops forever is not retried for ever)
            slow = ran_out_of_time(str(exc))
            attempts = timeouts(state.records.get(mutant.instance_id)) + 1
            record.update(status=TIMED_OUT if slow else "rejected", reason=str(exc)[:300],
                          **({"attempts": attempts} if slow else {}))
        except Exception as exc:  # noqa: BLE001 - an infrastructure fault is recorded, not fatal
            record.update(status="error", reason=f"{type(exc).__name__}: {str(exc)[:300]}")
        record["seconds"] = round(time.perf_counter() - started, 2)
    if record["status"] != "error":
        state.add(record)  # errors are not recorded: a resumed run retries them
    count(run, record)
    on_done(run)


TIMEOUT_ATTEMPTS = 2
SCANS_AT_ONCE = 2  # image scans walk whole file systems, one after another they held a collect for minutes


def timeouts(record: dict[str, Any] | None) -> int:
    """How many runs the candidate ran past its time limit in (0: never, or not tried)."""
    return int(record.get("attempts", 1)) if record and record["status"] == TIMED_OUT else 0


def count(run: ProjectRun, record: dict[str, Any]) -> None:
    run.tried += 1
    if record["status"] == "accepted":
        run.accepted += 1
    else:
        key = _reason_key(record["reason"])
        run.reasons[key] = run.reasons.get(key, 0) + 1


async def drive(run: ProjectRun, state: StateFile, factory: SandboxFactory, sem: asyncio.Semaphore,
                on_done: Callable[[ProjectRun], None]) -> None:
    """Launch the project's candidates in order until it has `target` accepted tasks."""
    pending: set[asyncio.Task] = set()
    for mutant in run.mutants[:run.max_candidates]:
        if run.done:
            break
        rec = state.records.get(mutant.instance_id)
        if rec is not None and not 0 < timeouts(rec) < TIMEOUT_ATTEMPTS:
            count(run, rec)
            on_done(run)
            continue
        if not await asyncio.get_running_loop().run_in_executor(_CHECKER, mutant.check):
            continue  # does not compile or changes nothing: not a candidate, costs no sandbox
        while pending and run.accepted + len(pending) >= run.target:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if run.done:
            break
        pending.add(asyncio.create_task(validate_one(run, mutant, state, factory, sem, on_done)))
    if pending:
        await asyncio.gather(*pending)


def accepted_tasks(run: ProjectRun, state: StateFile) -> list[Task]:
    """The first `target` accepted tasks in candidate order (the suite's deterministic order)."""
    out = []
    for mutant in run.mutants:
        rec = state.records.get(mutant.instance_id)
        if rec and rec["status"] == "accepted":
            row = rec["task"]
            terse = (row.get("statements") or {}).get("terse")
            if terse and terse != levels.retrimmed(terse):
                row = {**row, "statements": {**row["statements"], "terse": levels.retrimmed(terse)}}
            out.append(Task.parse(row, where=str(state.path)))
        if len(out) >= run.target:
            break
    return out


LEAK_REASON = "the fix is in the image outside /testbed"


async def drop_leaks_by_image(runs: list[ProjectRun], state: StateFile, factory: SandboxFactory,
                              sem: asyncio.Semaphore, on_done: Callable[[ProjectRun], None]) -> dict[str, int]:
    """`drop_leaks` for every run, with one scan per image for all its runs (kinds) at once: a
    scan walks the whole file system, whatever the number of tasks. Returns drops per run."""
    by_image: dict[str, list[ProjectRun]] = {}
    for r in runs:
        by_image.setdefault(r.project.image, []).append(r)
    dropped: dict[str, int] = {}
    scans = asyncio.Semaphore(SCANS_AT_ONCE)

    async def one(image: str, group: list[ProjectRun]) -> None:
        tasks = [t for r in group for t in accepted_tasks(r, state)]
        safe: set[str] = set()
        if tasks:
            async with scans:
                scan = await asyncio.to_thread(scan_image, image, tasks)
            safe = {t.instance_id for t in tasks} - scan.unsafe
        for r in group:
            dropped[f"{r.project.name} {r.kind}"] = await drop_leaks(r, state, factory, sem, on_done, checked=safe,
                                                                      scans=scans)

    await asyncio.gather(*(one(image, group) for image, group in by_image.items()))
    return {key: dropped[key] for key in sorted(dropped)}


async def drop_leaks(run: ProjectRun, state: StateFile, factory: SandboxFactory, sem: asyncio.Semaphore,
                     on_done: Callable[[ProjectRun], None], rounds: int = 5, checked: set[str] | None = None,
                     scans: asyncio.Semaphore | None = None) -> int:
    """Scan the project's image once for the accepted tasks' fixes; reject those found, refill.

    A rejected task is recorded in the state file like any other rejection, and the project's
    candidates are driven again to replace it; the new tasks are scanned in turn. Returns how many
    tasks were dropped. `checked`: tasks an earlier scan of the image found safe (not scanned again);
    `scans`: the bound on image scans at once that the caller keeps.
    """
    checked = set(checked or ())
    dropped = 0
    for _ in range(rounds):
        todo = [t for t in accepted_tasks(run, state) if t.instance_id not in checked]
        if not todo:
            break
        async with scans or asyncio.Semaphore():
            scan = await asyncio.to_thread(scan_image, run.project.image, todo)
        checked |= {t.instance_id for t in todo} - scan.unsafe
        if not scan.unsafe:
            break
        for iid in sorted(scan.unsafe):
            where = ", ".join(scan.leaks.get(iid, [])[:3]) or f"unchecked: {scan.errors.get(iid, '')}"
            rec = {k: v for k, v in state.records[iid].items() if k != "task"}
            state.add({**rec, "status": "rejected", "reason": f"{LEAK_REASON}: {where}"[:300]})
            dropped += 1
        run.accepted, run.tried, run.reasons = 0, 0, {}
        await drive(run, state, factory, sem, on_done)
    return dropped
