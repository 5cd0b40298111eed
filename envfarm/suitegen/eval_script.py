"""Eval scripts in the shape swebench 5.x expects (markers, exit code line, test-file reset)."""

from __future__ import annotations

import shlex

from swebench.harness.constants import END_TEST_OUTPUT, START_TEST_OUTPUT

HEREDOC = "EOF_ENVFARM_114329324912"


def make_eval_script(base_commit: str, test_files: list[str], test_cmd: str,
                     test_patch: str = "", workdir: str = "/testbed",
                     env: dict[str, str] | None = None) -> str:
    """Restore the test files, apply the test patch, run the tests between swebench's markers.

    Restoring first is what stops an agent from passing by editing tests; the final reset leaves
    the repository as the agent left it.
    """
    files = " ".join(shlex.quote(f) for f in test_files)
    reset = f"git checkout -q {base_commit} -- {files}" if files else ":"
    lines = ["#!/bin/bash", "set -uxo pipefail", f"cd {shlex.quote(workdir)}"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in (env or {}).items()]
    lines.append(reset)
    if test_patch.strip():
        lines += [f"git apply -v - <<'{HEREDOC}'", test_patch.rstrip("\n"), HEREDOC]
    lines += [f": '{START_TEST_OUTPUT}'", test_cmd, f": '{END_TEST_OUTPUT}'", reset]
    return "\n".join(lines) + "\n"
