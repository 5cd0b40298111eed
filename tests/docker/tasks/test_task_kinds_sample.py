"""CI validation of the new task kinds, for real: one shipped task of each (gold resolves, empty does
not), and a multi-location task is not resolved while any one of its locations is left unfixed."""

from __future__ import annotations

import asyncio

import pytest

from envfarm.sandbox.base import SandboxSpec
from envfarm.sandbox.docker_backend import DockerSandbox
from envfarm.sandbox.images import load_projects, read_file_from_image
from envfarm.suitegen.combine import fix_all_but_one
from envfarm.suitegen.restate import snippet_misbehaves
from envfarm.tasks.difficulty import NEW_KINDS, task_labels
from envfarm.tasks.grading import grade
from envfarm.tasks.images_needed import ensure_task_images
from envfarm.tasks.loading import BUILTIN_DIR, load_builtin, load_jsonl
from envfarm.tasks.schema import Task

pytestmark = pytest.mark.docker

SHIPPED = load_builtin()


def _first_of(kind: str) -> Task | None:
    """The kind's task with the fewest failing tests in the project with the most tasks of it (a
    fast suite usually), so the sample stays small and stable."""
    tasks = [t for t in SHIPPED if task_labels(t)["kind"] == kind]
    return min(tasks, key=lambda t: (len(t.PASS_TO_PASS) + len(t.FAIL_TO_PASS), t.instance_id), default=None)


SAMPLE = {kind: _first_of(kind) for kind in NEW_KINDS}


def test_every_new_kind_is_shipped():
    assert all(SAMPLE.values()), [k for k, t in SAMPLE.items() if t is None]


@pytest.mark.timeout(300)
def test_sample_gold_resolves_and_empty_does_not(docker_engine):
    tasks = [t for t in SAMPLE.values() if t is not None]
    ensure_task_images(tasks)

    async def run() -> list[tuple[str, bool, bool, str]]:
        sem = asyncio.Semaphore(2)

        async def both(task: Task) -> tuple[str, bool, bool, str]:
            async with sem:
                gold = await grade(task, task.patch)
                empty = await grade(task, "")
            gold_ok, empty_ok = gold.resolved and not gold.error_kind, not empty.resolved and not empty.error_kind
            return (task.instance_id, gold_ok, empty_ok,
                    f"gold: {gold.status} {gold.error_kind} {gold.error}; empty: {empty.status} {empty.error_kind}")

        return await asyncio.gather(*(both(t) for t in tasks))

    bad = [(iid, why) for iid, gold_ok, empty_ok, why in asyncio.run(run()) if not (gold_ok and empty_ok)]
    assert not bad, bad


def _multi_with_shipped_parts() -> Task | None:
    """The smallest multi-location task whose single bugs are all still shipped (a single bug may
    leave the suite after its combination was validated: no issue level, or a duplicate)."""
    by_id = {t.instance_id: t for t in SHIPPED}
    tasks = [t for t in SHIPPED if task_labels(t)["kind"] == "multi_location"
             and all(loc["from"] in by_id for loc in t.envfarm_meta["locations"])]  # type: ignore[attr-defined]
    return min(tasks, key=lambda t: (len(t.PASS_TO_PASS) + len(t.FAIL_TO_PASS), t.instance_id), default=None)


@pytest.mark.timeout(300)
def test_multi_location_fails_while_any_location_is_left_unfixed(docker_engine):
    task = _multi_with_shipped_parts()
    assert task is not None
    ensure_task_images([task])
    by_id = {t.instance_id: t for t in SHIPPED}
    parts = [by_id[loc["from"]] for loc in task.envfarm_meta["locations"]]  # type: ignore[attr-defined]
    paths = sorted({p for part in parts for p in (part.envfarm_meta["path"],)})  # type: ignore[attr-defined]
    clean = {p: read_file_from_image(task.image, f"/testbed/{p}") for p in paths}
    partial = fix_all_but_one(task, parts, clean)
    assert len(partial) == len(parts) >= 2

    async def run() -> list:
        sem = asyncio.Semaphore(2)

        async def one(patch: str):
            async with sem:
                return await grade(task, patch)

        return await asyncio.gather(*(one(p) for p in partial))

    results = asyncio.run(run())
    for i, res in enumerate(results):
        assert not res.error_kind, (i, res.error_kind, res.error)
        assert not res.resolved, f"location {i + 1} left unfixed, yet the task is resolved"


@pytest.mark.timeout(300)
def test_hand_written_issue_snippets_fail_on_the_bug_and_run_on_the_fix(inflection_image):
    """The hand-written tasks' issue level is held to the generated ones' rule, for real."""
    tasks = load_jsonl(BUILTIN_DIR / "fixtures.jsonl")
    project = load_projects()["inflection"]

    async def run() -> tuple[dict[str, str | None], str | None]:
        sandbox = await DockerSandbox.create(SandboxSpec(image=project.image), run="test", task="hand-written")
        try:
            out = {}
            for task in tasks:
                issue = task.statements["issue"]  # type: ignore[attr-defined]
                script = issue.split("```python\n", 1)[1].split("```", 1)[0]
                out[task.instance_id] = await snippet_misbehaves(sandbox, project, task, script)
            control = await snippet_misbehaves(sandbox, project, tasks[0], "import inflection\n")
            return out, control
        finally:
            await sandbox.close()

    results, control = asyncio.run(run())
    assert results == {t.instance_id: None for t in tasks}, results
    assert control is not None and "does not fail on the bug" in control  # the check can refuse


@pytest.mark.timeout(300)
def test_restating_a_shipped_task_writes_a_snippet_that_reproduces_its_bug(inflection_image):
    """A collect's restating, for real, on a shipped single bug with its levels dropped: the issue
    level comes back with a snippet the shared check accepts, and the labels with it."""
    from envfarm.suitegen.restate import restate_task

    task = min((t for t in SHIPPED if t.repo == "inflection" and task_labels(t)["kind"] == "single"),
               key=lambda t: (len(t.FAIL_TO_PASS), t.instance_id))
    bare = Task.parse({**task.model_dump(), "statements": None, "difficulty": None})
    project = load_projects()["inflection"]

    async def run() -> tuple[Task, str | None]:
        sandbox = await DockerSandbox.create(SandboxSpec(image=project.image), run="test", task="restate")
        try:
            done = await restate_task(sandbox, project, bare)
            issue = done.statements.get("issue", "")  # type: ignore[attr-defined]
            script = issue.split("```python\n", 1)[1].split("```", 1)[0] if "```python\n" in issue else ""
            return done, await snippet_misbehaves(sandbox, project, task, script)
        finally:
            await sandbox.close()

    done, why = asyncio.run(run())
    assert set(done.statements) == {"traceback", "issue", "terse"}, done.statements  # type: ignore[attr-defined]
    assert why is None, why
    assert done.difficulty["kind"] == "single"  # type: ignore[attr-defined]


def test_a_projects_sources_are_read_from_its_image_at_once(inflection_image):
    """Generation reads every source file with one container; the texts are the files' own."""
    from envfarm.sandbox.images import read_files_from_image
    from envfarm.suitegen.baseline import project_sources

    paths = project_sources("inflection")
    texts = read_files_from_image(inflection_image, [*paths, "test_inflection.py"])
    assert set(texts) == {*paths, "test_inflection.py"}
    for path in paths:
        assert texts[path] == read_file_from_image(inflection_image, f"/testbed/{path}")
    assert read_files_from_image(inflection_image, []) == {}
