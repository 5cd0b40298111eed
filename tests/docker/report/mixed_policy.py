"""A policy for the report's browser test: it solves one episode from the gold patch and probes the
farm in the next (tests/cluster/red_team_policy.py's commands), so one run has resolved, failed and
probing episodes, and GRPO groups whose members part at the first turn."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

from envfarm.policy.base import Completion
from envfarm.policy.scripted import ScriptedPolicy

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "cluster"))
from red_team_policy import COMMANDS, ProbePolicy  # noqa: E402


class SolveOrProbe(ScriptedPolicy):
    """Every other episode, in the order they start, probes instead of solving."""

    def __init__(self, run_tests: bool = False) -> None:
        super().__init__(run_tests=run_tests)  # the grade runs the tests anyway: a turn saved
        self._turn = itertools.count()
        self._probe = ProbePolicy()

    async def act(self, messages, tools) -> Completion:
        first = next((m for m in messages if m.get("role") == "assistant"), None)
        probing = COMMANDS[0] in str(first) if first else next(self._turn) % 2 == 1
        return await (self._probe.act(messages, tools) if probing else super().act(messages, tools))
