"""Screen a package-index project for envfarm's builtin suite: build its image, run its tests twice.

    python scripts/screen_project.py jmespath==1.0.1
    python scripts/screen_project.py h11==0.16.0 --test-files h11/tests --sources h11/_events.py h11/_util.py
    python scripts/screen_project.py schema==0.7.7 --deselect test_schema.py::test_slow --test-deps mock==5.1.0

Fetches the sdist (as the image build does), guesses what it can from it (licence, test paths,
source modules, a src/ layout) unless told, builds the repository image and runs the suite twice
in a one-core sandbox, as suite generation does. The verdict is `ok` when both runs pass every
test they collect, agree, and take at most --max-seconds of CPU each (wall time on a busy machine
says little); it prints the images/projects.toml
entry to paste either way (with the failing tests to deselect when there are a few).
"""

from __future__ import annotations

import argparse
import asyncio
import email.parser
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from swebench.harness.constants import END_TEST_OUTPUT, START_TEST_OUTPUT

from envfarm.sandbox.base import SandboxSpec
from envfarm.sandbox.docker_backend import DockerSandbox
from envfarm.sandbox.images import CACHE_DIR, Project, build_repo, import_names
from envfarm.suitegen.derive import LOG_PARSER, PARSER_REGISTRY, PASSING

SKIP_SOURCES = ("__main__.py", "_version.py", "version.py", "conftest.py", "setup.py", "noxfile.py", "fabfile.py",
                "tasks.py", "runtests.py", "conf.py")
MIN_SOURCE_BYTES = 400  # smaller modules (re-exports, constants) seldom give a bug a test catches


def _latest(name: str) -> str:
    """The newest version with an sdist (downloaded once into the cache under its version)."""
    tmp = CACHE_DIR / "sources" / f"_latest-{name}"
    tmp.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", name,
                           "-d", str(tmp), name], capture_output=True, text=True)
    found = sorted(tmp.glob("*.tar.gz"))
    if proc.returncode != 0 or not found:
        raise SystemExit(f"no .tar.gz sdist of {name} on the package index: {proc.stderr[-400:]}")
    version = email.parser.Parser().parsestr(_members(found[0])[1]).get("Version", "")
    dest = CACHE_DIR / "sources" / f"{name}-{version}"
    dest.mkdir(parents=True, exist_ok=True)
    found[0].rename(dest / found[0].name)
    tmp.rmdir()
    return version


def _sdist(name: str, version: str) -> Path:
    dest = CACHE_DIR / "sources" / f"{name}-{version}"
    found = sorted(dest.glob("*.tar.gz")) if dest.exists() else []
    if not found:
        dest.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", name,
                               "-d", str(dest), f"{name}=={version}"], capture_output=True, text=True)
        found = sorted(dest.glob("*.tar.gz"))
        if proc.returncode != 0 or not found:
            raise SystemExit(f"no .tar.gz sdist of {name}=={version} on the package index: {proc.stderr[-400:]}")
    return found[0]


def _members(sdist: Path) -> tuple[list[str], str]:
    """Paths in the sdist relative to its top folder, and its PKG-INFO text."""
    with tarfile.open(sdist) as tar:
        names = [m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile() and "/" in m.name]
        top = tar.getmembers()[0].name.split("/", 1)[0]
        try:
            info = tar.extractfile(f"{top}/PKG-INFO").read().decode(errors="replace")  # type: ignore[union-attr]
        except KeyError:
            info = ""
    return names, info


def guess_license(pkg_info: str) -> str:
    msg = email.parser.Parser().parsestr(pkg_info)
    if msg.get("License-Expression"):
        return msg["License-Expression"]
    for c in msg.get_all("Classifier") or []:
        if c.startswith("License :: OSI Approved :: "):
            short = c.rsplit("::", 1)[1].strip()
            return {"MIT License": "MIT", "BSD License": "BSD", "Apache Software License": "Apache-2.0",
                    "Python Software Foundation License": "PSF-2.0", "ISC License (ISCL)": "ISC",
                    "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0"}.get(short, short)
    lic = (msg.get("License") or "").strip()
    return lic.splitlines()[0][:40] if lic else "UNKNOWN"


