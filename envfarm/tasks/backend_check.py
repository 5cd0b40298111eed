"""Re-grade tasks' gold and empty patches on a backend, keeping only tasks whose verdicts hold there.

Why: a task's verdicts were established in its image (Debian's Python and pytest). The local
backend runs the same tests under the host's interpreter (3.12 where the image has 3.11, another
pytest), where a test may pass or fail for reasons of its own; training or evaluating on such a
task rewards the wrong thing. Before a backend other than the image's own is used, every task is
graded with its gold patch (must be resolved) and with no patch (must not be), and the tasks that
disagree are dropped, with the reason.

    python -m envfarm.tasks.backend_check builtin:inflection --backend local --allow-unisolated \\
        --out kept.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from envfarm.sandbox.backends import LocalBackendConfig, backend_config, backend_names, make_backend
from envfarm.sandbox.base import SandboxBackend
from envfarm.tasks.grading import grader_for
from envfarm.tasks.schema import Task


@dataclass
class TaskCheck:
    """One task's verdicts on the backend; `kept` when gold resolves and empty does not."""

    instance_id: str
    gold_resolved: bool
    empty_resolved: bool
    reason: str = ""
    seconds: float = 0.0

    @property
    def kept(self) -> bool:
        return not self.reason


async def check_task(task: Task, backend: SandboxBackend, run: str = "backend-check") -> TaskCheck:
    grade = grader_for(backend)
    factory = backend.factory(run=run)
    started = time.perf_counter()
    gold, empty = await asyncio.gather(grade(task, task.patch, factory), grade(task, "", factory))
    reasons = []
    if not gold.resolved:
        reasons.append(f"gold patch not resolved ({gold.status}{': ' + gold.error if gold.error else ''})")
    if empty.resolved:
        reasons.append("empty patch resolved")
    elif empty.error_kind is not None and empty.error_kind.value not in ("tests_crashed",):
        reasons.append(f"empty patch could not be graded ({empty.error})")
    return TaskCheck(task.instance_id, gold.resolved, empty.resolved, "; ".join(reasons),
                     time.perf_counter() - started)


async def check_tasks(tasks: list[Task], backend: SandboxBackend, concurrency: int = 4) -> list[TaskCheck]:
    """Every task's check, `concurrency` tasks at a time, in the tasks' order."""
    sem = asyncio.Semaphore(concurrency)

    async def one(task: Task) -> TaskCheck:
        async with sem:
            return await check_task(task, backend)

    return list(await asyncio.gather(*(one(t) for t in tasks)))


def keep_passing(tasks: list[Task], backend: SandboxBackend,
                 concurrency: int = 4) -> tuple[list[Task], list[TaskCheck]]:
    """(the tasks whose verdicts hold on `backend`, every check): drop the others before a run."""
    checks = asyncio.run(check_tasks(tasks, backend, concurrency))
    ok = {c.instance_id for c in checks if c.kept}
    return [t for t in tasks if t.instance_id in ok], checks


def main(argv: list[str] | None = None) -> int:
    from envfarm.tasks.loading import load

    parser = argparse.ArgumentParser(prog="python -m envfarm.tasks.backend_check", description=__doc__.split("\n")[0])
    parser.add_argument("tasks", help="a task spec for envfarm.tasks.load (builtin, builtin:inflection, a file)")
    parser.add_argument("--backend", choices=backend_names(), default="local")
    parser.add_argument("--allow-unisolated", action="store_true",
                        help="acknowledge that the local backend isolates nothing (trusted policies and checks only)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--out", type=Path, help="write the kept tasks' rows here (JSON lines)")
    args = parser.parse_args(argv)
    config = LocalBackendConfig(allow_unisolated=args.allow_unisolated) if args.backend == "local" \
        else backend_config(args.backend)
    try:
        backend = make_backend(config)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tasks = load(args.tasks)
    kept, checks = keep_passing(tasks, backend, args.concurrency)
    for check in checks:
        print(f"{'keep' if check.kept else 'DROP'} {check.instance_id} ({check.seconds:.1f} s)"
              + (f": {check.reason}" if check.reason else ""))
    print(f"{len(kept)}/{len(tasks)} task(s) keep their verdicts on the {args.backend} backend")
    if args.out:
        args.out.write_text("".join(json.dumps(t.model_dump()) + "\n" for t in kept))
    return 0 if kept or not tasks else 1


if __name__ == "__main__":
    raise SystemExit(main())
