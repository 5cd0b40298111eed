"""A project's clean test results and which of its functions the tests execute (computed once).

Every candidate of a project is compared with the same clean results, so they are computed
once per project and cached. The second clean run records, with a tiny profiler plugin, the
functions the suite calls: mutating a function no test executes can never give a task, so those
candidates are not even tried. Tests whose status differs between the two clean runs are flaky
and are left out of FAIL_TO_PASS and PASS_TO_PASS.
"""

from __future__ import annotations

import hashlib
import json
import time
import tomllib
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from envfarm.sandbox.base import SandboxSpec
from envfarm.sandbox.images import Project, images_dir, read_files_from_image
from envfarm.suitegen.derive import run_tests
from envfarm.tasks.grading import SandboxFactory

PLUGIN_DIR = "/tmp/.envfarm_trace"
FUNCS_PATH = "/tmp/.envfarm_funcs.json"
PLUGIN = f'''"""Record (file, first line) of every function called under /testbed."""
import json, os, sys, threading

_seen = set()


def _profile(frame, event, arg):
    if event == "call":
        code = frame.f_code
        if code.co_filename.startswith("/testbed/"):
            _seen.add((code.co_filename, code.co_firstlineno))


sys.setprofile(_profile)
threading.setprofile(_profile)


def pytest_unconfigure(config):
    sys.setprofile(None)
    with open({FUNCS_PATH!r}, "w") as fh:
        json.dump(sorted(_seen), fh)
'''


@dataclass
class Baseline:
    clean: dict[str, str]  # test id -> status on the clean code (flaky tests marked FLAKY)
    covered: dict[str, list[int]]  # path relative to /testbed -> first lines of executed functions
    seconds: float  # wall time of one plain clean run

    def covered_lines(self, path: str) -> set[int]:
        return set(self.covered.get(path, []))


def project_sources(name: str) -> list[str]:
    """The files the generator may change (`sources` in images/projects.toml)."""
    data = tomllib.loads((images_dir() / "projects.toml").read_text())
    return list(data[name].get("sources", []))


@lru_cache(maxsize=64)
def _texts(image: str, paths: tuple[str, ...]) -> dict[str, str]:
    return read_files_from_image(image, list(paths))


def source_texts(project: Project) -> dict[str, str]:
    """The text of every file the generator may change, read from the project's image at once
    (and once per run: each task kind reads the same files)."""
    return dict(_texts(project.image, tuple(project_sources(project.name))))


def _traced(project: Project) -> Project:
    pythonpath = ":".join(p for p in (project.env.get("PYTHONPATH"), PLUGIN_DIR) if p)
    cmd = project.test_cmd.replace("-m pytest", "-m pytest -p envfarm_trace", 1)
    return Project(project.name, project.version, project.license, cmd, project.test_files, project.test_deps,
                   {**project.env, "PYTHONPATH": pythonpath})


async def compute_baseline(project: Project, sandbox_factory: SandboxFactory) -> Baseline:
    sandbox = await sandbox_factory(SandboxSpec(image=project.image), f"{project.name}-baseline")
    try:
        started = time.perf_counter()
        first = await run_tests(sandbox, project)
        seconds = time.perf_counter() - started
        await sandbox.write_file(f"{PLUGIN_DIR}/envfarm_trace.py", PLUGIN)
        second = await run_tests(sandbox, _traced(project), timeout=900)
        raw = json.loads((await sandbox.read_file(FUNCS_PATH)).decode())
    finally:
        await sandbox.close()
    clean = {t: (s if second.get(t) == s else "FLAKY") for t, s in first.items()}
    covered: dict[str, set[int]] = {}
    for filename, line in raw:
        covered.setdefault(filename.removeprefix("/testbed/"), set()).add(line)
    return Baseline(clean, {k: sorted(v) for k, v in sorted(covered.items())}, seconds)


async def load_or_compute(project: Project, sandbox_factory: SandboxFactory, state_dir: Path) -> Baseline:
    """The cached baseline of this project version, computed and saved when missing."""
    key = hashlib.sha256(f"{project.test_cmd}\0{sorted(project.env.items())}".encode()).hexdigest()[:8]
    path = state_dir / f"{project.name}-{project.version}-{key}.baseline.json"
    if path.exists():
        return Baseline(**json.loads(path.read_text()))
    baseline = await compute_baseline(project, sandbox_factory)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(baseline)))
    return baseline
