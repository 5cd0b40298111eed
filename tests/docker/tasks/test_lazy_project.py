"""A project whose image is not built up front: the first task that needs it builds it, and its
shipped tasks grade as validated (gold resolves, empty does not) with no copy of a fix outside /testbed."""

from __future__ import annotations

import asyncio

import pytest

from envfarm.sandbox.images import load_projects
from envfarm.suitegen.leaks import scan_image
from envfarm.tasks.grading import grade
from envfarm.tasks.images_needed import ensure_task_images
from envfarm.tasks.loading import load_builtin

pytestmark = pytest.mark.docker

# A small project with a fast suite: its image builds in well under a minute on two cores.
LAZY = "webcolors"


@pytest.mark.timeout(600)
def test_a_lazy_project_image_is_built_on_first_use_and_grades(docker_engine):
    project = load_projects()[LAZY]
    assert not project.core
    tasks = load_builtin(LAZY)
    assert tasks and {t.image for t in tasks} == {project.image}
    ensure_task_images(tasks[:1])  # builds it when missing (cached by its spec label otherwise)

    async def both():
        return await grade(tasks[0], tasks[0].patch), await grade(tasks[0], "")

    gold, empty = asyncio.run(both())
    assert gold.resolved and not gold.error_kind, gold
    assert not empty.resolved and not empty.error_kind, empty
    scan = scan_image(project.image, tasks)
    assert not scan.unsafe, scan
