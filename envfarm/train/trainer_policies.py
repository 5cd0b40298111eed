"""The policies a training run plays episodes with; each is an ordinary envfarm Policy.

- `TrainerModelPolicy`: the trainer's own model generates (CPU, tests, tiny runs). It runs in the
  trainer's process, so its episodes run in-process too (see runners.InProcessRunner).
- `GuidedPolicy`: a guide's actions (by default the gold patch, applied and submitted) scored by
  the model: token ids and the model's logprobs of them. A cold-started or random model gets
  all-zero groups and so no gradient; a demonstration in the group gives the group a spread.
- `PolicyRouter`: one Policy object for a host whose episodes use different policies, chosen
  per episode through a context variable the runner sets before the episode starts.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from typing import Any

from envfarm.policy.base import Completion
from envfarm.policy.oracle import episode_task, is_oracle
from envfarm.policy.scripted import apply_patch_command
from envfarm.policy.transformers_policy import TransformersPolicy

_current: contextvars.ContextVar[Any] = contextvars.ContextVar("envfarm_train_policy", default=None)


class TrainerModelPolicy(TransformersPolicy):
    """TransformersPolicy on the trainer's model, in eval mode while it generates."""

    name = "trainer-model"

    def _generate(self, prompt: list[int]) -> tuple[list[int], list[float]]:
        was_training = self.model.training
        self.model.eval()
        try:
            return super()._generate(prompt)
        finally:
            if was_training:
                self.model.train()


class GoldPatchGuide:
    """Two turns: apply the task's gold patch with bash, then submit. An oracle: it reads the
    episode's task from the episode loop (envfarm.policy.oracle)."""

    name = "gold-patch-guide"
    oracle = True

    def action(self, messages: list[dict[str, Any]]) -> str:
        if any(m.get("role") == "assistant" for m in messages):
            return '<tool_call>\n{"name": "submit", "arguments": {}}\n</tool_call>'
        command = apply_patch_command(episode_task().patch)
        return "<tool_call>\n" + json.dumps({"name": "bash", "arguments": {"command": command}}) + "\n</tool_call>"


class GuidedPolicy:
    """A guide's text, tokenised once as the model's turn, with the model's logprobs of those ids."""

    name = "guided"

    def __init__(self, base: TransformersPolicy, guide: Any | None = None) -> None:
        self.base = base
        self.guide = guide or GoldPatchGuide()

    @property
    def oracle(self) -> bool:
        return is_oracle(self.guide)

    async def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Completion:
        base = self.base
        text = self.guide.action(messages) if hasattr(self.guide, "action") else \
            (await self.guide.act(messages, tools)).text
        prompt = base.prompt_ids(messages, tools)
        ids = base.encode(text) + [base.eos_id]
        logprobs = await asyncio.to_thread(base.score, prompt, ids)
        message = {"role": "assistant", "content": base.tokenizer.decode(ids, skip_special_tokens=True)}
        base.remember([*messages, message], prompt + ids)
        return Completion(text=message["content"], message=message, prompt_ids=prompt, completion_ids=ids,
                          logprobs=logprobs, finish_reason="stop",
                          usage={"prompt_tokens": len(prompt), "completion_tokens": len(ids)})


class PolicyRouter:
    """Dispatches `act` to the policy the current episode was started with (`use(policy)`)."""

    name = "router"

    def __init__(self, default: Any) -> None:
        self.default = default

    def use(self, policy: Any) -> contextvars.Token:
        return _current.set(policy)

    def _policy(self) -> Any:
        return _current.get() or self.default

    @property
    def oracle(self) -> bool:
        """An oracle exactly when this episode's policy is one (a demonstration guide)."""
        return is_oracle(self._policy())

    async def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Completion:
        return await self._policy().act(messages, tools)
