"""The shipped suite holds no task twice (same gold patch, or same files with the same failing
tests), and the de-duplication keeps the first of each."""

from __future__ import annotations

from envfarm.suitegen.dedupe import duplicate_keys, unique
from envfarm.tasks import load
from envfarm.tasks.loading import BUILTIN_DIR, load_jsonl


def test_the_builtin_suite_has_no_duplicates():
    seen: dict = {}
    for task in load("builtin"):
        for key in duplicate_keys(task):
            assert key not in seen, f"{task.instance_id} duplicates {seen[key]} ({key[0]})"
            seen[key] = task.instance_id


def test_unique_keeps_the_first_of_each_key():
    a, b = load_jsonl(BUILTIN_DIR / "fixtures.jsonl")[:2]
    same_fix = b.model_copy(update={"instance_id": "copy-of-b"})
    same_place = a.model_copy(update={"instance_id": "a-again", "patch": a.patch + "\n"})
    kept, dropped = unique([a, b, same_fix, same_place])
    assert [t.instance_id for t in kept] == [a.instance_id, b.instance_id]
    assert [t.instance_id for t in dropped] == ["copy-of-b", "a-again"]
