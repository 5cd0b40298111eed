"""swebench's own run_evaluation on the same tasks and predictions: the reference envfarm.grade is checked against.

envfarm's builtin tasks share one image per repository and reach their base commit when a
sandbox starts (`bug_patch`); swebench's harness wants an image already at the base commit, one
per instance. `make_instance_images` makes those (the bug committed in a container, `docker
commit`), `run_swebench` runs `python -m swebench.harness.run_evaluation` on a rows file that
names them, offline and in a folder of its own (its logs go to `logs/run_evaluation` under the
working directory), and `remove_images` removes them. Rows that have no `bug_patch` (real
SWE-bench rows) keep their own image. Used by tests/docker/grade and
scripts/bench_grade_predictions.py.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from envfarm.tasks.schema import Task

# keys of make_run_report that describe the machine (containers, images) rather than the verdicts
MACHINE_STATE_KEYS = frozenset({"unstopped_instances", "unstopped_containers", "unremoved_images"})


def instance_image(task: Task) -> str:
    return f"envfarm/swebench-ref-{task.instance_id.lower()}:latest" if task.bug_patch else task.image


async def make_instance_images(tasks: list[Task]) -> dict[str, str]:
    """instance id -> an image whose /testbed is at the task's base commit."""
    from envfarm.sandbox.base import SandboxSpec
    from envfarm.sandbox.docker_backend import DockerSandbox, docker_client
    from envfarm.tasks.setup import commit_bug

    images: dict[str, str] = {}
    for task in tasks:
        image = images[task.instance_id] = instance_image(task)
        if not task.bug_patch:
            continue
        sandbox = await DockerSandbox.create(SandboxSpec(image=task.image), run="swebench-reference",
                                             task=task.instance_id)
        try:
            head = await commit_bug(sandbox, task.bug_patch)
            if head != task.base_commit:
                raise RuntimeError(f"{task.instance_id}: base commit {head} != {task.base_commit}")
            repository, _, tag = image.rpartition(":")
            docker_client().api.commit(sandbox.container.id, repository=repository, tag=tag)
        finally:
            await sandbox.close()
    return images


def remove_images(images: dict[str, str], tasks: list[Task]) -> None:
    made = [images[t.instance_id] for t in tasks if t.bug_patch and t.instance_id in images]
    if made:
        subprocess.run(["docker", "rmi", "-f", *made], capture_output=True)


def write_rows(tasks: list[Task], images: dict[str, str], path: Path) -> Path:
    """The tasks as a swebench dataset file whose rows name the per-instance images (made or not:
    run_evaluation never starts one for an empty patch)."""
    rows = [{**t.swebench_instance(), "image": images.get(t.instance_id, instance_image(t))} for t in tasks]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run_swebench(rows: Path, predictions: Path, run_id: str, workers: int, cwd: Path,
                 timeout: int = 1800) -> tuple[dict[str, Any], float]:
    """swebench's run_evaluation in `cwd`; its report and the command's wall time in seconds."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # it sets soft = hard = this; never lower
    cmd = [sys.executable, "-m", "swebench.harness.run_evaluation", "--dataset_name", str(rows.resolve()),
           "--predictions_path", str(predictions.resolve()), "--run_id", run_id, "--max_workers", str(workers),
           "--timeout", str(timeout), "--report_dir", ".",
           "--open_file_limit", str(hard if hard != resource.RLIM_INFINITY else 65536)]
    started = time.perf_counter()
    for _ in range(3):
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        # make_run_report inspects every container it listed: one that removed itself in between
        # (any auto-removing container on the machine) ends the run; run again, it reuses the
        # instances' reports and only writes the run report
        if proc.returncode == 0 or "No such container" not in proc.stderr:
            break
    wall = time.perf_counter() - started
    reports = sorted(cwd.glob(f"*.{run_id}.json"))
    if proc.returncode != 0 or not reports:
        raise RuntimeError(f"swebench's run_evaluation failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(reports[0].read_text()), wall


def remove_containers(run_id: str) -> None:
    """The harness's containers of `run_id` (it removes them itself; this is for an interrupted run)."""
    from envfarm.sandbox.docker_backend import docker_client

    for container in docker_client().containers.list(all=True, filters={"name": f".{run_id}"}):
        container.remove(force=True)


def verdicts(report: dict[str, Any]) -> dict[str, Any]:
    """A run report without its machine-state keys: what must agree between two graders."""
    return {k: v for k, v in report.items() if k not in MACHINE_STATE_KEYS}
