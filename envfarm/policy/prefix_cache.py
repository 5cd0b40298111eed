"""The model's attention cache of sequences it has scored, so the next turn scores only what is new.

An episode's turn-`t` prompt is its turn-`t-1` prompt and completion followed by the tool output
(`TransformersPolicy.prompt_ids` builds it that way, never re-tokenising), so scoring every turn
from scratch runs the whole conversation through the model again: quadratic in the turns, and on
the trainer's own cores. Keeping each scored sequence's key/value cache and feeding only the new
tokens makes it linear, as an inference server's prefix cache does.

An entry is valid only for the weights it was computed with: it carries a stamp of the
parameters' in-place version counters (an optimizer step bumps them) and is dropped when they
have moved. An entry is handed out once (the forward pass extends it in place).
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from typing import Any


def weights_stamp(model: Any) -> tuple[int, ...]:
    """Changes whenever any parameter is updated in place (optimizer steps, loading weights)."""
    return tuple(p._version for p in model.parameters())


class PrefixCache:
    """At most `size` (ids, cache) entries, least recently stored dropped first."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._entries: OrderedDict[int, tuple[list[int], Any, tuple[int, ...]]] = OrderedDict()
        self._next = 0
        self.hits = 0
        self.tokens_reused = 0

    def take(self, ids: list[int], stamp: tuple[int, ...]) -> tuple[int, Any]:
        """(length, cache) of the longest stored sequence that `ids` extends (removed from the
        store), or (0, None). Entries computed with other weights are dropped on the way."""
        best: tuple[int, int] | None = None
        for key, (prefix, _, entry_stamp) in list(self._entries.items()):
            if entry_stamp != stamp:
                del self._entries[key]
            elif len(prefix) <= len(ids) and (best is None or len(prefix) > best[1]) and ids[:len(prefix)] == prefix:
                best = (key, len(prefix))
        if best is None:
            return 0, None
        _, cache, _ = self._entries.pop(best[0])
        self.hits += 1
        self.tokens_reused += best[1]
        return best[1], cache

    def put(self, ids: list[int], cache: Any, stamp: tuple[int, ...]) -> None:
        if self.size <= 0:
            return
        for key in [k for k, (_, _, entry_stamp) in self._entries.items() if entry_stamp != stamp]:
            del self._entries[key]  # other weights: never valid again, free their memory now
        self._entries[self._next] = (list(ids), cache, stamp)
        self._next += 1
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


def cached_logits(model: Any, ids: list[int], keep_from: int, store: PrefixCache) -> Any:
    """The model's logits at positions `keep_from`.. of `ids` (one row per position), computing
    only the positions the store does not already hold; the whole of `ids` is stored after."""
    import torch

    stamp = weights_stamp(model)
    length, cache = store.take(ids, stamp)
    if cache is not None and length > keep_from:  # the logits wanted start inside the stored part
        cache.crop(keep_from - length)  # a negative crop drops that many tokens from the end
        length = keep_from
    device = next(model.parameters()).device
    kwargs = {_cache_arg(model): cache} if cache is not None else {}
    out = model(torch.tensor([ids[length:]], device=device), use_cache=True, **kwargs)
    new_cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
    if new_cache is not None:
        store.put(ids, new_cache, stamp)
    return out.logits[0, keep_from - length:]


def _cache_arg(model: Any) -> str:
    """The forward argument that takes a cache: `cache` in recent transformers, else `past_key_values`."""
    params = inspect.signature(type(model).forward).parameters
    return "cache" if "cache" in params else "past_key_values"
