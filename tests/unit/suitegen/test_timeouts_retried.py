"""A candidate that runs past its time limit is retried on resume, but not for ever."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

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


def _run_once(state: suite.StateFile, mutants: list[_Mutant]) -> None:
    run = suite.ProjectRun(load_projects()["roman"], mutants, Baseline({}, {}, 1.0), target=5, max_candidates=10)

    async def go() -> None:
        await suite.drive(run, state, lambda spec, task: None, asyncio.Semaphore(1), lambda r: None)

    asyncio.run(go())


def test_a_timed_out_candidate_is_retried_once_then_left(tmp_path, monkeypatch):
    calls: list[str] = []

    async def derive(cand, project, factory, **kw):
        calls.append("loops")
        raise Rejected("the buggy run ran past its 180 s limit")

    monkeypatch.setattr(suite, "derive_task", derive)
    path = tmp_path / "state.jsonl.gz"
    for expected_calls in (1, 2, 2):  # first run, one retry on resume, then never again
        _run_once(suite.StateFile(path), [_Mutant("roman__synth-loops")])
        assert len(calls) == expected_calls
    rec = suite.StateFile(path).records["roman__synth-loops"]
    assert rec["status"] == suite.TIMED_OUT and rec["attempts"] == 2


def test_a_plain_rejection_is_never_retried(tmp_path, monkeypatch):
    calls: list[str] = []

    async def derive(cand, project, factory, **kw):
        calls.append("x")
        raise Rejected("no test fails with the bug")

    monkeypatch.setattr(suite, "derive_task", derive)
    path = tmp_path / "state.jsonl.gz"
    for _ in range(2):
        _run_once(suite.StateFile(path), [_Mutant("roman__synth-plain")])
    assert len(calls) == 1
