"""Trajectory: everything one episode produced, for training, evaluation and reading.

Tokens ("token in, token out"): when the policy returns token ids, each turn records
`context_ids` (what entered the model's context before it generated: the whole prompt for the
first turn, then only the tool-output tokens since its previous completion) and `completion_ids`
with their `logprobs`. `token_view()` concatenates them into one sequence for a trainer:
completion tokens get loss mask 1, tool-output tokens mask 0, and nothing is re-tokenised. If a
turn's prompt did not extend the previous context exactly (`prefix_consistent=False`, e.g. a
server that re-rendered the chat), `token_view()` refuses rather than silently drift.

On disk (see rollouts/README.md) tool arguments and the grade are JSON strings, so that every
line has the same column types for `datasets.load_dataset("json", ...)`.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field


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
    end_reason: str = ""  # submit, max_turns, time_limit, sandbox_error, policy_error, setup_error
    error_kind: str | None = None  # None, infrastructure, timeout, patch_failed, patch_rejected, policy, image_missing
    error: str = ""
    grade: dict[str, Any] | None = None  # GradeResult.to_dict()
    patch: str = ""
    timings: Timings = Field(default_factory=Timings)
    # set by the farm: the GRPO group, which try this was, where it ran
    group_id: str = ""
    attempt: int = 0
    retries: int = 0
    farm: dict[str, Any] = Field(default_factory=dict)

    @property
    def masked(self) -> bool:
        """True when the reward must not be trained on (no verdict on the agent)."""
        return self.reward is None

    @property
    def num_turns(self) -> int:
        return len(self.turns)

    def token_counts(self) -> dict[str, int]:
        return {"context": sum(len(t.context_ids or []) for t in self.turns),
                "completion": sum(len(t.completion_ids or []) for t in self.turns)}

    def token_view(self) -> dict[str, list] | None:
        """One training sequence: prompt_ids, completion_ids, completion_mask, logprobs; None without tokens."""
        if not self.turns or any(t.completion_ids is None or t.context_ids is None for t in self.turns):
            return None
        if any(t.prefix_consistent is False for t in self.turns):
            raise ValueError(f"episode {self.episode_id}: a turn's prompt did not extend the previous context "
                             "(the backend re-rendered the chat); its tokens cannot be concatenated exactly")
        prompt = list(self.turns[0].context_ids or [])
        ids: list[int] = []
        mask: list[int] = []
        logprobs: list[float] = []
        for i, turn in enumerate(self.turns):
            if i:
                ids += turn.context_ids or []
                mask += [0] * len(turn.context_ids or [])
                logprobs += [0.0] * len(turn.context_ids or [])
            completion = turn.completion_ids or []
            ids += completion
            mask += [1] * len(completion)
            logprobs += turn.logprobs if turn.logprobs is not None and len(turn.logprobs) == len(completion) \
                else [0.0] * len(completion)
        return {"prompt_ids": prompt, "completion_ids": ids, "completion_mask": mask, "logprobs": logprobs}

    # -- the record format ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["grade"] = json.dumps(data["grade"]) if data["grade"] is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trajectory:
        data = dict(data)
        if isinstance(data.get("grade"), str):
            data["grade"] = json.loads(data["grade"])
        return cls.model_validate(data)
