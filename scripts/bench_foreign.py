"""Public-style task images: the one-time adaptation per image, and each episode's cost next to
envfarm's own images.

Builds the three foreign-style example images (tests/docker/foreign/foreign_rows.py: root user,
full history, one with a conda-like environment, one with the fix in later commits), then:

- adaptation: per image, the adapted image removed and made again (`adapt_image`), seconds;
- per episode, interleaved foreign / builtin on the same task (the builtin inflection task each
  foreign row was made from): an agent's sandbox started and brought to the base commit
  (`sandbox_setup`), and the gold patch graded in a fresh sandbox (`grade`); medians and the
  foreign / builtin ratio.

    python scripts/bench_foreign.py [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchlib import report

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "docker" / "foreign"))
from foreign_rows import TASK_PICKS, build_foreign_rows  # noqa: E402

from envfarm.sandbox.backends import default_sandbox_factory  # noqa: E402
from envfarm.sandbox.docker_backend import docker_client  # noqa: E402
from envfarm.sandbox.foreign_images import adapt_image, adapted_tag  # noqa: E402
from envfarm.tasks.grading import grade  # noqa: E402
from envfarm.tasks.loading import load_builtin  # noqa: E402
from envfarm.tasks.sandbox_specs import agent_spec, sandbox_image_inputs  # noqa: E402
from envfarm.tasks.schema import Task  # noqa: E402
from envfarm.tasks.setup import prepare_repository  # noqa: E402


def adaptation_seconds(task: Task) -> float:
    """Remove the task's adapted image and make it again."""
    base, activation = sandbox_image_inputs(task)
    client = docker_client()
    source = client.images.get(task.image)
    tag = adapted_tag(task.image, source.id, base, activation)
    try:
        client.images.remove(tag, force=True)
    except Exception:  # noqa: BLE001 - not made yet
        pass
    import envfarm.sandbox.foreign_images as foreign

    foreign._adapted.clear()
    started = time.perf_counter()
    adapt_image(task.image, base, activation)
    return time.perf_counter() - started


async def sandbox_setup_seconds(task: Task) -> float:
    started = time.perf_counter()
    sandbox = await default_sandbox_factory()(agent_spec(task), task.instance_id)
    try:
        await prepare_repository(sandbox, task)
        return time.perf_counter() - started
    finally:
        await sandbox.close()


async def grade_seconds(task: Task) -> float:
    result = await grade(task, task.patch)
    if not result.resolved:
        raise RuntimeError(f"{task.instance_id}: the gold patch did not resolve: {result.error_kind} {result.error}")
    return result.seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="episodes of each kind per task")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        rows = build_foreign_rows(Path(tmp))
    foreign = [Task.parse(r) for r in rows]
    builtin_all = [t for t in load_builtin("inflection")
                   if t.bug_patch and not t.instance_id.startswith("inflection__ord")]
    builtin = [builtin_all[pick] for pick in TASK_PICKS.values()]

    adapt = [adaptation_seconds(t) for t in foreign]
    setup = {"foreign": [], "builtin": []}
    grading = {"foreign": [], "builtin": []}
    for _ in range(args.rounds):
        for mine, theirs in zip(foreign, builtin, strict=True):
            for kind, task in (("foreign", mine), ("builtin", theirs)):
                setup[kind].append(asyncio.run(sandbox_setup_seconds(task)))
                grading[kind].append(asyncio.run(grade_seconds(task)))

    med = {k: {"setup": statistics.median(setup[k]), "grade": statistics.median(grading[k])} for k in setup}
    figures = {
        "images": len(foreign),
        "adaptation_per_image_p50_s": round(statistics.median(adapt), 3),
        "adaptation_per_image_max_s": round(max(adapt), 3),
        "foreign_sandbox_setup_p50_s": round(med["foreign"]["setup"], 3),
        "builtin_sandbox_setup_p50_s": round(med["builtin"]["setup"], 3),
        "foreign_vs_builtin_setup_ratio": round(med["foreign"]["setup"] / med["builtin"]["setup"], 3),
        "foreign_grade_p50_s": round(med["foreign"]["grade"], 3),
        "builtin_grade_p50_s": round(med["builtin"]["grade"], 3),
        "foreign_vs_builtin_grade_ratio": round(med["foreign"]["grade"] / med["builtin"]["grade"], 3),
        "episodes_per_kind": len(setup["foreign"]),
    }
    report(figures, args.json)


if __name__ == "__main__":
    main()
