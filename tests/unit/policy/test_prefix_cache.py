"""Scoring a conversation turn by turn with the attention cache gives the logprobs a full pass
gives, runs only the new tokens through the model, and never reuses a cache across weights."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture
def policies():
    from envfarm.policy.tiny import make_tiny_model
    from envfarm.policy.transformers_policy import TransformersPolicy

    model, tokenizer = make_tiny_model(seed=3)
    return TransformersPolicy(model, tokenizer, score_cache=4), TransformersPolicy(model, tokenizer, score_cache=0)


def _conversation(turns: int):
    """(prompt, ids) per turn: each prompt extends the previous prompt, its ids and a tool output."""
    prompt = list(range(5, 120))
    for turn in range(turns):
        ids = [10 + turn] * 7 + [2]
        yield prompt, ids
        prompt = prompt + ids + list(range(30, 45 + turn))


def test_cached_scores_equal_full_passes_and_reuse_the_prefix(policies):
    cached, plain = policies
    for prompt, ids in _conversation(6):
        assert cached.score(prompt, ids) == pytest.approx(plain.score(prompt, ids), abs=1e-4)
    assert cached.prefix_cache.hits == 5  # every turn after the first extended the one before
    assert plain.prefix_cache.hits == 0


def test_an_update_of_the_weights_drops_the_cache(policies):
    cached, plain = policies
    turns = list(_conversation(3))
    cached.score(*turns[0])
    with torch.no_grad():
        next(cached.model.parameters()).add_(0.05)  # an optimizer step, in place
    assert cached.score(*turns[1]) == pytest.approx(plain.score(*turns[1]), abs=1e-4)
    assert cached.prefix_cache.hits == 0


def test_a_prompt_that_is_exactly_a_stored_sequence_is_scored_from_its_last_token(policies):
    cached, plain = policies
    prompt, ids = next(_conversation(1))
    cached.score(prompt, ids)
    more = [7, 8, 2]  # the next turn follows with no tool output in between
    assert cached.score(prompt + ids, more) == pytest.approx(plain.score(prompt + ids, more), abs=1e-4)
    assert cached.prefix_cache.hits == 1
