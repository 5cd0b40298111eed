"""ScriptedPolicy: solves a task through the tools from its gold patch, like a careful agent would.

It explores (git status, grep for the code to change), views the region, edits it with one
`str_replace` per hunk of the gold patch, runs the tests, and submits. It is the end-to-end
check of the environment (tools, diff extraction, grading) and the farm's default policy: it
needs no model, is deterministic, and takes milliseconds a turn.

If an edit is refused (a hunk whose text is not unique in the file), it falls back to applying
the whole gold patch with `git apply` from bash, then tests and submits; so it does from the
start for a file the editor cannot change at all (binary; a rename, copy, deletion or mode change
without hunks). A mode change next to hunks is left out: the hunks go through the editor.

The policy is stateless between calls: where it is in its plan follows from the conversation,
so one instance serves any number of concurrent episodes. It is an oracle (envfarm.policy.oracle):
the episode loop hands it each episode's task.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from envfarm.policy.base import Completion
from envfarm.policy.oracle import episode_task
from envfarm.tasks.diff import parse_diff
from envfarm.tasks.schema import Task

FALLBACK_MARK = "# envfarm-scripted: apply the gold patch"
PATCH_EOF = "ENVFARM_GOLD_PATCH_EOF"


def apply_patch_command(patch: str, reset: bool = False, workdir: str = "/testbed") -> str:
    """Bash that applies `patch` to the repository with `git apply`, the patch in a here-document.

    With `reset`, the work tree is put back to its commit first (a half-done edit is undone).
    The scripted policy's fallback and the training guide (train/trainer_policies.py) both use it.
    """
    patch = patch if patch.endswith("\n") else patch + "\n"
    start = "git checkout -q -- . && git clean -fdq && " if reset else ""
    return (f"cd {shlex.quote(workdir)} && {start}git apply --whitespace=nowarn <<'{PATCH_EOF}'\n"
            f"{patch}{PATCH_EOF}")


def _call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


class ScriptedPolicy:
    name = "scripted"
    oracle = True  # plays the gold patch: the episode loop hands it the task

    def __init__(self, style: str = "hermes", run_tests: bool = True) -> None:
        if style not in ("hermes", "openai"):
            raise ValueError("style must be 'hermes' (<tool_call> tags) or 'openai' (function-call JSON)")
        self.style = style
        self.run_tests = run_tests

    # -- the plan ----------------------------------------------------------------------------
    def plan(self, task: Task) -> list[list[dict[str, Any]]]:
        """Every turn's tool calls, from exploration to submit."""
        files = parse_diff(task.patch)
        editable = [f for f in files if not f.binary and not f.deleted]
        first = next((f for f in editable if f.hunks and not f.new_file), None)
        turns: list[list[dict[str, Any]]] = []
        explore = "cd /testbed && git status --short && ls"
        if first is not None:
            needle = next((ln.strip() for h in first.hunks for ln in h.old_lines if ln.strip()), "")
            if needle:
                explore += f" && grep -n -F -- {shlex.quote(needle)} {shlex.quote(first.path)} | head -20"
        turns.append([_call("bash", command=explore)])
        if first is not None:
            h = first.hunks[0]
            end = max(h.old_start, h.old_start + len(h.old_lines) - 1)
            turns.append([_call("str_replace_editor", command="view", path=first.path, view_range=[h.old_start, end])])
        for f in files:
            if f.binary or (not f.hunks and (f.deleted or f.renamed or f.copied or f.mode_changed)):
                # nothing the editor can express: apply the whole patch instead
                return turns + [[_call("bash", command=self._fallback(task))]] + self._finish(task)
            if f.deleted:
                turns.append([_call("bash", command=f"cd /testbed && rm -f {shlex.quote(f.path)}")])
            elif f.new_file:
                text = "".join(h.new_text for h in f.hunks)
                turns.append([_call("str_replace_editor", command="create", path=f.path, file_text=text)])
            else:
                for h in f.hunks:
                    if not h.old_text:
                        return turns + [[_call("bash", command=self._fallback(task))]] + self._finish(task)
                    turns.append([_call("str_replace_editor", command="str_replace", path=f.path,
                                        old_str=h.old_text, new_str=h.new_text)])
        return turns + self._finish(task)

    def _finish(self, task: Task) -> list[list[dict[str, Any]]]:
        turns = []
        test_files = sorted({t.split("::")[0] for t in task.FAIL_TO_PASS if "::" in t})
        if self.run_tests and test_files:
            files = " ".join(shlex.quote(f) for f in test_files)
            turns.append([_call("bash", command=f"cd /testbed && python3 -m pytest -q -p no:cacheprovider {files} "
                                                "2>&1 | tail -5")])
        return turns + [[_call("submit")]]

    def _fallback(self, task: Task) -> str:
        return f"{FALLBACK_MARK}\n{apply_patch_command(task.patch, reset=True)}"

    # -- the Policy protocol -------------------------------------------------------------------
    async def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Completion:
        task = episode_task()
        assistants = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
        fallback_at = next((n for n, i in enumerate(assistants) if FALLBACK_MARK in _text_of(messages[i])), None)
        plan = self.plan(task)
        if fallback_at is not None:
            rest = self._finish(task)
            calls = rest[min(len(assistants) - fallback_at - 1, len(rest) - 1)]
        elif assistants and _last_observation(messages).startswith("Error:"):
            calls = [_call("bash", command=self._fallback(task))]
        else:
            calls = plan[min(len(assistants), len(plan) - 1)]
        return Completion(text=self._render(calls), finish_reason="stop")

    def _render(self, calls: list[dict[str, Any]]) -> str:
        names = ", ".join(c["name"] for c in calls)
        if self.style == "openai":
            return json.dumps({"tool_calls": [{"type": "function", "function": {
                "name": c["name"], "arguments": json.dumps(c["arguments"])}} for c in calls]})
        body = "\n".join(f"<tool_call>\n{json.dumps(c)}\n</tool_call>" for c in calls)
        return f"Next: {names}.\n{body}"


def _text_of(message: dict[str, Any]) -> str:
    parts = [str(message.get("content") or "")]
    for call in message.get("tool_calls") or []:
        parts.append(str((call.get("function") or {}).get("arguments", "")))
    return "\n".join(parts)


def _last_observation(messages: list[dict[str, Any]]) -> str:
    """The first tool output after the last assistant message (or the user message there)."""
    last = max(i for i, m in enumerate(messages) if m.get("role") == "assistant")
    after = messages[last + 1:]
    return str(after[0].get("content") or "") if after else ""
