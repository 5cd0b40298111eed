"""What the local backend's sandboxes are copied from: a project's tree and its test environment.

Why not an image: the local backend runs where no Docker engine can (many GPU nodes), so the
repository image's two ingredients are rebuilt on the host from the same inputs the image build
uses (`envfarm.sandbox.images`): the project's sdist and test-dependency wheels in CACHE_DIR,
fetched once by `pip download` (nothing is fetched when they are there). The tree becomes a git
repository with ONE commit of fixed author, committer and dates, exactly as images/repo/Dockerfile
makes it, so its hash is the image's base commit and the tasks' commits are reproduced.

The test environment is a venv of a host interpreter the sandbox's user may run, holding pytest
(copied, with what it requires, from the environment envfarm runs in: nothing is downloaded) and
the project's test-dependency wheels, and nothing else: the host's own site-packages, which may
hold another copy of the project, stay out of the tests' way.
"""

from __future__ import annotations

import fcntl
import importlib.metadata as metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from envfarm.sandbox.base import ImageMissingError

DEFAULT_LOCAL_DIR = "/var/tmp/envfarm-local"
# git's identity and settings in an envfarm image (images/base/Dockerfile's `git config --system`)
GIT_CONFIG = "[user]\n\tname = envfarm\n\temail = envfarm@localhost\n[safe]\n\tdirectory = *\n" \
             "[init]\n\tdefaultBranch = main\n"
COMMIT_ENV = {"GIT_AUTHOR_DATE": "2000-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2000-01-01T00:00:00Z",
              "GIT_AUTHOR_NAME": "envfarm", "GIT_AUTHOR_EMAIL": "envfarm@localhost",
              "GIT_COMMITTER_NAME": "envfarm", "GIT_COMMITTER_EMAIL": "envfarm@localhost",
              "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}


def local_dir(root: str | None = None) -> Path:
    """Where trees, environments and sandboxes live ($ENVFARM_LOCAL_DIR): outside any home folder,
    which the sandbox's unprivileged user could not enter."""
    return Path(root or os.environ.get("ENVFARM_LOCAL_DIR") or DEFAULT_LOCAL_DIR)


def project_for_image(image: str):  # -> envfarm.sandbox.images.Project
    """The project of images/projects.toml whose repository image is `image`."""
    from envfarm.sandbox.images import load_projects

    for project in load_projects().values():
        if project.image == image:
            return project
    raise ImageMissingError(f"the local backend knows only envfarm's repository images (images/projects.toml); "
                            f"{image!r} is not one of them")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One builder at a time per cached artefact, across processes on this machine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise ImageMissingError(f"{what} failed (exit {proc.returncode}): {(proc.stderr or proc.stdout)[-1500:]}")
    return proc


def _mkdirs(path: Path, mode: int = 0o755) -> None:
    """Folders the sandbox's user can pass through (a umask or a 1777 parent may say otherwise)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)


def build_tree(project, root: Path) -> tuple[Path, str]:
    """The project's pristine tree at its base commit (built once, then reused): (path, commit)."""
    from envfarm.sandbox.images import _fetch_sources

    dest = root / "trees" / f"{project.name}-{project.version}"
    with _locked(root / "trees" / f".{dest.name}.lock"):
        if (dest / "commit").is_file():
            return dest / "testbed", (dest / "commit").read_text().strip()
        sdist, _ = _fetch_sources(project)
        _mkdirs(root)
        _mkdirs(root / "trees")
        work = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=root / "trees"))
        try:
            tree = work / "testbed"
            tree.mkdir()
            _run(["tar", "-xzf", str(sdist), "-C", str(tree), "--strip-components=1"], f"unpacking {sdist.name}")
            for cache in sorted(tree.rglob("__pycache__"), reverse=True):
                shutil.rmtree(cache, ignore_errors=True)
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work), **COMMIT_ENV}
            _run(["git", "init", "-q"], "git init", cwd=tree, env=env)
            _run(["git", "add", "-A"], "git add", cwd=tree, env=env)
            _run(["git", "commit", "-q", "-m", "base"], "git commit", cwd=tree, env=env)
            commit = _run(["git", "rev-parse", "HEAD"], "git rev-parse", cwd=tree, env=env).stdout.strip()
            (work / "commit").write_text(commit + "\n")
            work.chmod(0o755)
            os.replace(work, dest)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return dest / "testbed", commit


def python_version(python: str) -> str:
    """'3.11' for an interpreter."""
    out = _run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], f"running {python}").stdout
    return out.strip()


def _requirements_closure(name: str) -> list[metadata.Distribution]:
    """`name` and what it requires (markers evaluated here), from envfarm's own environment."""
    from packaging.requirements import Requirement

    seen: dict[str, metadata.Distribution] = {}
    pending = [name]
    while pending:
        key = re.sub(r"[-_.]+", "-", pending.pop()).lower()
        if key in seen:
            continue
        try:
            dist = metadata.distribution(key)
        except metadata.PackageNotFoundError:
            continue
        seen[key] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                pending.append(req.name)
    return list(seen.values())


def _copy_distribution(dist: metadata.Distribution, site: Path) -> None:
    for rel in dist.files or []:
        if ".." in Path(str(rel)).parts or "__pycache__" in Path(str(rel)).parts:
            continue  # scripts outside site-packages, byte code of another interpreter
        src = Path(str(dist.locate_file(rel)))
        if src.is_file():
            target = site / str(rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)


def build_test_env(project, python: str, root: Path) -> Path:
    """A venv of `python` with pytest and the project's test dependencies (built once): its path."""
    from envfarm.sandbox.images import _fetch_sources

    version = python_version(python)
    dest = root / "envs" / f"{project.name}-{project.version}-py{version}"
    with _locked(root / "envs" / f".{dest.name}.lock"):
        if (dest / "ready").is_file():
            return dest
        _, wheels = _fetch_sources(project)
        _mkdirs(root)
        _mkdirs(root / "envs")
        work = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=root / "envs"))
        try:
            shutil.rmtree(work)
            _run([python, "-m", "venv", "--without-pip", str(work)], f"making a venv of {python}")
            site = work / "lib" / f"python{version}" / "site-packages"
            for dist in _requirements_closure("pytest"):
                _copy_distribution(dist, site)
            for wheel in wheels:
                with zipfile.ZipFile(wheel) as zf:
                    zf.extractall(site)
            for d, _, _ in os.walk(work):
                os.chmod(d, 0o755)
            (work / "ready").write_text(f"{python}\n")
            os.replace(work, dest)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return dest


def candidate_pythons(configured: str | None = None) -> list[str]:
    """Interpreters to try for sandboxes, in order: the configured one, $ENVFARM_LOCAL_PYTHON, then
    the host's python3 and envfarm's own base interpreter (which may live where the sandbox's
    user cannot go, e.g. under /root)."""
    from envfarm.sandbox.base import HOST_PATH

    found = [configured, os.environ.get("ENVFARM_LOCAL_PYTHON"), shutil.which("python3", path=HOST_PATH),
             getattr(sys, "_base_executable", None) or sys.executable]
    return list(dict.fromkeys(p for p in found if p))


def write_git_config(home: Path) -> None:
    (home / ".gitconfig").write_text(GIT_CONFIG)
