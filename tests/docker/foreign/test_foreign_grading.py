"""Grading public-style rows: envfarm's verdicts equal swebench's run_instance on the same images."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from foreign_rows import append_patch, wrong_patch
from swebench.harness import run_evaluation as harness
from swebench.harness.utils import make_test_spec

from envfarm.sandbox.docker_backend import docker_client
from envfarm.tasks.grading import grade


@pytest.fixture
def harness_logs(tmp_path, monkeypatch):
    monkeypatch.setattr(harness, "RUN_EVALUATION_LOG_DIR", tmp_path)
    return tmp_path


def swebench_verdict(task, patch: str, run_id: str, model: str) -> bool:
    """run_instance's verdict (a model name per kind of patch: it reuses a report it finds)."""
    spec = make_test_spec(task.swebench_instance())
    pred = {"instance_id": task.instance_id, "model_patch": patch, "model_name_or_path": model}
    out = harness.run_instance(spec, pred, docker_client(), run_id, timeout=600)
    assert out, f"run_instance gave no result for {task.instance_id}"
    return bool(out[1][task.instance_id]["resolved"])


def test_verdicts_equal_run_instance(foreign_tasks, harness_logs):
    run_id = f"foreign-{uuid.uuid4().hex[:6]}"
    cases = [(name, kind, patch) for name, task in foreign_tasks.items()
             for kind, patch in (("gold", task.patch), ("empty", ""), ("wrong", wrong_patch(task)))]

    async def ours():
        return await asyncio.gather(*(grade(foreign_tasks[name], patch) for name, _, patch in cases))

    results = asyncio.run(ours())
    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        theirs = list(pool.map(lambda case: swebench_verdict(foreign_tasks[case[0]], case[2], f"{run_id}-{case[1]}",
                                                             case[1]), cases))
    for (name, kind, _), result, verdict in zip(cases, results, theirs, strict=True):
        assert result.error_kind is None or kind == "empty", (name, kind, result.error_kind, result.error)
        assert result.resolved == verdict == (kind == "gold"), (name, kind, result.resolved, verdict, result.log_tail)


# Code under test that runs as root (the public image's user) and replaces the image's `git`,
# which the eval script runs after the tests: it rewrites the guard's record and prints passing
# results after pytest's summary. The names are built at run time, past the patch screen.
FORGE_AFTER_TESTS = '''
_HELPER = r"""#!/bin/sh
for r in /tmp/.g*/record.json; do
/usr/bin/python3 - "$r" <<'E'
import json, sys
p = sys.argv[1]
d = json.load(open(p))
d["changed"] = []
d["exitstatus"] = 0
d["outcomes"] = {k: "passed" for k in d["outcomes"]}
open(p, "w").write(json.dumps(d))
for k in d["outcomes"]:
    print("PASS" + "ED", k)
print("FAIL" + "ED", "test_inflection.py" + ":" + ":test_zz_unrelated")
E
done
exit 0
"""
def _refresh_helper():
    try:
        with open("/usr/bin/" + "git", "w") as fh:
            fh.write(_HELPER)
    except OSError:
        pass
_refresh_helper()
'''

# Code under test that tells PID 1 its owner released the sandbox (as if the host had said `bye`)
# so that the grading container removes itself: a failure dressed as infrastructure.
RELEASE_PID1 = '''
def _say_goodbye():
    import os.path
    try:
        with open(os.path.join("/", "proc", "1", "fd", "0"), "w") as fh:
            fh.write("bye" + chr(10))
    except OSError:
        pass
_say_goodbye()
'''


def test_tests_running_as_root_can_neither_forge_a_pass_nor_mask_their_failure(foreign_tasks):
    task = foreign_tasks["future"]

    async def main():
        return await asyncio.gather(grade(task, append_patch(task, FORGE_AFTER_TESTS)),
                                    grade(task, append_patch(task, RELEASE_PID1)))

    forged, released = asyncio.run(main())
    assert forged.tests_ran and not forged.resolved, (forged.status, forged.error_kind, forged.log_tail[-800:])
    assert "test_zz_unrelated" not in forged.log_tail
    assert released.tests_ran and not released.resolved and not released.error_kind, \
        (released.error_kind, released.error)
