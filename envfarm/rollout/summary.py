"""Summarise a run: `python -m envfarm.rollout.summary rollouts/<run> [--html PATH] [--json]`.

Prints pass rate, turns, tokens, errors by kind and time per phase, and writes the run report
(default `<run>/report.html`): one self-contained HTML file with plots, filters, every trajectory
turn by turn, GRPO groups side by side and, given a training log, the training curves.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from envfarm.errors import UserInputError
from envfarm.rollout.html import render_report
from envfarm.rollout.report_data import read_train_log, task_meta
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


def _meta(spec: str | None, manifest: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Task kinds and difficulties by instance id, from --tasks or the run's own task source.

    The run's source is read only when it is on this machine (builtin tasks, a file or folder);
    a hub dataset named in the manifest is not fetched for a report.
    """
    from envfarm.tasks.loading import load

    source = spec or manifest.get("task_source")
    if not isinstance(source, str) or not (source.startswith("builtin") or Path(source).exists()):
        if spec:
            raise UserInputError(f"--tasks {spec}: no such file or folder (or 'builtin')")
        return {}
    try:
        return task_meta(load(source))
    except UserInputError:
        if spec:
            raise
        return {}  # the run's tasks moved or changed since: the report shows what the run has


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m envfarm.rollout.summary", description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", help="a run folder, e.g. rollouts/<run> (or a training --output-dir)")
    ap.add_argument("--html", default=None, help="where to write the report (default: <run>/report.html)")
    ap.add_argument("--no-html", action="store_true", help="do not write the report")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    ap.add_argument("--train-log", default=None,
                    help="a training run's train_log.jsonl for the training curves (default: <run>/train_log.jsonl "
                         "when there is one)")
    ap.add_argument("--tasks", default=None,
                    help="the run's tasks, for task kinds and difficulties (default: the run's task source when "
                         "it is on this machine)")
    args = ap.parse_args(argv)
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        print(f"error: {run_dir} is not a folder", file=sys.stderr)
        return 2
    train_path = Path(args.train_log) if args.train_log else run_dir / "train_log.jsonl"
    if args.train_log and not train_path.is_file():
        print(f"error: --train-log {train_path}: no such file (training writes <output-dir>/train_log.jsonl)",
              file=sys.stderr)
        return 2
    torn: list[str] = []
    trajectories = read_run(run_dir, torn)
    train_log = read_train_log(train_path, torn) if train_path.is_file() else []
    summary = summarize(trajectories)
    summary["torn_lines"] = torn
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary, run_dir.name))
    if torn and not args.json:
        print(f"  skipped       {len(torn)} torn line(s): {', '.join(torn[:3])}")
    if not args.no_html:
        manifest = read_manifest(run_dir)
        try:
            meta = _meta(args.tasks, manifest)
        except UserInputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        out = Path(args.html) if args.html else run_dir / "report.html"
        page = render_report(trajectories, summary, manifest, run_dir.name, train_log, meta)
        out.write_text(page, encoding="utf-8")
        if not args.json:
            print(f"  report        {out} ({len(page.encode()) / 2**20:.1f} MB"
                  f"{f', {len(train_log)} training steps' if train_log else ''})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
