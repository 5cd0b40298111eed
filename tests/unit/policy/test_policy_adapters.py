"""Policy adapters: a tiny random transformers model (token in, token out) and an OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from envfarm.env import tool_schemas
from envfarm.policy.base import PolicyError
from envfarm.policy.openai_server import OpenAIPolicy


@pytest.fixture(scope="module")
def tiny_policy():
    from envfarm.policy.tiny import make_tiny_model
    from envfarm.policy.transformers_policy import TransformersPolicy

    model, tokenizer = make_tiny_model(seed=1)
    return TransformersPolicy(model, tokenizer, max_new_tokens=12, temperature=1.0)


def test_transformers_policy_keeps_ids_and_logprobs_and_extends_context_exactly(tiny_policy):
    tools = tool_schemas()
    messages = [{"role": "system", "content": "sys"}, {"role": "user", "content": "fix the bug"}]
    first = asyncio.run(tiny_policy.act(messages, tools))
    assert first.prompt_ids and 0 < len(first.completion_ids) <= 12
    assert len(first.logprobs) == len(first.completion_ids) and all(lp <= 0 for lp in first.logprobs)
    assert first.prompt_ids == tiny_policy.encode(tiny_policy.render(messages, tools, True))

    tool_msg = {"role": "tool", "tool_call_id": "c0", "name": "bash", "content": "README.md\nsetup.py"}
    after = [*messages, first.message, tool_msg]
    second = asyncio.run(tiny_policy.act(after, tools))
    seen = first.prompt_ids + first.completion_ids
    assert second.prompt_ids[: len(seen)] == seen  # the model's own tokens, never re-tokenised
    delta = second.prompt_ids[len(seen):]
    if first.finish_reason == "length":
        assert delta[0] == tiny_policy.eos_id  # the unfinished turn is closed with the eos
    text = tiny_policy.tokenizer.decode(delta)
    assert "README.md\nsetup.py" in text and text.endswith("<|im_start|>assistant\n")
    assert delta[-len(tiny_policy.encode_tool_turn([*messages, first.message], after, tools)):] == \
        tiny_policy.encode_tool_turn([*messages, first.message], after, tools)


class _Handler(BaseHTTPRequestHandler):
    requests: list = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Handler.requests.append(body)
        if body["model"] == "broken":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"model crashed")
            return
        reply = {"choices": [{"message": {"role": "assistant", "content": "",
                                          "tool_calls": [{"id": "call_1", "type": "function", "function": {
                                              "name": "bash", "arguments": "{\"command\": \"ls\"}"}}]},
                              "finish_reason": "tool_calls", "token_ids": [5, 6, 7],
                              "logprobs": {"content": [{"token": "token_id:5", "logprob": -0.1},
                                                       {"token": "token_id:6", "logprob": -0.2},
                                                       {"token": "token_id:7", "logprob": -0.3}]}}],
                 "prompt_token_ids": [1, 2, 3], "usage": {"prompt_tokens": 3, "completion_tokens": 3}}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def test_openai_policy_returns_tool_calls_ids_and_logprobs(server):
    from envfarm.env.parsing import parse_tool_calls

    policy = OpenAIPolicy(base_url=server, model="m", native_tools=True)
    completion = asyncio.run(policy.act([{"role": "user", "content": "hi"}], tool_schemas()))
    request = _Handler.requests[-1]
    assert request["tools"][0]["function"]["name"] == "bash" and request["logprobs"] is True
    assert completion.prompt_ids == [1, 2, 3] and completion.completion_ids == [5, 6, 7]
    assert completion.logprobs == [-0.1, -0.2, -0.3]
    assert completion.message["tool_calls"][0]["id"] == "call_1"
    calls = parse_tool_calls(completion.text).calls
    assert [(c.id, c.name, c.arguments) for c in calls] == [("call_1", "bash", {"command": "ls"})]


def test_openai_policy_errors_are_policy_errors(server):
    with pytest.raises(PolicyError, match="HTTP 500"):
        asyncio.run(OpenAIPolicy(base_url=server, model="broken").act([], []))
    with pytest.raises(PolicyError, match="cannot reach"):
        asyncio.run(OpenAIPolicy(base_url="http://127.0.0.1:9/v1", timeout_s=2).act([], []))
