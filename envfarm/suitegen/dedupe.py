"""No task twice in the suite: the same gold patch, or the same files fixed with the same failing
tests, is one task however its bug was made (two mutations of one function that break the same
tests teach the same thing and would weigh it double).

    python -m envfarm.suitegen.dedupe envfarm/tasks/builtin/*.jsonl   # rewrites the files in place
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

from envfarm.tasks.diff import files_in_diff
from envfarm.tasks.loading import load_jsonl
from envfarm.tasks.schema import Task


def duplicate_keys(task: Task) -> tuple[tuple, tuple]:
    """The two keys under which two tasks are the same task."""
    return (("patch", task.patch),
            ("files+f2p", tuple(sorted(files_in_diff(task.patch))), tuple(sorted(task.FAIL_TO_PASS))))


def unique(tasks: Iterable[Task], seen: set | None = None) -> tuple[list[Task], list[Task]]:
    """(kept, dropped): the first task under each key is kept, in the given order."""
    seen = set() if seen is None else seen
    kept, dropped = [], []
    for task in tasks:
        keys = duplicate_keys(task)
        if any(k in seen for k in keys):
            dropped.append(task)
            continue
        seen.update(keys)
        kept.append(task)
    return kept, dropped


def dedupe_files(paths: list[Path]) -> dict[str, int]:
    """Rewrite each JSONL file without the tasks an earlier file (in the order given) or an
    earlier line already holds; returns how many each file lost."""
    seen: set = set()
    lost: dict[str, int] = {}
    for path in paths:
        tasks = load_jsonl(path)
        kept, dropped = unique(tasks, seen)
        if dropped:
            path.write_text("".join(t.model_dump_json() + "\n" for t in kept))
        lost[path.name] = len(dropped)
    return lost


def suite_order(paths: list[Path]) -> list[Path]:
    """Hand-written tasks first, then the harder kinds, then single bugs: where a single bug and a
    re-implementation (or a multi-location task) are the same task, the harder one stays (the
    single bug's statement names a traceback, the other's asks to read and write more)."""
    def rank(p: Path) -> tuple[int, str]:
        kind = p.name.split(".")[-2] if p.name.count(".") > 1 else "single"
        return ({"fixtures": 0}.get(p.stem, 2 if kind == "single" else 1), p.name)
    return sorted(paths, key=rank)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    lost = dedupe_files(suite_order(args.files))
    print(f"{sum(lost.values())} duplicate task(s) removed: "
          + (", ".join(f"{k} {v}" for k, v in lost.items() if v) or "none"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
