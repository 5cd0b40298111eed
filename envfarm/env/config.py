"""EnvConfig: the limits and knobs of one CodingEnv (pydantic, so configs validate and serialise)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class EnvConfig(BaseModel):
    """Limits of an episode. Every limit ends the episode with `truncated=True` and a graded reward."""

    max_turns: int = Field(30, ge=1, description="steps before the episode is truncated")
    episode_timeout_s: float = Field(1800.0, gt=0, description="wall time from reset to truncation")
    command_timeout_s: float = Field(120.0, gt=0, description="per bash command; longer commands are killed")
    max_observation_chars: int = Field(16000, ge=200, description="longer tool outputs lose their middle")
    grading_timeout_s: float = Field(600.0, gt=0, description="time limit of the test run when grading")
    max_calls_per_turn: int = Field(8, ge=1, description="tool calls run from one action; more are refused")
    grade_on_truncation: bool = Field(True, description="grade the repository when a limit ends the episode")
    workdir: str = "/testbed"
    sandbox_env: dict[str, str] = Field(default_factory=lambda: {"PYTHONDONTWRITEBYTECODE": "1"},
                                        description="environment of the agent's shell (no .pyc noise in diffs)")
    run: str = Field("adhoc", description="run name, put on the sandboxes' labels")
