"""Reward functions for TRL, reading the grading results the rollout put on each row.

Every function returns `None` for a masked row (an infrastructure or policy failure, or a
dropped group): TRL turns it into NaN, leaves it out of the group's mean and std and gives it
zero advantage. A failure of the machinery is no verdict on the agent, so it is never a 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from envfarm.train.config import RewardWeights

RewardFunc = Callable[..., list[float | None]]


def _masked_or(values: list[Any], masked: list[bool]) -> list[float | None]:
    return [None if m else float(v) for v, m in zip(values, masked, strict=True)]


def resolved_reward(completions: list[Any], resolved: list[bool], reward_masked: list[bool],
                    **_: Any) -> list[float | None]:
    """1 when the hidden tests pass (swebench's FULL resolution), else 0."""
    return _masked_or(resolved, reward_masked)


def fail_to_pass_reward(completions: list[Any], fail_to_pass: list[float], reward_masked: list[bool],
                        **_: Any) -> list[float | None]:
    """The fraction of FAIL_TO_PASS tests that pass after the patch."""
    return _masked_or(fail_to_pass, reward_masked)


def format_reward(completions: list[Any], format_score: list[float], reward_masked: list[bool],
                  **_: Any) -> list[float | None]:
    """The fraction of turns whose action parsed as at least one tool call."""
    return _masked_or(format_score, reward_masked)


TERMS: dict[str, RewardFunc] = {"resolved": resolved_reward, "fail_to_pass": fail_to_pass_reward,
                                "format": format_reward}


def reward_funcs(weights: RewardWeights) -> tuple[list[RewardFunc], list[float]]:
    """The functions and weights for GRPOTrainer(reward_funcs=...) / GRPOConfig(reward_weights=...)."""
    active = weights.active()
    if not active:
        raise ValueError("every reward weight is 0: nothing to train on")
    return [TERMS[name] for name in active], list(active.values())


def combined(row: dict[str, Any], weights: RewardWeights) -> float | None:
    """The weighted reward of one row as the trainer sums it (for logs)."""
    if row["reward_masked"]:
        return None
    values = term_values(row)
    return sum(w * values[name] for name, w in weights.active().items())


def term_values(row: dict[str, Any]) -> dict[str, float]:
    """Each reward term's unweighted value on one unmasked row (the same numbers the functions return)."""
    return {"resolved": float(row["resolved"]), "fail_to_pass": float(row["fail_to_pass"]),
            "format": float(row["format_score"])}