def _is_test(path: str) -> bool:
    parts = path.split("/")
    return any(p in ("tests", "test", "testing") for p in parts[:-1]) or parts[-1].startswith("test") \
        or parts[-1].endswith("_test.py")


def guess_layout(names: list[str]) -> tuple[list[str], list[str], dict[str, str]]:
    """(test_files, sources, env) from the sdist's file list."""
    py = [n for n in names if n.endswith(".py")]
    tests: list[str] = []
    for n in py:
        if not _is_test(n):
            continue
        parts = n.split("/")
        root = next((("/".join(parts[:i + 1])) for i, p in enumerate(parts[:-1]) if p in ("tests", "test", "testing")),
                    n)
        if root not in tests and not any(root.startswith(t + "/") for t in tests):
            tests.append(root)
    tests = [t for t in tests if not t.startswith(("docs/", "doc/", "examples/", "benchmarks/"))]
    src = any(n.startswith("src/") for n in py)
    sources = sorted(n for n in py if not _is_test(n) and n.split("/")[-1] not in SKIP_SOURCES
                     and (n.startswith("src/") or not src)
                     and not n.startswith(("docs/", "doc/", "examples/", "benchmarks/", "tools/", "scripts/", "bin/")))
    # only importable code: a top-level module, or a file of a package (its top folder has __init__.py)
    def importable(n: str) -> bool:
        parts = n.split("/")[1:] if src else n.split("/")
        return len(parts) == 1 or f"{'src/' if src else ''}{parts[0]}/__init__.py" in names

    sources = [n for n in sources if importable(n) and not n.endswith("mypy_plugin.py")]
    return sorted(tests), sources, ({"PYTHONPATH": "src"} if src else {})


def _big_enough(sdist: Path, sources: list[str]) -> list[str]:
    with tarfile.open(sdist) as tar:
        top = tar.getmembers()[0].name.split("/", 1)[0]
        sizes = {m.name.split("/", 1)[1]: m.size for m in tar.getmembers() if m.isfile() and "/" in m.name}
    del top
    return [s for s in sources if sizes.get(s, 0) >= MIN_SOURCE_BYTES]


async def _run_twice(project: Project, timeout: float) -> list[tuple[dict[str, str], float, float]]:
    """Two runs of the suite in one sandbox: (results, wall seconds, CPU seconds) each.

    CPU seconds (user + system of the test process, from the shell's `times`) are what the suite
    takes on an idle core; wall seconds on a shared, busy machine can be several times more.
    """
    runs = []
    env = " ".join(f"{k}={v}" for k, v in project.env.items())
    sandbox = await DockerSandbox.create(SandboxSpec(image=project.image), run="screen", task=project.name)
    try:
        for _ in range(2):
            t0 = time.perf_counter()
            # in a subshell: `times` then counts this run's processes only, not the session's
            res = await sandbox.exec(f"(cd /testbed && echo '{START_TEST_OUTPUT}'; {env} {project.test_cmd}; "
                                     f"echo '{END_TEST_OUTPUT}'; times)", timeout=timeout, output_limit=16 << 20)
            if res.timed_out:
                raise SystemExit(f"verdict: a run of the suite took more than {timeout:g} s (hangs? network?)")
            wall = time.perf_counter() - t0
            log, _, tail = res.output.partition(START_TEST_OUTPUT)[2].partition(END_TEST_OUTPUT)
            cpu = sum(float(m) * 60 + float(s) for m, s in re.findall(r"(\d+)m([\d.]+)s", tail.splitlines()[-1]))
            runs.append((PARSER_REGISTRY[LOG_PARSER](log, None), wall, cpu))  # type: ignore[arg-type]
    finally:
        await sandbox.close()
    return runs


