"""The agent environment: CodingEnv (gymnasium API, async core), its tools and tool-call parsing.

Importing this package registers `envfarm/CodingEnv-v0` with gymnasium, so after
`import envfarm.env` (or with the module prefix, without it):

    env = gymnasium.make("envfarm.env:envfarm/CodingEnv-v0", tasks="builtin", max_turns=20)
"""

from __future__ import annotations

import gymnasium

from envfarm.env.coding_env import CodingEnv, Grader, TextSpace, default_sandbox_factory
from envfarm.env.config import EnvConfig
from envfarm.env.parsing import ParseResult, ToolCall, parse_tool_calls
from envfarm.env.schemas import TOOL_NAMES, tool_schemas
from envfarm.env.tools import ToolResult

ENV_ID = "envfarm/CodingEnv-v0"


def register() -> None:
    """Register CodingEnv with gymnasium (idempotent).

    Registered as nondeterministic: `info` carries wall-clock timings and commands may print
    times or pids, so two identical steps never return identical data. Seeded resets are
    deterministic (the same seed draws the same task and the same first observation).
    """
    if ENV_ID not in gymnasium.registry:
        gymnasium.register(ENV_ID, entry_point="envfarm.env.coding_env:CodingEnv", nondeterministic=True)


register()

__all__ = ["CodingEnv", "EnvConfig", "ENV_ID", "Grader", "ParseResult", "TOOL_NAMES", "TextSpace", "ToolCall",
           "ToolResult", "default_sandbox_factory", "parse_tool_calls", "register", "tool_schemas"]
