"""Resolve a `--policy` spec on a host: `sim`, a builtin name, or any `package.module:attr`."""

from __future__ import annotations

from typing import Any

from envfarm.policy.base import Policy
from envfarm.policy.loader import load_policy


def make_policy(spec: str, **kwargs: Any) -> Policy:
    if spec == "sim":
        from envfarm.policy.sim import SimPolicy

        return SimPolicy(**kwargs)
    return load_policy(spec, **kwargs)
