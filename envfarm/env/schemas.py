"""Tool schemas in the OpenAI function format, which every chat template can render."""

from __future__ import annotations

import json
from typing import Any

BASH = {
    "type": "function",
    "function": {
        "name": "bash",
        "description": (
            "Run a command in a persistent bash shell in the repository (working directory /testbed). "
            "State such as the current directory and exported variables persists between calls. "
            "There is no network and no interactive input; long-running commands are killed at the time limit."
        ),
        "parameters": {
            "type": "object",
            "properties": {"command": {"type": "string", "description": "The bash command to run."}},
            "required": ["command"],
        },
    },
}

EDITOR = {
    "type": "function",
    "function": {
        "name": "str_replace_editor",
        "description": (
            "View, create and edit files. `view` shows a file with line numbers (optionally a "
            "view_range [start, end], end -1 meaning the last line) or lists a directory; `create` writes a "
            "file; `str_replace` replaces old_str, which must occur exactly once, with new_str; `insert` adds "
            "new_str after line insert_line (0 for the top); `undo_edit` reverts the last edit of a file. "
            "Paths are absolute or relative to /testbed."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "command": {"type": "string", "enum": ["view", "create", "str_replace", "insert", "undo_edit"]},
                "path": {"type": "string", "description": "File or directory path."},
                "file_text": {"type": "string", "description": "Content for `create`."},
                "old_str": {"type": "string", "description": "Exact text to replace (`str_replace`)."},
                "new_str": {"type": "string", "description": "Replacement (`str_replace`) or text to insert."},
                "insert_line": {"type": "integer", "description": "Line after which to insert (`insert`)."},
                "view_range": {"type": "array", "items": {"type": "integer"},
                               "description": "[start, end] lines for `view`, 1-based, end -1 for the end."},
            },
            "required": ["command", "path"],
        },
    },
}

SUBMIT = {
    "type": "function",
    "function": {
        "name": "submit",
        "description": "Submit the current state of the repository as the solution; this ends the episode.",
        "parameters": {"type": "object", "properties": {}, "required": []},
    },
}

TOOL_SCHEMAS = [BASH, EDITOR, SUBMIT]
TOOL_NAMES = [t["function"]["name"] for t in TOOL_SCHEMAS]


_TOOL_SCHEMAS_JSON = json.dumps(TOOL_SCHEMAS)


def tool_schemas() -> list[dict[str, Any]]:
    """A fresh copy each time: callers (and templates) may mutate what they get. (A JSON round
    trip: ten times cheaper than deepcopy, which counts when a host runs thousands of envs.)"""
    return json.loads(_TOOL_SCHEMAS_JSON)


def required_arguments(name: str) -> list[str]:
    for tool in TOOL_SCHEMAS:
        if tool["function"]["name"] == name:
            return list(tool["function"]["parameters"]["required"])
    return []
