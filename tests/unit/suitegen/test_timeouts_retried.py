"""A candidate that runs past its time limit is retried on resume, but not for ever."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from envfarm.sandbox.images import load_projects
from envfarm.suitegen import suite
from envfarm.suitegen.baseline import Baseline
from envfarm.suitegen.derive import Rejected


@dataclass
class _Mutant:
    instance_id: str
    kind: str = "changed_constant"

    def check(self) -> bool:
        return True

    def candidate(self) -> object:
        return object()


@dataclass
class _Runs:
    """Runs one candidate's project again and again over one state file, counting validations."""

    path: Path
    calls: int = 0

    def run(self, instance_id: str) -> None:
        project = load_projects()["roman"]
        run = suite.ProjectRun(project, [_Mutant(instance_id)], Baseline({}, {}, 1.0), target=5, max_candidates=10)
        state = suite.StateFile(self.path)
        asyncio.run(suite.drive(run, state, lambda spec, task: None, asyncio.Semaphore(1), lambda r: None))


@pytest.fixture
def rejecting(tmp_path, monkeypatch) -> Callable[[str], _Runs]:
    """Runs whose every validation is rejected with the given reason."""

    def make(reason: str) -> _Runs:
        runs = _Runs(tmp_path / "state.jsonl.gz")

        async def derive(cand, project, factory, **kw):
            runs.calls += 1
            raise Rejected(reason)

        monkeypatch.setattr(suite, "derive_task", derive)
        return runs

    return make


def test_a_timed_out_candidate_is_retried_once_then_left(rejecting):
    runs = rejecting("the buggy run ran past its 180 s limit")
    for expected_calls in (1, 2, 2):  # first run, one retry on resume, then never again
        runs.run("roman__synth-loops")
        assert runs.calls == expected_calls
    rec = suite.StateFile(runs.path).records["roman__synth-loops"]
    assert rec["status"] == suite.TIMED_OUT and rec["attempts"] == 2


def test_a_plain_rejection_is_never_retried(rejecting):
    runs = rejecting("no test fails with the bug")
    for _ in range(2):
        runs.run("roman__synth-plain")
    assert runs.calls == 1
