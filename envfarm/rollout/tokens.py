"""One trajectory -> one training row, token in, token out, and the check that it is exact.

The one token assembly: trainers (envfarm.train) and anyone reading a run use `build_row`.

The row's `completion_ids` is the whole multi-turn trajectory after the first prompt: each
turn's generated ids (env_mask 1) followed by the ids that entered the context before the next
turn (env_mask 0: the tool outputs as the chat template renders them, plus an end-of-turn token
the policy closed a length-cut turn with). Ids come from the episode's per-turn record, never
from re-tokenised text. `check_row` verifies segment by segment that the row is exactly the
generated ids plus the tool tokens, re-deriving the tool tokens from the recorded messages.

Branched groups (envfarm.rollout.branching): the turns a branch shares with the group's first
branch keep their ids (the model's context is the same) but get env_mask 0 in every branch
but the first, so the shared prefix counts once in the loss, never once per branch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from envfarm.errors import EnvfarmError
from envfarm.rollout.trajectory import Trajectory, Turn


@dataclass
class Segment:
    start: int
    ids: list[int]
    generated: bool  # the model's tokens (env_mask 1, but 0 in a shared prefix of a later branch)


@dataclass
class Row:
    prompt_ids: list[int]
    completion_ids: list[int]
    env_mask: list[int]
    logprobs: list[float]
    segments: list[Segment] = field(default_factory=list)
    truncated_tokens: int = 0  # cut off beyond max_completion_length
    has_tokens: bool = True


def placeholder_row(pad_id: int, eos_id: int) -> Row:
    """A row for an episode with no tokens (it failed before the model spoke): nothing to train on."""
    return Row([pad_id], [eos_id], [0], [0.0], has_tokens=False)


def token_turns(trajectory: Trajectory) -> list[Turn]:
    """The turns that carry tokens: all of them, less a last turn cut by the time limit before it spoke."""
    turns = list(trajectory.turns)
    while turns and (turns[-1].completion_ids is None or turns[-1].context_ids is None):
        turns.pop()
    if any(t.completion_ids is None or t.context_ids is None for t in turns):
        return []  # a backend that gave no ids for some turn: nothing exact to train on
    return turns


def build_row(trajectory: Trajectory, max_completion_length: int | None = None, pad_id: int = 0,
              eos_id: int = 0) -> Row:
    """The training row: turn 0's context as the prompt, then completions (mask 1) and tool tokens (mask 0).

    Raises TokenMismatch when a turn's prompt did not extend the previous context (a backend
    that re-rendered the chat): such tokens cannot be concatenated exactly.
    """
    turns = token_turns(trajectory)
    if not turns:
        return placeholder_row(pad_id, eos_id)
    if any(t.prefix_consistent is False for t in turns):
        raise TokenMismatch(f"{trajectory.episode_id}: a turn's prompt did not extend the previous context")
    row = Row(prompt_ids=list(turns[0].context_ids or []), completion_ids=[], env_mask=[], logprobs=[])
    shared = trajectory.shared_prefix_turns  # another branch of the group trains on these turns
    for i, turn in enumerate(turns):
        if i:
            _append(row, list(turn.context_ids or []), generated=False, logprobs=None)
        _append(row, list(turn.completion_ids or []), generated=True, logprobs=turn.logprobs, in_loss=i >= shared)
    if max_completion_length is not None and len(row.completion_ids) > max_completion_length:
        row.truncated_tokens = len(row.completion_ids) - max_completion_length
        for name in ("completion_ids", "env_mask", "logprobs"):
            setattr(row, name, getattr(row, name)[:max_completion_length])
    if not row.completion_ids:  # an empty first completion and nothing after it
        row.completion_ids, row.env_mask, row.logprobs = [eos_id], [0], [0.0]
    return row


def _append(row: Row, ids: list[int], generated: bool, logprobs: list[float] | None, in_loss: bool = True) -> None:
    row.segments.append(Segment(len(row.completion_ids), ids, generated))
    row.completion_ids += ids
    row.env_mask += [int(generated and in_loss)] * len(ids)
    if generated and logprobs is not None and len(logprobs) == len(ids):
        row.logprobs += [float(x) for x in logprobs]
    else:
        row.logprobs += [0.0] * len(ids)


class TokenMismatch(EnvfarmError, ValueError):
    """The tokens to train on are not exactly the generated tokens plus the tool tokens."""


def check_row(trajectory: Trajectory, row: Row, encoder: Any | None = None,
              tools: list[dict[str, Any]] | None = None) -> None:
    """Raise TokenMismatch unless every segment of `row` is what the episode generated or saw.

    Generated segments must equal each turn's completion ids; tool segments must equal the
    tokens of the tool messages as `encoder.encode_tool_turn` renders them (after the
    end-of-turn token the policy added to a turn cut at its length limit). Without an encoder
    only the generated segments and the mask are checked.
    """
    if not row.has_tokens:
        return
    turns = token_turns(trajectory)
    n = len(row.completion_ids)
    if not (len(row.env_mask) == len(row.logprobs) == n):
        raise TokenMismatch("completion_ids, env_mask and logprobs differ in length")
    messages = trajectory.messages
    assistants = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
    k = 0
    for t, turn in enumerate(turns):
        if t:
            expected = list(turn.context_ids or [])
            if encoder is not None and len(assistants) > t:
                tool_ids = encoder.encode_tool_turn(messages[: assistants[t - 1] + 1], messages[: assistants[t]],
                                                    tools)
                closed = [] if turns[t - 1].finish_reason == "stop" else [encoder.eos_id]
                if expected != closed + tool_ids:
                    raise TokenMismatch(f"turn {t}: the context segment is not the tool output's tokens")
            _check_segment(row, k, expected, 0, f"turn {t} tool output")
            k += 1
        _check_segment(row, k, list(turn.completion_ids or []), 1, f"turn {t} generation",
                       mask=int(t >= trajectory.shared_prefix_turns))
        k += 1
    if k != len(row.segments):
        raise TokenMismatch("the row has segments no turn accounts for")


def _check_segment(row: Row, k: int, expected: list[int], generated: int, what: str, mask: int | None = None) -> None:
    """`generated`: the segment is the model's; `mask`: its env_mask (as `generated` unless given:
    a shared prefix's generated turns are 0 in every branch but the first)."""
    mask = generated if mask is None else mask
    seg = row.segments[k]
    if seg.ids != expected or seg.generated != bool(generated):
        raise TokenMismatch(f"{what}: the row's segment differs from the episode's tokens")
    end = min(seg.start + len(seg.ids), len(row.completion_ids))
    if end <= seg.start:  # wholly past max_completion_length: cut off, nothing of it to compare
        return
    if row.completion_ids[seg.start:end] != seg.ids[: end - seg.start]:
        raise TokenMismatch(f"{what}: the row's ids differ from the segment")
    if any(m != mask for m in row.env_mask[seg.start:end]):
        raise TokenMismatch(f"{what}: env_mask is not {mask} on every token")
