"""Farm episodes as TRL `RolloutSample`s, the rows `AsyncGRPOTrainer` trains on.

`AsyncGRPOTrainer` (trl.experimental.async_grpo) takes finished, scored rows off a queue: the
whole token sequence, which tokens to train, the generator's logprob of each token and one
advantage per row; it never sees rewards. The farm's row (`FarmRollout._row`: the generator's own
ids, `env_mask` 0 on tool output, faults and token mismatches masked) maps onto it one to one, and
the advantage is computed here as TRL's own worker does: the group-normalised reward over the
group's scored members, `(r - mean) / (std + 1e-8)`.

Unlike TRL's worker, a masked episode (no verdict) is left out instead of sent with advantage 0:
it adds nothing to the gradient, only its tokens to the token-mean denominator.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import numpy as np
from trl.experimental.async_grpo.async_rollout_worker import RolloutSample

from envfarm.rollout.trajectory import Trajectory
from envfarm.train.async_rollouts import Group
from envfarm.train.config import TrainConfig
from envfarm.train.groups import settle_groups
from envfarm.train.rewards import combined, term_values
from envfarm.train.rollout_func import FarmRollout


class SampleConverter:
    """Turns one producer `Group` into TRL rows; counts what it leaves out."""

    def __init__(self, config: TrainConfig, tokenizer: Any, encoder: Any = None) -> None:
        self.config = config
        # the synchronous path's row builder, so both trainers see exactly the same tokens and masks
        self._rows = FarmRollout([], None, config, tokenizer, encoder=encoder)
        self.masked_episodes = 0
        self.groups_dropped = 0
        self.untrainable_episodes = 0  # scored, but not one token with a logprob to train on

    def convert(self, group: Group) -> list[RolloutSample]:
        records = [s.record for s in group.samples]
        rows = [self._rows._row(r) for r in records]
        masked, verdicts = settle_groups(records, [r["reward_masked"] for r in rows], len(records),
                                         self.config.max_masked_fraction)
        self.groups_dropped += sum(v.dropped for v in verdicts)
        self.masked_episodes += sum(masked)
        rewards: list[float | None] = []
        for row, m in zip(rows, masked, strict=True):
            row["reward_masked"] = m
            rewards.append(combined(row, self.config.rewards))
        scored = [r for r in rewards if r is not None]
        if not scored:
            return []
        mean, std = statistics.fmean(scored), statistics.pstdev(scored)
        out = []
        for sample, record, row, reward in zip(group.samples, records, rows, rewards, strict=True):
            if reward is None:
                continue
            built = self._sample(record, row, reward, (reward - mean) / (std + 1e-8), std, sample.version,
                                 group.seq)
            if built is None:
                self.untrainable_episodes += 1
            else:
                out.append(built)
        return out

    def _sample(self, record: Trajectory, row: dict[str, Any], reward: float, advantage: float, reward_std: float,
                version: int, group_id: int) -> RolloutSample | None:
        prompt, completion = row["prompt_ids"], row["completion_ids"]
        # a token whose logprob the server did not return cannot be importance-weighted: context only
        finite = [math.isfinite(lp) for lp in row["logprobs"]]
        mask = [0] * len(prompt) + [m if ok else 0 for m, ok in zip(row["env_mask"], finite, strict=True)]
        if not any(mask):
            return None
        logps = [0.0] * len(prompt) + [lp if ok else 0.0 for lp, ok in zip(row["logprobs"], finite, strict=True)]
        first_reply = next((i for i, m in enumerate(record.messages) if m.get("role") == "assistant"),
                           len(record.messages))
        metrics = {"reward": reward, "reward_std": reward_std,
                   **{f"rewards/{name}": value for name, value in term_values(row).items()
                      if name in self.config.rewards.active()},
                   "envfarm/num_turns": float(row["num_turns"]), "envfarm/resolved": float(row["resolved"])}
        return RolloutSample(
            prompt=[_text_message(m) for m in record.messages[:first_reply]],
            completion=[_text_message(m) for m in record.messages[first_reply:]],
            input_ids=np.asarray(prompt + completion, dtype=np.int64),
            completion_mask=np.asarray(mask, dtype=np.int64),
            old_log_probs=np.asarray(logps, dtype=np.float32),
            advantage=float(advantage), model_version=version, group_id=group_id, metrics=metrics)


def _text_message(message: dict[str, Any]) -> dict[str, str]:
    """TRL's `Messages` are role/content strings (it only logs them as traces)."""
    return {"role": str(message.get("role", "")), "content": str(message.get("content") or "")}
