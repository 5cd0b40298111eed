"""Summarise a run: `python -m envfarm.rollout.summary rollouts/<run> [--html PATH] [--json]`.

Prints pass rate, turns, tokens, errors by kind and time per phase, and writes a self-contained
HTML page (no external assets; default `<run>/summary.html`) where every trajectory can be read
turn by turn.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from envfarm.rollout.html import render_html
from envfarm.rollout.store import read_manifest, read_run
from envfarm.rollout.trajectory import Trajectory


def _dist(values: list[float]) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "p50": 0.0, "max": 0.0}
    return {"mean": statistics.fmean(values), "p50": statistics.median(values), "max": max(values)}


def summarize(trajectories: list[Trajectory]) -> dict[str, Any]:
    graded = [t for t in trajectories if not t.masked]
    tokens = [t.token_counts() for t in trajectories]
    return {
        "episodes": len(trajectories),
        "graded": len(graded),
        "resolved": sum(t.resolved for t in graded),
        "pass_rate": (sum(t.resolved for t in graded) / len(graded)) if graded else 0.0,
        "masked": len(trajectories) - len(graded),
        "exploit_attempts": sum(t.exploit_attempt for t in trajectories),
        "errors_by_kind": dict(Counter(t.error_kind for t in trajectories if t.error_kind)),
        "end_reasons": dict(Counter(t.end_reason or "?" for t in trajectories)),
        "turns": _dist([t.num_turns for t in trajectories]),
        "format_errors": sum(turn.format_error for t in trajectories for turn in t.turns),
        "tokens": {"context": sum(c["context"] for c in tokens), "completion": sum(c["completion"] for c in tokens)},
        "seconds": {phase: _dist([getattr(t.timings, phase) for t in trajectories])
                    for phase in ("setup", "generation", "tools", "grading", "total")},
    }


def format_summary(s: dict[str, Any], run: str = "") -> str:
    lines = [f"run {run}" if run else "run",
             f"  episodes      {s['episodes']} ({s['graded']} graded, {s['masked']} masked)",
             f"  pass rate     {s['pass_rate']:.1%} ({s['resolved']}/{s['graded']})",
             f"  turns         mean {s['turns']['mean']:.1f}, p50 {s['turns']['p50']:.0f}, "
             f"max {s['turns']['max']:.0f}; {s['format_errors']} format errors",
             f"  tokens        {s['tokens']['completion']} generated, {s['tokens']['context']} of context",
             f"  errors        {json.dumps(s['errors_by_kind']) if s['errors_by_kind'] else 'none'}",
             f"  exploits      {s['exploit_attempts']} episodes tripped a tampering check",
             f"  end reasons   {json.dumps(s['end_reasons'])}",
             "  seconds       " + ", ".join(f"{phase} {d['mean']:.2f}" for phase, d in s["seconds"].items())
             + " (mean per episode)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m envfarm.rollout.summary", description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", help="a run folder, e.g. rollouts/<run>")
    ap.add_argument("--html", default=None, help="where to write the HTML page (default: <run>/summary.html)")
    ap.add_argument("--no-html", action="store_true", help="do not write the HTML page")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = ap.parse_args(argv)
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        print(f"error: {run_dir} is not a folder", file=sys.stderr)
        return 2
    torn: list[str] = []
    trajectories = read_run(run_dir, torn)
    summary = summarize(trajectories)
    summary["torn_lines"] = torn
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary, run_dir.name))
    if torn and not args.json:
        print(f"  skipped       {len(torn)} torn line(s): {', '.join(torn[:3])}")
    if not args.no_html:
        out = Path(args.html) if args.html else run_dir / "summary.html"
        out.write_text(render_html(trajectories, summary, read_manifest(run_dir), run_dir.name), encoding="utf-8")
        if not args.json:
            print(f"  html          {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
