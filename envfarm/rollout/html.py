"""One self-contained HTML page for a run: a table of episodes, each readable turn by turn.

No scripts, fonts or stylesheets from anywhere else: the page opens from a laptop's disk or a CI
artifact. Everything from a trajectory is escaped.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from envfarm.rollout.trajectory import Trajectory

CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}
pre{background:#f6f6f6;padding:6px;white-space:pre-wrap;word-break:break-word;max-height:30em;overflow:auto}
details{margin:4px 0}summary{cursor:pointer}.ok{color:#060}.bad{color:#a00}.masked{color:#a60}
.turn{border-left:3px solid #ddd;padding-left:8px;margin:8px 0}.role{font-weight:bold}"""


def _status(t: Trajectory) -> str:
    if t.masked:
        return f'<span class="masked">masked ({escape(t.error_kind or "?")})</span>'
    return '<span class="ok">resolved</span>' if t.resolved else '<span class="bad">not resolved</span>'


def _pre(text: str) -> str:
    return f"<pre>{escape(text)}</pre>"


def _episode(n: int, t: Trajectory) -> str:
    parts = [f'<details id="ep{n}"><summary>#{n} {escape(t.instance_id)}: {_status(t)}, reward {t.reward}, '
             f"{t.num_turns} turns, {escape(t.end_reason)}, {t.timings.total:.1f} s</summary>"]
    parts.append(f"<p>policy {escape(t.policy)}; episode {escape(t.episode_id)}; "
                 f"{escape(t.error) if t.error else ''}</p>")
    system = next((m for m in t.messages if m.get("role") == "system"), None)
    first_user = next((m for m in t.messages if m.get("role") == "user"), None)
    if system:
        parts.append("<details><summary>system prompt</summary>" + _pre(str(system.get("content"))) + "</details>")
    if first_user:
        parts.append("<div class=turn><span class=role>task</span>" + _pre(str(first_user.get("content"))) + "</div>")
    for turn in t.turns:
        parts.append(f'<div class=turn><span class=role>turn {turn.index + 1}</span> '
                     f"(generation {turn.generation_seconds:.2f} s, tools {turn.tool_seconds:.2f} s"
                     f"{', format error' if turn.format_error else ''})"
                     f"<div>assistant</div>{_pre(turn.completion)}")
        for call in turn.tool_calls:
            parts.append(f"<div>{escape(call.name)} {escape(call.arguments[:300])} "
                         f"({call.seconds:.3f} s{', error' if call.error else ''})</div>{_pre(call.output)}")
        if not turn.tool_calls:
            parts.append("<div>observation</div>" + _pre(turn.observation))
        parts.append("</div>")
    if t.patch:
        parts.append("<details><summary>patch</summary>" + _pre(t.patch) + "</details>")
    if t.grade:
        grade = t.grade.model_dump_json(indent=1)[:20000]
        parts.append("<details><summary>grade</summary>" + _pre(grade) + "</details>")
    parts.append("</details>")
    return "\n".join(parts)


def render_html(trajectories: list[Trajectory], summary: dict[str, Any], manifest: dict[str, Any], run: str) -> str:
    rows = "".join(f'<tr><td><a href="#ep{n}">#{n}</a></td><td>{escape(t.instance_id)}</td><td>{_status(t)}</td>'
                   f"<td>{t.num_turns}</td><td>{escape(t.end_reason)}</td><td>{t.timings.total:.1f}</td></tr>"
                   for n, t in enumerate(trajectories))
    return (f"<!doctype html><html><head><meta charset=utf-8><title>envfarm run {escape(run)}</title>"
            f"<style>{CSS}</style></head><body><h1>envfarm run {escape(run)}</h1>"
            f"<h2>Summary</h2>{_pre(json.dumps(summary, indent=1))}"
            f"<details><summary>manifest</summary>{_pre(json.dumps(manifest, indent=1, default=str))}</details>"
            "<h2>Episodes</h2><table><tr><th></th><th>task</th><th>status</th><th>turns</th><th>end</th>"
            f"<th>seconds</th></tr>{rows}</table>"
            + "".join(_episode(n, t) for n, t in enumerate(trajectories)) + "</body></html>")
