"""Rows in each public dataset's layout, loaded from local JSONL files into Tasks (no Docker, no hub)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from envfarm.errors import UserInputError
from envfarm.tasks.diff import files_in_diff, reverse_diff
from envfarm.tasks.layouts import detect_layout, to_task_row
from envfarm.tasks.loading import BUILTIN_DIR, load, load_hub
from envfarm.tasks.schema import TaskError

EVAL_SCRIPT = """#!/bin/bash
set -uxo pipefail
source /opt/miniconda3/bin/activate
conda activate testbed
cd /testbed
git checkout {base} -- tests
: '>>>>> Start Test Output'
pytest -rA tests
: '>>>>> End Test Output'
git checkout {base} -- tests
"""

# SWE-bench Verified, as on the hub: test lists are JSON strings, no image, no eval_script
SWE_BENCH_ROW = {
    "repo": "django/django",
    "instance_id": "django__django-11099",
    "base_commit": "d26b2424437dabeeca94d7900b37d2df4410da0c",
    "patch": ("diff --git a/django/contrib/auth/validators.py b/django/contrib/auth/validators.py\n"
              "--- a/django/contrib/auth/validators.py\n+++ b/django/contrib/auth/validators.py\n"
              "@@ -7,7 +7,7 @@\n \n @deconstructible\n class ASCIIUsernameValidator(validators.RegexValidator):\n"
              "-    regex = r'^[\\w.@+-]+$'\n+    regex = r'^[\\w.@+-]+\\Z'\n     message = _(\n"
              "         'Enter a valid username. This value may contain only English letters, '\n"),
    "test_patch": ("diff --git a/tests/auth_tests/test_validators.py b/tests/auth_tests/test_validators.py\n"
                   "--- a/tests/auth_tests/test_validators.py\n+++ b/tests/auth_tests/test_validators.py\n"
                   "@@ -237,7 +237,7 @@ def test_unicode_validator(self):\n         invalid_usernames = [\n"
                   "-            \"o'connell\", \"عبد ال\",\n"
                   "+            \"o'connell\", \"عبد ال\", \"trailingnewline\\n\",\n"
                   "         ]\n"),
    "problem_statement": "UsernameValidator allows trailing newline in usernames\nDescription\n\t\n"
                         "ASCIIUsernameValidator and UnicodeUsernameValidator use the regex r'^[\\w.@+-]+$'.",
    "hints_text": "",
    "created_at": "2019-03-20T03:46:18Z",
    "version": "3.0",
    "FAIL_TO_PASS": json.dumps(["test_ascii_validator (auth_tests.test_validators.UsernameValidatorsTests)",
                                "test_unicode_validator (auth_tests.test_validators.UsernameValidatorsTests)"]),
    "PASS_TO_PASS": json.dumps(["test_help_text (auth_tests.test_validators.UserAttributeSimilarityValidatorTest)"]),
    "environment_setup_commit": "419a78300f7cd27611196e1e464d50fd0385ff27",
    "difficulty": "<15 min fix",
}

# SWE-Gym: SWE-bench's columns without environment_setup_commit, test lists as sequences
SWE_GYM_ROW = {
    "instance_id": "Project-MONAI__MONAI-6975",
    "hints_text": "",
    "patch": "diff --git a/monai/data/utils.py b/monai/data/utils.py\n--- a/monai/data/utils.py\n"
             "+++ b/monai/data/utils.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n",
    "test_patch": "diff --git a/tests/test_utils.py b/tests/test_utils.py\n--- a/tests/test_utils.py\n"
                  "+++ b/tests/test_utils.py\n@@ -1 +1,2 @@\n import monai\n+assert monai\n",
    "created_at": "2023-09-13T09:29:42Z",
    "problem_statement": "`list_data_collate` drops the meta data of a batch of one",
    "repo": "Project-MONAI/MONAI",
    "base_commit": "392c5c1b860c0f0cfd0aa14e9d4b342c8b5ef5e7",
    "version": "1.2",
    "PASS_TO_PASS": ["tests/test_utils.py::test_collate"],
    "FAIL_TO_PASS": ["tests/test_utils.py::test_collate_one"],
}

SMITH_BUG = """\
diff --git a/oauthlib/common.py b/oauthlib/common.py
index 8a4bd4b..3c5f7a1 100644
--- a/oauthlib/common.py
+++ b/oauthlib/common.py
@@ -102,6 +102,6 @@ def decode_params_utf8(params):
     decoded = []
     for k, v in params:
         decoded.append((
-            k.decode('utf-8') if isinstance(k, bytes) else k,
+            k.decode('latin-1') if isinstance(k, bytes) else k,
             v.decode('utf-8') if isinstance(v, bytes) else v))
     return decoded
