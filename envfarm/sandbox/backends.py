"""Backend configs and the one place a backend is chosen: `make_backend(config)`.

Each backend has a small typed config whose `type` field names it, so a config travels as
plain data (through Ray, JSON, a CLI flag) and still says exactly which backend it is for:

    make_backend(DockerBackendConfig())
    make_backend(SimBackendConfig(profile=SimProfile(create_s=0.02)))
    make_backend(backend_config("sim", sim_profile={"create_s": 0.02}))  # from a CLI string

The registry maps a name to its config and to the class that implements it; the Docker backend
is imported only when asked for, so a sim run never loads the Docker SDK's machinery.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from envfarm.errors import UserInputError
from envfarm.sandbox.base import SandboxBackend, SandboxFactory
from envfarm.sandbox.sim_backend import SimProfile


class DockerBackendConfig(BaseModel):
    """One locked-down container per sandbox on this node's Docker engine."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    type: Literal["docker"] = "docker"
    # the engine's OCI runtime for sandboxes (a name `docker info` lists under Runtimes, e.g. crun
    # on a cgroup v2 node); None: the engine's default. A sandbox's own SandboxSpec.runtime wins.
    runtime: str | None = None


class SimBackendConfig(BaseModel):
    """Simulated sandboxes: Docker's latencies (and failure odds) from `profile`, no containers."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    type: Literal["sim"] = "sim"
    profile: SimProfile = Field(default_factory=SimProfile)


class LocalBackendConfig(BaseModel):
    """Unisolated working copies on this machine, for trusted policies and checks only (see
    envfarm.sandbox.local_backend): refused unless `allow_unisolated` or ENVFARM_ALLOW_UNISOLATED=1."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    type: Literal["local"] = "local"
    allow_unisolated: bool = False
    root: str | None = None  # trees, environments and sandboxes ($ENVFARM_LOCAL_DIR, /var/tmp/envfarm-local)
    python: str | None = None  # the sandboxes' interpreter ($ENVFARM_LOCAL_PYTHON, else the host's python3)
    uid_base: int = 64000  # as root: one uid per sandbox from this range (uids no account or process uses)
    uid_count: int = 1000


BackendConfig = Annotated[DockerBackendConfig | SimBackendConfig | LocalBackendConfig, Field(discriminator="type")]

# name -> (its config class, "module:Class" of the backend, imported when first made)
_REGISTRY: dict[str, tuple[type[BaseModel], str]] = {
    "docker": (DockerBackendConfig, "envfarm.sandbox.docker_backend:DockerBackend"),
    "sim": (SimBackendConfig, "envfarm.sandbox.sim_backend:SimBackend"),
    "local": (LocalBackendConfig, "envfarm.sandbox.local_backend:LocalBackend"),
}


def backend_names() -> list[str]:
    return sorted(_REGISTRY)


def register_backend(name: str, config_cls: type[BaseModel], backend: str | type[SandboxBackend]) -> None:
    """Add a backend: `config_cls` must have `type: Literal[name]`; `backend` is its class or
    its "module:Class" path."""
    path = backend if isinstance(backend, str) else f"{backend.__module__}:{backend.__qualname__}"
    _REGISTRY[name] = (config_cls, path)


def _unknown(name: object) -> ValueError:
    return ValueError(f"unknown backend {name!r}: use {' or '.join(repr(n) for n in backend_names())}")


def backend_config(spec: str | Mapping[str, Any] | BaseModel,
                   sim_profile: Mapping[str, Any] | None = None) -> Any:
    """A typed backend config from what a CLI or a caller has: a name ("docker", "sim"), a dict
    with a `type`, or a config already (returned as is).

    `sim_profile` (SimProfile's fields) applies to the name "sim" only; unknown fields raise
    TypeError as SimProfile(**fields) does.
    """
    if isinstance(spec, BaseModel):
        if getattr(spec, "type", None) not in _REGISTRY:
            raise _unknown(getattr(spec, "type", spec))
        return spec
    if isinstance(spec, str):
        if spec not in _REGISTRY:
            raise _unknown(spec)
        if spec == "sim":
            return SimBackendConfig(profile=SimProfile(**dict(sim_profile or {})))
        return _REGISTRY[spec][0]()
    name = spec.get("type")
    if name not in _REGISTRY:
        raise _unknown(name)
    return _REGISTRY[name][0].model_validate(dict(spec))


def backend_class(name: str) -> type[SandboxBackend]:
    if name not in _REGISTRY:
        raise _unknown(name)
    module, _, attr = _REGISTRY[name][1].partition(":")
    return getattr(import_module(module), attr)


def make_backend(config: str | Mapping[str, Any] | BaseModel) -> SandboxBackend:
    """The backend a config (or a name, or a dict with a `type`) asks for."""
    cfg = backend_config(config)
    return backend_class(cfg.type)(cfg)


def backend_from_flags(name: str, allow_unisolated: bool = False,
                       oci_runtime: str | None = None) -> str | BackendConfig:
    """The backend a command line's --backend, --allow-unisolated and --oci-runtime ask for, as FarmConfig and the
    trainer take it; a UserInputError (naming the risk) where they may not have it.

    The local backend is refused here, before anything starts, unless acknowledged (the flag or
    ENVFARM_ALLOW_UNISOLATED=1): it runs the policy's commands on this machine unconfined. The
    acknowledgement travels in the config (`allow_unisolated=True`), so Ray hosts, whose
    environment may lack the variable, accept it.
    """
    if oci_runtime:
        if name != "docker":
            raise UserInputError(f"--oci-runtime applies to --backend docker only (not {name})")
        return DockerBackendConfig(runtime=oci_runtime)
    if name != "local":
        if allow_unisolated:
            raise UserInputError(f"--allow-unisolated applies to --backend local only (not {name})")
        return name
    from envfarm.sandbox.local_backend import refusal_reason

    reason = refusal_reason(LocalBackendConfig(allow_unisolated=allow_unisolated))
    if reason:
        raise UserInputError(f"--backend local refused: {reason}")
    return LocalBackendConfig(allow_unisolated=True)


def default_sandbox_factory(run: str = "adhoc") -> SandboxFactory:
    """The default SandboxFactory: Docker sandboxes labelled with `run` and this process as owner."""
    return make_backend(DockerBackendConfig()).factory(run=run)
