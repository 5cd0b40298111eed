"""Trajectory: everything one episode produced, for training, evaluation and reading.

Tokens ("token in, token out"): when the policy returns token ids, each turn records
`context_ids` (what entered the model's context before it generated: the whole prompt for the
first turn, then only the tool-output tokens since its previous completion) and `completion_ids`
with their `logprobs`. `envfarm.rollout.tokens.build_row` concatenates them into one training
sequence (the one token assembly trainers use); nothing is re-tokenised.

This is the one record of an episode from the host that ran it to the driver, the store and the
trainer: typed on the way, JSON only inside the store (`to_dict`/`from_dict`, see
rollouts/README.md). Failures that never reached the episode loop are made with
`Trajectory.failure`, so every record has one shape.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field

from envfarm.errors import EndReason, ErrorKind
from envfarm.tasks.grade_result import GradeResult


class ToolCallRecord(BaseModel):
    id: str
    name: str
    arguments: str  # JSON object, as OpenAI sends them
    output: str
    seconds: float = 0.0
    command_seconds: float | None = None
    exit_code: int | None = None
    error: bool = False

    @property
    def args(self) -> dict[str, Any]:
        return json.loads(self.arguments)


class Turn(BaseModel):
    index: int
    completion: str  # the model's raw text (the action)
    observation: str  # what the env answered
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    format_error: bool = False
    parse_errors: list[str] = Field(default_factory=list)
    generation_seconds: float = 0.0
    tool_seconds: float = 0.0
    finish_reason: str | None = None
    context_ids: list[int] | None = None  # loss mask 0
    completion_ids: list[int] | None = None  # loss mask 1
    logprobs: list[float] | None = None
    prefix_consistent: bool | None = None  # None on the first turn or without tokens


class Timings(BaseModel):
    setup: float = 0.0
    generation: float = 0.0
    tools: float = 0.0
    grading: float = 0.0
    total: float = 0.0


class FarmInfo(BaseModel):
    """Where and how the farm ran an episode."""

    host: str = ""
    node: str = ""  # Ray node id
    host_seconds: float | None = None  # wall time on the host, queueing for a sandbox included
    demo: bool = False  # played by a demonstration policy (training with demos), not the trained one


class Trajectory(BaseModel):
    episode_id: str
    run: str = ""
    instance_id: str
    repo: str = ""
    policy: str = ""
    seed: int | None = None
    started_at: float = 0.0  # unix time
    messages: list[dict[str, Any]] = Field(default_factory=list)
    turns: list[Turn] = Field(default_factory=list)
    reward: float | None = None  # None: not the agent's doing (infrastructure, policy failure): mask it
    resolved: bool = False
    terminated: bool = False
    truncated: bool = False
    end_reason: EndReason | None = None
    error_kind: ErrorKind | None = None  # see envfarm.errors: an unknown kind fails validation
    error: str = ""
    grade: GradeResult | None = None
    patch: str = ""
    timings: Timings = Field(default_factory=Timings)
    # set by the farm: the GRPO group (its id, its index in the run or batch, this episode's
    # place in it), which try this was, where it ran
    group_id: str = ""
    group_index: int = 0
    member: int = 0
    attempt: int = 0
    retries: int = 0
    farm: FarmInfo = Field(default_factory=FarmInfo)
    # a branched group (envfarm.rollout.branching): every branch carries the first `prefix_turns`
    # turns of one episode, played once and forked; `branch_of` names that episode (branch 0's id),
    # `branch` is this record's place. Only branch 0 trains on the shared prefix's tokens.
    branch_of: str = ""
    prefix_turns: int = 0
    branch: int = 0
    # what in the agent's commands or patch tripped a tampering check (see exploit_attempt)
    exploit_signals: list[str] = Field(default_factory=list)

    @classmethod
    def failure(cls, *, episode_id: str, instance_id: str, kind: ErrorKind, error: str, repo: str = "",
                run: str = "", end_reason: EndReason = EndReason.SETUP_ERROR, **fields: Any) -> Trajectory:
        """The record of an episode that failed outside the episode loop (host, node, image)."""
        return cls(episode_id=episode_id, instance_id=instance_id, repo=repo, run=run, reward=None,
                   end_reason=end_reason, error_kind=kind, error=error[-4000:], **fields)

    @property
    def masked(self) -> bool:
        """True when the reward must not be trained on (no verdict on the agent)."""
        return self.reward is None or (self.error_kind is not None and self.error_kind.masked)

    @property
    def exploit_attempt(self) -> bool:
        """The agent's commands or patch tripped a tampering check: a trainer should know when its
        policy starts probing the grader."""
        grade = self.grade
        return bool(self.exploit_signals or (grade is not None and (grade.tampering or grade.patch_report.suspicious)))

    @property
    def retryable(self) -> bool:
        """The farm failed on its own: worth running again on another host."""
        return self.error_kind is not None and self.error_kind.retryable

    @property
    def shared_prefix_turns(self) -> int:
        """Turns at the start of this record whose tokens another branch trains on (not this one)."""
        return self.prefix_turns if self.branch_of and self.branch > 0 else 0

    @property
    def num_turns(self) -> int:
        return len(self.turns)

    def token_counts(self) -> dict[str, int]:
        return {"context": sum(len(t.context_ids or []) for t in self.turns),
                "completion": sum(len(t.completion_ids or []) for t in self.turns)}

    # -- the record format (the store's JSON) ---------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trajectory:
        """A record from the store; lines of format 1 (grade as a JSON string) read too."""
        if isinstance(data.get("grade"), str) or data.get("end_reason") == "":
            data = dict(data)
            if isinstance(data.get("grade"), str):
                data["grade"] = json.loads(data["grade"])
            if data.get("end_reason") == "":
                data["end_reason"] = None
        return cls.model_validate(data)