"""

# SWE-smith: `patch` introduces the bug; the image is `image_name`
SWE_SMITH_ROW = {
    "instance_id": "oauthlib__oauthlib.1fd52536.combine_file__09vlzwgc",
    "repo": "swesmith/oauthlib__oauthlib.1fd52536",
    "patch": SMITH_BUG,
    "FAIL_TO_PASS": ["tests/test_common.py::ParameterTest::test_decode_params_utf8"],
    "PASS_TO_PASS": ["tests/test_common.py::ParameterTest::test_extract_params_dict",
                     "tests/oauth1/test_signatures.py::SignatureTests::test_signature_base_string"],
    "created_at": "2025-03-14T20:51:05.104578",
    "image_name": "jyangballin/swesmith.x86_64.oauthlib_1776_oauthlib.1fd52536",
    "base_commit": "5dde1b3a0c8d0fa87a9a12e3d3c2b8a8f47bbf3d",
    "problem_statement": "decode_params_utf8 mangles non-ASCII parameter names given as bytes",
}

# SWE-rebench (V1): SWE-bench's columns plus `docker_image` and `install_config`
SWE_REBENCH_ROW = {
    "instance_id": "tobymao__sqlglot-1177",
    "base_commit": "5b5a5e4c8ca1e0b55c4a0dbd7f6d7a6f0b3b5f64",
    "created_at": "2023-02-17 21:01:37",
    "environment_setup_commit": "5b5a5e4c8ca1e0b55c4a0dbd7f6d7a6f0b3b5f64",
    "hints_text": "",
    "patch": "diff --git a/sqlglot/parser.py b/sqlglot/parser.py\n--- a/sqlglot/parser.py\n+++ b/sqlglot/parser.py\n"
             "@@ -1 +1 @@\n-a = 1\n+a = 2\n",
    "problem_statement": "Cannot parse `SELECT * FROM x WHERE y IS NOT DISTINCT FROM z`",
    "repo": "tobymao/sqlglot",
    "test_patch": "diff --git a/tests/test_parser.py b/tests/test_parser.py\n--- a/tests/test_parser.py\n"
                  "+++ b/tests/test_parser.py\n@@ -1 +1,2 @@\n import sqlglot\n+assert sqlglot\n",
    "version": "11.2",
    "install_config": {"install": "pip install -e .[dev]", "log_parser": "parse_log_pytest", "python": "3.9",
                       "test_cmd": "pytest --no-header -rA --tb=line --color=no -p no:cacheprovider "
                                   "-W ignore::DeprecationWarning"},
    "FAIL_TO_PASS": ["tests/test_parser.py::TestParser::test_is_distinct_from"],
    "PASS_TO_PASS": ["tests/test_parser.py::TestParser::test_column"],
    "docker_image": "swerebench/sweb.eval.x86_64.tobymao_1776_sqlglot-1177",
}

R2E_OLD, R2E_NEW = "606e0fe5834b82d94a17ed2614008270ecb93171"[::-1], "606e0fe5834b82d94a17ed2614008270ecb93171"


def _r2e_file(path: str, removed: str, added: str) -> dict[str, Any]:
    return {
        "old_file_content": "", "new_file_content": "",
        "header": {"file": {"path": path}, "misc_line": None},
        "index_line": {"old_commit_hash": "1111111", "new_commit_hash": "2222222", "mode": "100644"},
        "is_binary_file": False, "binary_line": None,
        "minus_file": {"path": f"a/{path}"}, "plus_file": {"path": f"b/{path}"},
        "hunks": [{"descriptor": {"old_range": {"start": 10, "length": 3}, "new_range": {"start": 10, "length": 3},
                                  "section": "def concat(objs):"},
                   "line_group": {"all_lines": [{"content": "    out = []", "type": "context"},
                                                {"content": removed, "type": "deleted"},
                                                {"content": added, "type": "added"},
                                                {"content": "    return out", "type": "context"}]}}],
    }


def _r2e_stdout(statuses: dict[str, str]) -> str:
    lines = [f"{status} {test}" for test, status in statuses.items()]
    return "============ short test summary info ============\n" + "\n".join(lines) + "\n==== 2 passed ====\n"


# R2E-Gym: no instance_id and no test lists; the fix and the test runs are JSON columns
R2E_ROW = {
    "repo_name": "pandas",
    "docker_image": f"namanjain12/pandas_final:{R2E_NEW}",
    "commit_hash": R2E_NEW,
    "parsed_commit_content": json.dumps({
        "file_diffs": [_r2e_file("pandas/core/reshape/concat.py", "    keys = None", "    keys = list(keys)"),
                       _r2e_file("pandas/tests/reshape/test_concat.py", "    pass", "    assert True")],
        "old_commit_hash": R2E_OLD, "new_commit_hash": R2E_NEW,
        "commit_message": "BUG: concat with keys as an iterator", "commit_date": "2023-01-05T10:00:00",
        "metadata": {},
    }),
    "execution_result_content": json.dumps({
        "repo_name": "pandas", "new_commit_hash": R2E_NEW, "test_file_codes": [], "test_file_names": ["test_1.py"],
        "setup_res_code": 0, "setup_res_stdout": "", "setup_res_stderr": "",
        "new_commit_res_code": 0, "new_commit_res_stderr": "",
        "new_commit_res_stdout": _r2e_stdout({"r2e_tests/test_1.py::test_keys_iterator": "PASSED",
                                              "r2e_tests/test_1.py::test_plain_concat": "PASSED",
                                              "r2e_tests/test_1.py::test_known_broken": "FAILED"}),
        "old_commit_res_code": 1, "old_commit_res_stderr": "",
        "old_commit_res_stdout": _r2e_stdout({"r2e_tests/test_1.py::test_keys_iterator": "FAILED",
                                              "r2e_tests/test_1.py::test_plain_concat": "PASSED",
                                              "r2e_tests/test_1.py::test_known_broken": "FAILED"}),
    }),
    "modified_files": ["pandas/core/reshape/concat.py", "pandas/tests/reshape/test_concat.py"],
    "relevant_files": ["pandas/core/reshape/concat.py"],
    "num_non_test_files": 1, "num_non_test_func_methods": 1, "num_non_test_lines": 2,
    "prompt": "[ISSUE]concat drops keys given as an iterator[/ISSUE]",
    "problem_statement": "`pd.concat(objs, keys=iter(...))` drops the keys",
    "expected_output_json": json.dumps({"test_keys_iterator": "PASSED", "test_plain_concat": "PASSED",
                                        "test_known_broken": "FAILED"}),
}


def _jsonl(tmp_path: Path, *rows: dict[str, Any], name: str = "tasks.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path


def _with_eval_script(row: dict[str, Any], base: str | None = None) -> dict[str, Any]:
    return {**row, "eval_script": EVAL_SCRIPT.format(base=base or row.get("base_commit", "HEAD"))}


@pytest.mark.parametrize(("row", "layout"), [
    (SWE_BENCH_ROW, "swe-bench"), (SWE_GYM_ROW, "swe-gym"), (SWE_SMITH_ROW, "swe-smith"),
    (SWE_REBENCH_ROW, "swe-rebench"), (R2E_ROW, "r2e-gym"),
    ({**SWE_REBENCH_ROW, "image_name": "swerebench/x", "docker_image": None}, "swe-rebench"),
    ({**SWE_SMITH_ROW, "bug_patch": SMITH_BUG, "patch": ""}, "task"),
    ({"instance_id": "a"}, "unknown"),
])
def test_layouts_are_told_by_their_own_columns(row, layout):
    assert detect_layout(row) == layout


@pytest.mark.parametrize(("row", "label"), [
    (SWE_BENCH_ROW, "SWE-bench"), (SWE_GYM_ROW, "SWE-Gym"), (SWE_SMITH_ROW, "SWE-smith"),
    (SWE_REBENCH_ROW, "SWE-rebench"), (R2E_ROW, "R2E-Gym"),
])
def test_a_row_without_eval_script_says_how_to_add_one(tmp_path, row, label):
    path = _jsonl(tmp_path, _with_eval_script(SWE_BENCH_ROW), row)
    with pytest.raises(TaskError) as err:
        load(str(path))
    msg = str(err.value)
    assert isinstance(err.value, UserInputError)
    assert f"{path}:2" in msg and label in msg and "`eval_script`" in msg
    assert "git checkout <base_commit> -- <files>" in msg and "Start Test Output" in msg and "docs/TASKS.md" in msg


def test_swe_bench_row_gets_swebench_image_name(tmp_path):
    [task] = load(str(_jsonl(tmp_path, _with_eval_script(SWE_BENCH_ROW))))
    assert task.image == "swebench/sweb.eval.x86_64.django_1776_django-11099:latest"
    assert task.FAIL_TO_PASS[0] == "test_ascii_validator (auth_tests.test_validators.UsernameValidatorsTests)"
    assert len(task.FAIL_TO_PASS) == 2 and len(task.PASS_TO_PASS) == 1
    assert task.patch == SWE_BENCH_ROW["patch"] and task.bug_patch == ""
    assert task.restored_files == ["tests/auth_tests/test_validators.py"]
    assert task.log_parser == "parse_log_pytest" and task.eval_type == "pass_and_fail"


def test_an_image_column_wins_over_the_derived_name(tmp_path):
    row = _with_eval_script({**SWE_BENCH_ROW, "docker_image": "my.registry/django-11099:v2"})
    [task] = load(str(_jsonl(tmp_path, row)))
    assert task.image == "my.registry/django-11099:v2"


def test_swe_gym_row_gets_swe_gym_image_name(tmp_path):
    [task] = load(str(_jsonl(tmp_path, _with_eval_script(SWE_GYM_ROW))))
    assert task.image == "xingyaoww/sweb.eval.x86_64.project-monai_s_monai-6975:latest"
    assert task.FAIL_TO_PASS == ["tests/test_utils.py::test_collate_one"]


def test_swe_smith_patch_is_the_bug_and_the_fix_is_its_reverse(tmp_path):
    [task] = load(str(_jsonl(tmp_path, _with_eval_script(SWE_SMITH_ROW))))
    assert task.bug_patch == SMITH_BUG
    assert task.patch == reverse_diff(SMITH_BUG)
    assert "-            k.decode('latin-1')" in task.patch and "+            k.decode('utf-8')" in task.patch
    assert task.image == "jyangballin/swesmith.x86_64.oauthlib_1776_oauthlib.1fd52536"
    assert task.base_commit == ""  # made at sandbox start: see envfarm.tasks.setup.prepare_repository
    assert task.test_files == ["tests/oauth1/test_signatures.py", "tests/test_common.py"]
    assert task.test_patch == "" and task.repo == "swesmith/oauthlib__oauthlib.1fd52536"


def test_swe_smith_base_commit_is_made_at_sandbox_start(tmp_path):
    """SWE-smith's base_commit names a commit of its mirror, never the one envfarm makes from the
    image's tree: the mapped task leaves it empty (see envfarm.tasks.setup.prepare_repository)."""
    row = {k: v for k, v in SWE_SMITH_ROW.items() if k != "base_commit"}
    with pytest.raises(TaskError) as err:
        load(str(_jsonl(tmp_path, row)))
    assert "SWE-smith's layout (it has image_name) and has no `eval_script`." in str(err.value)
    [task] = load(str(_jsonl(tmp_path, _with_eval_script(SWE_SMITH_ROW))))
    assert task.base_commit == "" and task.bug_patch


