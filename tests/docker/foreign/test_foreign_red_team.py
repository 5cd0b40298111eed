"""Attacks on grading from the tests (which run as the image's root here), kept as tests.

Each file in attacks/ is code appended to the package, so it runs when pytest imports it, and is
written to get past the patch screen (names built at run time):

- fake_git_writes_to_the_session: replaces the image's git (which the eval script ran after the
  tests) with a program that rewrites the guard's record and writes passing results into the
  session shell's own output;
- symlink_loop_over_the_record: replaces the guard's folder with a symlink loop, so the engine
  cannot read the record (once taken for an engine fault: infrastructure, masked);
- leftover_process_forges_results: leaves a process behind that waits for pytest to exit, then
  rewrites the record and writes passing results into the session's output.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from foreign_rows import append_patch

from envfarm.tasks.grading import grade

ATTACKS = sorted((Path(__file__).parent / "attacks").glob("*.txt"))


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda p: p.stem)
def test_attack_from_the_tests_neither_passes_nor_gets_masked(foreign_tasks, attack: Path):
    task = foreign_tasks["plain"]
    result = asyncio.run(grade(task, append_patch(task, attack.read_text())))
    assert not result.resolved, (result.status, result.log_tail[-600:])
    assert result.error_kind is None or not result.error_kind.masked, (result.error_kind, result.error)
