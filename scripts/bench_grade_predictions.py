"""`python -m envfarm.grade` against swebench's own run_evaluation: same predictions file, same verdicts, speed.

    python scripts/bench_grade_predictions.py --predictions 8 --workers 2 [--json]

Builtin tasks, round robin over projects, get one prediction each, in a cycle of six: gold,
a patch that applies but fixes nothing (a new file), gold, a patch that does not apply, gold,
an empty patch. Both graders get the same predictions file and `--workers`, each as its command
line is run (a fresh interpreter, timed from start to exit). swebench runs offline on a rows
file whose rows name an image per instance at its base commit, made before the timer from
envfarm's repository images and removed after (`envfarm.grade.reference`); envfarm grades on
the shared repository images. The two run reports must agree on every key but the machine-state
ones (unstopped containers, unremoved images: `reference.MACHINE_STATE_KEYS`).

Figures: `envfarm_grade_instances_per_min` and `swebench_instances_per_min` (graded instances,
empty patches excluded, per minute of the command's wall time), their ratio
`envfarm_vs_swebench_speed_ratio`, `verdicts_agree` and the keys that differ. With --json the
last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench_grading import sample
from benchlib import report

from envfarm.grade import reference
from envfarm.tasks.images_needed import ensure_task_images
from envfarm.tasks.loading import load
from envfarm.tasks.schema import Task

WRONG = ("diff --git a/ENVFARM_BENCH.txt b/ENVFARM_BENCH.txt\nnew file mode 100644\n--- /dev/null\n"
         "+++ b/ENVFARM_BENCH.txt\n@@ -0,0 +1 @@\n+not a fix\n")
CYCLE = ("gold", "wrong", "gold", "not_applying", "gold", "empty")


def not_applying(patch: str) -> str:
    return "\n".join("-zz" + line[1:] if line.startswith("-") and not line.startswith("---") else line
                     for line in patch.split("\n"))


def predictions(tasks: list[Task]) -> list[dict]:
    patches = {"gold": lambda t: t.patch, "wrong": lambda t: WRONG, "not_applying": lambda t: not_applying(t.patch),
               "empty": lambda t: ""}
    return [{"instance_id": t.instance_id, "model_name_or_path": "envfarm-bench",
             "model_patch": patches[CYCLE[i % len(CYCLE)]](t)} for i, t in enumerate(tasks)]


def run_envfarm(tasks_file: Path, preds_file: Path, run_id: str, workers: int, out: Path) -> tuple[dict, float]:
    cmd = [sys.executable, "-m", "envfarm.grade", "--tasks", str(tasks_file), "--predictions", str(preds_file),
           "--run-id", run_id, "--workers", str(workers), "--out", str(out)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"python -m envfarm.grade failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads((out / f"envfarm-bench.{run_id}.json").read_text()), wall


def main_with(args: argparse.Namespace, tmp: Path) -> dict:
    tasks = sample(load(args.spec), args.predictions)
    if not tasks:
        raise SystemExit(f"no tasks with a bug_patch in {args.spec!r}")
    ensure_task_images(tasks)
    preds = predictions(tasks)
    graded = [t for t, p in zip(tasks, preds, strict=True) if p["model_patch"]]
    tasks_file = tmp / "tasks.jsonl"
    tasks_file.write_text("".join(t.model_dump_json() + "\n" for t in tasks))
    preds_file = tmp / "preds.jsonl"
    preds_file.write_text("".join(json.dumps(p) + "\n" for p in preds))
    print(f"{len(preds)} predictions ({len(graded)} to grade) over {len({t.repo for t in tasks})} projects; "
          "making swebench's per-instance images (not timed)", file=sys.stderr)
    images = asyncio.run(reference.make_instance_images(graded))
    run_id = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        rows = reference.write_rows(tasks, images, tmp / "swebench_rows.jsonl")
        (tmp / "envfarm").mkdir()
        (tmp / "swebench").mkdir()
        ours, ef_wall = run_envfarm(tasks_file, preds_file, run_id, args.workers, tmp / "envfarm")
        print(f"envfarm.grade: {len(graded)} graded in {ef_wall:.1f} s", file=sys.stderr)
        theirs, sb_wall = reference.run_swebench(rows, preds_file, run_id, args.workers, tmp / "swebench")
        print(f"swebench run_evaluation: {len(graded)} graded in {sb_wall:.1f} s", file=sys.stderr)
    finally:
        reference.remove_containers(run_id)
        reference.remove_images(images, graded)
    a, b = reference.verdicts(ours), reference.verdicts(theirs)
    differing = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    ef_rate, sb_rate = len(graded) / ef_wall * 60, len(graded) / sb_wall * 60
    return {
        "predictions": len(preds), "graded_instances": len(graded), "projects": len({t.repo for t in tasks}),
        "workers": args.workers,
        "verdicts_agree": not differing, "differing_keys": differing,
        "report_keys_identical": set(ours) == set(theirs),
        "resolved_instances": ours["resolved_instances"], "unresolved_instances": ours["unresolved_instances"],
        "error_instances": ours["error_instances"], "empty_patch_instances": ours["empty_patch_instances"],
        "envfarm_grade_wall_s": round(ef_wall, 2), "swebench_wall_s": round(sb_wall, 2),
        "envfarm_grade_instances_per_min": round(ef_rate, 2), "swebench_instances_per_min": round(sb_rate, 2),
        "envfarm_vs_swebench_speed_ratio": round(ef_rate / sb_rate, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", default="builtin", help="task spec for envfarm.tasks.load")
    parser.add_argument("--predictions", type=int, default=8, help="predictions, one per task (default: 8)")
    parser.add_argument("--workers", type=int, default=2, help="workers for both graders (default: 2)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="envfarm-bench-preds-") as tmp:
        figures = main_with(args, Path(tmp))
    report(figures, args.json)
    return 0 if figures["verdicts_agree"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
