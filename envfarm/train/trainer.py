"""Build a GRPOTrainer whose rollouts are farm episodes.

Generation backends:
- no vLLM server: the trainer's own model generates (`TrainerModelPolicy`), so episodes run in
  the trainer's process on a WarmPool of Docker sandboxes (`InProcessRunner`);
- `vllm_server`: TRL's vLLM server mode (the trainer pushes its weights to the server every
  step, importance-sampling correction on) and `VLLMTokenPolicy` against the same server,
  in-process or on the Ray farm (`runner="ray"`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from envfarm.sandbox.backends import BackendConfig
from envfarm.tasks.schema import Task
from envfarm.train.config import TrainConfig
from envfarm.train.rewards import reward_funcs
from envfarm.train.rollout_func import FarmRollout
from envfarm.train.runners import InProcessRunner, RayRunner
from envfarm.train.steplog import StepLogCallback
from envfarm.train.trainer_policies import GuidedPolicy, TrainerModelPolicy


@dataclass
class TrainingRun:
    trainer: Any
    rollout: FarmRollout
    steplog: StepLogCallback
    runner: Any

    def close(self) -> None:
        self.runner.close()


def task_dataset(tasks: list[Task], min_rows: int = 1) -> Any:
    """One row per task; the prompt is the task id (the env builds the real prompt)."""
    from datasets import Dataset

    rows = [{"prompt": t.instance_id} for t in tasks]
    while len(rows) < min_rows:
        rows += rows[: min_rows - len(rows)]
    return Dataset.from_list(rows)


def grpo_config(cfg: TrainConfig, output_dir: str, *, groups_per_step: int = 1, vllm_server: str | None = None,
                **overrides: Any) -> Any:
    import torch
    from trl import GRPOConfig

    cuda = torch.cuda.is_available()
    _, weights = reward_funcs(cfg.rewards)
    kwargs: dict[str, Any] = dict(
        output_dir=output_dir, num_generations=cfg.num_generations,
        per_device_train_batch_size=cfg.num_generations * groups_per_step, gradient_accumulation_steps=1,
        max_completion_length=cfg.max_completion_length, temperature=cfg.temperature, reward_weights=weights,
        logging_steps=1, save_strategy="steps", save_steps=50, report_to="none", remove_unused_columns=False,
        use_cpu=not cuda, bf16=cuda and torch.cuda.is_bf16_supported(), gradient_checkpointing=False,
        dataloader_num_workers=0, seed=0,
    )
    if vllm_server:
        kwargs.update(use_vllm=True, vllm_mode="server", vllm_server_base_url=vllm_server,
                      vllm_importance_sampling_correction=True)
    kwargs.update(overrides)
    return GRPOConfig(**kwargs)


def build_training(model: Any, tokenizer: Any, tasks: list[Task], cfg: TrainConfig, args: Any, *,
                   vllm_server: str | None = None, runner: str = "local", backend: str | BackendConfig = "docker",
                   tokenizer_path: str | None = None, address: str | None = None, echo: bool = True) -> TrainingRun:
    """A ready GRPOTrainer (`run.trainer.train()`), its rollout function, step log and episode runner."""
    from trl import GRPOTrainer

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    funcs, _ = reward_funcs(cfg.rewards)
    env_config = cfg.env_config
    if vllm_server:
        from envfarm.policy.vllm_tokens import VLLMTokenPolicy

        policy_kwargs = {"base_url": vllm_server, "tokenizer": tokenizer_path or tokenizer,
                         "max_new_tokens": cfg.max_new_tokens, "temperature": cfg.temperature}
        if runner == "ray":
            from envfarm.farm.scheduler import FarmConfig

            if cfg.branch_at is not None:
                raise ValueError("branched groups (branch_at) run in-process only: use runner='local'")

            if not tokenizer_path:
                raise ValueError("the Ray farm needs the tokenizer as a path its hosts can load")
            farm_cfg = FarmConfig(envs=cfg.envs, backend=backend, policy="vllm-tokens",
                                  policy_kwargs=policy_kwargs, max_retries=cfg.max_retries, env_config=env_config,
                                  run=cfg.run)
            episodes: Any = RayRunner(farm_cfg, address=address)
        else:
            episodes = InProcessRunner(VLLMTokenPolicy(**policy_kwargs), envs=cfg.envs, env_config=env_config,
                                       run=cfg.run, backend=backend, max_retries=cfg.max_retries,
                                       branch_at=cfg.branch_at)
        policy_factory = None
        encoder = VLLMTokenPolicy(base_url=vllm_server, tokenizer=tokenizer)
    else:
        episodes = InProcessRunner(None, envs=cfg.envs, env_config=env_config, run=cfg.run, backend=backend,
                                   max_retries=cfg.max_retries, demos_per_group=cfg.demos_per_group,
                                   demo_policy=GuidedPolicy if cfg.demos_per_group else None,
                                   branch_at=cfg.branch_at)

        def policy_factory(trainer: Any) -> TrainerModelPolicy:
            unwrapped = trainer.accelerator.unwrap_model(trainer.model)
            return TrainerModelPolicy(unwrapped, tokenizer, max_new_tokens=cfg.max_new_tokens,
                                      temperature=cfg.temperature)

        encoder = None
    rollout = FarmRollout(tasks, episodes, cfg, tokenizer, policy_factory=policy_factory, encoder=encoder)
    episodes.prewarm([t.image for t in tasks])
    steplog = StepLogCallback(rollout, os.path.join(args.output_dir, "train_log.jsonl"), echo=echo)
    trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=args, processing_class=tokenizer,
                          train_dataset=task_dataset(tasks, min_rows=args.per_device_train_batch_size),
                          rollout_func=rollout, callbacks=[steplog])
    return TrainingRun(trainer, rollout, steplog, episodes)
