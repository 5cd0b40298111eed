"""GradeResult: the verdict on one patch, or why there is none.

One typed record from the grader to the env, the trajectory, the store and the trainer. On
disk (inside a trajectory line) per-test statuses are a list of `{"test", "status"}` pairs, not
a map keyed by test name, so every line of a run has the same columns for
`datasets.load_dataset("json", ...)`; in memory `tests` is the map swebench's parser gives.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_serializer, field_validator
from swebench.harness.constants import ResolvedStatus

from envfarm.errors import ErrorKind
from envfarm.tasks.patch_guard import PatchReport


class GradeResult(BaseModel):
    """The verdict on one patch. `error_kind` is set only when no clean verdict could be had."""

    instance_id: str
    resolved: bool = False
    status: str = ResolvedStatus.NO.value
    fail_to_pass: float = 0.0  # fraction of FAIL_TO_PASS tests that pass
    pass_to_pass: float = 0.0  # fraction of PASS_TO_PASS tests still passing
    tests: dict[str, str] = Field(default_factory=dict)  # per-test status from the log parser
    report: dict[str, Any] = Field(default_factory=dict)  # swebench's report
    tests_ran: bool = False  # the log showed a real test run (swebench's check)
    error_kind: ErrorKind | None = None
    error: str = ""
    log_tail: str = ""
    seconds: float = 0.0
    patch_report: PatchReport = Field(default_factory=PatchReport)  # what the patch touched
    # where the seconds went: sandbox (acquire), prepare (base commit), patch, tests, parse, close
    phases: dict[str, float] = Field(default_factory=dict)
    # why the patch or the test run looks like an attempt on the grading itself (with
    # error_kind TAMPERING when it decided the verdict); empty for an honest patch
    tampering: list[str] = Field(default_factory=list)

    @property
    def infrastructure_failure(self) -> bool:
        return self.error_kind == ErrorKind.INFRASTRUCTURE

    @field_serializer("tests", when_used="json")
    def _tests_as_pairs(self, tests: dict[str, str]) -> list[dict[str, str]]:
        return [{"test": name, "status": status} for name, status in tests.items()]

    @field_validator("tests", mode="before")
    @classmethod
    def _tests_from_pairs(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {pair["test"]: pair["status"] for pair in value}
        return value
