"""FarmRollout: the GRPOTrainer's `rollout_func`, backed by the farm.

TRL calls it with the batch's prompts, each already repeated `num_generations` times in a row
(its RepeatSampler), and the trainer. Each prompt is a task id (the dataset's `prompt` column);
the environment builds the real prompt (system prompt, tools, problem statement). The runner
plays the episodes; each record becomes one row of token ids (`tokens.build_row`), checked
segment by segment, with the grading results as extra keys for the reward functions.
"""

from __future__ import annotations

import logging
import statistics
import time
from typing import Any

from envfarm.env.schemas import tool_schemas
from envfarm.errors import ErrorKind
from envfarm.rollout.tokens import TokenMismatch, build_row, check_row, placeholder_row
from envfarm.rollout.trajectory import Trajectory
from envfarm.tasks.schema import Task
from envfarm.train.config import TrainConfig
from envfarm.train.groups import settle_groups
from envfarm.train.rewards import combined

log = logging.getLogger(__name__)


class FarmRollout:
    """Callable `(prompts, trainer) -> dict` for `GRPOTrainer(rollout_func=...)`."""

    def __init__(self, tasks: list[Task], runner: Any, config: TrainConfig, tokenizer: Any,
                 policy_factory: Any = None, encoder: Any = None) -> None:
        self.tasks = {t.instance_id: t for t in tasks}
        self.runner = runner
        self.config = config
        self.tokenizer = tokenizer
        self.policy_factory = policy_factory  # trainer -> Policy, built on the first call (needs trainer.model)
        self.encoder = encoder  # renders tool messages to ids for the exactness check
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id
        self.batches: list[dict[str, Any]] = []  # one summary per call, for step logs
        self.last_rows: list[dict[str, Any]] = []
        self.last_records: list[Trajectory] = []

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, list]:
        if self.policy_factory is not None:
            policy = self.policy_factory(trainer)
            self.runner.set_policy(policy)
            self.encoder = self.encoder or policy
            self.policy_factory = None
        started = time.perf_counter()
        tasks = [self._task(p) for p in prompts]
        group_size = self._group_size(tasks, trainer)
        records = self.runner.run(tasks, group_size)
        rollout_s = time.perf_counter() - started
        rows = [self._row(r) for r in records]
        masked, verdicts = settle_groups(records, [r["reward_masked"] for r in rows], group_size,
                                         self.config.max_masked_fraction)
        for row, m in zip(rows, masked, strict=True):
            row["reward_masked"] = m
        self.last_rows, self.last_records = rows, records
        self.batches.append(self._summary(records, rows, verdicts, group_size, rollout_s))
        keys = ["prompt_ids", "completion_ids", "logprobs", "env_mask", "instance_id", "resolved", "fail_to_pass",
                "format_score", "reward_masked", "error_kind", "num_turns", "episode_id"]
        return {k: [row[k] for row in rows] for k in keys}

    # -- pieces ------------------------------------------------------------------------------
    def _task(self, prompt: Any) -> Task:
        key = prompt if isinstance(prompt, str) else prompt[-1]["content"]
        try:
            return self.tasks[key.strip()]
        except KeyError:
            raise KeyError(f"prompt {key[:80]!r} names no task of this run (prompts are task ids)") from None

    def _group_size(self, tasks: list[Task], trainer: Any) -> int:
        size = getattr(trainer, "num_generations", None) or self.config.num_generations
        if len(tasks) % size or any(tasks[i].instance_id != tasks[i - i % size].instance_id
                                    for i in range(len(tasks))):
            raise ValueError(f"the batch is not made of groups of {size} identical prompts")
        return size

    def _row(self, record: Trajectory) -> dict[str, Any]:
        masked = record.masked
        error_kind = record.error_kind
        try:
            row = build_row(record, self.config.max_completion_length, self.pad_id, self.eos_id)
            check_row(record, row, self.encoder, tool_schemas())
        except TokenMismatch as exc:
            log.error("episode %s: %s; masked", record.episode_id, exc)
            row = placeholder_row(self.pad_id, self.eos_id)
            masked, error_kind = True, ErrorKind.TOKEN_MISMATCH
        turns = record.turns
        return {
            "prompt_ids": row.prompt_ids, "completion_ids": row.completion_ids, "env_mask": row.env_mask,
            "logprobs": row.logprobs, "instance_id": record.instance_id,
            "resolved": record.resolved, "fail_to_pass": record.grade.fail_to_pass if record.grade else 0.0,
            "format_score": sum(not t.format_error for t in turns) / len(turns) if turns else 0.0,
            "reward_masked": masked, "error_kind": error_kind, "num_turns": len(turns),
            "episode_id": record.episode_id, "truncated_tokens": row.truncated_tokens,
            "tool_tokens": len(row.env_mask) - sum(row.env_mask), "generated_tokens": sum(row.env_mask),
        }

    def _summary(self, records: list[Trajectory], rows: list[dict[str, Any]], verdicts: list[Any],
                 group_size: int, rollout_s: float) -> dict[str, Any]:
        timing = {k: sum(getattr(r.timings, k) for r in records) for k in ("setup", "generation", "tools", "grading")}
        groups = []
        for v in verdicts:
            rewards = [combined(rows[i], self.config.rewards) for i in range(v.group * group_size,
                                                                              (v.group + 1) * group_size)]
            real = [x for x in rewards if x is not None]
            groups.append({"instance_id": v.instance_id, "mean": statistics.fmean(real) if real else None,
                           "std": statistics.pstdev(real) if len(real) > 1 else 0.0 if real else None,
                           "masked": v.masked, "dropped": v.dropped})
        scored = [r for r in rows if not r["reward_masked"]]
        return {
            "episodes": len(records), "rollout_s": rollout_s,
            "episode_seconds": timing,  # summed over episodes (they overlap in wall time)
            "groups": groups, "groups_dropped": sum(v.dropped for v in verdicts),
            "masked": sum(r["reward_masked"] for r in rows),
            "pass_rate": statistics.fmean(r["resolved"] for r in scored) if scored else None,
            "turns_mean": statistics.fmean(r["num_turns"] for r in rows),
            "completion_tokens_mean": statistics.fmean(len(r["completion_ids"]) for r in rows),
            "generated_tokens_mean": statistics.fmean(r["generated_tokens"] for r in rows),
            "truncated_rows": sum(r["truncated_tokens"] > 0 for r in rows),
            "token_mismatches": sum(r["error_kind"] == ErrorKind.TOKEN_MISMATCH for r in rows),
            "errors": sorted({str(r["error_kind"]) for r in rows if r["error_kind"]}),
        }
