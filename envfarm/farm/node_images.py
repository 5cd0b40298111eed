"""Make a task's image exist on this node: pull, build from images/, or load a shipped tarball.

Tried in that order: a registry when one is configured (`--registry`), a build from this
repository's images/ when the image is one of envfarm's repository images, and a `docker save`
tarball shipped through Ray's object store by the driver. Each host does this once per image.
"""

from __future__ import annotations

import subprocess

from envfarm.sandbox.base import ImageMissingError
from envfarm.sandbox.images import build_repo, image_exists, load_image, load_projects


def ensure_image_on_node(image: str, registry: str | None = None, tarball: bytes | None = None) -> str:
    """Returns how the image got here: present, pulled, built or loaded; raises ImageMissingError."""
    if image_exists(image):
        return "present"
    tried = []
    if registry:
        ref = f"{registry.rstrip('/')}/{image}"
        proc = subprocess.run(["docker", "pull", ref], capture_output=True, text=True)
        if proc.returncode == 0:
            subprocess.run(["docker", "tag", ref, image], check=True, capture_output=True)
            return "pulled"
        tried.append(f"pull {ref}: {proc.stderr.strip()[-200:]}")
    project = next((p for p in _projects() if p.image == image), None)
    if project is not None:
        try:
            build_repo(project)
            return "built"
        except Exception as exc:  # noqa: BLE001 - any build failure falls through to the next way
            tried.append(f"build from images/: {exc}")
    else:
        tried.append("build: not an envfarm repository image")
    if tarball is not None:
        load_image(tarball)
        if image_exists(image):
            return "loaded"
        tried.append("load: the tarball did not contain it")
    else:
        tried.append("load: no tarball was shipped")
    raise ImageMissingError(
        f"image {image!r} is not on this node and could not be had ({'; '.join(tried)}). Pass --registry, "
        "build it with `python -m envfarm.sandbox.images build`, or `docker load -i <file>.tar` on every node"
    )


def _projects():
    try:
        return list(load_projects().values())
    except OSError:
        return []
