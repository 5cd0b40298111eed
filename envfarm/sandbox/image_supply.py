"""Image supply: is an image here, pull it, load it from a tarball, build it, export it.

One module, through the Docker SDK (the client sandboxes use), for the two ways images are
asked for:

- `ensure_image(image, registry, tarball)`: a farm host, once per image, before the first
  sandbox: present, else pulled from `registry`, else built from this repository's images/
  (envfarm's own repository images), else loaded from a `docker save` tarball the driver shipped.
- `ensure_images(images)`: before a run, every image a task list needs, with one error that names
  each missing image and how to get it (fail early, not on every node at the first sandbox).

Building itself (debootstrap, `docker build`) is `envfarm.sandbox.images`' job; this module only
decides when to call it.
"""

from __future__ import annotations

from collections.abc import Iterable

import docker
import docker.errors
import requests
from docker.utils import parse_repository_tag

from envfarm.sandbox.base import ImageMissingError, SandboxError
from envfarm.sandbox.docker_backend import docker_client


def image_exists(tag: str) -> bool:
    """Whether the engine has `tag`. An unreachable engine is a SandboxError, not an absent image."""
    try:
        docker_client().images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False
    except (docker.errors.APIError, requests.exceptions.ConnectionError) as exc:
        raise SandboxError(f"cannot look up image {tag!r}: {exc}") from exc


def pull_image(ref: str, tag_as: str | None = None, timeout: float | None = None) -> str | None:
    """Pull `ref` (and tag it `tag_as`); None when it worked, else why not (the engine's words).

    `timeout`: seconds the engine may stay silent (the shared client's 120 s when None).
    """
    client = None
    try:
        client = docker_client() if timeout is None else docker.from_env(timeout=timeout)
        image = client.images.pull(ref)
        if tag_as and tag_as != ref:
            repo, tag = parse_repository_tag(tag_as)
            image.tag(repo, tag or "latest")
    except (docker.errors.DockerException, requests.exceptions.RequestException, SandboxError) as exc:
        return str(exc).strip() or exc.__class__.__name__
    finally:
        if client is not None and timeout is not None:
            client.close()
    return None


def load_image(data: bytes) -> None:
    """`docker load` of a `docker save` tarball."""
    try:
        docker_client().images.load(data)
    except docker.errors.APIError as exc:
        raise SandboxError(f"docker load failed: {exc.explanation or exc}") from exc


def export_image(tag: str) -> bytes:
    """`docker save` of one image, with its tag, for shipping to a node that can neither pull nor build."""
    try:
        image = docker_client().images.get(tag)
        named: str | bool = tag if tag in image.tags else f"{tag}:latest" if f"{tag}:latest" in image.tags \
            else bool(image.tags)
        return b"".join(image.save(named=named))
    except docker.errors.ImageNotFound as exc:
        raise ImageMissingError(f"image {tag!r} is not on this machine: nothing to export") from exc
    except docker.errors.APIError as exc:
        raise SandboxError(f"docker save {tag} failed: {exc}") from exc


def prune_dangling_images() -> int:
    """Remove dangling envfarm images (older builds that a rebuild replaced); returns how many."""
    result = docker_client().images.prune(filters={"dangling": True, "label": "envfarm.spec"})
    return len(result.get("ImagesDeleted") or [])


def _projects_by_image() -> dict:
    from envfarm.sandbox.images import load_projects

    try:
        return {p.image: p for p in load_projects().values()}
    except OSError:
        return {}


def ensure_image(image: str, registry: str | None = None, tarball: bytes | None = None) -> str:
    """Returns how the image got here: present, pulled, built or loaded; raises ImageMissingError."""
    if image_exists(image):
        return "present"
    tried = []
    if registry:
        ref = f"{registry.rstrip('/')}/{image}"
        why = pull_image(ref, tag_as=image)
        if why is None:
            return "pulled"
        tried.append(f"pull {ref}: {why[-200:]}")
    project = _projects_by_image().get(image)
    if project is not None:
        from envfarm.sandbox.images import build_on_demand

        try:
            build_on_demand(project)
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


def missing_images(images: Iterable[str]) -> list[str]:
    """The images not on this machine, sorted and without repeats."""
    return sorted(img for img in set(images) if not image_exists(img))


def ensure_images(images: Iterable[str], build: bool = True, pull: bool = True) -> list[str]:
    """Make sure every image exists; returns the images it had to build or pull.

    Raises ImageMissingError naming every image still missing and how to get each one.
    """
    from envfarm.sandbox.images import build_on_demand

    by_image = _projects_by_image()
    got: list[str] = []
    problems: list[str] = []
    for image in missing_images(images):
        project = by_image.get(image)
        if project is not None and build:
            build_on_demand(project)
            got.append(image)
        elif project is None and pull and pull_image(image, timeout=120) is None:
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


__all__ = ["ensure_image", "ensure_images", "export_image", "image_exists", "load_image", "missing_images",
           "prune_dangling_images", "pull_image"]