def test_swe_smith_bug_with_binary_content_is_a_task_error(tmp_path):
    binary = "diff --git a/a.png b/a.png\nindex 1..2 100644\nBinary files a/a.png and b/a.png differ\n"
    row = {**SWE_SMITH_ROW, "patch": binary}
    with pytest.raises(TaskError, match=r"tasks.jsonl:1 .*introduces the bug.*binary"):
        load(str(_jsonl(tmp_path, row)))


def test_swe_rebench_row_maps_image_and_log_parser(tmp_path):
    row = _with_eval_script({**SWE_REBENCH_ROW, "install_config": {**SWE_REBENCH_ROW["install_config"],
                                                                  "log_parser": "parse_log_pytest_v2"}})
    [task] = load(str(_jsonl(tmp_path, row)))
    assert task.image == "swerebench/sweb.eval.x86_64.tobymao_1776_sqlglot-1177"
    assert task.log_parser == "parse_log_pytest_v2"
    assert task.patch == SWE_REBENCH_ROW["patch"] and task.bug_patch == ""


def test_swe_rebench_eval_script_error_quotes_its_test_command(tmp_path):
    with pytest.raises(TaskError, match=r"install_config.test_cmd is 'pytest --no-header -rA"):
        load(str(_jsonl(tmp_path, SWE_REBENCH_ROW)))


