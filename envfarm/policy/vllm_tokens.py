"""Generation on a vLLM server (`trl vllm-serve` / `vllm serve`), token in, token out.

The chat endpoint re-renders the whole conversation every turn, which can drift from the ids
the model produced; this policy instead builds each prompt's ids exactly as TransformersPolicy
does (the previous turn's ids plus the tool messages' ids) and sends them to the server's
`/v1/completions` as a token-id prompt, asking for the sampled ids and their logprobs back.
The trainer syncs its weights into the same server every step (TRL's vLLM server mode), and
those logprobs feed TRL's importance-sampling correction.

It needs only a tokenizer (a path), so Ray hosts can build it from `--policy` keyword arguments.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from envfarm.policy.base import PolicyError
from envfarm.policy.transformers_policy import TransformersPolicy


class VLLMTokenPolicy(TransformersPolicy):
    name = "vllm-tokens"

    def __init__(self, base_url: str = "http://localhost:8000", tokenizer: Any = None, model_name: str | None = None,
                 max_new_tokens: int = 512, temperature: float = 1.0, top_p: float = 1.0,
                 timeout_s: float = 600.0) -> None:
        if tokenizer is None:
            raise ValueError("VLLMTokenPolicy needs the model's tokenizer (an object or a local path)")
        if isinstance(tokenizer, str):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        super().__init__(None, tokenizer, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        self.model_name = model_name
        self.timeout_s = timeout_s

    def _request(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.base_url}{path}", data=data, method="POST" if data else "GET",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise PolicyError(f"{self.base_url}{path}: HTTP {exc.code}: {exc.read()[:300]!r}") from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise PolicyError(f"{self.base_url}: cannot reach the server: {exc}") from exc

    def _generate(self, prompt: list[int]) -> tuple[list[int], list[float]]:
        """Concurrent requests (no lock: the server batches them)."""
        if self.model_name is None:
            self.model_name = self._request("/v1/models")["data"][0]["id"]
        choice = self._request("/v1/completions", {
            "model": self.model_name, "prompt": prompt, "max_tokens": self.max_new_tokens,
            "temperature": self.temperature, "top_p": self.top_p, "logprobs": 0,
            "return_token_ids": True, "return_tokens_as_token_ids": True, "stop_token_ids": [self.eos_id],
            "skip_special_tokens": False, "include_stop_str_in_output": True,
        })["choices"][0]
        ids = choice.get("token_ids")
        logprobs_block = choice.get("logprobs") or {}
        if ids is None:  # older servers: ids only as "token_id:<n>" strings
            ids = [int(str(t).removeprefix("token_id:")) for t in logprobs_block.get("tokens") or []]
        logprobs = [float("nan") if x is None else float(x) for x in logprobs_block.get("token_logprobs") or []]
        if len(logprobs) != len(ids):
            logprobs = [0.0] * len(ids)
        return list(ids), logprobs
