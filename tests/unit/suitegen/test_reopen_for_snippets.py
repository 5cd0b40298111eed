"""Tasks an older snippet builder left without the issue level are reopened from their last
validation, without validating again; newer refusals, other projects and lost tasks stay closed."""

from __future__ import annotations

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
