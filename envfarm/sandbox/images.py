"""Build envfarm's images offline: the base image and one image per repository.

Why here and not in a Dockerfile alone: no registry may be reachable, so the base image is made
from a `debootstrap` root file system when `debian:bookworm-slim` cannot be had, and the
repository sources are fetched on the host (`pip download`) because builds have no network.
Whether an image is present, pulls, loads and exports are `envfarm.sandbox.image_supply`'s job.
Builds are cached twice: an image whose `envfarm.spec` label matches the hash of its inputs is
not rebuilt at all, and Docker's layer cache covers the rest.

    python -m envfarm.sandbox.images build            # base + the core projects (`core = true`)
    python -m envfarm.sandbox.images build --all      # base + every project in images/projects.toml
    python -m envfarm.sandbox.images build inflection # base + one project

Only the core projects' images are built up front (bootstrap, CI: the tests use those); any other
project's image is built the first time a task needs it (`image_supply.ensure_image` on a farm
host, `ensure_task_images` before a run), in a minute or so, once per machine.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from envfarm.sandbox.base import SandboxError
from envfarm.sandbox.image_supply import image_exists, pull_image

BASE_TAG = "envfarm/base:bookworm"
ROOTFS_TAG = "envfarm/rootfs:bookworm"
REGISTRY_BASE = "debian:bookworm-slim"
BASE_PACKAGES = ["python3", "python3-pytest", "python3-pip", "git", "patch", "ca-certificates"]
CACHE_DIR = Path(os.environ.get("ENVFARM_CACHE", Path.home() / ".cache" / "envfarm"))


class ImageBuildError(RuntimeError):
    """An image could not be built; the message says which step failed and why."""


def images_dir() -> Path:
    """The repository's images/ folder (override with ENVFARM_IMAGES_DIR)."""
    env = os.environ.get("ENVFARM_IMAGES_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "images"


@dataclass(frozen=True)
class Project:
    """A real open-source project with a repository image (one entry of images/projects.toml)."""

    name: str
    version: str
    license: str
    test_cmd: str
    test_files: tuple[str, ...]
    test_deps: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    # Top-level import names of the project (from its `sources`): every other copy of them in
    # the image (Debian packages, copies vendored in other packages, their byte code) is removed
    # at build, because such a copy can hold the very lines a task's fix restores.
    packages: tuple[str, ...] = ()
    # Built up front by `build` without names (bootstrap, CI); the others are built on first use.
    core: bool = False

    @property
    def image(self) -> str:
        return repo_image_tag(self.name, self.version)

    @property
    def collect_cmd(self) -> str:
        """The project's test command as a pytest collection run, with its environment: run once
        at image build so the test modules pytest rewrites are compiled into the image."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        return f"{'env ' + env + ' ' if env else ''}{self.test_cmd} --collect-only -q"


def repo_image_tag(name: str, version: str) -> str:
    return f"envfarm/repo-{name.lower()}:{version}"


def load_projects(path: Path | None = None) -> dict[str, Project]:
    path = path or images_dir() / "projects.toml"
    data = tomllib.loads(path.read_text())
    return {
        name: Project(
            name=name,
            version=row["version"],
            license=row["license"],
            test_cmd=row["test_cmd"],
            test_files=tuple(row["test_files"]),
            test_deps=tuple(row.get("test_deps", [])),
            env=dict(row.get("env", {})),
            packages=import_names(row.get("sources", [])),
            core=bool(row.get("core", False)),
        )
        for name, row in data.items()
    }


def import_names(sources: list[str]) -> tuple[str, ...]:
    """Top-level import names of a project from its source paths ('src/' layouts included)."""
    names = []
    for path in sources:
        parts = path.split("/")
        if parts[0] == "src" and len(parts) > 1:
            parts = parts[1:]
        top = parts[0].removesuffix(".py")
        if top not in names:
            names.append(top)
    return tuple(names)


def _log(msg: str) -> None:
    print(f"[images] {msg}", file=sys.stderr, flush=True)


def _run(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("text", True)
    proc = subprocess.run(cmd, capture_output=True, **kw)
    if proc.returncode != 0:
        err = proc.stderr or proc.stdout
        err = err.decode(errors="replace") if isinstance(err, bytes) else err
        tail = "\n".join(err.strip().splitlines()[-15:])
        raise ImageBuildError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd[:4])} ...\n{tail}")
    return proc


def _image_label(tag: str, key: str = "envfarm.spec") -> str | None:
    proc = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", tag],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        return None
    labels = json.loads(proc.stdout.strip() or "null") or {}
    return labels.get(key)


def _hash(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def debian_mirror() -> str:
    """The Debian mirror this machine's own apt sources use (never a hard-coded host)."""
    candidates = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in candidates:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for m in re.finditer(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", text, re.M):
            url, suite = m.groups()
            if "debian" in url and "security" not in url and not suite.endswith("-security"):
                return url
        # deb822 stanzas
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and "debian" in uris.group(1) and "security" not in suites.group(1):
                return uris.group(1)
    raise ImageBuildError(
        "no Debian mirror found in /etc/apt/sources.list{,.d}: set ENVFARM_DEBIAN_MIRROR to one"
    )


def _registry_base_available(timeout: float = 25.0) -> bool:
    return image_exists(REGISTRY_BASE) or pull_image(REGISTRY_BASE, timeout=timeout) is None


def _build_rootfs_image() -> str:
    """debootstrap a minimal bookworm with the base packages and `docker import` it."""
    if image_exists(ROOTFS_TAG):
        return ROOTFS_TAG
    if shutil.which("debootstrap") is None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise ImageBuildError(
                "no registry is reachable and debootstrap is missing: install it (apt-get install "
                "debootstrap) or `docker load` an envfarm/base:bookworm image"
            )
        _log("installing debootstrap")
        apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        _run(["apt-get", "update", "-qq"], "apt-get update", env=apt_env)
        _run(["apt-get", "install", "-y", "-qq", "debootstrap"], "apt-get install debootstrap", env=apt_env)
    mirror = os.environ.get("ENVFARM_DEBIAN_MIRROR") or debian_mirror()
    with tempfile.TemporaryDirectory(prefix="envfarm-rootfs-") as root:
        _log(f"debootstrap bookworm from {mirror} (about a minute)")
        t0 = time.monotonic()
        _run(
            ["debootstrap", "--variant=minbase", "--include=" + ",".join(BASE_PACKAGES),
             "bookworm", root, mirror],
            "debootstrap",
        )
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for p in (Path(root) / junk).glob("*"):
                if p.is_file():
                    p.unlink()
        _log(f"debootstrap done in {time.monotonic() - t0:.0f} s; importing")
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        imp = subprocess.run(["docker", "import", "-", ROOTFS_TAG], stdin=tar.stdout,
                             capture_output=True, text=True)
        tar.wait()
        if imp.returncode != 0 or tar.returncode != 0:
            raise ImageBuildError(f"docker import of the root file system failed: {imp.stderr.strip()}")
    return ROOTFS_TAG


def _docker_build(tag: str, context: Path, dockerfile: Path, build_args: dict[str, str],
                  labels: dict[str, str]) -> None:
    cmd = ["docker", "build", "-q", "-t", tag, "-f", str(dockerfile), "--network", "host"]
    for k, v in build_args.items():
        cmd += ["--build-arg", f"{k}={v}"]
    for k, v in labels.items():
        cmd += ["--label", f"{k}={v}"]
    _run(cmd + [str(context)], f"docker build of {tag}")


def build_base(force: bool = False) -> str:
    """Build envfarm/base:bookworm (registry when reachable, else debootstrap); cached."""
    dockerfile = images_dir() / "base" / "Dockerfile"
    spec = _hash(dockerfile.read_bytes(), *BASE_PACKAGES)
    if not force and _image_label(BASE_TAG) == spec:
        _log(f"{BASE_TAG} is up to date")
        return BASE_TAG
    if _registry_base_available():
        base, how = REGISTRY_BASE, "registry"
    else:
        _log(f"{REGISTRY_BASE} cannot be pulled: building from a debootstrap root file system")
        base, how = _build_rootfs_image(), "debootstrap"
    _log(f"building {BASE_TAG} from {base}")
    with tempfile.TemporaryDirectory() as ctx:
        _docker_build(BASE_TAG, Path(ctx), dockerfile, {"BASE": base},
                      {"envfarm.spec": spec, "envfarm.base-from": how})
    return BASE_TAG


def _fetch_sources(project: Project) -> tuple[Path, list[Path]]:
    """The project's sdist and its test-dependency wheels, cached under ~/.cache/envfarm."""
    dest = CACHE_DIR / "sources" / f"{project.name}-{project.version}"
    sdists = sorted(dest.glob("*.tar.gz")) if dest.exists() else []
    if not sdists:
        _log(f"fetching the {project.name}=={project.version} sdist from the package index")
        dest.mkdir(parents=True, exist_ok=True)
        # `--no-binary <name>`, not `:all:`: pip reads the sdist's metadata with its build backend,
        # which then comes as a wheel instead of being built from source too (minutes, not seconds)
        _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", project.name,
              "-d", str(dest), f"{project.name}=={project.version}"],
             f"pip download of the {project.name} sdist")
        sdists = sorted(dest.glob("*.tar.gz"))
        if not sdists:
            raise ImageBuildError(f"the package index has no .tar.gz sdist for {project.name}")
    wheels_dir = dest / "wheels"
    if project.test_deps and not any(wheels_dir.glob("*.whl")):
        _log(f"fetching test dependencies of {project.name}: {', '.join(project.test_deps)}")
        _run([sys.executable, "-m", "pip", "download", "-q", "--only-binary", ":all:",
              "--python-version", "3.11", "--platform", "manylinux2014_x86_64",
              "--platform", "any", "-d", str(wheels_dir), *project.test_deps],
             f"pip download of {project.name}'s test dependencies")
    return sdists[0], sorted(wheels_dir.glob("*.whl"))


