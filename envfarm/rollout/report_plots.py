"""The run report's plots, made with plotly and handed to the page as figure JSON.

plotly because it is well kept, works offline (its JavaScript is inlined once into the page; no
network, no server), and gives hover, zoom and click events, which link a plot's points and bars
to the episodes and filters of the page. Each figure names what a click on it does (`click`):
`episode` (customdata is the episode's number) or `filter:<field>` (customdata is the value).
Figures carry an empty template (plotly's default one is about 10 KB a figure); the page sets
the shared look.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

import plotly.graph_objects as go

STATUS_COLOURS = {"resolved": "#2a9d4b", "failed": "#c0392b", "masked": "#d4a017"}
PHASE_COLOURS = {"setup": "#8e7cc3", "generation": "#3c78d8", "tools": "#e69138", "grading": "#6aa84f",
                 "sandbox": "#e69138", "optimizer": "#999999"}
PHASES = ("setup", "generation", "tools", "grading")
GROUP_FIELDS = (("project", "project"), ("kind", "task kind"), ("difficulty", "difficulty"))


def _figure(fig: go.Figure, fid: str, title: str, click: str = "", note: str = "",
            empty: bool = False) -> dict[str, Any]:
    """A figure for the page; an `empty` one shows only its note."""
    fig.update_layout(template=go.layout.Template(), title=None)
    return {"id": fid, "title": title, "click": click, "note": note, "empty": empty,
            "fig": {} if empty else json.loads(fig.to_json())}


def pass_rate_by(rows: list[dict[str, Any]], field: str, label: str) -> dict[str, Any] | None:
    """Resolved among graded episodes (masked ones say nothing about the agent), per value of `field`."""
    graded, resolved = Counter(), Counter()
    for r in rows:
        if field in r and r["status"] != "masked":
            graded[r[field]] += 1
            resolved[r[field]] += r["status"] == "resolved"
    if not graded:
        return None
    keys = sorted(graded, key=lambda k: (-resolved[k] / graded[k], k))
    fig = go.Figure(go.Bar(x=keys, y=[resolved[k] / graded[k] for k in keys], customdata=keys,
                           text=[f"{resolved[k]}/{graded[k]}" for k in keys], textposition="auto",
                           marker_color="#3c78d8", hovertemplate="%{x}: %{y:.0%} (%{text})<extra></extra>"))
    fig.update_yaxes(range=[0, 1], tickformat=".0%")
    return _figure(fig, f"pass-{field}", f"Pass rate by {label}", f"filter:{field}")


def histogram(rows: list[dict[str, Any]], key: str, fid: str, title: str, xlabel: str) -> dict[str, Any]:
    fig = go.Figure([go.Histogram(x=[r[key] for r in rows if r["status"] == s], name=s,
                                  marker_color=STATUS_COLOURS[s]) for s in STATUS_COLOURS])
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title_text=xlabel)
    fig.update_yaxes(title_text="episodes")
    return _figure(fig, fid, title)


def time_by_project(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean seconds per episode in each phase, per project (and all together)."""
    sums: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(PHASES, 0.0))
    counts: Counter = Counter()
    for r in rows:
        for key in ("all", r["project"]):
            counts[key] += 1
            for p in PHASES:
                sums[key][p] += r["time"][p]
    keys = ["all"] + sorted(k for k in counts if k != "all")
    fig = go.Figure([go.Bar(y=keys, x=[sums[k][p] / counts[k] for k in keys], name=p, orientation="h",
                            marker_color=PHASE_COLOURS[p], hovertemplate=f"%{{y}} {p}: %{{x:.2f}} s<extra></extra>")
                     for p in PHASES])
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title_text="seconds per episode (mean)")
    return _figure(fig, "time-project", "Where the time went, by project")


def slowest(rows: list[dict[str, Any]], top: int = 40) -> dict[str, Any]:
    picked = sorted(rows, key=lambda r: -r["time"]["total"])[:top]
    labels = [f"#{r['n']}" for r in picked]
    fig = go.Figure([go.Bar(x=labels, y=[r["time"][p] for r in picked], name=p, marker_color=PHASE_COLOURS[p],
                            customdata=[r["n"] for r in picked],
                            hovertemplate=f"%{{x}} {p}: %{{y:.2f}} s<extra></extra>") for p in PHASES])
    fig.update_layout(barmode="stack")
    fig.update_xaxes(type="category")
    fig.update_yaxes(title_text="seconds")
    return _figure(fig, "time-slowest", f"Where the time went: the {len(picked)} slowest episodes", "episode")


def turns_vs_seconds(rows: list[dict[str, Any]]) -> dict[str, Any]:
    fig = go.Figure([go.Scatter(x=[r["turns"] for r in rows if r["status"] == s],
                                y=[r["time"]["total"] for r in rows if r["status"] == s],
                                customdata=[r["n"] for r in rows if r["status"] == s],
                                text=[r["task"] for r in rows if r["status"] == s], mode="markers", name=s,
                                marker={"color": STATUS_COLOURS[s], "size": 7, "opacity": 0.7},
                                hovertemplate="#%{customdata} %{text}<br>%{x} turns, %{y:.1f} s<extra></extra>")
                     for s in STATUS_COLOURS])
    fig.update_xaxes(title_text="turns")
    fig.update_yaxes(title_text="seconds")
    return _figure(fig, "episodes-scatter", "Episodes: turns and seconds (click a point)", "episode")


