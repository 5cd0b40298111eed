"""The run report: one self-contained HTML file (plots, filters, episodes turn by turn, GRPO groups,
training curves) that opens from a laptop's disk or a CI artefact with no network.

Everything travels inside the file: plotly's JavaScript once (started after the table is painted),
the page's own script and style
(report_assets/), and the run as JSON in two `<script type="application/json">` blocks: the rows
(table, filters, plots) parsed at load, the per-episode details parsed only when an episode is
opened or a search typed, and turned into HTML only for the episode opened. That keeps a run of
thousands of episodes quick to open. The file stays under `max_bytes`: when the details would not
fit, every text limit is halved until they do (the run's JSONL keeps the full texts).
"""

from __future__ import annotations

import json
from html import escape
from importlib.resources import files
from typing import Any

from envfarm.rollout.report_data import Limits, episode_detail, episode_row, groups, train_curves
from envfarm.rollout.report_plots import run_figures, train_figures
from envfarm.rollout.trajectory import Trajectory

MAX_BYTES = 20 * 1024 * 1024
OPTIONAL_FIELDS = ("kind", "difficulty")


def _json_block(element_id: str, data: Any) -> str:
    """JSON inside a script element: `<` escaped, so no text of a trajectory can close the element."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str).replace("<", "\\u003c")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def _asset(name: str) -> str:
    return files("envfarm.rollout").joinpath("report_assets", name).read_text(encoding="utf-8")


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _facts(summary: dict[str, Any], train_steps: int) -> str:
    facts = [f"{summary.get('episodes', 0)} episodes", f"{summary.get('graded', 0)} graded",
             f"pass rate {summary.get('pass_rate', 0.0):.1%}", f"{summary.get('masked', 0)} masked",
             f"{summary.get('exploit_attempts', 0)} exploit attempts"]
    seconds = summary.get("seconds", {}).get("total", {})
    if seconds:
        facts.append(f"{seconds.get('mean', 0.0):.1f} s per episode (mean)")
    if summary.get("torn_lines"):
        facts.append(f"{len(summary['torn_lines'])} torn line(s) skipped")
    if train_steps:
        facts.append(f"{train_steps} training steps")
    return "".join(f"<span>{escape(f)}</span>" for f in facts)


def render_report(trajectories: list[Trajectory], summary: dict[str, Any], manifest: dict[str, Any], run: str,
                  train_log: list[dict[str, Any]] | None = None, meta: dict[str, dict[str, str]] | None = None,
                  max_bytes: int = MAX_BYTES) -> str:
    """The report page as a string; `meta` adds task fields by instance id (see report_data.task_meta)."""
    meta = meta or {}
    rows = [episode_row(n, t, meta.get(t.instance_id, {})) for n, t in enumerate(trajectories)]
    found = groups(trajectories)
    curves = train_curves(train_log or [])
    data = {"run": run, "fields": [f for f in OPTIONAL_FIELDS if any(f in r for r in rows)], "rows": rows,
            "groups": found, "figs": run_figures(rows, found), "train_figs": train_figures(curves)}
    head = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>envfarm run {escape(run)}</title>"
            f"<style>{_asset('report.css')}</style></head><body>"
            f"<header><h1>envfarm run {escape(run)}</h1><div class=facts>{_facts(summary, len(curves['steps']))}</div>"
            f"</header><nav><a href=#overview>plots</a><a href=#episodes>episodes</a><a href=#groups-h>groups</a>"
            + ("<a href=#training>training</a>" if curves["steps"] else "") +
            "<a href=#about>run</a></nav><main><div id=view hidden></div>"
            "<h2 id=overview>Plots</h2><div class=plots id=plots></div>"
            "<h2 id=episodes>Episodes</h2><div class=filters id=filters></div>"
            "<div class=scroll style='max-height:640px'><table class='list fixed'><colgroup id=ep-cols></colgroup>"
            "<thead id=ep-head></thead>"
            "<tbody id=ep-body></tbody></table></div>"
            "<h2 id=groups-h>GRPO groups</h2><div id=groups></div>"
            + ("<h2 id=training>Training</h2><div class=plots id=train-plots></div>" if curves["steps"]
               else "<div id=train-plots hidden></div>") +
            "<h2 id=about>Run</h2><details><summary>summary</summary><pre>"
            f"{escape(json.dumps(summary, indent=1, default=str))}</pre></details><details><summary>manifest</summary>"
            f"<pre>{escape(json.dumps(manifest, indent=1, default=str))}</pre></details></main>")
    # plotly's 4.8 MB of JavaScript is kept as text and started by the page once the table is
    # painted (from a blob URL, so the browser may compile it off the main thread): compiling it
    # inline would hold back the first paint by seconds on a slow machine
    tail = (_json_block("report-data", data) + f'<script type="text/plain" id="plotly-src">{_plotly_js()}</script>'
            f"<script>{_asset('report.js')}</script></body></html>")
    budget = max_bytes - len(head.encode()) - len(tail.encode())
    block = _details_block(trajectories, Limits())
    size = len(block.encode())
    factor = 1.0
    while size > budget:
        if factor < 1 / 256:
            raise ValueError(f"the run is too large for a report of {max_bytes / 2**20:.0f} MB even with every "
                             f"text cut to 200 characters ({len(trajectories)} episodes): report a part of it")
        factor *= max(0.1, min(0.8, 0.9 * budget / size))
        block = _details_block(trajectories, Limits().scaled(factor))
        size = len(block.encode())
    return head + block + tail


def _details_block(trajectories: list[Trajectory], limits: Limits) -> str:
    prompts: dict[str, int] = {}
    eps = [episode_detail(t, limits, prompts) for t in trajectories]
    return _json_block("report-details", {"prompts": list(prompts), "eps": eps, "limits": limits.__dict__})