def build_repo(project: Project, force: bool = False) -> str:
    """Build the repository image of one project on top of the base image; cached."""
    base_spec = _image_label(BASE_TAG)
    if base_spec is None:
        build_base()
        base_spec = _image_label(BASE_TAG)
    dockerfile = images_dir() / "repo" / "Dockerfile"
    spec_src = json.dumps([project.name, project.version, list(project.test_deps), project.collect_cmd,
                           list(project.test_files), list(project.packages)])
    spec = _hash(dockerfile.read_bytes(), spec_src, base_spec or "")
    if not force and _image_label(project.image) == spec:
        _log(f"{project.image} is up to date")
        return project.image
    sdist, wheels = _fetch_sources(project)
    _log(f"building {project.image}")
    with tempfile.TemporaryDirectory() as ctx:
        shutil.copy(sdist, Path(ctx) / "src.tar.gz")
        (Path(ctx) / "wheels").mkdir()
        for w in wheels:
            shutil.copy(w, Path(ctx) / "wheels" / w.name)
        _docker_build(project.image, Path(ctx), dockerfile, {"BASE": BASE_TAG, "COLLECT": project.collect_cmd,
                                                                  "TEST_FILES": " ".join(project.test_files),
                                                                  "PACKAGES": " ".join(project.packages)},
                      {"envfarm.spec": spec, "envfarm.project": project.name,
                       "envfarm.version": project.version, "envfarm.license": project.license})
    return project.image


