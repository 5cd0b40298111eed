"""One short GRPO run on real Docker sandboxes with a tiny random model, as the training tests
build it: the run, the model and its tokenizer, and the parameters before training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

ENV_CONFIG = {"command_timeout_s": 15, "episode_timeout_s": 120, "grading_timeout_s": 120}


@pytest.fixture(scope="session")
def tiny_training():
    def train(tasks: list[Any], out: Path, *, seed: int, max_turns: int, max_observation_chars: int,
              groups_per_step: int, max_steps: int, save_steps: int, **cfg: Any) -> dict[str, Any]:
        from envfarm.policy.tiny import make_tiny_model
        from envfarm.train.config import TrainConfig
        from envfarm.train.trainer import build_training, grpo_config

        model, tokenizer = make_tiny_model(seed=seed)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        config = TrainConfig(max_new_tokens=16, env_config={**ENV_CONFIG, "max_turns": max_turns,
                                                            "max_observation_chars": max_observation_chars},
                             **cfg)
        args = grpo_config(config, str(out), groups_per_step=groups_per_step, max_steps=max_steps,
                           learning_rate=1e-2, save_steps=save_steps)
        run = build_training(model, tokenizer, tasks, config, args, echo=False)
        try:
            run.trainer.train()
        finally:
            run.close()
        return {"run": run, "model": model, "tokenizer": tokenizer, "before": before, "out": out}

    return train
