"""CodingEnv keeps gymnasium's contract: check_env passes, and wrappers see a masked episode as NaN."""

from __future__ import annotations

import math

import gymnasium
from gymnasium.utils.env_checker import check_env
from gymnasium.wrappers import RecordEpisodeStatistics

from envfarm.env import CodingEnv
from envfarm.errors import SandboxError
from envfarm.sandbox.base import SandboxSpec
from envfarm.sandbox.sim_backend import SimProfile, SimSandbox
from envfarm.tasks.loading import BUILTIN_DIR, load_jsonl
from envfarm.tasks.sim_grading import make_sim_grader

INSTANT = SimProfile(time_scale=0.0, resolve_rate=1.0)
SUBMIT = '<tool_call>{"name": "submit", "arguments": {}}</tool_call>'


async def sim_factory(spec: SandboxSpec, task_id: str) -> SimSandbox:
    return await SimSandbox.create(spec, INSTANT)


async def broken_grader(task, patch, sandbox_factory=None, timeout=600.0, **_):
    raise SandboxError("the engine refused the grading container")


def make_env(grader=None) -> CodingEnv:
    tasks = load_jsonl(BUILTIN_DIR / "fixtures.jsonl")
    return CodingEnv(tasks=tasks, sandbox_factory=sim_factory, grader=grader or make_sim_grader(INSTANT, seed=0),
                     max_turns=3)


def test_check_env_passes():
    env = make_env()
    try:
        check_env(env, skip_render_check=True)
    finally:
        env.close()


def test_graded_episode_gives_a_float_reward():
    env = make_env()
    try:
        env.reset(seed=1)
        _, reward, terminated, truncated, info = env.step(SUBMIT)
        assert terminated and not truncated and reward == 1.0 and info["masked"] is False
    finally:
        env.close()


def test_masked_episode_is_nan_through_a_standard_wrapper():
    env = RecordEpisodeStatistics(make_env(grader=broken_grader))
    try:
        env.reset(seed=0)
        _, reward, terminated, _, info = env.step(SUBMIT)
        assert terminated and isinstance(reward, float) and math.isnan(reward)
        assert info["masked"] is True and info["error_kind"] == "infrastructure"
        assert math.isnan(info["episode"]["r"])  # visible in the episode's return, never a silent 0
    finally:
        env.close()


def test_registered_id_makes_the_env():
    import envfarm.env  # noqa: F401 - registers envfarm/CodingEnv-v0

    env = gymnasium.make("envfarm/CodingEnv-v0", tasks=load_jsonl(BUILTIN_DIR / "fixtures.jsonl"),
                         sandbox_factory=sim_factory, grader=make_sim_grader(INSTANT))
    try:
        observation, info = env.reset(seed=0)
        assert isinstance(observation, str) and info["tools"]
    finally:
        env.close()


def test_cli_flags_map_to_one_config_and_bad_values_name_the_flag():
    import argparse

    import pytest

    from envfarm.env.config import EnvConfig
    from envfarm.errors import UserInputError

    args = argparse.Namespace(max_turns=7, episode_timeout=60.0, command_timeout=5.0)
    cfg = EnvConfig.from_args(args, run="r")
    assert (cfg.max_turns, cfg.episode_timeout_s, cfg.command_timeout_s, cfg.run) == (7, 60.0, 5.0, "r")
    with pytest.raises(UserInputError, match="--max-turns"):
        EnvConfig.from_args(argparse.Namespace(max_turns=0, episode_timeout=60.0, command_timeout=5.0))
