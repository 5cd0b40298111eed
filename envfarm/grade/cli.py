"""The command line of `python -m envfarm.grade` (see envfarm/grade/__init__.py for the whole story)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from swebench.harness.constants import LOG_RUN_METADATA

from envfarm.errors import SandboxError, UserInputError
from envfarm.grade.instance_logs import already_graded, run_dir, write_instance
from envfarm.grade.outcome import needs_rerun, outcome
from envfarm.grade.predictions import Prediction, gold_predictions, plan, read_predictions
from envfarm.grade.progress import Progress
from envfarm.grade.run_report import make_report, report_path, summary_lines, write_report
from envfarm.grade.worker import Graded, WorkerConfig
from envfarm.tasks.schema import Task

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def build_parser() -> argparse.ArgumentParser:
    import envfarm.grade

    ap = argparse.ArgumentParser(prog="python -m envfarm.grade", description=envfarm.grade.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", required=True,
                    help="the dataset: 'builtin', 'builtin:<project>', a JSONL/JSON/parquet rows file, a SWE-bench "
                         "task directory, or a Hugging Face dataset name")
    ap.add_argument("--split", default="test", help="split of a Hugging Face dataset (default: test)")
    ap.add_argument("--predictions", required=True,
                    help="SWE-bench predictions: .jsonl, .json (a list, or instance id -> prediction), or 'gold' "
                         "for each task's own patch")
    ap.add_argument("--instance-ids", nargs="+", metavar="ID",
                    help="grade only these instances (the report's total is theirs, as swebench's -i)")
    ap.add_argument("--workers", type=int, default=None,
                    help="gradings at once, per node with --address (default: this machine's CPU count)")
    ap.add_argument("--address", default=None,
                    help="Ray cluster to spread over ('auto': the one this machine belongs to; 'local': a Ray of "
                         "its own); absent: grade here with asyncio, no Ray")
    ap.add_argument("--run-id", default=None, help="names the run's logs and report (default: grade-<date>-<time>); "
                                                   "a run id used before grades only what it has not graded yet")
    ap.add_argument("--out", default=".", help="where logs/run_evaluation/<run id>/ and the report go (default: .)")
    ap.add_argument("--timeout", type=float, default=1800.0,
                    help="seconds the tests of one instance may run (default: 1800, as swebench)")
    ap.add_argument("--retries", type=int, default=2,
                    help="further attempts at an instance whose sandbox failed before its tests (default: 2)")
    ap.add_argument("--registry", default=None, help="registry to pull missing task images from")
    ap.add_argument("--cpus-per-sandbox", type=float, default=1.0, help="CPU limit of each sandbox (default: 1)")
    ap.add_argument("--memory-per-sandbox", default="2g", help="memory limit of each sandbox (default: 2g)")
    return ap


def check_args(args: argparse.Namespace) -> None:
    if args.workers is not None and args.workers < 1:
        raise UserInputError("--workers must be at least 1")
    if args.timeout <= 0:
        raise UserInputError("--timeout must be positive")
    if args.retries < 0:
        raise UserInputError("--retries must be 0 or more")
    if args.run_id is not None and not _RUN_ID.fullmatch(args.run_id):
        raise UserInputError(f"--run-id {args.run_id!r}: use letters, digits, '.', '_' and '-' (it names a folder)")


def _tasks(args: argparse.Namespace) -> list[Task]:
    from envfarm.tasks.loading import load

    first: dict[str, Task] = {}
    for task in load(args.tasks, split=args.split):
        first.setdefault(task.instance_id, task)
    tasks = list(first.values())
    if args.instance_ids:
        known = {t.instance_id for t in tasks}
        unknown = [i for i in args.instance_ids if i not in known]
        if unknown:
            raise UserInputError(f"--instance-ids: not among the tasks of {args.tasks!r}: {unknown[:5]}")
        tasks = [t for t in tasks if t.instance_id in set(args.instance_ids)]
    return tasks


def _write_run_metadata(out: Path, run_id: str, args: argparse.Namespace) -> None:
    """swebench's run.json: what the run graded against (its `swebench report` reads it)."""
    path = run_dir(out, run_id) / LOG_RUN_METADATA
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"dataset": args.tasks, "split": args.split, "task_repo": None,
                                "created_at": datetime.now(UTC).isoformat(timespec="seconds")},
                               indent=2) + "\n")


