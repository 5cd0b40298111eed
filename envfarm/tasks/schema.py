"""The Task schema: a SWE-bench row (5.x harness fields included) plus two envfarm fields.

One schema for builtin tasks, user JSONL, task directories and SWE-bench itself, so grading has
one path. The envfarm fields are optional and empty for real SWE-bench rows:

- `bug_patch`: for tasks made by injecting a bug into a clean repository image (one image per
  repository, as SWE-smith does): applied and committed with fixed dates at sandbox start, so
  the resulting commit is `base_commit` on every node.
- `test_files`: the paths restored to their pristine state before grading; by default the
  files that `test_patch` touches.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from envfarm.errors import UserInputError
from envfarm.tasks.diff import files_in_diff

KNOWN_EVAL_TYPES = ("pass_and_fail", "fail_only")
# Parsers of swebench's registry (swebench.harness.log_parsers.PARSER_REGISTRY) a row may name
# without that registry being imported: importing swebench's harness takes about 2 s (datasets,
# pandas, modal), four times the whole builtin suite's parsing. Any other name is looked up there.
PYTEST_LOG_PARSERS = frozenset({"parse_log_pytest", "parse_log_pytest_options", "parse_log_pytest_v2"})


class TaskError(UserInputError):
    """A task row or task source is malformed; the message names the row and the field."""


class Task(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=False)

    instance_id: str = Field(min_length=1)
    repo: str = Field(min_length=1)
    # before base_commit, whose check reads it
    bug_patch: str = ""
    # "" only for a bug-patch task whose commit is made at sandbox start (SWE-smith rows): see setup
    base_commit: str = Field(default="", validate_default=True)
    problem_statement: str = Field(min_length=1)
    patch: str = ""
    test_patch: str = ""
    FAIL_TO_PASS: list[str]
    PASS_TO_PASS: list[str] = Field(default_factory=list)
    version: str = ""
    image: str = Field(min_length=1)
    eval_script: str = Field(min_length=1)
    log_parser: str = "parse_log_pytest"
    eval_type: str = "pass_and_fail"
    test_files: list[str] = Field(default_factory=list)

    @field_validator("FAIL_TO_PASS", "PASS_TO_PASS", "test_files", mode="before")
    @classmethod
    def _json_list(cls, value: Any) -> Any:
        """SWE-bench on the hub stores these lists as JSON strings."""
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a JSON list of test names: {exc}") from exc
        return value

    @field_validator("FAIL_TO_PASS")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must name at least one test that the fix makes pass")
        return value

    @field_validator("base_commit")
    @classmethod
    def _base_commit_known(cls, value: str, info: ValidationInfo) -> str:
        if value == "" and info.data.get("bug_patch"):
            return value
        if len(value) < 7:
            raise ValueError("must be a commit hash (at least 7 characters); it may be left out only in a task "
                             "with a bug_patch, whose base commit is made at sandbox start")
        return value

    @field_validator("log_parser")
    @classmethod
    def _known_parser(cls, value: str) -> str:
        if value in PYTEST_LOG_PARSERS:
            return value
        from swebench.harness.log_parsers import PARSER_REGISTRY

        if value not in PARSER_REGISTRY:
            close = [n for n in PARSER_REGISTRY if value.lower() in n.lower()][:5]
            raise ValueError(f"unknown log parser {value!r}; swebench knows e.g. {close or 'parse_log_pytest'}")
        return value

    @field_validator("eval_type")
    @classmethod
    def _known_eval_type(cls, value: str) -> str:
        if value not in KNOWN_EVAL_TYPES:
            raise ValueError(f"must be one of {KNOWN_EVAL_TYPES}")
        return value

    @property
    def restored_files(self) -> list[str]:
        """Test files to put back to their pristine state before the tests run."""
        return self.test_files or files_in_diff(self.test_patch)

    def swebench_instance(self) -> dict[str, Any]:
        """The row as swebench's `make_test_spec` wants it."""
        return self.model_dump()

    @classmethod
    def parse(cls, row: dict[str, Any], where: str = "task") -> Task:
        """Validate one row; the error names where the row came from and the bad field."""
        if not isinstance(row, dict):
            raise TaskError(f"{where}: expected an object with SWE-bench fields, got {type(row).__name__}")
        try:
            return cls.model_validate(row)
        except ValidationError as exc:
            rid = row.get("instance_id", "?")
            problems = "; ".join(
                f"field {'.'.join(str(p) for p in err['loc']) or '?'!r}: {err['msg']}"
                for err in exc.errors()
            )
            raise TaskError(f"{where} (instance_id {rid!r}): {problems}") from None