def test_swe_rebench_v2_row_uses_image_name_and_keeps_its_gold_patch(tmp_path):
    row = {k: v for k, v in SWE_REBENCH_ROW.items() if k != "docker_image"}
    row = _with_eval_script({**row, "image_name": "swerebench/sweb.eval.x86_64.tobymao_1776_sqlglot-1177",
                             "language": "python", "install_config": json.dumps(row["install_config"])})
    [task] = load(str(_jsonl(tmp_path, row)))
    assert task.image == row["image_name"] and task.patch == row["patch"] and task.bug_patch == ""


def test_swe_rebench_row_without_image_names_image(tmp_path):
    row = _with_eval_script({k: v for k, v in SWE_REBENCH_ROW.items() if k != "docker_image"})
    with pytest.raises(TaskError) as err:
        load(str(_jsonl(tmp_path, row)))
    msg = str(err.value)
    assert "tasks.jsonl:1" in msg and "SWE-rebench" in msg and "has no `image`" in msg and "docker_image" in msg


def test_r2e_gym_row_reads_its_fix_and_tests_from_the_json_columns(tmp_path):
    [task] = load(str(_jsonl(tmp_path, _with_eval_script(R2E_ROW, base=R2E_OLD))))
    assert task.instance_id == f"pandas-{R2E_NEW}" and task.repo == "pandas"
    assert task.base_commit == R2E_OLD and task.image == R2E_ROW["docker_image"]
    assert task.FAIL_TO_PASS == ["r2e_tests/test_1.py::test_keys_iterator"]
    assert task.PASS_TO_PASS == ["r2e_tests/test_1.py::test_plain_concat"]
    assert files_in_diff(task.patch) == ["pandas/core/reshape/concat.py"]  # the commit's test file is left out
    hunk = "@@ -10,3 +10,3 @@ def concat(objs):\n     out = []\n-    keys = None\n+    keys = list(keys)\n"
    assert hunk in task.patch
    dumped = task.model_dump()
    assert "parsed_commit_content" not in dumped and "execution_result_content" not in dumped
    assert dumped["expected_output_json"] == R2E_ROW["expected_output_json"]


