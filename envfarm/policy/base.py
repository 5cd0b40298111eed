"""The Policy contract: messages and tool schemas in, one completion out.

A policy is anything with `async def act(messages, tools) -> Completion`. It is called
concurrently by many episodes, so it must keep no per-episode state in attributes that one
episode could clobber for another (key any cache by the conversation itself, as the
transformers policy does).

For training, a backend that generates tokens returns them: `prompt_ids` (the whole context the
model was conditioned on this turn), `completion_ids` and their `logprobs`. The episode loop
records them per turn so the trainer concatenates the model's own tokens, never re-tokenised
text (see `envfarm.rollout.trajectory`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass
class Completion:
    """One model turn.

    `text` is what the environment parses (for servers that return structured tool calls, the
    adapter renders them into `text` as OpenAI function-call JSON). `message` is the assistant
    message to append to the conversation (with `tool_calls` when the backend used them); when
    None, `{"role": "assistant", "content": text}` is used.
    """

    text: str
    message: dict[str, Any] | None = None
    prompt_ids: list[int] | None = None
    completion_ids: list[int] | None = None
    logprobs: list[float] | None = None
    finish_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def assistant_message(self) -> dict[str, Any]:
        return dict(self.message) if self.message is not None else {"role": "assistant", "content": self.text}


@runtime_checkable
class Policy(Protocol):
    async def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Completion: ...


class PolicyError(RuntimeError):
    """The policy could not produce a completion (server down, model failure): not the agent's doing."""


def policy_name(policy: Any) -> str:
    return getattr(policy, "name", None) or type(policy).__name__
