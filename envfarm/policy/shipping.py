"""Which code a plug-in policy needs on every node, shipped the way Ray ships code.

A `--policy my_pkg.agent:MyPolicy` is imported by the driver from its own sys.path (a checkout,
the current folder, PYTHONPATH); the hosts that build the policy run on other nodes, where that
path need not exist. Ray's `runtime_env` `py_modules` uploads a package folder (or a one-file
module) once to the cluster's store and unpacks it on every node that starts a worker with it,
so the hosts get the driver's exact copy, with no shared file system.

What is shipped: the top-level package (or module) of the spec's module, unless it is installed
(site-packages, the standard library) or is envfarm itself: those every node has already, from
the same bootstrap.
"""

from __future__ import annotations

import importlib
import sys
import sysconfig
from pathlib import Path
from typing import Any

from envfarm.policy.loader import BUILTIN


def _installed_roots() -> list[Path]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots |= {p for p in sys.path if p.endswith(("site-packages", "dist-packages"))}
    return [Path(r).resolve() for r in roots]


def code_to_ship(spec: str) -> list[str]:
    """Local paths to hand Ray as `py_modules` for `spec` ([] for builtins and installed code).

    The spec must import here (launch checks it first with `check_spec`)."""
    if not isinstance(spec, str) or spec in BUILTIN or ":" not in spec:
        return []
    top = spec.partition(":")[0].split(".")[0]
    module = importlib.import_module(top)
    if getattr(module, "__path__", None):  # a package: its folder (the first, for a namespace package)
        where = Path(next(iter(module.__path__)))
    elif getattr(module, "__file__", None):
        where = Path(module.__file__)
    else:  # built into the interpreter
        return []
    where = where.resolve()
    envfarm_root = Path(__file__).resolve().parents[1]
    if where == envfarm_root or any(where.is_relative_to(root) for root in _installed_roots()):
        return []
    return [str(where)]


def policy_runtime_env(spec: str) -> dict[str, Any] | None:
    """The runtime_env that puts `spec`'s code on a host's node, or None when none is needed.

    Local paths: hand it to `ray.init(runtime_env=...)` (Ray uploads them for the whole job).
    """
    paths = code_to_ship(spec)
    return {"py_modules": paths} if paths else None


def uploaded_runtime_env(runtime_env: dict[str, Any]) -> dict[str, Any]:
    """`runtime_env` with its local py_modules uploaded to the cluster, as URIs an actor may take.

    Why: Ray accepts local paths only in `ray.init`; a Ray that the caller already started (a
    notebook, a test, a trainer) needs the upload done here, with the same function `ray.init`
    uses (content-addressed: the same code is uploaded once).
    """
    import ray

    try:
        from ray._private.runtime_env.py_modules import upload_py_modules_if_needed
    except ImportError as exc:  # a Ray whose internals moved
        raise RuntimeError(f"cannot ship {runtime_env['py_modules']} to the hosts with this Ray ({exc}): start Ray "
                           f"with ray.init(runtime_env={runtime_env!r}) before the farm") from exc
    node = ray._private.worker.global_worker.node
    return upload_py_modules_if_needed(dict(runtime_env), include_gitignore=True,
                                       scratch_dir=node.get_runtime_env_dir_path())
