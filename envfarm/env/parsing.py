"""Turn a model's raw text into tool calls, for the formats models actually emit.

Tried in order, the first that yields calls wins:

1. Qwen/Hermes: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` (arguments may also be
   a JSON string), and Qwen3-Coder's XML body `<tool_call><function=bash><parameter=command>ls
   </parameter></function></tool_call>`.
2. OpenAI-style function-call JSON anywhere in the text: `{"tool_calls": [{"function": {"name",
   "arguments"}}]}`, `{"function": {...}}`, a bare `{"name", "arguments"}` object, or a list of them.
3. One fenced ```bash block (as mini-swe-agent does): a `bash` call; `submit` alone submits.

Nothing here raises on bad input: problems come back as `errors`, which the environment turns
into an observation that explains the format.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

TOOL_CALL_RE = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.S)
XML_FUNCTION_RE = re.compile(r"<function=([\w.-]+)>(.*?)(?:</function>|\Z)", re.S)
XML_PARAM_RE = re.compile(r"<parameter=([\w.-]+)>\n?(.*?)\n?</parameter>", re.S)
FENCE_RE = re.compile(r"```(bash|sh|shell)?[ \t]*\n(.*?)```", re.S)
JSON_FENCE_RE = re.compile(r"```(?:json)?[ \t]*\n(.*?)```", re.S)


@dataclass
class ToolCall:
    """One call the model asked for; `id` is the model's own when it gave one."""

    name: str
    arguments: dict[str, Any]
    id: str = ""
    format: str = ""  # "hermes", "xml", "openai" or "fenced": which syntax it came in


@dataclass
class ParseResult:
    calls: list[ToolCall] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _arguments(raw: Any) -> dict[str, Any]:
    """Arguments as a dict; OpenAI sends them as a JSON string, most templates as an object."""
    if raw is None:
        return {}
    if isinstance(raw, str):
        raw = json.loads(raw) if raw.strip() else {}
    if not isinstance(raw, dict):
        raise ValueError(f"arguments must be a JSON object, got {type(raw).__name__}")
    return raw


def _call_from_obj(obj: Any, fmt: str) -> ToolCall | None:
    """A ToolCall from any of the JSON shapes models use, or None when `obj` is not a call."""
    if not isinstance(obj, dict):
        return None
    call_id = str(obj.get("id") or "")
    if isinstance(obj.get("function"), dict):
        obj = obj["function"]
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        return None
    args = obj.get("arguments", obj.get("parameters"))
    return ToolCall(name=name, arguments=_arguments(args), id=call_id, format=fmt)


def _calls_from_json(value: Any, fmt: str) -> list[ToolCall]:
    if isinstance(value, dict) and isinstance(value.get("tool_calls"), list):
        value = value["tool_calls"]
    items = value if isinstance(value, list) else [value]
    calls = [_call_from_obj(item, fmt) for item in items]
    return [c for c in calls if c is not None]


def _parse_tagged(text: str) -> ParseResult:
    result = ParseResult()
    for n, m in enumerate(TOOL_CALL_RE.finditer(text), 1):
        body = m.group(1).strip()
        fn = XML_FUNCTION_RE.search(body)
        if fn:
            args = {k: v for k, v in XML_PARAM_RE.findall(fn.group(2))}
            result.calls.append(ToolCall(name=fn.group(1), arguments=args, format="xml"))
            continue
        try:
            calls = _calls_from_json(json.loads(body), "hermes")
        except (json.JSONDecodeError, ValueError) as exc:
            result.errors.append(f"tool call {n}: the text between <tool_call> and </tool_call> is not valid "
                                 f"JSON ({exc}); got: {body[:200]!r}")
            continue
        if not calls:
            result.errors.append(f'tool call {n}: expected an object with "name" and "arguments"; got: {body[:200]!r}')
        result.calls.extend(calls)
    return result


def _json_candidates(text: str) -> list[Any]:
    """JSON values found in the text: the whole text, fenced json blocks, then embedded objects."""
    stripped = text.strip()
    for candidate in [stripped, *JSON_FENCE_RE.findall(text)]:
        try:
            return [json.loads(candidate)]
        except json.JSONDecodeError:
            pass
    found, decoder, pos = [], json.JSONDecoder(), 0
    while (start := text.find("{", pos)) != -1:
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            pos = start + 1
            continue
        found.append(value)
        pos = end
    return found


def _parse_openai(text: str) -> ParseResult:
    result = ParseResult()
    if '"name"' not in text:
        return result
    for value in _json_candidates(text):
        try:
            result.calls.extend(_calls_from_json(value, "openai"))
        except (json.JSONDecodeError, ValueError) as exc:
            result.errors.append(f"a function call's arguments are not a JSON object ({exc})")
    return result


def _parse_fenced(text: str) -> ParseResult:
    blocks = [body for lang, body in FENCE_RE.findall(text) if lang or body.strip()]
    if len(blocks) > 1:
        return ParseResult(errors=[f"found {len(blocks)} fenced code blocks; put exactly one command block "
                                   "in a reply (or use <tool_call>)"])
    if not blocks:
        return ParseResult()
    command = blocks[0].strip()
    if command == "submit":
        return ParseResult(calls=[ToolCall(name="submit", arguments={}, format="fenced")])
    return ParseResult(calls=[ToolCall(name="bash", arguments={"command": command}, format="fenced")])


def parse_tool_calls(text: str) -> ParseResult:
    """Every tool call in `text`, or errors that say what was wrong; never raises."""
    if not isinstance(text, str):
        return ParseResult(errors=[f"the action must be text, got {type(text).__name__}"])
    if "<tool_call>" in text:
        return _parse_tagged(text)
    result = _parse_openai(text)
    if result.calls:
        return result
    fenced = _parse_fenced(text)
    if fenced.calls or fenced.errors:
        return fenced
    return result
