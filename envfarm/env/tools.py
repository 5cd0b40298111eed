"""Run parsed tool calls against one sandbox and report each as text for the model.

A tool never raises for the agent's mistakes (bad arguments, unknown tools, failing commands):
those are answered in text. Only `SandboxError` escapes, because then the sandbox itself is gone
and the episode cannot go on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from envfarm.env.editor import Editor, SandboxFileIO
from envfarm.env.observation import truncate_middle
from envfarm.env.parsing import ToolCall
from envfarm.env.schemas import TOOL_NAMES, required_arguments
from envfarm.errors import SandboxError
from envfarm.sandbox.base import Sandbox


@dataclass
class ToolResult:
    """One executed call: what the model asked, what it got back, and how long the tool took."""

    id: str
    name: str
    arguments: dict[str, Any]
    output: str
    seconds: float = 0.0  # wall time of the tool as the env saw it
    command_seconds: float | None = None  # bash: the command's own time inside the sandbox
    exit_code: int | None = None
    error: bool = False  # the call was refused or failed (bad arguments, non-zero exit, timeout)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "arguments": dict(self.arguments)}  # shallow: asdict deep-copies


# what an unexpected error inside a tool says to the agent (the episode goes on: never the farm's fault)
TOOL_BROKE = {"bash": "the command could not be run",
              "str_replace_editor": "the editor could not complete this command"}


class ToolRunner:
    """The tools of one episode, bound to its sandbox."""

    def __init__(self, sandbox: Sandbox, command_timeout_s: float, max_output_chars: int,
                 workdir: str = "/testbed") -> None:
        self.sandbox = sandbox
        self.command_timeout_s = command_timeout_s
        self.max_output_chars = max_output_chars
        self.editor = Editor(SandboxFileIO(sandbox), workdir)

    async def run(self, call: ToolCall, call_id: str, timeout: float | None = None) -> ToolResult:
        started = time.perf_counter()
        result = ToolResult(id=call_id, name=call.name, arguments=call.arguments, output="")
        problem = self._check(call)
        if problem:
            result.output, result.error = problem, True
        elif call.name in TOOL_BROKE:
            try:
                if call.name == "bash":
                    await self._bash(call.arguments["command"], result, timeout or self.command_timeout_s)
                else:
                    result.output = await self.editor.run(call.arguments)
                    result.error = result.output.startswith("Error:")
            except SandboxError:
                raise  # the sandbox itself: CodingEnv attributes it
            except Exception as exc:  # noqa: BLE001 - what the agent did (its input, its sandbox) broke the tool
                result.output = f"Error: {TOOL_BROKE[call.name]} ({type(exc).__name__}: {exc})"
                result.error = True
        elif call.name == "submit":
            result.output = "Submitted."
        result.output = truncate_middle(result.output, self.max_output_chars)
        result.seconds = time.perf_counter() - started
        return result

    def _check(self, call: ToolCall) -> str:
        if call.name not in TOOL_NAMES:
            return f"Error: there is no tool named {call.name!r}; the tools are {', '.join(TOOL_NAMES)}."
        missing = [a for a in required_arguments(call.name) if a not in call.arguments]
        if missing:
            return f"Error: {call.name} needs the argument(s) {', '.join(missing)}."
        if call.name == "bash" and not isinstance(call.arguments["command"], str):
            return "Error: bash's `command` must be a string."
        return ""

    async def _bash(self, command: str, result: ToolResult, timeout: float) -> None:
        res = await self.sandbox.exec(command, timeout=timeout, output_limit=max(4 * self.max_output_chars, 65536))
        result.command_seconds, result.exit_code = res.seconds, res.exit_code
        out = res.output
        if res.timed_out:
            out += f"\n[{res.note or f'the command ran past {timeout:g} s and was killed'}]"
        elif res.exit_code not in (0, None):
            out += f"\n[exit code {res.exit_code}]"
        if res.note and not res.timed_out:
            out += f"\n[{res.note}]"
        result.output = out if out.strip() else "[no output]"
        result.error = not res.ok
