"""Check (and where envfarm knows how, build) the images a list of tasks needs, before any run.

A farm that finds a missing image only when the first sandbox starts fails late and on every
node; checking up front gives one clear error that names each missing image and how to get it:
envfarm's own repository images are built offline from images/projects.toml, and any other
image (a real SWE-bench row's) is pulled when a registry is reachable, else must be
`docker load`ed from a tarball. The supply itself is `envfarm.sandbox.image_supply`'s; this
module only says which images tasks name.
"""

from __future__ import annotations

from collections.abc import Iterable

from envfarm.sandbox import image_supply
from envfarm.tasks.schema import Task


def missing_images(tasks: Iterable[Task]) -> list[str]:
    """Images the tasks name that are not on this machine, sorted."""
    return image_supply.missing_images(t.image for t in tasks)


def ensure_task_images(tasks: Iterable[Task], build: bool = True, pull: bool = True) -> list[str]:
    """Make sure every image the tasks need exists; returns the images it had to build or pull.

    Raises ImageMissingError naming every image still missing and how to get each one.
    """
    return image_supply.ensure_images((t.image for t in tasks), build=build, pull=pull)
