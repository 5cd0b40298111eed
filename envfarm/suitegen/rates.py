"""What a generation run cost: validated tasks per worker-hour and yield, per kind and per project,
and the share of sandbox time spent on candidates that ran past their time limit.

Figures come from the state file's records, each with its own sandbox seconds, so an interrupted
run has figures too (`generate_suite.py --rates-of RUN_ID ...`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from envfarm.tasks.difficulty import NEW_KINDS

TIMED_OUT = "timed_out"


def ran_out_of_time(reason: str) -> bool:
    """Whether a rejection's reason is a time limit (older runs recorded those as plain rejections)."""
    return "ran past" in reason or "timeout" in reason


def task_kind(record: dict[str, Any]) -> str:
    """The task kind of a candidate: a single bug's record names its mutation (`off_by_one`)."""
    kind = record.get("kind", "?")
    return kind if kind in NEW_KINDS else "single"


def _project(record: dict[str, Any]) -> str:
    return record.get("project", "?")


def _counts(records: list[dict[str, Any]]) -> dict[str, Any]:
    accepted = sum(r["status"] == "accepted" for r in records)
    seconds = sum(r.get("seconds", 0.0) for r in records)
    late = sum(r.get("seconds", 0.0) for r in records
               if r["status"] == TIMED_OUT or ran_out_of_time(r.get("reason") or ""))
    return {
        "candidates_tried": len(records),
        "validated_tasks": accepted,
        "yield": round(accepted / len(records), 3) if records else 0.0,
        "sandbox_s": round(seconds, 1),
        "sandbox_s_per_validated_task": round(seconds / accepted, 1) if accepted else None,
        "tasks_per_worker_hour_of_validation": round(accepted / (seconds / 3600), 2) if seconds else 0.0,
        "timed_out_sandbox_s": round(late, 1),
        "timed_out_share_of_sandbox_time": round(late / seconds, 3) if seconds else 0.0,
    }


def figures(records: Iterable[dict[str, Any]], wall: float | None = None, workers: int = 1,
            by_project: bool = False) -> dict[str, Any]:
    """Rates over finished candidates, overall and per kind (and per project): validated tasks per
    hour of one sandbox's validation time (each candidate's own seconds), yield (accepted / tried);
    with `wall`, validated tasks per wall hour per worker too."""
    records = list(records)
    out: dict[str, Any] = {**_counts(records), "workers": workers}
    for key, group_of in (("per_kind", task_kind), *((("per_project", _project),) if by_project else ())):
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in records:
            groups[group_of(r)].append(r)
        out[key] = {name: _counts(rs) for name, rs in sorted(groups.items())}
    if wall:
        out |= {"wall_s": round(wall, 1),
                "tasks_per_hour_per_worker": round(out["validated_tasks"] / (wall / 3600) / workers, 2)}
    return out


def runs_records(history: Iterable[dict[str, Any]], run_ids: Iterable[str]) -> list[dict[str, Any]]:
    """Every candidate the given runs validated, out of a state file's whole history (a later run's
    restating of a task replaces it in the state, not in its own run's figures)."""
    wanted = set(run_ids)
    return [r for r in history if r.get("run") in wanted and not r.get("restated")]


def runs_wall_s(records: Iterable[dict[str, Any]]) -> float | None:
    """The runs' wall seconds, each run from its start (the epoch in its id, `pid-epoch`) to its
    last record; None when a record has no time (runs before records were stamped)."""
    ends: dict[str, float] = {}
    for r in records:
        if "at" not in r:
            return None
        ends[r["run"]] = max(ends.get(r["run"], 0.0), r["at"])
    try:
        return sum(end - float(run.rsplit("-", 1)[1]) for run, end in ends.items()) or None
    except (IndexError, ValueError):
        return None
