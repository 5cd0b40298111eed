"""Image supply: is an image here, pull it, load it from a tarball, build it, export it.

One module, through the Docker SDK (the client sandboxes use), for the two ways images are
asked for:

- `ensure_image(image, registry, tarball, peers)`: a farm host, once per image and engine,
  before the first sandbox: present, else pulled from `registry`, else streamed from a peer node
  that has it (`export_image_chunks` there, `load_image` here), else built from this repository's
  images/ (envfarm's own repository images; slowest), else loaded from a tarball the driver shipped.
- `ensure_images(images)`: before a run, every image a task list needs, with one error that names
  each missing image and how to get it (fail early, not on every node at the first sandbox).

Building itself (debootstrap, `docker build`) is `envfarm.sandbox.images`' job; this module only
decides when to call it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import docker
import docker.errors
import requests
from docker.utils import parse_repository_tag

from envfarm.sandbox.base import ImageMissingError, SandboxError
from envfarm.sandbox.docker_backend import docker_client
from envfarm.sandbox.node_lock import NodeLock


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


def load_image(data: bytes | Iterable[bytes]) -> None:
    """`docker load` of a `docker save` tarball, whole or as a stream of chunks (sent as they come)."""
    try:
        docker_client().images.load(iter(data) if not isinstance(data, bytes) else data)
    except docker.errors.APIError as exc:
        raise SandboxError(f"docker load failed: {exc.explanation or exc}") from exc
    except docker.errors.DockerException as exc:  # ImageLoadError: the engine refused the stream
        raise SandboxError(f"docker load failed: {exc}") from exc


EXPORT_CHUNK = 8 << 20  # bytes per chunk of a streamed `docker save`: one object in Ray's store each


def export_image_chunks(tag: str, chunk_size: int = EXPORT_CHUNK) -> Iterator[bytes]:
    """`docker save` of one image, with its tag, as chunks: for a node that lacks it (peer transfer)."""
    try:
        image = docker_client().images.get(tag)
        named: str | bool = tag if tag in image.tags else f"{tag}:latest" if f"{tag}:latest" in image.tags \
            else bool(image.tags)
        buf = bytearray()
        for piece in image.save(chunk_size=chunk_size, named=named):  # the engine's pieces are far smaller
            buf += piece
            if len(buf) >= chunk_size:
                yield bytes(buf)
                buf.clear()
        if buf:
            yield bytes(buf)
    except docker.errors.ImageNotFound as exc:
        raise ImageMissingError(f"image {tag!r} is not on this machine: nothing to export") from exc
    except docker.errors.APIError as exc:
        raise SandboxError(f"docker save {tag} failed: {exc}") from exc


def export_image(tag: str) -> bytes:
    """`docker save` of one image, with its tag, in one piece (the driver ships it to a host)."""
    return b"".join(export_image_chunks(tag))


def held_images(images: Iterable[str]) -> set[str]:
    """Which of `images` this engine has (one listing, not one lookup per image)."""
    wanted = set(images)
    if not wanted:
        return set()
    try:
        tags = {t for img in docker_client().images.list() for t in img.tags}
    except (docker.errors.APIError, requests.exceptions.ConnectionError) as exc:
        raise SandboxError(f"cannot list images: {exc}") from exc
    return {img for img in wanted if img in tags or f"{img}:latest" in tags}


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


# A peer: a node that has an image and streams it (`docker save` chunks); raises when it cannot.
PeerSource = Callable[[str], Iterable[bytes]]


def engine_id() -> str:
    """This Docker engine's id (one per data root): several engines can share one machine."""
    try:
        return str(docker_client().info().get("ID") or "")
    except (docker.errors.APIError, requests.exceptions.ConnectionError) as exc:
        raise SandboxError(f"cannot reach the Docker engine: {exc}") from exc


def ensure_image(image: str, registry: str | None = None, tarball: bytes | None = None,
                 peers: Sequence[PeerSource] = ()) -> str:
    """Make `image` present on this engine, the fast way first; returns how it got here:
    present, pulled (from `registry`), peer (streamed from a node that has it), built (from
    this repository's images/, the last resort: debootstrap and `docker build` take minutes)
    or loaded (a tarball the driver shipped). Raises ImageMissingError naming every way tried.

    One fetch or build per image and engine at a time: concurrent callers, in this process or
    another, wait on a machine-wide lock and then find the image present.
    """
    if image_exists(image):
        return "present"
    with NodeLock(f"{engine_id()}/{image}"):
        if image_exists(image):
            return "present"
        return _supply(image, registry, tarball, peers)


def _fetch(image: str, registry: str | None, peers: Sequence[PeerSource], tried: list[str]) -> str | None:
    """The fast ways: pull from the registry, else stream from a peer; how, or None."""
    if registry:
        ref = f"{registry.rstrip('/')}/{image}"
        why = pull_image(ref, tag_as=image)
        if why is None:
            _untag(ref)
            return "pulled"
        tried.append(f"pull {ref}: {why[-200:]}")
    for i, peer in enumerate(peers):
        try:
            load_image(peer(image))
        except Exception as exc:  # noqa: BLE001 - a peer that died or lost the image: try the next way
            tried.append(f"peer {i}: {str(exc)[-200:]}")
            continue
        if image_exists(image):
            return "peer"
        tried.append(f"peer {i}: its stream did not hold {image}")
    return None


def _supply(image: str, registry: str | None, tarball: bytes | None, peers: Sequence[PeerSource]) -> str:
    tried: list[str] = []
    how = _fetch(image, registry, peers, tried)
    if how:
        return how
    project = _projects_by_image().get(image)
    if project is not None:
        from envfarm.sandbox.images import BASE_TAG, build_on_demand

        try:
            if not image_exists(BASE_TAG):  # the base by registry or peer too: debootstrap is the slowest way
                with NodeLock(f"{engine_id()}/{BASE_TAG}"):
                    if not image_exists(BASE_TAG):
                        _fetch(BASE_TAG, registry, peers, [])
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


def _untag(ref: str) -> None:
    """Drop the registry-qualified tag a pull left (the image keeps its plain tag)."""
    try:
        docker_client().images.remove(ref, noprune=True)
    except docker.errors.DockerException:
        pass


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


__all__ = ["PeerSource", "engine_id", "ensure_image", "ensure_images", "export_image", "export_image_chunks",
           "held_images", "image_exists", "load_image", "missing_images", "prune_dangling_images", "pull_image"]
