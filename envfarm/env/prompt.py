"""The text an agent starts from: what the job is, which tools exist and how to call them."""

from __future__ import annotations

import json
from typing import Any

from envfarm.tasks.schema import Task

SYSTEM_PROMPT = """You are a software engineer fixing a bug in a repository checked out at {workdir}.
Work with the tools: run commands with `bash`, read and change files with `str_replace_editor`, and call \
`submit` when the fix is done. Call a tool by writing, for example:
<tool_call>
{{"name": "bash", "arguments": {{"command": "ls"}}}}
</tool_call>
You may make several tool calls in one reply. Do not change the tests: hidden tests decide whether the bug is fixed."""

FORMAT_HELP = """No valid tool call was found in your reply{why}.
Call a tool by writing its name and arguments as JSON between tags, for example:
<tool_call>
{{"name": "bash", "arguments": {{"command": "grep -rn 'def main' ."}}}}
</tool_call>
Available tools: {tools}. Call `submit` (no arguments) when you are done."""


def system_prompt(workdir: str = "/testbed") -> str:
    return SYSTEM_PROMPT.format(workdir=workdir)


def first_observation(task: Task, tools: list[dict[str, Any]]) -> str:
    """The problem statement and the tool descriptions (for policies that read only the observation)."""
    lines = [f"<issue>\n{task.problem_statement.strip()}\n</issue>", "",
             "Fix the issue above by changing the source code (not the tests). Tools you can call:"]
    for tool in tools:
        fn = tool["function"]
        lines.append(f"- {fn['name']}: {fn['description']} Parameters: {json.dumps(fn['parameters'])}")
    return "\n".join(lines)


def format_help(errors: list[str], tool_names: list[str]) -> str:
    why = (": " + "; ".join(errors)) if errors else ""
    return FORMAT_HELP.format(why=why, tools=", ".join(tool_names))
