"""The sandboxes a task needs: the agent's and the grader's, from the task's row.

Both carry what an image envfarm did not build needs to be adapted (see
envfarm.sandbox.foreign_images): the commit the repository starts at and the lines of the eval
script that activate the test environment. The agent's commands run as `agent`; the grader's
as the image's own user, as swebench's harness runs the eval script (envfarm's images say
`agent`, public SWE-bench images root).
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from envfarm.sandbox.base import SandboxSpec
from envfarm.tasks.schema import Task

# First words of the eval-script lines that activate a test environment (conda, a virtualenv,
# exported variables); nothing else of the script reaches the agent's shell.
_ACTIVATING = ("source", ".", "conda", "micromamba", "mamba", "export", "pyenv")
_HEREDOC = re.compile(r"<<-?\s*['\"]?\w")


def activation(eval_script: str) -> str:
    """The lines of `eval_script` that set up the test environment, in order: every `source`,
    `.`, `conda activate`, `export ...` line before the script's first here-document (the test
    patch travels in one, and must never reach the agent). A line with a redirection,
    substitution or command separator is left out: only plain activation is copied."""
    kept: list[str] = []
    for raw in eval_script.splitlines():
        line = raw.strip()
        if _HEREDOC.search(line):
            break
        if not line or line.startswith("#"):
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        if not words or words[0] not in _ACTIVATING:
            continue
        if words[0] in ("conda", "micromamba", "mamba") and words[1:2] != ["activate"]:
            continue
        if any(ch in line for ch in ";&|<>`") or "$(" in line:
            continue
        kept.append(line)
    return "\n".join(kept)


def sandbox_image_inputs(task: Task) -> tuple[str, str]:
    """(base commit, activation) for adapting the task's image: a bug-patch task starts from the
    image's HEAD (its bug is committed at sandbox start), any other from `base_commit`."""
    return ("" if task.bug_patch else task.base_commit), activation(task.eval_script)


def agent_spec(task: Task, **settings: Any) -> SandboxSpec:
    """The agent's sandbox for `task` (`settings`: SandboxSpec fields such as limits)."""
    base_commit, act = sandbox_image_inputs(task)
    return SandboxSpec(image=task.image, base_commit=base_commit, activation=act, **settings)


def grading_spec(task: Task, **settings: Any) -> SandboxSpec:
    """A grading sandbox for `task`: the image's own user runs the eval script."""
    base_commit, act = sandbox_image_inputs(task)
    return SandboxSpec(image=task.image, user=None, base_commit=base_commit, activation=act, **settings)
