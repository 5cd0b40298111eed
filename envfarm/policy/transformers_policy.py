"""A local transformers model as a policy, "token in, token out".

The first turn's prompt is the chat template applied to the conversation. Every later turn's
prompt is the previous turn's exact ids (prompt + what the model generated) followed by the ids
of the new tool messages as the template renders them (`encode_tool_turn`): the model's own
tokens are never re-tokenised from text, so the trainer can concatenate each turn's segments
and get exactly the sequence the model saw. The policy stays stateless per episode: the ids of
each turn are cached under a hash of the conversation up to that assistant message.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any

from envfarm.policy.base import Completion, PolicyError
from envfarm.policy.prefix_cache import PrefixCache, cached_logits

CACHE_SIZE = 4096


def conversation_key(messages: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(messages, sort_keys=True, default=str).encode()).hexdigest()


class TransformersPolicy:
    name = "transformers"

    def __init__(self, model: Any, tokenizer: Any, max_new_tokens: int = 512, temperature: float = 1.0,
                 top_p: float = 1.0, chat_template_kwargs: dict[str, Any] | None = None,
                 score_cache: int = 16) -> None:
        """`score_cache`: how many scored conversations keep their attention cache for the next
        turn's `score` (about one per episode in flight; each holds the model's key/value cache of
        its conversation; 0 scores every turn from scratch)."""
        self.model = model
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.chat_template_kwargs = chat_template_kwargs or {}
        self.eos_id: int = tokenizer.eos_token_id
        self._cache: OrderedDict[str, list[int]] = OrderedDict()
        self._lock = threading.Lock()  # one generate at a time on one model
        self.prefix_cache = PrefixCache(score_cache)

    @classmethod
    def from_pretrained(cls, path: str, **kwargs: Any) -> TransformersPolicy:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        return cls(AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path), **kwargs)

    # -- templates -------------------------------------------------------------------------
    def render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
               add_generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, tools=tools or None, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt,
                                                  **self.chat_template_kwargs)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode_tool_turn(self, messages_before: list[dict[str, Any]], messages_after: list[dict[str, Any]],
                         tools: list[dict[str, Any]] | None = None) -> list[int]:
        """Ids the template puts after the model's end-of-turn token up to the next generation prompt.

        `messages_before` ends with the assistant message; `messages_after` extends it with the
        tool (or user) messages. The delta is what the template renders for the new messages, plus
        whatever it puts between the end-of-turn token and the next message (Qwen: a newline).
        If the template re-renders earlier turns differently once more follow, the new messages
        are rendered after a neutral stand-in conversation instead.
        """
        before = self.render(messages_before, tools, add_generation_prompt=False)
        after = self.render(messages_after, tools, add_generation_prompt=True)
        if not after.startswith(before):
            stand_in = [{"role": "user", "content": "."}, {"role": "assistant", "content": "."}]
            new = messages_after[len(messages_before):]
            before = self.render(stand_in, None, add_generation_prompt=False)
            after = self.render(stand_in + new, None, add_generation_prompt=True)
            if not after.startswith(before):
                raise PolicyError("the chat template does not render tool messages as an extension of the "
                                  "conversation; cannot build the next prompt without re-tokenising")
        eos = self.tokenizer.eos_token or ""
        cut = before.rfind(eos) if eos else -1
        glue = before[cut + len(eos):] if cut >= 0 else ""
        return self.encode(glue + after[len(before):])

    # -- the Policy protocol -----------------------------------------------------------------
    def prompt_ids(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[int]:
        last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
        if last is not None:
            cached = self._cache.get(conversation_key(messages[: last + 1]))
            if cached is not None:
                return cached + self.encode_tool_turn(messages[: last + 1], messages, tools)
        return self.encode(self.render(messages, tools, add_generation_prompt=True))

    async def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Completion:
        prompt = self.prompt_ids(messages, tools)
        completion_ids, logprobs = await asyncio.to_thread(self._generate, prompt)
        finish = "stop" if completion_ids and completion_ids[-1] == self.eos_id else "length"
        text = self.tokenizer.decode(completion_ids, skip_special_tokens=True)
        message = {"role": "assistant", "content": text}
        closed = completion_ids + ([] if finish == "stop" else [self.eos_id])  # the turn must end for the next
        self.remember([*messages, message], prompt + closed)
        return Completion(text=text, message=message, prompt_ids=prompt, completion_ids=completion_ids,
                          logprobs=logprobs, finish_reason=finish,
                          usage={"prompt_tokens": len(prompt), "completion_tokens": len(completion_ids)})

    def remember(self, conversation: list[dict[str, Any]], ids: list[int]) -> None:
        """The exact ids of `conversation` (ending with an assistant turn): the next prompt extends them."""
        self._cache[conversation_key(conversation)] = list(ids)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)

    def score(self, prompt: list[int], ids: list[int]) -> list[float]:
        """The model's logprobs of `ids` after `prompt` (a guide's text scored as if the model wrote it).

        The part of `prompt` already scored in an earlier turn (with the same weights) is not run
        through the model again (`PrefixCache`)."""
        import torch

        with self._lock, torch.no_grad():
            logits = cached_logits(self.model, prompt + ids, len(prompt) - 1, self.prefix_cache)[:-1].float()
            logps = torch.log_softmax(logits, dim=-1)
            return logps.gather(1, torch.tensor(ids, device=logits.device)[:, None])[:, 0].tolist()

    def _generate(self, prompt: list[int]) -> tuple[list[int], list[float]]:
        import torch

        with self._lock, torch.no_grad():
            device = next(self.model.parameters()).device
            input_ids = torch.tensor([prompt], device=device)
            sample = self.temperature > 0
            out = self.model.generate(
                input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=self.max_new_tokens,
                do_sample=sample, temperature=self.temperature if sample else None,
                top_p=self.top_p if sample else None, top_k=None, return_dict_in_generate=True,
                output_logits=True, eos_token_id=self.eos_id,
                pad_token_id=self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_id)
            ids = out.sequences[0, len(prompt):].tolist()
            scale = self.temperature if sample else 1.0
            logprobs = [torch.log_softmax(logits[0].float() / scale, dim=-1)[tok].item()
                        for logits, tok in zip(out.logits, ids, strict=False)]
        return ids, logprobs
