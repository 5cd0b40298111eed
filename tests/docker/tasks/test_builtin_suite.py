"""The shipped builtin suite, for real: a sample with gold and empty patches; missing images are named."""

from __future__ import annotations

import asyncio

import pytest

from envfarm.sandbox.base import ImageMissingError
from envfarm.sandbox.images import load_projects
from envfarm.tasks.grading import grade
from envfarm.tasks.images_needed import ensure_task_images, missing_images
from envfarm.tasks.loading import BUILTIN_DIR, load_jsonl
from envfarm.tasks.schema import Task

pytestmark = pytest.mark.docker


PROJECTS = load_projects()
# The first task of every project's single-bug file (the other kinds have their own sample in
# test_task_kinds_sample.py)...
FIRSTS = [tasks[0] for f in sorted(BUILTIN_DIR.glob("*.jsonl")) if f.name != "fixtures.jsonl" and f.name.count(".") == 1
          for tasks in [load_jsonl(f)] if tasks]
# ... of every core project (the images bootstrap builds); the other projects' images are built on
# first use (tests/docker/tasks/test_lazy_project.py grades one of them).
SAMPLE = [t for t in FIRSTS if PROJECTS[t.repo].core]


def test_every_project_ships_tasks():
    shipped = {t.repo for t in FIRSTS}
    assert len(shipped) >= 30
    assert shipped <= set(PROJECTS)
    assert {t.repo for t in SAMPLE} == {n for n, p in PROJECTS.items() if p.core}


@pytest.mark.timeout(600)
def test_sample_gold_resolves_and_empty_does_not(docker_engine):
    ensure_task_images(SAMPLE)

    async def both(task: Task, sem: asyncio.Semaphore) -> tuple[str, bool, bool, str]:
        async with sem:
            gold = await grade(task, task.patch)
            empty = await grade(task, "")
        why = f"gold: {gold.status} {gold.error_kind} {gold.error}; empty: {empty.status} {empty.error_kind}"
        return task.instance_id, gold.resolved and not gold.error_kind, not empty.resolved and not empty.error_kind, why

    async def run() -> list[tuple[str, bool, bool, str]]:
        sem = asyncio.Semaphore(2)
        return await asyncio.gather(*(both(t, sem) for t in SAMPLE))

    results = asyncio.run(run())
    bad = [(iid, why) for iid, gold_ok, empty_ok, why in results if not (gold_ok and empty_ok)]
    assert not bad, bad


def test_missing_image_is_named_with_how_to_get_it(docker_engine):
    row = SAMPLE[0].model_dump()
    real = Task.parse({**row, "instance_id": "x__missing", "image": "envfarm/repo-inflection:0.0.0-missing"})
    foreign = Task.parse({**row, "instance_id": "y__missing", "image": "example.invalid/sweb.eval.x86_64.y:latest"})
    assert missing_images([real, foreign]) == sorted([real.image, foreign.image])
    with pytest.raises(ImageMissingError) as err:
        ensure_task_images([real, foreign], build=False, pull=False)
    text = str(err.value)
    assert real.image in text and foreign.image in text
    assert "docker load" in text
    assert ensure_task_images(SAMPLE[:1], build=False, pull=False) == []
