"""TrainConfig: what a GRPO run on the farm needs beyond TRL's own GRPOConfig."""

from __future__ import annotations

from dataclasses import dataclass, field

from envfarm.env.config import EnvConfig


@dataclass
class RewardWeights:
    """Weights of the reward terms; a term with weight 0 is not computed at all.

    `resolved` is the verdict of the tests (1/0). Shaping terms: `fail_to_pass` is the fraction of
    FAIL_TO_PASS tests the patch makes pass (partial credit on multi-test bugs), `format` the
    fraction of turns whose action parsed as a tool call (a weak model's first lesson).
    """

    resolved: float = 1.0
    fail_to_pass: float = 0.0
    format: float = 0.0

    def active(self) -> dict[str, float]:
        return {name: w for name, w in vars(self).items() if w}


@dataclass
class TrainConfig:
    """The farm side of training: episodes, rewards, masking, generation limits."""

    num_generations: int = 4
    max_completion_length: int = 2048  # tokens of a whole multi-turn completion (prompt excluded)
    max_new_tokens: int = 512  # per model turn
    temperature: float = 1.0
    env_config: EnvConfig = field(default_factory=EnvConfig)  # a dict of its fields is accepted
    rewards: RewardWeights = field(default_factory=RewardWeights)
    max_masked_fraction: float = 0.5  # a group with more masked episodes than this is dropped whole
    max_retries: int = 1  # infrastructure failures are retried this many times before they are masked
    envs: int = 8  # episodes running at once
    demos_per_group: int = 0  # episodes per group played by a guide (gold patch) and scored by the model
    # groups share a prefix: one episode to this turn (a whole number >= 1, or a fraction of
    # env_config.max_turns below 1), forked num_generations ways (envfarm.rollout.branching)
    branch_at: float | None = None
    run: str = "train"

    def __post_init__(self) -> None:
        self.env_config = EnvConfig.coerce(self.env_config)
        if self.branch_at is not None:
            from envfarm.rollout.branching import branch_turn

            branch_turn(self.branch_at, self.env_config.max_turns)  # a bad value fails here, not per group
