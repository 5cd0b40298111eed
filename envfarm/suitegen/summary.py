"""docs/TASKS.md: what the builtin suite holds, computed from the shipped JSONL files."""

from __future__ import annotations

import statistics
import tomllib
from collections import Counter
from pathlib import Path

from envfarm.sandbox.images import images_dir, load_projects
from envfarm.tasks.loading import BUILTIN_DIR, load_jsonl
from envfarm.tasks.schema import Task


def _kind(task: Task) -> str:
    meta = getattr(task, "envfarm_meta", None) or {}
    return meta.get("kind", "hand-written")


def render(tasks: list[Task], command: str) -> str:
    projects = load_projects()
    by_project = Counter(t.repo for t in tasks)
    by_kind = Counter(_kind(t) for t in tasks)
    f2p = [len(t.FAIL_TO_PASS) for t in tasks]
    lines = [
        "# The builtin task suite",
        "",
        f"{len(tasks)} validated tasks across {len(by_project)} real open-source projects, shipped as SWE-bench rows",
        "in `envfarm/tasks/builtin/<project>.jsonl` (`fixtures.jsonl` holds the hand-written tasks). Each task is",
        "a bug injected into a real function by an AST mutation (`envfarm/suitegen/`), kept only if in its",
        "repository image some tests fail with the bug (FAIL_TO_PASS), others still pass (PASS_TO_PASS), two runs",
        "agree, the gold patch resolves it and the empty patch does not. Problem statements quote a real failing",
        "test run (the test's call and its assertion or exception), never the diff or the changed line.",
        "No task's fix exists anywhere in its image outside /testbed, as source, byte code or in an archive",
        "(`python -m envfarm.suitegen.leaks`, one scan per image; the generator drops any task it finds: for",
        "example a fix identical to the standard library's own code).",
        "",
        "Load with `envfarm.tasks.load(\"builtin\")` or `load(\"builtin:<project>\")`; build the images first with",
        "`python -m envfarm.sandbox.images build` (or `envfarm.tasks.ensure_task_images(tasks)`).",
        "",
        f"Rebuild from scratch: `{command}`",
        "",
        "## Tasks per project",
        "",
        "Core projects' images are built up front (bootstrap, CI); the others' the first time a task",
        "needs them. Test seconds: the suite's CPU time on one core (`scripts/screen_project.py`).",
        "",
        "| project | version | licence | domain | image | test s | tasks |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = tomllib.loads((images_dir() / "projects.toml").read_text())
    for name in sorted(set(projects) | set(by_project)):
        p, row = projects.get(name), rows.get(name, {})
        image = f"`{p.image}`{' (core)' if p.core else ''}" if p else "?"
        secs = f"{row['test_seconds']:.1f}" if row.get("test_seconds") else "?"
        lines.append(f"| {name} | {p.version if p else '?'} | {p.license if p else '?'} | "
                     f"{row.get('domain', '?')} | {image} | {secs} | {by_project[name]} |")
    lines += ["", "## Tasks per mutation kind", "", "| kind | tasks |", "|---|---|"]
    lines += [f"| {k} | {n} |" for k, n in sorted(by_kind.items(), key=lambda kv: (-kv[1], kv[0]))]
    buckets = Counter("1" if n == 1 else "2-5" if n <= 5 else "6-20" if n <= 20 else "21-100" if n <= 100 else ">100"
                      for n in f2p)
    lines += ["", "## FAIL_TO_PASS sizes", "",
              f"min {min(f2p)}, median {statistics.median(f2p):g}, mean {statistics.mean(f2p):.1f}, max {max(f2p)}.",
              "", "| tests that fail with the bug | tasks |", "|---|---|"]
    lines += [f"| {b} | {buckets[b]} |" for b in ("1", "2-5", "6-20", "21-100", ">100") if buckets[b]]
    return "\n".join(lines) + "\n"


def write_summary(path: Path, command: str) -> None:
    tasks = [t for f in sorted(BUILTIN_DIR.glob("*.jsonl")) for t in load_jsonl(f)]
    path.write_text(render(tasks, command))
