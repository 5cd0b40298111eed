"""Check (and where envfarm knows how, build) the images a list of tasks needs, before any run.

A farm that finds a missing image only when the first sandbox starts fails late and on every
node; checking up front gives one clear error that names each missing image and how to get it:
envfarm's own repository images are built offline from images/projects.toml, and any other
image (a real SWE-bench row's) is pulled when a registry is reachable, else must be
`docker load`ed from a tarball.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable

from envfarm.sandbox.base import ImageMissingError
from envfarm.sandbox.images import build_repo, image_exists, load_projects
from envfarm.tasks.schema import Task


def missing_images(tasks: Iterable[Task]) -> list[str]:
    """Images the tasks name that are not on this machine, sorted."""
    return sorted(img for img in {t.image for t in tasks} if not image_exists(img))


def _pull(image: str, timeout: float = 120) -> bool:
    try:
        return subprocess.run(["docker", "pull", image], capture_output=True, timeout=timeout).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def ensure_task_images(tasks: Iterable[Task], build: bool = True, pull: bool = True) -> list[str]:
    """Make sure every image the tasks need exists; returns the images it had to build or pull.

    Raises ImageMissingError naming every image still missing and how to get each one.
    """
    tasks = list(tasks)
    by_image = {p.image: p for p in load_projects().values()}
    got: list[str] = []
    problems: list[str] = []
    for image in missing_images(tasks):
        project = by_image.get(image)
        if project is not None and build:
            build_repo(project)
            got.append(image)
        elif project is None and pull and _pull(image):
            got.append(image)
        elif project is not None:
            problems.append(f"{image}: build it with `python -m envfarm.sandbox.images build {project.name}` "
                            f"or `docker load -i <file>.tar` a saved copy")
        else:
            problems.append(f"{image}: not on this machine and it could not be pulled; build it, or "
                            f"`docker save {image}` where it exists and `docker load -i <file>.tar` it here")
    if problems:
        raise ImageMissingError("missing task image(s):\n  " + "\n  ".join(problems))
    return got
