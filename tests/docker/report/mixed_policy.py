"""A policy for the report's browser test: it solves one episode from the gold patch and probes the
farm in the next (tests/cluster/red_team_policy.py's commands), so one run has resolved, failed and
probing episodes, and GRPO groups whose members part at the first turn."""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

from envfarm.policy.base import Completion
from envfarm.policy.scripted import ScriptedPolicy

# tests/cluster is on the hosts' PYTHONPATH (the test sets it): this module is shipped to them on
# its own (runtime_env py_modules), so a path beside this file would not be there
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "cluster"))
from red_team_policy import COMMANDS, ProbePolicy  # noqa: E402


class SolveOrProbe(ScriptedPolicy):
    """Every other episode, in the order their first turns come, probes instead of solving. The
    order is kept in `claims` (a folder every host process shares: the farm may place the two
    episodes on two hosts, each with a policy of its own), one file per episode claimed."""

    def __init__(self, claims: str, run_tests: bool = False) -> None:
        super().__init__(run_tests=run_tests)  # the grade runs the tests anyway: a turn saved
        self._claims = Path(claims)
        self._probe = ProbePolicy()

    def _next_claim(self) -> int:
        self._claims.mkdir(parents=True, exist_ok=True)
        for i in itertools.count():
            try:
                os.close(os.open(self._claims / str(i), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                return i
            except FileExistsError:
                continue
        raise AssertionError("unreachable")

    async def act(self, messages, tools) -> Completion:
        first = next((m for m in messages if m.get("role") == "assistant"), None)
        probing = COMMANDS[0] in str(first) if first else self._next_claim() % 2 == 1
        return await (self._probe.act(messages, tools) if probing else super().act(messages, tools))
