"""The graded run the grade CLI's Docker tests share: six builtin inflection tasks, six predictions.

Predictions: two gold patches (resolved), a patch that applies but fixes nothing (unresolved), a
patch that does not apply (an error instance, as in swebench), an empty and a null patch (empty
patch instances, never graded). The tasks file names exactly these six tasks, so the report's
totals are theirs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envfarm.tasks.loading import load
from envfarm.tasks.schema import Task

RUN_ID = "ci-grade"
MODEL = "org/model-x"  # a "/" in the name: swebench's folder spells it org__model-x
WRONG = ("diff --git a/NOTES.txt b/NOTES.txt\nnew file mode 100644\n--- /dev/null\n+++ b/NOTES.txt\n"
         "@@ -0,0 +1 @@\n+not a fix\n")


def not_applying(patch: str) -> str:
    """The patch with every removed line changed: neither git apply nor patch --fuzz can place it."""
    return "\n".join("-zz" + line[1:] if line.startswith("-") and not line.startswith("---") else line
                     for line in patch.split("\n"))


@dataclass
class GradedRun:
    tasks: list[Task]
    predictions: list[dict[str, Any]]
    expected: dict[str, str]  # instance id -> resolved | unresolved | error | empty
    folder: Path
    tasks_file: Path
    predictions_file: Path
    out: Path
    proc: subprocess.CompletedProcess

    @property
    def report(self) -> dict[str, Any]:
        return json.loads((self.out / f"org__model-x.{RUN_ID}.json").read_text())

    def instance_dir(self, instance_id: str) -> Path:
        return self.out / "logs" / "run_evaluation" / RUN_ID / "org__model-x" / instance_id

    def ids(self, verdict: str) -> list[str]:
        return sorted(i for i, v in self.expected.items() if v == verdict)


def grade_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "envfarm.grade", *args], capture_output=True, text=True,
                          timeout=timeout)


def make_graded_run(folder: Path) -> GradedRun:
    """Grade the six predictions with `python -m envfarm.grade` into `folder`."""
    tasks = [t for t in load("builtin:inflection") if t.bug_patch][:6]
    patches = [(tasks[0].patch, "resolved"), ("", "empty"), (WRONG, "unresolved"),
               (not_applying(tasks[3].patch), "error"), (None, "empty"), (tasks[5].patch, "resolved")]
    preds = [{"instance_id": t.instance_id, "model_name_or_path": MODEL, "model_patch": p}
             for t, (p, _) in zip(tasks, patches, strict=True)]
    tasks_file = folder / "tasks.jsonl"
    tasks_file.write_text("".join(t.model_dump_json() + "\n" for t in tasks))
    preds_file = folder / "preds.jsonl"
    preds_file.write_text("".join(json.dumps(p) + "\n" for p in preds))
    out = folder / "out"
    proc = grade_cli("--tasks", str(tasks_file), "--predictions", str(preds_file), "--run-id", RUN_ID,
                     "--out", str(out), "--workers", "2")
    expected = {t.instance_id: v for t, (_, v) in zip(tasks, patches, strict=True)}
    return GradedRun(tasks, preds, expected, folder, tasks_file, preds_file, out, proc)
