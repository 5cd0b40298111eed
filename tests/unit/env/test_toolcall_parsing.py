"""Tool-call parsing: every format models emit, and malformed input answered, never raised."""

from __future__ import annotations

import json

import pytest

from envfarm.env.parsing import parse_tool_calls


def test_hermes_tool_call_with_object_arguments():
    text = 'Let me look.\n<tool_call>\n{"name": "bash", "arguments": {"command": "ls -la"}}\n</tool_call>'
    res = parse_tool_calls(text)
    assert [(c.name, c.arguments, c.format) for c in res.calls] == [("bash", {"command": "ls -la"}, "hermes")]
    assert res.errors == []


def test_hermes_several_calls_and_string_arguments():
    text = ('<tool_call>{"name": "bash", "arguments": "{\\"command\\": \\"pwd\\"}"}</tool_call>'
            '<tool_call>{"name": "submit", "arguments": {}}</tool_call>')
    res = parse_tool_calls(text)
    assert [(c.name, c.arguments) for c in res.calls] == [("bash", {"command": "pwd"}), ("submit", {})]


def test_qwen3_coder_xml_tool_call():
    text = ("<tool_call>\n<function=str_replace_editor>\n<parameter=command>\nview\n</parameter>\n"
            "<parameter=path>\n/testbed/a.py\n</parameter>\n</function>\n</tool_call>")
    res = parse_tool_calls(text)
    assert res.calls[0].name == "str_replace_editor"
    assert res.calls[0].arguments == {"command": "view", "path": "/testbed/a.py"}


def test_unclosed_tool_call_tag_still_parses():
    res = parse_tool_calls('<tool_call>{"name": "bash", "arguments": {"command": "ls"}}')
    assert res.calls[0].arguments == {"command": "ls"}


def test_openai_tool_calls_object_with_string_arguments_and_ids():
    payload = {"tool_calls": [{"id": "call_7", "type": "function",
                               "function": {"name": "bash", "arguments": json.dumps({"command": "echo hi"})}}]}
    res = parse_tool_calls(json.dumps(payload))
    assert [(c.id, c.name, c.arguments, c.format) for c in res.calls] == [
        ("call_7", "bash", {"command": "echo hi"}, "openai")]


@pytest.mark.parametrize("text", [
    '{"name": "bash", "arguments": {"command": "ls"}}',
    'I will list files: {"name": "bash", "arguments": {"command": "ls"}} and then read them.',
    '```json\n{"function": {"name": "bash", "arguments": "{\\"command\\": \\"ls\\"}"}}\n```',
    '[{"name": "bash", "arguments": {"command": "ls"}}]',
])
def test_openai_style_json_in_various_wrappings(text):
    res = parse_tool_calls(text)
    assert [(c.name, c.arguments) for c in res.calls] == [("bash", {"command": "ls"})]


def test_fenced_bash_fallback_and_submit():
    res = parse_tool_calls("I'll grep.\n```bash\ngrep -rn foo .\n```\n")
    assert [(c.name, c.arguments, c.format) for c in res.calls] == [("bash", {"command": "grep -rn foo ."}, "fenced")]
    assert parse_tool_calls("```bash\nsubmit\n```").calls[0].name == "submit"


def test_several_fenced_blocks_are_refused_with_a_reason():
    res = parse_tool_calls("```bash\nls\n```\nthen\n```bash\npwd\n```")
    assert res.calls == [] and "exactly one" in res.errors[0]


@pytest.mark.parametrize("text", [
    "<tool_call>{not json}</tool_call>",
    '<tool_call>{"arguments": {"command": "ls"}}</tool_call>',
    '<tool_call>{"name": "bash", "arguments": [1, 2]}</tool_call>',
])
def test_malformed_tagged_calls_give_errors_not_exceptions(text):
    res = parse_tool_calls(text)
    assert res.calls == [] and res.errors and "tool call 1" in res.errors[0]


@pytest.mark.parametrize("text", ["", "just some words", "{", '{"name": 3}', "\x00\xff garbage", None, 42])
def test_garbage_never_raises(text):
    res = parse_tool_calls(text)
    assert res.calls == []
