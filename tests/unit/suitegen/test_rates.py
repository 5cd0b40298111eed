"""A generation run's figures: per kind and project, from each candidate's own seconds, with the
share of sandbox time spent past a time limit, and a run's history kept apart from later restating."""

from __future__ import annotations

from envfarm.suitegen.rates import TIMED_OUT, figures, runs_records, runs_wall_s


def _rec(project: str, kind: str, status: str, seconds: float, reason: str = "", **kw) -> dict:
    return {"instance_id": f"{project}-{kind}-{seconds}", "project": project, "kind": kind,
            "status": status, "reason": reason, "seconds": seconds, **kw}


RECORDS = [
    _rec("roman", "reimplement", "accepted", 10.0),
    _rec("roman", "reimplement", "rejected", 20.0, "no test fails with the bug"),
    _rec("roman", "wrong_operator", TIMED_OUT, 30.0, "the buggy run ran past its 180 s limit"),
    _rec("semver", "wrong_operator", "accepted", 30.0),
    _rec("semver", "wrong_operator", "rejected", 10.0, "test run timeout"),  # an older run's time limit
]


def test_rates_per_kind_and_project():
    fig = figures(RECORDS, by_project=True)
    assert fig["validated_tasks"] == 2 and fig["candidates_tried"] == 5 and fig["yield"] == 0.4
    assert fig["tasks_per_worker_hour_of_validation"] == 2 / (100 / 3600)
    assert fig["per_kind"]["reimplement"]["sandbox_s_per_validated_task"] == 30.0
    assert fig["per_kind"]["single"]["candidates_tried"] == 3  # mutations are single bugs
    assert fig["per_project"]["semver"]["validated_tasks"] == 1
    assert fig["per_project"]["roman"]["timed_out_sandbox_s"] == 30.0
    assert fig["timed_out_sandbox_s"] == 40.0 and fig["timed_out_share_of_sandbox_time"] == 0.4


def test_projects_only_when_asked_and_wall_rates_per_worker():
    fig = figures(RECORDS, wall=3600.0, workers=2)
    assert "per_project" not in fig
    assert fig["tasks_per_hour_per_worker"] == 1.0


def test_a_runs_records_leave_out_other_runs_and_restating():
    history = [{**RECORDS[0], "run": "a"}, {**RECORDS[0], "run": "b", "restated": True},
               {**RECORDS[3], "run": "b"}, {**RECORDS[1], "run": "c"}]
    assert runs_records(history, ["a", "b"]) == [history[0], history[2]]
    assert runs_records(history, ["zzz"]) == []


def test_a_runs_wall_time_is_from_its_start_to_its_last_record():
    stamped = [{**RECORDS[0], "run": "7-1000", "at": 1900.0}, {**RECORDS[1], "run": "7-1000", "at": 4600.0},
               {**RECORDS[2], "run": "8-5000", "at": 5100.0}]
    assert runs_wall_s(stamped) == 3600.0 + 100.0
    assert figures(stamped, runs_wall_s(stamped), workers=1)["wall_s"] == 3700.0
    assert runs_wall_s([*stamped, RECORDS[3]]) is None  # a record of a run before times were kept
