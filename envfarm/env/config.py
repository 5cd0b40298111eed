"""EnvConfig: the limits and knobs of one CodingEnv (pydantic, so configs validate and serialise)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from envfarm.errors import UserInputError

# the command line's names for EnvConfig's fields: the one mapping launch and train both use
CLI_FLAGS = {"max_turns": "--max-turns", "episode_timeout": "--episode-timeout", "command_timeout": "--command-timeout"}
_FIELDS = {"max_turns": "max_turns", "episode_timeout": "episode_timeout_s", "command_timeout": "command_timeout_s"}


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

    @classmethod
    def from_args(cls, args: Any, **fields: Any) -> EnvConfig:
        """From the command line's flags (see CLI_FLAGS); a bad value is a UserInputError naming the flag."""
        values = {_FIELDS[name]: getattr(args, name) for name in _FIELDS if getattr(args, name, None) is not None}
        try:
            return cls(**values, **fields)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = str(err["loc"][0]) if err["loc"] else "?"
            flag = next((CLI_FLAGS[k] for k, v in _FIELDS.items() if v == field), field)
            raise UserInputError(f"{flag}: {err['msg']}") from None

    @classmethod
    def coerce(cls, value: EnvConfig | Mapping[str, Any] | None, run: str | None = None) -> EnvConfig:
        """An EnvConfig from one or a dict of its fields, with `run` set when given."""
        cfg = value if isinstance(value, cls) else cls.model_validate(dict(value or {}))
        return cfg.model_copy(update={"run": run}) if run is not None else cfg
