"""Per-step logs of a training run: the farm's side (groups, pass rate, episode length) and the
time split of the step (generation, sandboxes, grading, optimizer), next to TRL's own metrics.

Episodes of a batch overlap, so their summed seconds exceed the wall time: the rollout's wall
time is split in proportion to the summed generation, sandbox (setup + tools) and grading
seconds. The optimizer's share is the rest of the step: TRL's logprob passes, backward, update.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from envfarm.train.rollout_func import FarmRollout


def time_split(step_s: float, batches: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds of one step in generation, sandbox, grading and optimizer."""
    rollout = sum(b["rollout_s"] for b in batches)
    summed = {k: sum(b["episode_seconds"][k] for b in batches) for k in ("setup", "generation", "tools", "grading")}
    parts = {"generation": summed["generation"], "sandbox": summed["setup"] + summed["tools"],
             "grading": summed["grading"]}
    total = sum(parts.values()) or 1.0
    split = {name: rollout * v / total for name, v in parts.items()}
    split["optimizer"] = max(step_s - rollout, 0.0)
    return split


class StepLogCallback(TrainerCallback):
    """Writes `<output_dir>/train_log.jsonl`, one line per optimizer step, and prints a summary."""

    def __init__(self, rollout: FarmRollout, path: str | Path, echo: bool = True) -> None:
        self.rollout = rollout
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.echo = echo
        self.records: list[dict[str, Any]] = []
        self._started = 0.0
        self._seen = 0
        self._pending: dict[str, Any] | None = None

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self._started:
            self._started = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        step_s = time.perf_counter() - self._started
        self._started = 0.0
        batches = self.rollout.batches[self._seen:]
        self._seen = len(self.rollout.batches)
        split = time_split(step_s, batches)
        groups = [g for b in batches for g in b["groups"]]
        passes = [b["pass_rate"] for b in batches if b["pass_rate"] is not None]
        self._pending = {
            "step": state.global_step, "step_s": step_s, "episodes": sum(b["episodes"] for b in batches),
            "groups": groups, "groups_dropped": sum(b["groups_dropped"] for b in batches),
            "masked": sum(b["masked"] for b in batches),
            "pass_rate": sum(passes) / len(passes) if passes else None,
            "turns_mean": _mean([b["turns_mean"] for b in batches]),
            "completion_tokens_mean": _mean([b["completion_tokens_mean"] for b in batches]),
            "token_mismatches": sum(b["token_mismatches"] for b in batches),
            "time_s": split, "share": {k: v / step_s for k, v in split.items()} if step_s else {},
        }

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if self._pending is None:
            return
        record = {**self._pending, "trainer": dict(logs or {})}
        self._pending = None
        self.records.append(record)
        with self.path.open("a") as fh:
            fh.write(json.dumps(record, default=str) + "\n")
        if self.echo:
            share = record["share"]
            groups = " ".join(f"{g['mean']:.2f}±{g['std']:.2f}" if g["mean"] is not None else "dropped"
                              for g in record["groups"])
            print(f"step {record['step']}: {record['step_s']:.1f}s  groups [{groups}]  pass "
                  f"{_fmt(record['pass_rate'])}  turns {_fmt(record['turns_mean'])}  loss "
                  f"{_fmt(record['trainer'].get('loss'))}  time gen {share.get('generation', 0):.0%} sandbox "
                  f"{share.get('sandbox', 0):.0%} grading {share.get('grading', 0):.0%} optimizer "
                  f"{share.get('optimizer', 0):.0%}", flush=True)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value)
