"""GRPO training on the farm: TRL's GRPOTrainer fed by multi-turn sandbox episodes.

- `FarmRollout` (`rollout_func.py`) is the trainer's `rollout_func`: each group of
  `num_generations` rows runs as concurrent episodes on different sandboxes, and comes back as
  token ids (`envfarm.rollout.tokens`).
- `rewards.py` turns the grading results (extra keys of each row) into rewards; infrastructure
  failures give `None` (no signal), never 0 (`groups.py` drops groups with too many).
- `runners.py` runs the episodes: in the trainer's process (its own model generates) or on the
  Ray farm (a vLLM server generates).
- `trainer_policies.py`: the trainer's own model as a policy, and the guided demonstrations.
- `trl_environment.py`: the same tasks as TRL's `environment_factory` (TRL runs the tool loop).
- `trainer.py` builds the GRPOTrainer; `cli.py` is `python -m envfarm.launch --train`.
"""
