"""Load tasks from anywhere users keep them, into one schema.

    load("builtin")             # every task shipped with envfarm
    load("builtin:inflection")  # the shipped tasks of one project
    load("my_tasks.jsonl")      # task rows, one JSON object a line
    load("swebench_dir/")       # a SWE-bench task directory (*.jsonl, *.json, *.parquet files)
    load("org/dataset")         # a Hugging Face dataset (needs the hub; a clear error without it)
    load("builtin?kind=multi_location&min_locations=3")   # any of these, filtered by difficulty
    load("builtin", difficulty={"kind": "reimplement", "statement": "issue"})

Filters (after `?`, or `difficulty=`) are described in `envfarm.tasks.difficulty`.

Rows may be in any public dataset's layout (SWE-bench, SWE-Gym, SWE-smith, SWE-rebench, R2E-Gym,
swebench 5.x): every loader maps them with `envfarm.tasks.layouts.to_task_row` first.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from envfarm.tasks.layouts import to_task_row
from envfarm.tasks.schema import Task, TaskError

BUILTIN_DIR = Path(__file__).parent / "builtin"


def parse_row(row: Any, where: str) -> Task:
    """One row, in any known dataset layout, as a Task; errors name `where`."""
    return Task.parse(to_task_row(row, where), where=where)


def load_jsonl(path: str | Path) -> list[Task]:
    path = Path(path)
    tasks = []
    with path.open() as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TaskError(f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            tasks.append(parse_row(row, where=f"{path}:{lineno}"))
    return tasks


def load_json(path: str | Path) -> list[Task]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise TaskError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    rows = data if isinstance(data, list) else [data]
    return [parse_row(row, where=f"{path}[{i}]") for i, row in enumerate(rows)]


def load_parquet(path: str | Path) -> list[Task]:
    from datasets import load_dataset

    ds = load_dataset("parquet", data_files=str(path), split="train")
    return [parse_row(dict(row), where=f"{path}[{i}]") for i, row in enumerate(ds)]


def load_dir(path: str | Path) -> list[Task]:
    """A SWE-bench task directory: every *.jsonl, *.json and *.parquet file in it, sorted."""
    path = Path(path)
    loaders = {".jsonl": load_jsonl, ".json": load_json, ".parquet": load_parquet}
    files = sorted(p for p in path.rglob("*") if p.suffix in loaders and p.is_file())
    if not files:
        raise TaskError(f"{path}: no task files (*.jsonl, *.json, *.parquet) in this directory")
    return [t for f in files for t in loaders[f.suffix](f)]


def load_hub(name: str, split: str = "test") -> list[Task]:
    try:
        from datasets import load_dataset

        ds = load_dataset(name, split=split)
    except Exception as exc:  # noqa: BLE001 - the hub raises many kinds; all mean "not here"
        raise TaskError(
            f"could not load the Hugging Face dataset {name!r} (split {split!r}): {exc.__class__.__name__}: "
            f"{str(exc)[:300]}. Without the hub, export it as JSONL on a machine that has it "
            "and pass the file instead"
        ) from None
    return [parse_row(dict(row), where=f"{name}[{i}]") for i, row in enumerate(ds)]


def load_builtin(project: str | None = None) -> list[Task]:
    files = sorted(BUILTIN_DIR.glob("*.jsonl"))
    tasks = [t for f in files for t in load_jsonl(f)]
    if project is not None:
        known = sorted({t.repo for t in tasks})
        tasks = [t for t in tasks if t.repo == project]
        if not tasks:
            raise TaskError(f"no builtin tasks for project {project!r}; builtin projects: {known}")
    return tasks


def load(spec: str, split: str = "test", difficulty: str | dict[str, Any] | None = None) -> list[Task]:
    """Tasks from a spec string (see the module docstring), filtered by `difficulty` and by a
    `?query` at the end of the spec; raises TaskError with the reason."""
    base, sep, query = spec.rpartition("?")
    if sep and not Path(spec).expanduser().exists():
        from envfarm.tasks.difficulty import parse_filter, select_by

        parse_filter(query)  # a bad filter is named before anything loads
        tasks = select_by(_load(base, split), query)
        if not tasks:
            raise TaskError(f"no task of {base!r} matches the filter {query!r}")
    else:
        tasks = _load(spec, split)
    if difficulty:
        from envfarm.tasks.difficulty import select_by

        tasks = select_by(tasks, difficulty)
    return tasks


def _load(spec: str, split: str) -> list[Task]:
    if spec == "builtin" or spec.startswith("builtin:"):
        return load_builtin(spec.partition(":")[2] or None)
    path = Path(spec).expanduser()
    if path.is_dir():
        return load_dir(path)
    if path.is_file():
        loader = {".jsonl": load_jsonl, ".json": load_json, ".parquet": load_parquet}.get(path.suffix)
        if loader is None:
            raise TaskError(f"{path}: unknown task file type {path.suffix!r}; use .jsonl, .json or .parquet")
        return loader(path)
    if spec.count("/") == 1 and not spec.startswith((".", "/")) and not path.suffix:
        return load_hub(spec, split)
    raise TaskError(f"no tasks at {spec!r}: not 'builtin', an existing file or directory, "
                    "or a Hugging Face dataset name (org/name)")


def select(tasks: Iterable[Task], repos: Iterable[str] | None = None,
           ids: Iterable[str] | None = None, limit: int | None = None,
           difficulty: str | dict[str, Any] | None = None) -> list[Task]:
    """Filter by project, instance id and difficulty labels (`envfarm.tasks.difficulty`), keeping order."""
    repo_set, id_set = set(repos or []), set(ids or [])
    out = [t for t in tasks if (not repo_set or t.repo in repo_set) and (not id_set or t.instance_id in id_set)]
    if difficulty:
        from envfarm.tasks.difficulty import select_by

        out = select_by(out, difficulty)
    return out[:limit] if limit is not None else out


def split_by_project(tasks: Iterable[Task], held_out_fraction: float = 0.2,
                     seed: str = "envfarm") -> tuple[list[Task], list[Task]]:
    """Deterministic train / held-out split by project: no project is on both sides."""
    tasks = list(tasks)
    projects = sorted({t.repo for t in tasks},
                      key=lambda r: hashlib.sha256(f"{seed}:{r}".encode()).hexdigest())
    n_held = max(1, round(len(projects) * held_out_fraction)) if len(projects) > 1 else 0
    held = set(projects[:n_held])
    return [t for t in tasks if t.repo not in held], [t for t in tasks if t.repo in held]


def round_robin_by_project(tasks: Iterable[Task]) -> list[Task]:
    """One task of each project in turn (order kept within a project): the first N episodes of
    a run then span the projects instead of exhausting the first one."""
    by_repo: dict[str, list[Task]] = {}
    for task in tasks:
        by_repo.setdefault(task.repo, []).append(task)
    queues = list(by_repo.values())
    out: list[Task] = []
    for i in range(max((len(q) for q in queues), default=0)):
        out += [q[i] for q in queues if i < len(q)]
    return out

