"""The statement levels in the generation state: a run restates the tasks it validated, and tasks an
older snippet builder left without the issue level are restated again, without revalidation."""

from __future__ import annotations

import asyncio

from envfarm.suitegen.restate import SNIPPETS_VERSION, restate_project
from envfarm.suitegen.suite import ProjectRun, StateFile, accepted_tasks
from envfarm.tasks.grading import SandboxFactory
from envfarm.tasks.schema import Task

NO_REPRO = "no reproduction snippet fails on the bug and runs on the fix (no issue statement)"
RESTATE_ROUNDS = 10


def lacks_issue(task: Task) -> bool:
    return "issue" not in (getattr(task, "statements", None) or {})


async def restate_run(r: ProjectRun, state: StateFile, factory: SandboxFactory, sem: asyncio.Semaphore) -> None:
    """Record the statement levels and labels on the run's tasks (one sandbox); a task of any kind
    without a validated reproduction snippet (no issue level) is rejected. A rejection lets the
    next accepted task into the run's first `target`, so rounds go on until all of those have the
    issue level (or the candidates run out)."""
    for _ in range(RESTATE_ROUNDS):
        todo = [t for t in accepted_tasks(r, state) if lacks_issue(t)]
        if not todo:
            return
        async with sem:
            done = await restate_project(r.project, todo, factory)
        for task in done:
            rec = {k: v for k, v in state.records[task.instance_id].items() if k not in ("task", "run")}
            if not lacks_issue(task):
                state.add({**rec, "task": task.model_dump(), "restated": True})
            else:
                state.add({**rec, "status": "rejected", "reason": NO_REPRO, "restated": True,
                           "snippets": SNIPPETS_VERSION})


def reopen_for_snippets(state: StateFile, projects: set[str]) -> int:
    """Tasks an older snippet builder left without the issue level go back to accepted, as they
    were validated, so that this run restates them: validation is not redone. Returns how many."""
    reopened = 0
    for iid, rec in list(state.records.items()):
        if rec["status"] == "rejected" and rec.get("reason") == NO_REPRO and rec.get("project") in projects \
                and rec.get("snippets", 1) < SNIPPETS_VERSION and iid in state.validated:
            again = {k: v for k, v in state.validated[iid].items() if k != "run"}
            state.add({**again, "restated": True, "reopened": True})  # not counted in this run's rates
            reopened += 1
    return reopened
