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
        raise PolicyLoadError(f"policy {spec!r}: cannot import module {module_name!r} ({_one_line(exc)}); is it "
                              "installed or on PYTHONPATH?") from exc
    except Exception as exc:  # noqa: BLE001 - the module's own code failed while importing
        raise PolicyLoadError(f"policy {spec!r}: importing module {module_name!r} raised "
                              f"{exc.__class__.__name__}: {_one_line(exc)}") from exc
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


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else exc.__class__.__name__


def check_spec(spec: str, kwargs: dict[str, Any] | None = None) -> None:
    """Refuse, in the driver and before any sandbox starts, a spec the hosts could not use.

    Otherwise every host fails every episode as an infrastructure fault, retries it, and the run
    ends with nothing but masked episodes. A plug-in is built here once and dropped: a module
    that does not import, a missing attribute, a constructor that raises and an object that is
    not a policy each become one PolicyLoadError (so a plug-in should leave heavy work, such as
    loading a model, to its first `act` or make it cheap to repeat). Builtin policies are not
    built here (the transformers one loads a model): their arguments are checked against the
    constructor's signature.
    """
    kwargs = dict(kwargs or {})
    if spec not in BUILTIN:
        load_policy(spec, **kwargs)
        return
    cls = _import(BUILTIN[spec])
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as exc:
        raise PolicyLoadError(f"policy {spec!r}: --policy-arg {sorted(kwargs) or 'none'} does not fit "
                              f"{cls.__name__}{inspect.signature(cls)}: {exc}") from None


def load_policy(spec: str | Any, **kwargs: Any) -> Policy:
    """A ready policy from a spec string (or a policy object, checked and returned as is)."""
    if not isinstance(spec, str):
        return check_policy(spec, type(spec).__name__)
    obj = _import(BUILTIN.get(spec, spec))
    if inspect.isclass(obj) or (callable(obj) and not hasattr(obj, "act")):
        name = getattr(obj, "__name__", obj)
        try:
            obj = obj(**kwargs)
        except TypeError as exc:
            raise PolicyLoadError(f"policy {spec!r}: calling {name!r} with "
                                  f"{sorted(kwargs) or 'no arguments'} failed: {_one_line(exc)}") from exc
        except Exception as exc:  # noqa: BLE001 - the plug-in's own constructor failed
            raise PolicyLoadError(f"policy {spec!r}: {name}({', '.join(sorted(kwargs))}) raised "
                                  f"{exc.__class__.__name__}: {_one_line(exc)}") from exc
    elif kwargs:
        raise PolicyLoadError(f"policy {spec!r} is an instance; it takes no arguments (got {sorted(kwargs)})")
    return check_policy(obj, f"policy {spec!r}")
