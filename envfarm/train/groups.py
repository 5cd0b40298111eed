"""Masking episodes and dropping groups that the farm, not the agent, spoiled.

An episode is masked when it has no verdict (`Trajectory.masked`: an infrastructure fault that
outlived its retries, a policy that could not answer) or its tokens failed the exactness check. GRPO's
baseline is the group mean, so a group left with few real episodes would judge them against a
thin baseline: past `max_masked_fraction` the whole group is dropped (every row masked) and
logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from envfarm.rollout.trajectory import Trajectory

log = logging.getLogger(__name__)


@dataclass
class GroupVerdict:
    group: int
    instance_id: str
    size: int
    masked: int
    dropped: bool


def settle_groups(records: list[Trajectory], masked: list[bool], group_size: int,
                  max_masked_fraction: float) -> tuple[list[bool], list[GroupVerdict]]:
    """Final per-row masks (dropped groups masked whole) and one verdict per group."""
    out = list(masked)
    verdicts = []
    for g in range(0, len(records), group_size):
        rows = range(g, min(g + group_size, len(records)))
        n_masked = sum(masked[i] for i in rows)
        dropped = n_masked > 0 and n_masked > max_masked_fraction * len(rows)
        instance = records[g].instance_id
        if dropped:
            for i in rows:
                out[i] = True
            kinds = sorted({str(records[i].error_kind) for i in rows if masked[i]})
            log.warning("group %d (%s) dropped: %d of %d episodes have no verdict (%s)", g // group_size,
                        instance, n_masked, len(rows), ", ".join(kinds))
        verdicts.append(GroupVerdict(g // group_size, instance, len(rows), n_masked, dropped))
    return out, verdicts
