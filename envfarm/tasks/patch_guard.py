"""What an agent's patch touches, and what of it must not reach the test run.

Agents trained with RL try to win the reward without fixing the bug. Grading already runs in a
fresh container and restores the test files; this module covers what the patch itself can
carry into that container:

- paths outside the repository (absolute, `..`, `.git/`): the patch is refused, never applied;
- test files: reported (the eval script restores them anyway);
- files that change how the tests run rather than what they test: `conftest.py`,
  `sitecustomize.py`/`usercustomize.py`, `.pth` files, pytest/tox/setup.cfg/pyproject
  configuration (`addopts`, plugins), packaging metadata that registers pytest plugins
  (`*.dist-info`, `*.egg-info`), byte code (`__pycache__`, `.pyc`), and top-level modules that
  shadow the test runner (`pytest.py`, `_pytest/`, `pluggy/`, ...). These are reverted to their
  state at the base commit after the patch is applied and before the tests run, and reported.

Plugin autoloading is deliberately left on: real repositories (astropy, for one) need the
plugins their image installs, and the image is pristine; only what the patch adds is distrusted.
"""

from __future__ import annotations

import re
import shlex
import sys

from pydantic import BaseModel, Field, computed_field

from envfarm.tasks.diff import named_paths, parse_diff

MAX_PATCH_BYTES = 20 << 20  # a patch this large is not a fix; git apply on it costs minutes

HARNESS_NAMES = {"conftest.py", "sitecustomize.py", "usercustomize.py", "pytest.ini", ".pytest.ini",
                 "pytest.toml", ".pytest.toml", "tox.ini", "setup.cfg", "pyproject.toml", "noxfile.py",
                 ".gitattributes"}  # attributes change how git lists and reads the tree the grader inspects
SHADOW_TOP = {"pytest", "_pytest", "pluggy", "py", "iniconfig", "site", "sitecustomize", "usercustomize",
              "unittest", "doctest", "runpy", "encodings", "importlib", "xdist", "coverage"}

class PatchReport(BaseModel):
    """What a patch touched; stored in the grade result so reviewers see attempts at the harness."""

    files: list[str] = Field(default_factory=list)
    test_files: list[str] = Field(default_factory=list)  # restored before the tests run
    outside_repo: list[str] = Field(default_factory=list)  # the patch was refused
    reverted: list[str] = Field(default_factory=list)  # harness files put back before the tests run
    symlinks: bool = False  # the patch creates symbolic links
    bytes: int = 0

    @computed_field  # stored with the report, so a reader of a run needs no envfarm to see it
    @property
    def suspicious(self) -> bool:
        return bool(self.test_files or self.outside_repo or self.reverted or self.symlinks)


def is_outside_repo(path: str) -> bool:
    parts = path.split("/")
    return path.startswith("/") or ".." in parts or parts[0] == ".git" or path.startswith("~")


def is_harness_file(path: str) -> bool:
    """Would this file change how the tests run (rather than the code under test)?"""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return False
    name = parts[-1]
    if name in HARNESS_NAMES or name.endswith((".pth", ".pyc")):
        return True
    if any(p == "__pycache__" or p.endswith((".dist-info", ".egg-info", ".egg-link")) for p in parts):
        return True
    top = parts[0].removesuffix(".py")
    return top in SHADOW_TOP


def shadows_runtime(path: str, import_roots: list[str]) -> bool:
    """Is `path` a module or package named like the standard library's or the test runner's
    (SHADOW_TOP), right under a folder the tests import from (the repository's root, `src`, the
    eval script's PYTHONPATH)? Such a file is imported in the real one's place, by pytest itself,
    before any guard can look (`xml/__init__.py` is imported by pytest's junitxml plugin)."""
    for root in import_roots:
        root = root.strip("/")
        rel = path if not root or root == "." else path[len(root) + 1:] if path.startswith(root + "/") else None
        if not rel:
            continue
        top = rel.split("/")[0]
        name = top.split(".")[0] if "/" not in rel else top
        shadowed = name in sys.stdlib_module_names or name in SHADOW_TOP
        if shadowed and (top.endswith((".py", ".pyc", ".so", ".pth")) or "/" in rel):
            return True
    return False


def _under(path: str, roots: list[str]) -> bool:
    return any(path == r.rstrip("/") or path.startswith(r.rstrip("/") + "/") for r in roots)


def inspect_patch(patch: str, test_roots: list[str]) -> PatchReport:
    """Classify what `patch` touches; `test_roots` are the task's test files or folders."""
    parsed = parse_diff(patch)
    files = named_paths(parsed)
    name_is_test = re.compile(r"(^|/)(test_[^/]*\.py|[^/]*_test\.py|tests?/.*)$")
    return PatchReport(
        files=files,
        test_files=[f for f in files if _under(f, test_roots) or name_is_test.search(f)],
        outside_repo=[f for f in files if is_outside_repo(f)],
        reverted=[f for f in files if not is_outside_repo(f) and is_harness_file(f)],
        symlinks=any(f.symlink for f in parsed),
        bytes=len(patch.encode("utf-8", errors="surrogateescape")),
    )


def revert_command(paths: list[str], base_commit: str, workdir: str) -> str:
    """Shell that puts each path back as it was at `base_commit` (removed where it did not exist)."""
    base = shlex.quote(base_commit)
    steps = [f"cd {shlex.quote(workdir)}"]
    for p in paths:
        q = shlex.quote(p)
        steps.append(f"{{ rm -rf -- {q}; if git cat-file -e {base}:{q} 2>/dev/null; then "
                     f"git checkout -q {base} -- {q}; fi; }}")
    return " && ".join(steps) + " && true"
