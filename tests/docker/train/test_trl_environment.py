"""GRPOTrainer(environment_factory=...) on real Docker sandboxes: TRL runs the tool loop.

A tiny random Qwen2 generates; in each group one rollout is played by a scripted agent (its
`generate` writes the gold fix as a `bash` tool call, then `submit`), so the group has a reward
spread and the optimizer moves. Everything else is real: TRL's tool-call parsing and loop, the
sandboxes, the diff, the grading.
"""

from __future__ import annotations

import json
import math

import pytest

pytestmark = [pytest.mark.docker, pytest.mark.slow]

G = 2  # rollouts per group


def scripted_model(tokenizer, tasks, seed: int = 0):
    """A tiny Qwen2 whose generate plays the gold fix for the first rollout of each group."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    patches = {t.problem_statement.strip()[:60]: t.patch for t in tasks}

    class Scripted(Qwen2ForCausalLM):
        def generate(self, input_ids=None, attention_mask=None, **kwargs):
            rows = [self._script(i, tokenizer.decode(ids)) for i, ids in enumerate(input_ids.tolist())]
            free = [i for i, r in enumerate(rows) if r is None]
            if free:  # the random rollouts sample, briefly: their length is not what is under test
                sampled = super().generate(input_ids=input_ids[free], attention_mask=attention_mask[free],
                                           max_new_tokens=48, **kwargs)
                for k, i in enumerate(free):
                    rows[i] = sampled[k, input_ids.shape[1]:].tolist()
            width = max(len(r) for r in rows)
            pad = tokenizer.pad_token_id
            tail = torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=input_ids.dtype)
            return torch.cat([input_ids, tail], dim=1)

        def _script(self, i: int, text: str) -> list[int] | None:
            if "<tool_response>" in text:
                done = "git apply" not in text or "Submitted" in text
                return self._say("Done." if done else
                                 '<tool_call>\n{"name": "submit", "arguments": {}}\n</tool_call>')
            if i % G:
                return None
            patch = next(p for key, p in patches.items() if key in text)
            call = {"name": "bash", "arguments": {"command": f"git apply <<'EOF'\n{patch}EOF"}}
            return self._say(f"<tool_call>\n{json.dumps(call)}\n</tool_call>")

        def _say(self, text: str) -> list[int]:
            return tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]

    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=16384,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         tie_word_embeddings=True)
    return Scripted(config)


@pytest.fixture(scope="module")
def trained(inflection_image, tmp_path_factory):
    import os

    from trl import GRPOConfig, GRPOTrainer
    from trl.chat_template_utils import qwen2_5_chat_template

    from envfarm.policy.tiny import make_tokenizer
    from envfarm.tasks import load
    from envfarm.train.trl_environment import EnvfarmToolEnv, envfarm_environment_factory

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    tasks = load("builtin:inflection")[:2]
    tokenizer = make_tokenizer()
    tokenizer.chat_template = qwen2_5_chat_template  # Qwen's tool-calling template: TRL parses its calls
    model = scripted_model(tokenizer, tasks)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    factory = envfarm_environment_factory(tasks, {"max_turns": 4, "command_timeout_s": 30, "grading_timeout_s": 120},
                                          warm=4, run="pytest-trl-env")
    rewards: list[float | None] = []
    get_reward = EnvfarmToolEnv.get_reward

    def recording(self):
        rewards.append(get_reward(self))
        return rewards[-1]

    out = tmp_path_factory.mktemp("trl-env")
    args = GRPOConfig(output_dir=str(out), num_generations=G, per_device_train_batch_size=2 * G, max_steps=2,
                      max_completion_length=1024, learning_rate=1e-2, logging_steps=1, save_strategy="no",
                      report_to="none", use_cpu=True, seed=0, max_tool_calling_iterations=4)
    EnvfarmToolEnv.get_reward = recording
    try:
        trainer = GRPOTrainer(model=model, args=args, processing_class=tokenizer,
                              train_dataset=factory.dataset(repeat=4), environment_factory=factory)
        trainer.train()
    finally:
        EnvfarmToolEnv.get_reward = get_reward
        factory.close()
    return {"trainer": trainer, "model": model, "before": before, "rewards": rewards, "factory": factory}


def test_two_steps_change_the_parameters(trained):
    assert trained["trainer"].state.global_step == 2
    changed = [n for n, p in trained["model"].named_parameters() if not (p.detach() == trained["before"][n]).all()]
    assert changed


def test_graded_rewards_reach_the_trainer(trained):
    rewards = trained["rewards"]
    assert len(rewards) == 2 * 2 * G  # every rollout of both steps scored once
    assert all(r is None or math.isfinite(r) for r in rewards)
    assert rewards.count(1.0) == 2 * 2  # each group's scripted rollout resolved its task through TRL's tools
    assert rewards.count(0.0) == 2 * 2  # the random rollouts did not
    logged = [h for h in trained["trainer"].state.log_history if "reward" in h]
    assert [h["reward"] for h in logged] == [0.5, 0.5]
    assert all(h["tools/call_frequency"] > 0 for h in logged)


def test_no_sandbox_outlives_the_factory(trained):
    from envfarm.sandbox.docker_backend import LABEL_OWNER, list_containers

    assert list_containers(**{LABEL_OWNER: trained["factory"].runtime.owner}) == []