def test_r2e_gym_row_without_test_runs_names_fail_to_pass(tmp_path):
    row = _with_eval_script({**R2E_ROW, "execution_result_content": json.dumps({"old_commit_res_stdout": "boom"})})
    with pytest.raises(TaskError, match=r"has no `FAIL_TO_PASS`.*add FAIL_TO_PASS and PASS_TO_PASS"):
        load(str(_jsonl(tmp_path, row)))


def test_r2e_gym_row_with_bad_json_names_the_column(tmp_path):
    with pytest.raises(TaskError, match=r"tasks.jsonl:1 .*'parsed_commit_content'.*not valid JSON"):
        load(str(_jsonl(tmp_path, {**R2E_ROW, "parsed_commit_content": "{oops"})))


def test_a_bad_row_is_named_by_its_line(tmp_path):
    good = _with_eval_script(SWE_SMITH_ROW)
    bad = {**good, "instance_id": "oauthlib__oauthlib.1fd52536.lm_rewrite__x", "FAIL_TO_PASS": "[not json"}
    with pytest.raises(TaskError) as err:
        load(str(_jsonl(tmp_path, good, good, bad)))
    msg = str(err.value)
    assert f"{tmp_path / 'tasks.jsonl'}:3" in msg and "FAIL_TO_PASS" in msg and "lm_rewrite__x" in msg


