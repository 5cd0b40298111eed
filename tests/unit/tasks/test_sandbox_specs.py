"""Which parts of a row reach the sandboxes: the activation lines, never the test patch."""

from __future__ import annotations

from envfarm.tasks.sandbox_specs import activation, agent_spec, grading_spec, sandbox_image_inputs
from envfarm.tasks.schema import Task

SWEBENCH_STYLE = """#!/bin/bash
set -uxo pipefail
source /opt/miniconda3/bin/activate
conda activate testbed
cd /testbed
git config --global --add safe.directory /testbed
export LANG=C.UTF-8
conda install -y secret-package
export X=$(cat /testbed/secret); echo leaked
git checkout abc123 -- tests/test_a.py
git apply -v - <<'EOF_114329324912'
diff --git a/tests/test_a.py b/tests/test_a.py
+source /the/hidden/test/patch
+export HIDDEN=1
EOF_114329324912
source /after/the/heredoc
: '>>>>> Start Test Output'
pytest -rA tests/test_a.py
"""


def test_activation_keeps_plain_activation_before_the_test_patch():
    assert activation(SWEBENCH_STYLE).splitlines() == [
        "source /opt/miniconda3/bin/activate", "conda activate testbed", "export LANG=C.UTF-8"]


def test_activation_of_a_script_without_any_is_empty():
    assert activation("#!/bin/bash\ncd /testbed\npython3 -m pytest\n") == ""


def task(**changes) -> Task:
    row = {"instance_id": "a__b-1", "repo": "a/b", "base_commit": "abc1234def", "problem_statement": "p",
           "FAIL_TO_PASS": ["t::x"], "image": "acme/img:1", "eval_script": SWEBENCH_STYLE}
    return Task.parse({**row, **changes})


def test_specs_carry_what_adaptation_needs():
    plain = task()
    assert sandbox_image_inputs(plain)[0] == "abc1234def"
    assert agent_spec(plain).user == "agent" and grading_spec(plain).user is None
    assert agent_spec(plain, cpus=2.0).cpus == 2.0
    assert "conda activate testbed" in grading_spec(plain).activation
    # a bug-patch task starts from the image's HEAD: its bug is committed at sandbox start
    assert sandbox_image_inputs(task(bug_patch="diff --git a/x b/x\n"))[0] == ""