def _machine_state(run_id: str, tasks: list[Task]) -> tuple[list[str], list[str]]:
    """This run's containers still on this engine, and the task images it has (swebench's client keys)."""
    from envfarm.sandbox.docker_backend import LABEL_RUN, docker_client, list_containers

    try:
        containers = [c.name for c in list_containers(**{LABEL_RUN: run_id})]
        tags = {tag for image in docker_client().images.list() for tag in image.tags}
    except Exception:  # noqa: BLE001 - no engine here (a Ray driver may have none): nothing to report
        return [], []
    return containers, sorted({t.image for t in tasks} & tags)


async def run(args: argparse.Namespace) -> int:
    check_args(args)
    tasks = _tasks(args)
    preds: list[Prediction] = (gold_predictions(tasks) if args.predictions == "gold"
                               else read_predictions(args.predictions))
    run_id = args.run_id or time.strftime("grade-%Y%m%d-%H%M%S")
    out = Path(args.out)
    by_id = {t.instance_id: t for t in tasks}
    work = plan(preds, set(by_id), already_graded(out, run_id, preds))
    print(f"{len(preds)} prediction(s) for {len(tasks)} task(s): {len(work.to_grade)} to grade, {len(work.empty)} "
          f"with an empty patch (not graded), {len(work.already_done)} already graded in run {run_id!r}",
          file=sys.stderr)
    _write_run_metadata(out, run_id, args)
    config = WorkerConfig(run=run_id, workers=args.workers or os.cpu_count() or 1, timeout=args.timeout,
                          retries=args.retries, registry=args.registry, cpus=args.cpus_per_sandbox,
                          memory=args.memory_per_sandbox)
    progress = Progress(len(work.to_grade))
    no_verdict: list[str] = []

    def on_done(pred: Prediction, graded: Graded) -> None:
        write_instance(out, run_id, pred, graded)
        if needs_rerun(graded.result):
            no_verdict.append(pred.instance_id)
        progress.add(outcome(graded.result), needs_rerun(graded.result))

    items = [(by_id[p.instance_id], p) for p in work.to_grade]
    if items and args.address:
        from envfarm.grade.cluster import grade_on_cluster

        await grade_on_cluster(args.address, items, config, on_done, on_start=progress.restart)
    elif items:
        from envfarm.grade.local import grade_locally

        await grade_locally(items, config, on_done)
    containers, images = await asyncio.to_thread(_machine_state, run_id, tasks)
    report = make_report(preds, list(by_id), run_id, out, containers, images)
    path = write_report(report, report_path(out, run_id, preds))
    print("\n".join(summary_lines(report)))
    print(f"Report written to {path}")
    if no_verdict:
        print(f"{len(no_verdict)} instance(s) have no verdict (the sandbox or the image failed, see their "
              f"run_instance.log): {no_verdict[:5]}; run again with --run-id {run_id} to grade what has no "
              "report.json yet, these among them",
              file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 graded (whatever the verdicts), 1 some instances got no verdict (infrastructure),
    2 bad input (one line on stderr naming what to fix), 130 interrupted."""
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(run(args))
    except UserInputError as exc:
        print(f"envfarm: error: {exc}", file=sys.stderr)
        return 2
    except SandboxError as exc:  # no engine at all: nothing could be graded
        print(f"envfarm: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; the instances graded so far keep their logs: run again with the same --run-id",
              file=sys.stderr)
        return 130
