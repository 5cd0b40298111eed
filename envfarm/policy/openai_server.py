"""Any OpenAI-compatible chat server as a policy (vLLM, SGLang, llama.cpp, a hosted API).

Token ids and logprobs come back when the server gives them: the request asks for `logprobs`
and, for vLLM, `return_token_ids` (prompt and completion ids, vLLM >= 0.10.2) and
`return_tokens_as_token_ids` (logprob tokens spelled `token_id:<n>`, older vLLM). Servers that
ignore these fields still work; the completion then simply has no ids.

With `native_tools=True` the tool schemas go in the request and structured `tool_calls` come
back; they are rendered into `text` as OpenAI function-call JSON (which the environment parses)
while the assistant message keeps them structured for the next request.

Standard library HTTP (urllib) in a thread: no extra dependency, and one call per turn is far
from being the bottleneck next to generation itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.error
import urllib.request
from typing import Any

from envfarm.policy.base import Completion, PolicyError


class OpenAIPolicy:
    name = "openai"

    def __init__(self, base_url: str = "http://localhost:8000/v1", model: str = "default",
                 api_key: str | None = None, temperature: float = 1.0, max_tokens: int = 1024,
                 native_tools: bool = False, request_tokens: bool = True, timeout_s: float = 600.0,
                 extra_body: dict[str, Any] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.native_tools = native_tools
        self.request_tokens = request_tokens
        self.timeout_s = timeout_s
        self.extra_body = extra_body or {}

    def request_body(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": self.temperature,
                                "max_tokens": self.max_tokens}
        if self.native_tools:
            body["tools"] = tools
        if self.request_tokens:
            body.update(logprobs=True, top_logprobs=0, return_token_ids=True, return_tokens_as_token_ids=True)
        return {**body, **self.extra_body}

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.base_url}/chat/completions", data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json",
                     **({"Authorization": f"Bearer {self.api_key}"} if self.api_key else {})})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise PolicyError(f"{self.base_url}: HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise PolicyError(f"{self.base_url}: cannot reach the server: {exc}") from exc

    async def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Completion:
        data = await asyncio.to_thread(self._post, self.request_body(messages, tools))
        return parse_response(data)


def _token_ids_from_logprobs(content: list[dict[str, Any]]) -> list[int] | None:
    ids = []
    for item in content:
        token = str(item.get("token", ""))
        if not token.startswith("token_id:"):
            return None
        ids.append(int(token.split(":", 1)[1]))
    return ids


def parse_response(data: dict[str, Any]) -> Completion:
    """A Completion from a chat-completions response, with ids and logprobs where present."""
    try:
        choice = data["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError) as exc:
        raise PolicyError(f"unexpected response from the server: {json.dumps(data)[:300]}") from exc
    content = message.get("content") or ""
    tool_calls = message.get("tool_calls") or []
    text = content
    if tool_calls:
        calls = [{"id": c.get("id"), "type": "function", "function": c["function"]} for c in tool_calls]
        text = (content + "\n" if content else "") + json.dumps({"tool_calls": calls})
    logprob_items = (choice.get("logprobs") or {}).get("content") or []
    logprobs = [float(item["logprob"]) for item in logprob_items] or None
    completion_ids = choice.get("token_ids") or _token_ids_from_logprobs(logprob_items) or None
    prompt_ids = data.get("prompt_token_ids") or choice.get("prompt_token_ids")
    assistant: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        assistant["tool_calls"] = tool_calls
    return Completion(text=text, message=assistant, prompt_ids=prompt_ids, completion_ids=completion_ids,
                      logprobs=logprobs, finish_reason=choice.get("finish_reason"), usage=data.get("usage") or {})
