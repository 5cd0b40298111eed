"""SimPolicy: a stand-in for a model server, for driving the farm's control plane at scale.

It thinks for a drawn time (an LLM turn), runs a few bash commands and submits. It holds no
state between calls (the turn number is read off the conversation), so one instance serves any
number of concurrent episodes.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from typing import Any

from envfarm.policy.base import Completion


class SimPolicy:
    name = "sim"

    def __init__(self, turns: int = 4, think_s: float = 2.0, spread: float = 0.3, seed: int | None = None) -> None:
        self.turns = turns
        self.think_s = think_s
        self.spread = spread
        self._rng = random.Random(seed)

    async def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Completion:
        turn = sum(1 for m in messages if m.get("role") == "assistant")
        if self.think_s > 0:
            await asyncio.sleep(self.think_s * math.exp(self._rng.gauss(0.0, self.spread)))
        if turn + 1 >= self.turns:
            call = {"name": "submit", "arguments": {}}
        else:
            call = {"name": "bash", "arguments": {"command": f"echo step {turn}"}}
        return Completion(text=f"<tool_call>\n{json.dumps(call)}\n</tool_call>")