def build_on_demand(project: Project) -> str:
    """Build a project's image the first time a task needs it (a farm host before its first
    episode, `ensure_task_images` before a run), saying so: it takes a minute or so, once per machine."""
    _log(f"{project.image} is not on this machine: building it from images/projects.toml "
         f"({project.name}=={project.version}, {'core' if project.core else 'built on first use'})")
    t0 = time.monotonic()
    tag = build_repo(project)
    _log(f"{project.image} built in {time.monotonic() - t0:.0f} s")
    return tag


def base_commit(image: str) -> str:
    """The commit at /testbed in a repository image (tasks name it as base_commit)."""
    proc = _run(["docker", "run", "--rm", "--network", "none", image, "git", "rev-parse", "HEAD"],
                f"reading the base commit of {image}")
    return proc.stdout.strip()


def read_file_from_image(image: str, path: str) -> str:
    """One file's text from an image, without starting a long-lived container."""
    proc = _run(["docker", "run", "--rm", "--network", "none", image, "cat", path],
                f"reading {path} from {image}")
    return proc.stdout


def read_files_from_image(image: str, paths: list[str], root: str = "/testbed") -> dict[str, str]:
    """Several files' text from an image with one short-lived container (a tar stream): path (as
    given, under `root`) -> text. A container per file cost generation minutes at start-up."""
    if not paths:
        return {}
    proc = _run(["docker", "run", "--rm", "--network", "none", image, "tar", "-C", root, "-cf", "-", "--", *paths],
                f"reading {len(paths)} files from {image}", text=False)
    out: dict[str, str] = {}
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        for member in tar.getmembers():
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is not None:
                out[member.name.removeprefix("./")] = handle.read().decode()
    return out


def select_projects(projects: dict[str, Project], names: list[str] | None = None,
                    everything: bool = False) -> list[str]:
    """The projects a build covers: those named, else every one (`everything`), else the core ones."""
    if names:
        unknown = [n for n in names if n not in projects]
        if unknown:
            raise ImageBuildError(
                f"unknown project(s) {unknown}: images/projects.toml has {sorted(projects)}"
            )
        return list(names)
    return sorted(n for n, p in projects.items() if everything or p.core)


def build_all(names: list[str] | None = None, force: bool = False, everything: bool = False) -> list[str]:
    """The base image and the selected projects' images (see `select_projects`)."""
    projects = load_projects()
    selected = select_projects(projects, names, everything)  # before any build: a bad name fails at once
    t0 = time.monotonic()
    tags = [build_base(force=force)]
    for name in selected:
        tags.append(build_repo(projects[name], force=force))
    _log(f"{len(tags)} image(s) ready in {time.monotonic() - t0:.1f} s")
    return tags


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m envfarm.sandbox.images",
                                     description="Build envfarm's images (offline when needed).")
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the base image and repository images")
    b.add_argument("projects", nargs="*",
                   help="project names from images/projects.toml (default: the core ones)")
    b.add_argument("--all", dest="everything", action="store_true", help="every project, not only the core ones")
    b.add_argument("--force", action="store_true", help="rebuild even when the spec label matches")
    sub.add_parser("list", help="list the projects and their image tags")
    args = parser.parse_args(argv)
    if args.cmd == "list":
        for p in load_projects().values():
            print(f"{p.name:20s} {p.version:10s} {p.license:14s} {'core' if p.core else 'lazy':5s} {p.image}")
        return 0
    try:
        if args.projects and args.everything:
            parser.error("give project names or --all, not both")
        for tag in build_all(args.projects, force=args.force, everything=args.everything):
            print(tag)
    except (ImageBuildError, SandboxError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["Project", "ImageBuildError", "build_all", "build_base", "build_repo", "load_projects",
           "select_projects", "base_commit", "build_on_demand"]
