"""Grading for the sim backend: the latency of real grading, a verdict drawn at a set rate."""

from __future__ import annotations

import asyncio
import random

from envfarm.sandbox.sim_backend import SimProfile
from envfarm.tasks.grading import GradeResult
from envfarm.tasks.schema import Task


def make_sim_grader(profile: SimProfile | None = None, seed: int | None = None):
    """A drop-in for `envfarm.tasks.grading.grade` that holds no sandbox."""
    profile = profile or SimProfile()
    rng = random.Random(seed)

    async def sim_grade(task: Task, patch: str, sandbox_factory=None, timeout: float = 600.0,
                        labels: dict[str, str] | None = None) -> GradeResult:
        seconds = profile.draw(profile.grade_s, rng)
        await asyncio.sleep(seconds)
        resolved = rng.random() < profile.resolve_rate
        n_f2p, n_p2p = len(task.FAIL_TO_PASS), len(task.PASS_TO_PASS)
        tests = {t: "PASSED" if resolved else "FAILED" for t in task.FAIL_TO_PASS}
        tests.update({t: "PASSED" for t in task.PASS_TO_PASS})
        return GradeResult(
            instance_id=task.instance_id, resolved=resolved,
            status="RESOLVED_FULL" if resolved else "RESOLVED_NO",
            fail_to_pass=1.0 if resolved else 0.0, pass_to_pass=1.0 if n_p2p else 1.0,
            tests=tests if n_f2p + n_p2p < 200 else {}, tests_ran=True, seconds=seconds,
        )

    return sim_grade
