"""Tasks an older snippet builder left without the issue level are reopened from their last
validation, without validating again; newer refusals, other projects and lost tasks stay closed."""

from __future__ import annotations

from dataclasses import dataclass

from envfarm.suitegen import restate_state
from envfarm.suitegen.restate import SNIPPETS_VERSION
from envfarm.suitegen.suite import StateFile


def _validated(iid: str, project: str = "roman", marker: str = "v1") -> dict:
    return {"instance_id": iid, "project": project, "kind": "reimplement", "status": "accepted",
            "reason": "", "task": {"instance_id": iid, "marker": marker}, "seconds": 1.0}


def _refused(iid: str, project: str = "roman", snippets: int = 1) -> dict:
    return {"instance_id": iid, "project": project, "kind": "reimplement", "status": "rejected",
            "reason": restate_state.NO_REPRO, "restated": True, "snippets": snippets}


def test_reopens_old_refusals_from_the_last_validation(tmp_path):
    path = tmp_path / "state.jsonl.gz"
    state = StateFile(path)
    state.add(_validated("roman-a", marker="first"))
    state.add(_validated("roman-a", marker="last"))  # validated again: its last validation is reopened
    state.add(_refused("roman-a"))
    state.add(_validated("roman-new"))
    state.add(_refused("roman-new", snippets=SNIPPETS_VERSION))  # refused by this builder: stays
    state.add(_validated("semver-x", project="semver"))
    state.add(_refused("semver-x", project="semver"))  # not a project of this run
    state.add(_refused("roman-lost"))  # no validation on record: nothing to reopen

    state = StateFile(path)  # as a later run reads it
    assert restate_state.reopen_for_snippets(state, {"roman"}) == 1
    rec = StateFile(path).records["roman-a"]
    assert rec["status"] == "accepted" and rec["task"]["marker"] == "last"
    assert rec["restated"] and rec["reopened"]  # not counted in the reopening run's rates
    assert StateFile(path).records["roman-new"]["status"] == "rejected"
    assert StateFile(path).records["semver-x"]["status"] == "rejected"
    assert restate_state.reopen_for_snippets(StateFile(path), {"roman"}) == 0  # once only


def test_restating_is_never_taken_for_a_validation(tmp_path):
    state = StateFile(tmp_path / "s.jsonl")
    state.add(_validated("roman-a", marker="validated"))
    state.add({**_validated("roman-a", marker="restated"), "restated": True})
    assert state.validated["roman-a"]["task"]["marker"] == "validated"


def _row(iid: str) -> dict:
    return {"instance_id": iid, "repo": "roman", "problem_statement": "tb", "FAIL_TO_PASS": ["t::a"],
            "image": "img", "eval_script": "true", "patch": "p", "bug_patch": "b"}


def test_restating_goes_on_until_the_shipped_window_has_the_issue_level(tmp_path, monkeypatch):
    """A task refused for want of a snippet lets the next accepted one into the first `target`:
    that one is restated too, so no task of the window ships without the issue level."""
    import asyncio

    from envfarm.sandbox.images import load_projects
    from envfarm.suitegen.baseline import Baseline
    from envfarm.suitegen.suite import ProjectRun
    from envfarm.tasks.schema import Task

    @dataclass
    class _Mutant:
        instance_id: str

    ids = [f"roman-{i}" for i in range(6)]
    state = StateFile(tmp_path / "s.jsonl.gz")
    for iid in ids:
        state.add({**_validated(iid), "task": _row(iid)})
    no_snippet = {"roman-0", "roman-2", "roman-3"}
    restated: list[list[str]] = []

    def levels(task: Task) -> dict:
        return {"traceback": "tb"} if task.instance_id in no_snippet else {"traceback": "tb", "issue": "i"}

    async def restate_project(project, tasks, factory):
        restated.append([t.instance_id for t in tasks])
        return [Task.parse({**t.model_dump(), "statements": levels(t)}) for t in tasks]

    monkeypatch.setattr(restate_state, "restate_project", restate_project)
    run = ProjectRun(load_projects()["roman"], [_Mutant(i) for i in ids], Baseline({}, {}, 1.0), target=3,
                     max_candidates=0)
    asyncio.run(restate_state.restate_run(run, state, None, asyncio.Semaphore(1)))
    assert restated == [["roman-0", "roman-1", "roman-2"], ["roman-3", "roman-4"], ["roman-5"]]
    window = [t.instance_id for t in restate_state.accepted_tasks(run, state)]
    assert window == ["roman-1", "roman-4", "roman-5"]
    assert not any(restate_state.lacks_issue(t) for t in restate_state.accepted_tasks(run, state))
