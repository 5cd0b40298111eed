"""What the run report shows, as plain JSON: one row per episode for the table, filters and plots,
one detail record per episode (built into HTML by the page only when opened), the GRPO groups
and the training curves.

Long texts are clipped (head and tail kept, with the number of characters cut) so that the page
stays small enough to open quickly; the run's JSONL keeps everything. `Limits.scaled` shrinks
every limit at once when a run is too large for the page's size cap.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envfarm.rollout.trajectory import Trajectory, Turn
from envfarm.tasks.difficulty import task_labels
from envfarm.tasks.schema import Task


@dataclass(frozen=True)
class Limits:
    """The most characters of each kind of text the page keeps for one episode."""

    output: int = 2500  # one tool call's output or one observation
    completion: int = 3000  # one assistant turn
    arguments: int = 2500  # one tool call's arguments
    prompt: int = 12000  # the task statement (prompts are kept once per run, however many episodes share one)
    patch: int = 30000
    log_tail: int = 3000
    tests: int = 200  # per-test statuses listed, failures first (a suite can have thousands)

    def scaled(self, factor: float) -> Limits:
        return Limits(**{k: max(10 if k == "tests" else 200, int(v * factor)) for k, v in self.__dict__.items()})


def clip(text: str | None, limit: int) -> dict[str, Any]:
    """`{"t": text}` when it fits, else `{"t": head + tail, "cut": characters left out, "at": where}`."""
    text = text or ""
    if len(text) <= limit:
        return {"t": text}
    head = limit * 2 // 3
    tail = limit - head
    return {"t": text[:head] + text[len(text) - tail:], "cut": len(text) - limit, "at": head}


def status(t: Trajectory) -> str:
    """One word for the table and its filter: resolved, failed (the agent's outcome) or masked."""
    return "masked" if t.masked else "resolved" if t.resolved else "failed"


def task_meta(tasks: Iterable[Task]) -> dict[str, dict[str, str]]:
    """Per instance id, the task fields worth grouping by that a Trajectory does not carry: the
    task's kind and a difficulty bucket from its labels (envfarm.tasks.difficulty: places to fix
    and statement level), or a row's own `difficulty` string where its source has one."""
    meta: dict[str, dict[str, str]] = {}
    for task in tasks:
        recorded = (task.model_extra or {}).get("difficulty")
        lab = task_labels(task)
        places = f"{lab['locations']} location{'s' if lab['locations'] != 1 else ''}"
        fields = {"kind": lab["kind"],
                  "difficulty": recorded if isinstance(recorded, str) else f"{places}, {lab['statement']}"}
        meta[task.instance_id] = {k: str(v) for k, v in fields.items() if v not in (None, "")}
    return meta


def _signals(t: Trajectory) -> list[str]:
    found = list(t.exploit_signals)
    if t.grade is not None:
        found += [f"grader: {s}" for s in t.grade.tampering]
        if t.grade.patch_report.suspicious:
            found.append("patch: suspicious paths")
    return found


def episode_row(n: int, t: Trajectory, meta: dict[str, str]) -> dict[str, Any]:
    tokens = t.token_counts()
    row = {"n": n, "id": t.episode_id, "task": t.instance_id, "project": t.repo or "?", "status": status(t),
           "reward": t.reward, "turns": t.num_turns, "tok": tokens["completion"], "ctx": tokens["context"],
           "err": t.error_kind.value if t.error_kind else "", "end": t.end_reason.value if t.end_reason else "",
           "signals": _signals(t), "group": t.group_id, "member": t.member, "policy": t.policy,
           "demo": t.farm.demo, "time": {k: round(v, 3) for k, v in t.timings.model_dump().items()}}
    row.update(meta)
    return row


def _calls(turn: Turn, limits: Limits) -> list[dict[str, Any]]:
    return [{"name": c.name, "args": clip(c.arguments, limits.arguments), "out": clip(c.output, limits.output),
             "s": round(c.seconds, 3), "exit": c.exit_code, "err": c.error} for c in turn.tool_calls]


def _tests(t: Trajectory, limit: int) -> list[list[str]]:
    """`[test, status, F2P|P2P|""]`, failures first: what a reader looks for."""
    if t.grade is None:
        return []
    report = t.grade.report or {}
    which: dict[str, str] = {}
    for cat, short in (("FAIL_TO_PASS", "F2P"), ("PASS_TO_PASS", "P2P")):
        for names in (report.get(cat) or {}).values():
            which.update((name, short) for name in names if isinstance(names, list))
    rows = [[name, st, which.get(name, "")] for name, st in t.grade.tests.items()]
    for cat, short in (("FAIL_TO_PASS", "F2P"), ("PASS_TO_PASS", "P2P")):  # listed by swebench, not run
        for name in (report.get(cat) or {}).get("failure", []) or []:
            if name not in t.grade.tests:
                rows.append([name, "MISSING", short])
    rows.sort(key=lambda r: (r[1] in ("PASSED", "XFAIL", "SKIPPED"), r[2] != "F2P", r[0]))
    return rows[:limit]


def episode_detail(t: Trajectory, limits: Limits, prompts: dict[str, int]) -> dict[str, Any]:
    """Everything the episode view shows; the system prompt and the task statement go to `prompts`
    once (a group's members, and often a whole run, share them) and are referenced by number."""
    system = next((str(m.get("content")) for m in t.messages if m.get("role") == "system"), "")
    task = next((str(m.get("content")) for m in t.messages if m.get("role") == "user"), "")
    if len(task) > limits.prompt:
        task = task[:limits.prompt] + f"\n… {len(task) - limits.prompt} characters cut (the run's JSONL has them)"
    grade = None
    if t.grade is not None:
        g = t.grade
        grade = {"status": g.status, "resolved": g.resolved, "f2p": g.fail_to_pass, "p2p": g.pass_to_pass,
                 "tests": _tests(t, limits.tests), "n_tests": len(g.tests), "error": g.error,
                 "kind": g.error_kind.value if g.error_kind else "", "log": clip(g.log_tail, limits.log_tail),
                 "phases": {k: round(v, 3) for k, v in g.phases.items()}, "tampering": g.tampering,
                 "touched": g.patch_report.model_dump(mode="json"), "s": round(g.seconds, 3)}
    return {
        "system": prompts.setdefault(system, len(prompts)) if system else None,
        "prompt": prompts.setdefault(task, len(prompts)) if task else None,
        "turns": [{"text": clip(turn.completion, limits.completion), "calls": _calls(turn, limits),
                   "obs": clip(turn.observation, limits.output) if not turn.tool_calls else None,
                   "fmt": turn.format_error, "parse": turn.parse_errors[:5], "gen": round(turn.generation_seconds, 3),
                   "tool": round(turn.tool_seconds, 3), "finish": turn.finish_reason} for turn in t.turns],
        "patch": clip(t.patch, limits.patch), "grade": grade, "error": clip(t.error, limits.output),
        "farm": t.farm.model_dump(mode="json"), "seed": t.seed, "attempt": t.attempt, "retries": t.retries,
    }


def _action(turn: Turn) -> str:
    """What a turn did, for comparing group members: its calls, or its text when none parsed."""
    if turn.tool_calls:
        return json.dumps([[c.name, c.arguments] for c in turn.tool_calls])
    return turn.completion


def diverged_at(members: list[Trajectory]) -> int | None:
    """The first turn (0-based) where the members' actions differ; None when they never do."""
    if len(members) < 2:
        return None
    for i in range(max(m.num_turns for m in members)):
        actions = {_action(m.turns[i]) if i < m.num_turns else None for m in members}
        if len(actions) > 1:
            return i
    return None


def groups(trajectories: list[Trajectory]) -> list[dict[str, Any]]:
    """GRPO groups with at least two members: who, their rewards, the spread, where paths split."""
    by_id: dict[str, list[int]] = {}
    for n, t in enumerate(trajectories):
        if t.group_id:
            by_id.setdefault(t.group_id, []).append(n)
    found = []
    for gid, idx in by_id.items():
        if len(idx) < 2:
            continue
        idx.sort(key=lambda n: trajectories[n].member)
        members = [trajectories[n] for n in idx]
        rewards = [m.reward for m in members]
        scored = [r for r in rewards if r is not None]
        mean = sum(scored) / len(scored) if scored else None
        std = math.sqrt(sum((r - mean) ** 2 for r in scored) / len(scored)) if mean is not None else None
        found.append({"id": gid, "task": members[0].instance_id, "members": idx, "rewards": rewards,
                      "mean": mean, "std": std, "diverged": diverged_at(members)})
    return found


def read_train_log(path: str | Path, torn: list[str] | None = None) -> list[dict[str, Any]]:
    """The records of a `train_log.jsonl` (one per optimizer step); a cut line is skipped and named."""
    records = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if torn is not None:
                    torn.append(f"{path}:{lineno}")
    return records


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def train_curves(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-step series from a train log: reward mean and spread, masked fraction, loss, time split."""
    steps, curves = [], {k: [] for k in ("reward", "reward_std", "group_min", "group_max", "pass_rate",
                                         "masked_frac", "loss", "step_s")}
    split: dict[str, list[float | None]] = {}
    for rec in records:
        trainer = rec.get("trainer") or {}
        means = [g["mean"] for g in rec.get("groups") or [] if isinstance(g, dict) and _num(g.get("mean")) is not None]
        steps.append(rec.get("step"))
        curves["reward"].append(_num(trainer.get("reward")) if "reward" in trainer
                                else (sum(means) / len(means) if means else None))
        curves["reward_std"].append(_num(trainer.get("reward_std")))
        curves["group_min"].append(min(means) if means else None)
        curves["group_max"].append(max(means) if means else None)
        curves["pass_rate"].append(_num(rec.get("pass_rate")))
        episodes = rec.get("episodes") or 0
        curves["masked_frac"].append((rec.get("masked") or 0) / episodes if episodes else None)
        curves["loss"].append(_num(trainer.get("loss")))
        curves["step_s"].append(_num(rec.get("step_s")))
        for phase, seconds in (rec.get("time_s") or {}).items():
            split.setdefault(phase, [None] * (len(steps) - 1)).append(_num(seconds))
        for series in split.values():
            series.extend([None] * (len(steps) - len(series)))
    return {"steps": steps, **curves, "split": split}
