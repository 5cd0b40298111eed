"""Rebuild envfarm's builtin task suite from scratch: mutate real functions, validate in sandboxes.

    python scripts/generate_suite.py                           # every project, 36 tasks each (20 for more-itertools)
    python scripts/generate_suite.py --projects parse toolz --per-project 10 --workers 2
    python scripts/generate_suite.py --fresh                   # forget finished candidates
    python scripts/generate_suite.py --collect-only            # write the JSONL from the state file as it is
    python scripts/generate_suite.py --kinds multi_location reimplement contract_change --per-project 6

Kinds: `single` (one AST mutation, `<project>.jsonl`), `multi_location` (2-4 shipped single bugs
combined), `reimplement` (a function body removed), `contract_change` (a helper's parameters
reordered in its own module only); each new kind goes to `<project>.<kind>.jsonl`.

Interrupt it at any time: finished candidates are in the state file and a rerun with the same
seed skips them. The state (envfarm/suitegen/state/: one gzip record per finished candidate and
each project's baseline) is in the repository: commit it, and the next run, on any machine,
continues where this one stopped. Writes envfarm/tasks/builtin/<project>.jsonl and docs/TASKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from envfarm.sandbox.base import SandboxSpec
from envfarm.sandbox.docker_backend import DockerSandbox
from envfarm.sandbox.images import build_repo, load_projects
from envfarm.suitegen.baseline import load_or_compute
from envfarm.suitegen.combine import validated_groups
from envfarm.suitegen.dedupe import dedupe_files, suite_order
from envfarm.suitegen.proposals import KINDS, out_name, proposals_for
from envfarm.suitegen.rates import figures, runs_records, runs_wall_s
from envfarm.suitegen.restate_state import lacks_issue, reopen_for_snippets, restate_run
from envfarm.suitegen.suite import (
    ProjectRun,
    StateFile,
    accepted_tasks,
    drive,
    drop_leaks_by_image,
    read_state_records,
)
from envfarm.suitegen.summary import write_summary
from envfarm.tasks.loading import BUILTIN_DIR

ROOT = Path(__file__).resolve().parents[1]
STATE_DIR = ROOT / "envfarm" / "suitegen" / "state"
COMMAND = "python scripts/generate_suite.py --per-project 36 --seed 0 --workers 2"


async def factory(spec: SandboxSpec, task_id: str) -> DockerSandbox:
    return await DockerSandbox.create(spec, run="suite", task=task_id)


async def run(args: argparse.Namespace) -> int:
    projects = load_projects()
    names = args.projects or [n for n in sorted(projects) if n not in args.skip]
    state_dir = Path(args.state_dir)
    state = StateFile(state_path(state_dir, args.seed))
    sem = asyncio.Semaphore(args.workers)
    if reopened := reopen_for_snippets(state, set(names)):
        print(f"{reopened} validated task(s) left without a reproduction snippet by an older snippet builder are "
              f"restated", file=sys.stderr)
    runs: list[ProjectRun] = []
    for name in names:
        project = projects[name]
        build_repo(project)
        async with sem:
            baseline = await load_or_compute(project, factory, state_dir)
        passing = sum(s == "PASSED" for s in baseline.clean.values())
        caps = dict(c.split("=") for c in args.cap)
        groups = validated_groups(r for r in state.records.values() if r.get("project") == name)
        for kind in args.kinds:
            target = caps.get(name, dict(t.split("=") for t in args.target).get(kind, args.per_project))
            mutants = proposals_for(kind, project, baseline, args.seed, max(args.max_candidates, 400), groups)
            print(f"{name} ({kind}): {passing} passing tests in {baseline.seconds:.1f} s, {len(mutants)} candidates",
                  file=sys.stderr)
            runs.append(ProjectRun(project, mutants, baseline, int(target), args.max_candidates, kind=kind))
    started = time.monotonic()
    with Progress(TextColumn("{task.description:<32}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), transient=False) as progress:
        bars = {id(r): progress.add_task(f"{r.project.name} {r.kind}", total=r.target, info="") for r in runs}

        def on_done(r: ProjectRun) -> None:
            progress.update(bars[id(r)], completed=min(r.accepted, r.target), info=f"tried {r.tried}")

        await asyncio.gather(*(drive(r, state, factory, sem, on_done) for r in runs))
        # one scan per image: a task whose fix the image holds outside /testbed is replaced
        scanning = time.monotonic()
        dropped = await drop_leaks_by_image(runs, state, factory, sem, on_done)
        scan_s = time.monotonic() - scanning
        for name, n in dropped.items():
            if n:
                print(f"{name}: {n} task(s) dropped: their fix is in the image outside /testbed", file=sys.stderr)
    restating = time.monotonic()
    await asyncio.gather(*(restate_run(r, state, factory, sem) for r in runs))
    restate_s = time.monotonic() - restating
    out_dir = Path(args.out)
    total = 0
    for r in runs:
        tasks = accepted_tasks(r, state)
        if held := [t.instance_id for t in tasks if lacks_issue(t)]:  # restating ran out of rounds: a later collect
            print(f"{r.project.name} ({r.kind}): {len(held)} task(s) held back, not yet restated", file=sys.stderr)
            tasks = [t for t in tasks if not lacks_issue(t)]
        total += len(tasks)
        out = out_dir / out_name(r.project.name, r.kind)
        if tasks:
            out.write_text("".join(t.model_dump_json() + "\n" for t in tasks))
        else:
            out.unlink(missing_ok=True)
        top = ", ".join(f"{k} {n}" for k, n in sorted(r.reasons.items(), key=lambda kv: -kv[1])[:4])
        print(f"{r.project.name} ({r.kind}): {len(tasks)} tasks from {r.tried} candidates (rejected: {top})",
              file=sys.stderr)
    lost = dedupe_files(suite_order(sorted(out_dir.glob("*.jsonl"))))  # the suite holds no task twice
    if any(lost.values()):
        print(f"{sum(lost.values())} duplicate task(s) removed (same gold patch, or same files and failing "
              f"tests): " + ", ".join(f"{k} {v}" for k, v in lost.items() if v), file=sys.stderr)
    if args.summary:
        write_summary(ROOT / "docs" / "TASKS.md", COMMAND)
    print(f"{total} tasks written to {out_dir}", file=sys.stderr)
    print(json.dumps({**figures(runs_records(state.added, [state.run_id]), time.monotonic() - started, args.workers),
                      "leak_scan_s": round(scan_s, 1), "restate_s": round(restate_s, 1)}))
    return 0


def state_path(state_dir: Path, seed: int) -> Path:
    """The seed's state file: gzip JSONL, or the plain JSONL an older run left there."""
    plain = state_dir / f"seed{seed}.state.jsonl"
    return plain if plain.exists() else state_dir / f"seed{seed}.state.jsonl.gz"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kinds", nargs="*", default=["single"], choices=KINDS,
                        help="task kinds to generate (default: single)")
    parser.add_argument("--projects", nargs="*", help="projects from images/projects.toml (default: all)")
    parser.add_argument("--skip", nargs="*", default=[], help="projects to leave out")
    parser.add_argument("--per-project", type=int, default=36, help="validated tasks to keep per project")
    parser.add_argument("--target", nargs="*", default=[], metavar="KIND=N",
                        help="validated tasks to keep per project of one kind (default: --per-project)")
    parser.add_argument("--cap", nargs="*", default=["more-itertools=20"],
                        help="NAME=N: fewer tasks for projects with slow suites")
    parser.add_argument("--max-candidates", type=int, default=400, help="candidates to try per project at most")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="sandboxes validating at once")
    parser.add_argument("--state-dir", default=str(STATE_DIR),
                        help="where finished candidates and project baselines are kept (default: in the repository, "
                             "so a later run on any machine continues; commit it)")
    parser.add_argument("--fresh", action="store_true", help="forget finished candidates (and baselines) first")
    parser.add_argument("--out", default=str(BUILTIN_DIR))
    parser.add_argument("--no-summary", dest="summary", action="store_false", help="do not rewrite docs/TASKS.md")
    parser.add_argument("--collect-only", action="store_true",
                        help="validate nothing more: write the tasks already accepted in the state file")
    parser.add_argument("--rates-of", nargs="+", metavar="RUN_ID",
                        help="validate nothing: print the rates of earlier (perhaps interrupted) runs, together, "
                             "from the state file (RUN_ID: the `run` field of their records)")
    parser.add_argument("--by-project", action="store_true", help="with --rates-of: the rates of each project too")
    args = parser.parse_args(argv)
    if args.rates_of:
        history = read_state_records(state_path(Path(args.state_dir), args.seed))
        records = runs_records(history, args.rates_of)
        if not records:
            parser.error(f"no candidate in the state file belongs to run(s) {', '.join(args.rates_of)}: "
                         f"give the `run` field of their records")
        print(json.dumps(figures(records, runs_wall_s(records), args.workers, by_project=args.by_project)))
        return 0
    if args.collect_only:
        args.max_candidates = 0
    if args.fresh:
        for f in Path(args.state_dir).glob("*.json*"):
            f.unlink()
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
