"""Nothing on disk gives the fix or the bug's place away.

- No repository image holds a shipped task's fix outside /testbed (one scan per image: source,
  byte code, archives), and the scan does find a copy that is planted, in source or byte code only.
- In an agent's sandbox after reset, the changed files' metadata (mtime, ctime, inode, mode,
  place in their folder's listing) is what it would be for any other file: two tasks that change
  different files of one project leave the same metadata pattern, and every mtime and mode is the
  clean image's.
"""

from __future__ import annotations

import asyncio
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from envfarm.sandbox.base import SandboxSpec
from envfarm.sandbox.docker_backend import DockerSandbox
from envfarm.sandbox.images import load_projects
from envfarm.suitegen.leaks import scan_image
from envfarm.tasks.images_needed import ensure_task_images
from envfarm.tasks.loading import load_builtin
from envfarm.tasks.setup import prepare_repository

pytestmark = pytest.mark.docker

# The core projects' tasks (their images are built up front); every other project's tasks were
# scanned in their image when generated (scripts/generate_suite.py drops a leaking task), and
# `python -m envfarm.suitegen.leaks` scans them all.
CORE = {n for n, p in load_projects().items() if p.core}
TASKS = [t for t in load_builtin() if t.repo in CORE]
BY_IMAGE: dict[str, list] = {}
for _t in TASKS:
    BY_IMAGE.setdefault(_t.image, []).append(_t)


@pytest.mark.timeout(600)
def test_no_image_holds_a_shipped_fix_outside_testbed():
    ensure_task_images(TASKS)
    with ThreadPoolExecutor(max_workers=2) as pool:
        scans = list(pool.map(lambda kv: scan_image(*kv), sorted(BY_IMAGE.items())))
    found = {s.image: {**s.leaks, **s.errors} for s in scans if s.unsafe}
    assert not found, found
    assert all(s.files > 5000 for s in scans)  # the whole file system was walked, not /testbed alone


@pytest.mark.timeout(300)
def test_a_planted_copy_is_found_in_source_or_byte_code_alone():
    tasks = BY_IMAGE["envfarm/repo-inflection:0.5.1"]
    teens = next(t for t in tasks if t.instance_id == "inflection__ordinal-teens")
    other = [t for t in tasks if t is not teens][:3]
    # the clean module under another name and indentation in a doc folder; its byte code alone in
    # /var/tmp (no source next to it), inside a zip (a wheel), and a renamed copy of the buggy file
    plant = (
        "mkdir -p /usr/share/doc/x /var/tmp/bc && "
        "sed 's/^/    /' /testbed/inflection/__init__.py > /usr/share/doc/x/notes.txt && "
        "python3 -c \"import py_compile; py_compile.compile('/testbed/inflection/__init__.py', "
        "cfile='/var/tmp/bc/m.pyc', doraise=True)\" && "
        "cd /testbed && python3 -m zipfile -c /var/tmp/w.whl inflection && git status --short"
    )
    tag = "envfarm/test-planted:leak"
    cid = subprocess.run(["docker", "create", "--user", "root", "envfarm/repo-inflection:0.5.1", "bash", "-c", plant],
                         capture_output=True, text=True, check=True).stdout.strip()
    try:
        subprocess.run(["docker", "start", "-a", cid], check=True, capture_output=True)
        subprocess.run(["docker", "commit", cid, tag], check=True, capture_output=True)
        subprocess.run(["docker", "run", "--rm", "--user", "root", tag, "bash", "-c",
                        "rm /usr/share/doc/x/notes.txt /var/tmp/w.whl"], check=True)
        scan = scan_image(tag, [teens, *other])
        assert set(scan.leaks) >= {teens.instance_id}, scan
        hits = scan.leaks[teens.instance_id]
        assert "/usr/share/doc/x/notes.txt" in hits and "/var/tmp/bc/m.pyc" in hits, hits
        assert any(h.startswith("/var/tmp/w.whl!") for h in hits), hits
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


STAT = ("cd /testbed && find . -path ./.git -prune -o -printf '%P\\t%i\\t%m\\t%T@\\t%C@\\t%y\\n' && "
        "find . -path ./.git -prune -o -type d -printf '%P\\n' | while read -r d; do "
        "printf 'LS %s:' \"$d\"; ls -fa \"./$d\" | tr '\\n' ' '; echo; done")


def _parse(text: str) -> tuple[dict[str, list[str]], dict[str, str]]:
    rows, listings = {}, {}
    for line in text.splitlines():
        if line.startswith("LS "):
            d, _, names = line[3:].partition(":")
            listings[d] = names
        elif line.count("\t") == 5:
            path, *fields = line.split("\t")
            rows[path] = fields
    return rows, listings


def _ranks(rows: dict[str, list[str]], col: int) -> list[str]:
    """Paths ordered by one stat field (ties by path): what an agent could sort by."""
    return sorted(rows, key=lambda p: (float(rows[p][col]), p))


@pytest.mark.timeout(300)
def test_mutated_files_look_like_every_other_file():
    tasks = BY_IMAGE["envfarm/repo-more-itertools:11.2.1"]
    by_path: dict[str, object] = {}
    for t in tasks:  # one single bug per changed file: more.py (mode 755) and recipes.py
        meta = t.envfarm_meta or {}
        if meta.get("path") and not meta.get("locations"):
            by_path.setdefault(meta["path"], t)
    picked = list(by_path.values())[:2]
    assert len(picked) == 2

    async def collect():
        out = {}
        clean = await DockerSandbox.create(SandboxSpec(image=picked[0].image))
        try:
            out["clean"] = _parse((await clean.exec(STAT, output_limit=1 << 20)).output)
        finally:
            await clean.close()
        for t in picked:
            sb = await DockerSandbox.create(SandboxSpec(image=t.image))
            try:
                await prepare_repository(sb, t)
                out[t.instance_id] = _parse((await sb.exec(STAT, output_limit=1 << 20)).output)
            finally:
                await sb.close()
        return out

    seen = asyncio.run(collect())
    clean_rows, _ = seen.pop("clean")
    (a_rows, a_ls), (b_rows, b_ls) = seen.values()
    assert set(a_rows) == set(b_rows) == set(clean_rows)
    for rows in (a_rows, b_rows):
        for path, (_, mode, mtime, _, _kind) in rows.items():
            if path:  # the work tree's own folder is touched by `git init` in every task alike
                assert mode == clean_rows[path][1], (path, mode)
                assert mtime == clean_rows[path][2], (path, mtime, clean_rows[path][2])
    # inode numbers and change times: the same order in both sandboxes, whichever file changed
    for col in (0, 3):
        order_a = [p for p in _ranks(a_rows, col) if p]
        order_b = [p for p in _ranks(b_rows, col) if p]
        assert order_a == order_b, f"stat column {col} orders the files differently"
    assert a_ls == b_ls, "a folder lists its entries in a different order"
    for t in picked:
        changed = t.envfarm_meta["path"]
        assert changed in a_rows and a_rows[changed][1] == clean_rows[changed][1]
