"""docs/TASKS.md: what the builtin suite holds, computed from the shipped JSONL files.

    python -m envfarm.suitegen.summary      # rewrite docs/TASKS.md from envfarm/tasks/builtin/
"""

from __future__ import annotations

import statistics
import tomllib
from collections import Counter
from pathlib import Path

from envfarm.sandbox.images import images_dir, load_projects
from envfarm.tasks.difficulty import NEW_KINDS, task_labels
from envfarm.tasks.loading import BUILTIN_DIR, load_jsonl
from envfarm.tasks.schema import Task

KIND_ORDER = ("single", *NEW_KINDS, "hand-written")
LEVELS = ("traceback", "issue", "terse")


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
        "Harder kinds build on them: several validated bugs combined into one task, a function to re-implement,",
        "a helper whose contract changed under its callers in other modules; each task records its statement at",
        "three levels (traceback, issue with a reproduction snippet that was run, terse) and difficulty labels",
        "(`envfarm.tasks.difficulty`), and `load(\"builtin?kind=multi_location&statement=issue\")` selects by them.",
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
    lines += difficulty_tables(tasks)
    lines += ["", "## Single bugs per mutation kind", "", "| kind | tasks |", "|---|---|"]
    lines += [f"| {k} | {n} |" for k, n in sorted(by_kind.items(), key=lambda kv: (-kv[1], kv[0]))
              if k not in KIND_ORDER]
    buckets = Counter("1" if n == 1 else "2-5" if n <= 5 else "6-20" if n <= 20 else "21-100" if n <= 100 else ">100"
                      for n in f2p)
    lines += ["", "## FAIL_TO_PASS sizes", "",
              f"min {min(f2p)}, median {statistics.median(f2p):g}, mean {statistics.mean(f2p):.1f}, max {max(f2p)}.",
              "", "| tests that fail with the bug | tasks |", "|---|---|"]
    lines += [f"| {b} | {buckets[b]} |" for b in ("1", "2-5", "6-20", "21-100", ">100") if buckets[b]]
    return "\n".join(lines) + "\n"


def _bucket(n: int, edges: tuple[int, ...]) -> str:
    lo = 1
    for hi in edges:
        if n <= hi:
            return str(hi) if lo == hi else f"{lo}-{hi}"
        lo = hi + 1
    return f">{edges[-1]}"


def _table(title: str, rows: list[str], cols: list[str], cell: dict[tuple[str, str], int], note: str = "",
           totals: dict[str, int] | None = None) -> list[str]:
    out = ["", f"## {title}", ""] + ([note, ""] if note else [])
    out += ["| | " + " | ".join(cols) + " | tasks |", "|---" * (len(cols) + 2) + "|"]
    for r in rows:
        values = [cell.get((r, c), 0) for c in cols]
        out.append(f"| {r} | " + " | ".join(str(v) for v in values) + f" | {(totals or {}).get(r, sum(values))} |")
    return out


def difficulty_tables(tasks: list[Task]) -> list[str]:
    """Tables by project and kind, by statement level, and by each difficulty label."""
    labels = [task_labels(t) for t in tasks]
    kinds = [k for k in KIND_ORDER if any(lab["kind"] == k for lab in labels)]
    projects = sorted({t.repo for t in tasks})
    cell: dict[tuple[str, str], int] = Counter((t.repo, lab["kind"]) for t, lab in zip(tasks, labels, strict=True))
    out = _table("Tasks per project and kind", projects, kinds, cell,
                 "Kinds: `single` (one AST mutation), `multi_location` (2 to 4 validated single bugs in different "
                 "functions, and different files where the project has several, validated together and location "
                 "by location), `reimplement` (a function's body removed, signature and docstring kept), "
                 "`contract_change` (a helper's parameters reordered in its own module while the callers in "
                 "other modules keep the old order).")
    level_cell = Counter((k, lv) for t, lab in zip(tasks, labels, strict=True) for k in (lab["kind"],)
                         for lv in (getattr(t, "statements", None) or {"traceback": t.problem_statement}))
    out += _table("Statement levels recorded", kinds, list(LEVELS), level_cell,
                  "Tasks of each kind with each level (select one with `statement=...`; `problem_statement` "
                  "holds the traceback level).", Counter(lab["kind"] for lab in labels))
    specs = [("locations", (1, 2, 3, 4)), ("files", (1, 2, 3)), ("lines", (2, 5, 10, 20, 40)),
             ("f2p", (1, 5, 20, 100))]
    for name, edges in specs:
        cols = sorted({_bucket(lab[name], edges) for lab in labels},
                      key=lambda b: int(b.lstrip(">").split("-")[0]) + (0.5 if b.startswith(">") else 0))
        cell = Counter((lab["kind"], _bucket(lab[name], edges)) for lab in labels)
        out += _table(f"Difficulty: {name}", kinds, cols, cell)
    named = Counter((lab["kind"], {True: "yes", False: "no", None: "not measured"}[lab["names_changed_file"]])
                    for lab in labels)
    out += _table("Difficulty: a failing test's output names a changed file", kinds, ["yes", "no", "not measured"],
                  named, "`no` means the agent has to search for the place to fix.")
    return out


KEPT_FROM = "## Adding projects"  # the hand-written rest of the page (from here on), kept as it is


def write_summary(path: Path, command: str) -> None:
    tasks = [t for f in sorted(BUILTIN_DIR.glob("*.jsonl")) for t in load_jsonl(f)]
    old = path.read_text() if path.exists() else ""
    kept = old[old.index(KEPT_FROM):] if KEPT_FROM in old else ""
    path.write_text(render(tasks, command) + ("\n" + kept if kept else ""))

if __name__ == "__main__":
    import sys

    write_summary(Path(__file__).resolve().parents[2] / "docs" / "TASKS.md",
                  "python scripts/generate_suite.py --per-project 36 --seed 0 --workers 2")
    sys.exit(0)