def toml_entry(project: Project, sources: list[str], deselect: list[str], extra: dict[str, str]) -> str:
    def arr(xs: list[str] | tuple[str, ...]) -> str:
        return "[" + ", ".join(f'"{x}"' for x in xs) + "]"

    lines = [f"[{project.name}]", f'version = "{project.version}"', f'license = "{project.license}"']
    lines += [f"{k} = {v}" for k, v in extra.items()]
    lines += [f"test_deps = {arr(project.test_deps)}", f"test_files = {arr(project.test_files)}"]
    cmd = project.test_cmd
    if deselect:
        cmd = cmd + "".join(f" \\\n--deselect {d}" for d in deselect)
        lines.append(f'test_cmd = """{cmd}"""')
    else:
        lines.append(f'test_cmd = "{cmd}"')
    if project.env:
        lines.append("env = { " + ", ".join(f'{k} = "{v}"' for k, v in project.env.items()) + " }")
    lines.append(f"sources = {arr(sources)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("spec", help="NAME==VERSION on the package index (NAME alone: the newest sdist)")
    ap.add_argument("--license", help="licence (default: from the sdist's metadata)")
    ap.add_argument("--test-files", nargs="*", help="test paths (default: guessed from the sdist)")
    ap.add_argument("--sources", nargs="*", help="modules the bug generator may change (default: guessed)")
    ap.add_argument("--test-deps", nargs="*", default=[], help="pure-Python wheels the tests need (NAME==VERSION)")
    ap.add_argument("--env", nargs="*", default=[], help="KEY=VALUE for the test command")
    ap.add_argument("--deselect", nargs="*", default=[], help="test ids to leave out (slow, flaky, network)")
    ap.add_argument("--ignore", nargs="*", default=[], help="test files to leave out (they fail to import)")
    ap.add_argument("--pytest-args", default="-o addopts=", help="extra pytest options (default: %(default)s)")
    ap.add_argument("--max-seconds", type=float, default=10.0, help="longest acceptable suite run on one core")
    ap.add_argument("--timeout", type=float, default=300.0, help="wall seconds a run may take (busy machines)")
    args = ap.parse_args(argv)
    name, _, version = args.spec.partition("==")
    version = version or _latest(name)
    args.spec = f"{name}=={version}"
    sdist = _sdist(name, version)
    names, info = _members(sdist)
    tests, sources, env = guess_layout(names)
    tests = args.test_files if args.test_files is not None else tests
    sources = args.sources if args.sources is not None else _big_enough(sdist, sources)
    env.update(dict(e.split("=", 1) for e in args.env))
    if not tests:
        print(f"verdict: no tests in the sdist of {args.spec}", file=sys.stderr)
        return 2
    cmd = f"python3 -m pytest -rA -p no:cacheprovider {args.pytest_args} {' '.join(tests)}".replace("  ", " ")
    cmd += "".join(f" --ignore={i}" for i in args.ignore) + "".join(f" --deselect {d}" for d in args.deselect)
    project = Project(name=name, version=version, license=args.license or guess_license(info), test_cmd=cmd,
                      test_files=tuple(tests), test_deps=tuple(args.test_deps), env=env,
                      packages=import_names(sources))
    t0 = time.perf_counter()
    try:
        build_repo(project)
    except Exception as exc:  # noqa: BLE001 - the verdict names any build failure
        print(f"verdict: the image does not build: {exc}", file=sys.stderr)
        return 1
    build_s = time.perf_counter() - t0
    runs = asyncio.run(_run_twice(project, args.timeout))
    (first, s1, c1), (second, s2, c2) = runs
    failing = sorted(t for t, s in first.items() if s not in PASSING and s != "SKIPPED")
    differ = sorted(t for t in set(first) | set(second) if first.get(t) != second.get(t))
    passed = sum(s in PASSING for s in first.values())
    print(f"{args.spec}: image {build_s:.0f} s; {len(first)} tests, {passed} passing; runs {s1:.1f} s and "
          f"{s2:.1f} s wall, {c1:.1f} s and {c2:.1f} s CPU")
    problems = []
    if not first:
        problems.append("no test results were parsed (collection error?)")
    if failing:
        problems.append(f"{len(failing)} failing: {failing[:8]}")
    if differ:
        problems.append(f"{len(differ)} differ between the runs: {differ[:8]}")
    if max(c1, c2) > args.max_seconds:
        problems.append(f"takes more than {args.max_seconds:g} s of CPU")
    print("verdict: " + ("ok" if not problems else "; ".join(problems)))
    print(f"# test seconds (CPU, one core): {min(c1, c2):.1f}")
    print(toml_entry(project, sources, [t for t in failing + differ if len(failing + differ) <= 12], {}))
    return 0 if not problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
