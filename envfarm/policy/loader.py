"""Load a policy from `--policy` strings: a builtin name or any importable `package.module:attr`.

`attr` may be an instance with `act`, a class, or a factory function; classes and factories are
called with the given keyword arguments. Every failure says what was tried and what to fix.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from envfarm.errors import UserInputError
from envfarm.policy.base import Policy

BUILTIN = {
    "scripted": "envfarm.policy.scripted:ScriptedPolicy",
    "openai": "envfarm.policy.openai_server:OpenAIPolicy",
    "transformers": "envfarm.policy.transformers_policy:TransformersPolicy",
    "vllm-tokens": "envfarm.policy.vllm_tokens:VLLMTokenPolicy",
    "sim": "envfarm.policy.sim:SimPolicy",
}


class PolicyLoadError(UserInputError):
    """The spec names nothing importable, or what it names is not a policy."""


def _import(spec: str) -> Any:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise PolicyLoadError(f"policy {spec!r}: expected 'package.module:attr' or one of {sorted(BUILTIN)}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PolicyLoadError(f"policy {spec!r}: cannot import module {module_name!r} ({exc}); is it installed "
                              "or on PYTHONPATH?") from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            names = sorted(n for n in dir(module) if not n.startswith("_"))[:20]
            raise PolicyLoadError(f"policy {spec!r}: module {module_name!r} has no attribute {attr!r} "
                                  f"(it has: {', '.join(names)})") from None
    return obj


def check_policy(obj: Any, spec: str = "policy") -> Policy:
    act = getattr(obj, "act", None)
    if act is None or not callable(act):
        raise PolicyLoadError(f"{spec}: {type(obj).__name__} has no `act` method; a policy needs "
                              "`async def act(self, messages, tools) -> Completion`")
    if not inspect.iscoroutinefunction(act):
        raise PolicyLoadError(f"{spec}: {type(obj).__name__}.act must be `async def` (the farm awaits it)")
    try:
        inspect.signature(act).bind([], [])
    except TypeError:
        raise PolicyLoadError(f"{spec}: {type(obj).__name__}.act{inspect.signature(act)} cannot be called as "
                              "act(messages, tools)") from None
    return obj


def check_spec(spec: str) -> None:
    """Fail early, in the driver, on a plug-in spec that does not import (hosts would fail every episode)."""
    if spec not in BUILTIN:
        _import(spec)


def load_policy(spec: str | Any, **kwargs: Any) -> Policy:
    """A ready policy from a spec string (or a policy object, checked and returned as is)."""
    if not isinstance(spec, str):
        return check_policy(spec, type(spec).__name__)
    obj = _import(BUILTIN.get(spec, spec))
    if inspect.isclass(obj) or (callable(obj) and not hasattr(obj, "act")):
        try:
            obj = obj(**kwargs)
        except TypeError as exc:
            raise PolicyLoadError(f"policy {spec!r}: calling {getattr(obj, '__name__', obj)!r} with "
                                  f"{sorted(kwargs) or 'no arguments'} failed: {exc}") from exc
    elif kwargs:
        raise PolicyLoadError(f"policy {spec!r} is an instance; it takes no arguments (got {sorted(kwargs)})")
    return check_policy(obj, f"policy {spec!r}")