def test_rows_that_fit_the_schema_are_kept_unchanged():
    row = json.loads((BUILTIN_DIR / "fixtures.jsonl").read_text().splitlines()[0])
    assert to_task_row(row, "x") is row
    with_image = _with_eval_script({**SWE_BENCH_ROW, "image": "img:1"})
    assert to_task_row(with_image, "x") is with_image


def test_unknown_layout_gets_the_per_field_message(tmp_path):
    with pytest.raises(TaskError) as err:
        load(str(_jsonl(tmp_path, {"instance_id": "x__y-1", "repo": "x/y", "problem_statement": "p"})))
    msg = str(err.value)
    assert "field 'base_commit'" in msg and "field 'image'" in msg and "field 'eval_script'" in msg
    assert "this row is in" not in msg


def test_hub_rows_go_through_the_mapping(monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets, "load_dataset", lambda name, split: [_with_eval_script(SWE_SMITH_ROW)])
    [task] = load_hub("SWE-bench/SWE-smith", split="train")
    assert task.bug_patch == SMITH_BUG and task.patch == reverse_diff(SMITH_BUG)


def test_the_documented_eval_script_runs_under_swebench(tmp_path):
    """The example in docs/TASKS.md, added to a SWE-rebench row, loads and is one swebench 5.x grades:
    its test command sits between the markers, where swebench records the tests' exit code."""
    from swebench.harness.constants import END_TEST_OUTPUT, START_TEST_OUTPUT, TEST_EXIT_CODE
    from swebench.harness.utils import make_test_spec

    docs = (Path(__file__).parents[3] / "docs" / "TASKS.md").read_text()
    section = docs.split("### An eval script for a pytest project", 1)[1]
    script = section.split("```bash\n", 1)[1].split("```", 1)[0]
    [task] = load(str(_jsonl(tmp_path, {**SWE_REBENCH_ROW, "eval_script": script})))
    base = SWE_REBENCH_ROW["base_commit"]
    assert script.count(f"git checkout {base} -- tests/test_parser.py") == 2
    assert script.index("git apply -v -") < script.index(START_TEST_OUTPUT) < script.index(END_TEST_OUTPUT)
    spec = make_test_spec(task.swebench_instance())
    assert f'echo "{TEST_EXIT_CODE}: $' in spec.eval_script
