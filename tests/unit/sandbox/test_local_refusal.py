"""The local backend is refused unless asked for explicitly and acknowledged (no sandbox made)."""

from __future__ import annotations

import pytest

from envfarm.sandbox.backends import LocalBackendConfig, backend_config, make_backend
from envfarm.sandbox.local_backend import ALLOW_ENV, LocalBackend, UnisolatedBackendRefused
from envfarm.tasks.backend_check import main as check_main


def test_the_local_backend_is_refused_without_the_acknowledgement(monkeypatch):
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    for config in ("local", {"type": "local"}, LocalBackendConfig()):
        with pytest.raises(UnisolatedBackendRefused, match="never for RL on untrusted policies"):
            make_backend(config)
    monkeypatch.setenv(ALLOW_ENV, "yes")  # only "1" acknowledges
    with pytest.raises(UnisolatedBackendRefused, match=ALLOW_ENV):
        make_backend("local")


def test_the_acknowledgement_is_a_flag_or_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    backend = make_backend(LocalBackendConfig(allow_unisolated=True, root=str(tmp_path)))
    assert isinstance(backend, LocalBackend) and backend.dir == tmp_path
    assert (backend.name, backend.simulated, backend.leaves_orphans) == ("local", False, True)
    monkeypatch.setenv(ALLOW_ENV, "1")
    assert isinstance(make_backend("local"), LocalBackend)


def test_the_config_is_typed_and_strict():
    assert backend_config("local") == LocalBackendConfig() == backend_config({"type": "local"})
    assert LocalBackendConfig().allow_unisolated is False
    with pytest.raises(ValueError):
        backend_config({"type": "local", "isolate": True})


def test_the_check_cli_says_why_it_refuses(monkeypatch, capsys):
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    assert check_main(["builtin:inflection", "--backend", "local"]) == 2
    assert "--allow-unisolated" in capsys.readouterr().err