def error_kinds(rows: list[dict[str, Any]]) -> dict[str, Any]:
    counts = Counter(r["err"] for r in rows if r["err"])
    masked = {r["err"] for r in rows if r["err"] and r["status"] == "masked"}
    keys = sorted(counts, key=lambda k: -counts[k])
    fig = go.Figure(go.Bar(x=keys, y=[counts[k] for k in keys], customdata=keys,
                           marker_color=[STATUS_COLOURS["masked" if k in masked else "failed"] for k in keys],
                           hovertemplate="%{x}: %{y} episodes<extra></extra>"))
    fig.update_yaxes(title_text="episodes")
    note = "" if keys else "No episode ended with an error kind."
    return _figure(fig, "errors", "Error kinds (amber: masked, no verdict on the agent; red: the agent's outcome)",
                   "filter:err", note, empty=not keys)


def exploit_attempts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    counts = Counter(s[:80] for r in rows for s in dict.fromkeys(r["signals"]))
    keys = sorted(counts, key=lambda k: -counts[k])[:20]
    labels = [k if len(k) <= 40 else k[:39] + "…" for k in keys]
    fig = go.Figure(go.Bar(y=labels, x=[counts[k] for k in keys], orientation="h", marker_color="#c0392b",
                           customdata=keys, hovertemplate="%{customdata}: %{x} episodes<extra></extra>"))
    fig.update_yaxes(autorange="reversed", automargin=True)
    fig.update_xaxes(title_text="episodes")
    n = sum(bool(r["signals"]) for r in rows)
    note = f"{n} episode(s) tripped a tampering check." if n else "No episode tripped a tampering check."
    return _figure(fig, "exploits", "Exploit attempts (the guard's findings)", "filter:signal", note, empty=not n)


def group_outcomes(groups: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Why groups teach nothing: every member resolved, none did, or no verdict."""
    if not groups:
        return None
    def outcome(g: dict[str, Any]) -> str:
        scored = [r for r in g["rewards"] if r is not None]
        if not scored:
            return "all masked"
        return "spread" if g["std"] else ("all resolved" if scored[0] > 0 else "all failed")
    counts = Counter(outcome(g) for g in groups)
    keys = [k for k in ("spread", "all resolved", "all failed", "all masked") if counts[k]]
    fig = go.Figure(go.Bar(x=keys, y=[counts[k] for k in keys], marker_color="#3c78d8",
                           hovertemplate="%{x}: %{y} groups<extra></extra>"))
    fig.update_yaxes(title_text="groups")
    return _figure(fig, "groups", "GRPO groups: reward spread (no spread: no learning signal)")


def train_figures(curves: dict[str, Any]) -> list[dict[str, Any]]:
    """Reward mean and spread, pass rate, masked fraction, loss and the step's time split."""
    steps = curves["steps"]
    if not steps:
        return []
    out = []
    fig = go.Figure()
    if any(v is not None for v in curves["group_max"]):
        fig.add_trace(go.Scatter(x=steps, y=curves["group_max"], name="best group", line={"width": 0},
                                 showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=steps, y=curves["group_min"], name="group means (min to max)", fill="tonexty",
                                 line={"width": 0}, fillcolor="rgba(60,120,216,0.2)"))
    std = [s or 0 for s in curves["reward_std"]]
    fig.add_trace(go.Scatter(x=steps, y=curves["reward"], name="reward mean", mode="lines+markers",
                             error_y={"type": "data", "array": std, "visible": any(std)}, line={"color": "#3c78d8"}))
    if any(v is not None for v in curves["pass_rate"]):
        fig.add_trace(go.Scatter(x=steps, y=curves["pass_rate"], name="pass rate", mode="lines",
                                 line={"dash": "dot", "color": "#2a9d4b"}))
    fig.update_xaxes(title_text="step")
    out.append(_figure(fig, "train-reward", "Reward per step: mean, std (bars) and the spread of group means"))
    for key, fid, title, colour in (("masked_frac", "train-masked", "Masked fraction per step", "#d4a017"),
                                    ("loss", "train-loss", "Loss per step", "#444444")):
        if any(v is not None for v in curves[key]):
            fig = go.Figure(go.Scatter(x=steps, y=curves[key], mode="lines+markers", line={"color": colour}))
            fig.update_xaxes(title_text="step")
            if key == "masked_frac":
                fig.update_yaxes(range=[0, 1], tickformat=".0%")
            out.append(_figure(fig, fid, title))
    if curves["split"]:
        fig = go.Figure([go.Bar(x=steps, y=series, name=phase, marker_color=PHASE_COLOURS.get(phase))
                         for phase, series in curves["split"].items()])
        fig.update_layout(barmode="stack")
        fig.update_xaxes(title_text="step")
        fig.update_yaxes(title_text="seconds")
        out.append(_figure(fig, "train-time", "Step time split"))
    return out


def run_figures(rows: list[dict[str, Any]], groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The run's plots, in reading order; a field no episode has gets no plot."""
    if not rows:
        return []
    figs = [pass_rate_by(rows, field, label) for field, label in GROUP_FIELDS]
    figs += [histogram(rows, "turns", "turns", "Turns per episode", "turns")]
    if any(r["tok"] for r in rows):
        figs.append(histogram(rows, "tok", "tokens", "Generated tokens per episode", "tokens"))
    figs += [time_by_project(rows), slowest(rows), turns_vs_seconds(rows), error_kinds(rows),
             exploit_attempts(rows), group_outcomes(groups)]
    return [f for f in figs if f is not None]
