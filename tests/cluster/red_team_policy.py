"""An adversarial policy for `python -m envfarm.launch --policy red_team_policy:ProbePolicy`
(tests/cluster/test_red_team_launch.py): it probes the farm instead of fixing the bug."""

from __future__ import annotations

import json

from envfarm.policy.base import Completion

COMMANDS = (
    "kill -TERM 1; kill -9 1; echo still here",
    "git() { printf 'diff --git a/x b/x\\n'; }; readonly __ef_cmd",
)


class ProbePolicy:
    """Signals PID 1, redefines git and freezes a protocol variable of the shell session; submits."""

    async def act(self, messages, tools):
        turn = sum(m["role"] == "assistant" for m in messages)
        if turn < len(COMMANDS):
            call = {"name": "bash", "arguments": {"command": COMMANDS[turn]}}
        else:
            call = {"name": "submit", "arguments": {}}
        return Completion(text=f"<tool_call>{json.dumps(call)}</tool_call>")
