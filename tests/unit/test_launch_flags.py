"""The launch CLI's training and backend flags: --async-rollouts/--max-staleness reach the trainer
that honours them, and the unisolated local backend is refused (exit 2, one line naming the risk)
unless acknowledged. Nothing here loads a model or starts a sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from envfarm import launch
from envfarm.sandbox.backends import LocalBackendConfig, backend_from_flags, make_backend
from envfarm.sandbox.local_backend import ALLOW_ENV, LocalBackend

TRAIN = ["--train", "--model", "/nonexistent/model"]


@pytest.fixture(autouse=True)
def no_acknowledgement(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_ENV, raising=False)


@pytest.fixture
def no_model_loading(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fails any test that gets past flag validation into loading a model."""
    loaded: list[str] = []

    def refuse(path: str, *a: Any, **k: Any) -> Any:
        loaded.append(path)
        raise AssertionError("flag validation must fail before a model is loaded")

    import transformers

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    return loaded


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert launch.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("envfarm: error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("argv,words", [
    (["--async-rollouts"], ["--async-rollouts", "--train"]),
    (["--max-staleness", "2"], ["--max-staleness", "--train"]),
    ([*TRAIN, "--max-staleness", "2"], ["--max-staleness", "add --async-rollouts"]),
    ([*TRAIN, "--async-rollouts", "--max-staleness", "-1"], ["--max-staleness", "0 or more", "-1"]),
    ([*TRAIN, "--async-rollouts", "--vllm-server", "http://x:8000"], ["--async-rollouts", "--vllm-server"]),
    ([*TRAIN, "--async-rollouts", "--vllm-server", "http://x:8000", "--farm-runner", "ray"], ["--vllm-server"]),
    ([*TRAIN, "--async-rollouts", "--farm-runner", "ray"], ["--farm-runner ray"]),
    ([*TRAIN, "--branch-at", "0"], ["--branch-at", "fraction"]),
    ([*TRAIN, "--branch-at", "2.5"], ["--branch-at", "whole"]),
    ([*TRAIN, "--branch-at", "2", "--async-rollouts"], ["--branch-at", "drop --async-rollouts"]),
    ([*TRAIN, "--branch-at", "0.5", "--demos-per-group", "1"], ["--branch-at", "drop --demos-per-group"]),
    ([*TRAIN, "--branch-at", "2", "--vllm-server", "http://x:8000", "--farm-runner", "ray"],
     ["--branch-at", "drop --farm-runner ray"]),
])
def test_async_flags_that_cannot_hold_are_one_line_errors(capsys, no_model_loading, argv, words):
    err = _error(capsys, argv)
    for word in words:
        assert word in err, err
    assert not no_model_loading


@pytest.mark.parametrize("extra", [[], TRAIN, [*TRAIN, "--async-rollouts"]])
def test_local_backend_without_acknowledgement_exits_2_naming_the_risk(capsys, no_model_loading, extra):
    err = _error(capsys, ["--backend", "local", "--tasks", "/nonexistent/tasks.jsonl", *extra])
    for word in ("--backend local refused", "no container", "no resource limits", "no network cut",
                 "gold patches", "untrusted", "--allow-unisolated", ALLOW_ENV):
        assert word in err, err
    assert not no_model_loading


def test_allow_unisolated_with_another_backend_is_an_error(capsys):
    err = _error(capsys, ["--backend", "docker", "--allow-unisolated"])
    assert "--allow-unisolated applies to --backend local only" in err


def test_the_refusal_from_a_real_process():
    proc = subprocess.run([sys.executable, "-m", "envfarm.launch", "--backend", "local", "--envs", "1"],
                          capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != ALLOW_ENV})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "no container" in proc.stderr and "--allow-unisolated" in proc.stderr


@pytest.mark.parametrize("flag,env", [(True, None), (False, "1")])
def test_acknowledged_local_backend_is_a_config_that_carries_the_acknowledgement(monkeypatch, flag, env):
    if env:
        monkeypatch.setenv(ALLOW_ENV, env)
    args = launch.build_parser().parse_args(["--backend", "local", *(["--allow-unisolated"] if flag else [])])
    cfg = launch.farm_config(args)
    assert cfg.backend == LocalBackendConfig(allow_unisolated=True)
    assert cfg.policy == "scripted"
    # a Ray host without the variable still accepts it: the acknowledgement is in the config
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    assert isinstance(make_backend(cfg.backend_config), LocalBackend)


def test_other_backends_pass_through_by_name():
    assert backend_from_flags("docker") == "docker" and backend_from_flags("sim") == "sim"


def _dispatch(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> dict[str, Any]:
    """Which builder run_training's flags pick, and with what: both builders replaced by recorders."""
    from envfarm.train import async_rollouts, cli, trainer

    called: dict[str, Any] = {}

    def recorder(name: str) -> Any:
        def build(*args: Any, **kwargs: Any) -> str:
            called.update(builder=name, **kwargs)
            return name
        return build

    monkeypatch.setattr(async_rollouts, "build_async_training", recorder("async"))
    monkeypatch.setattr(trainer, "build_training", recorder("sync"))
    args = launch.build_parser().parse_args(["--train", "--model", "m", *argv])
    backend = cli._check(args)
    assert cli.build_run(args, None, None, [], cli.train_config(args), None, backend) == called["builder"]
    return called


def test_default_training_stays_synchronous(monkeypatch):
    called = _dispatch(monkeypatch, [])
    assert called["builder"] == "sync" and called["backend"] == "docker" and called["runner"] == "local"


@pytest.mark.parametrize("argv,staleness", [([], 1), (["--max-staleness", "0"], 0), (["--max-staleness", "3"], 3)])
def test_async_rollouts_reach_the_async_builder_with_the_bound(monkeypatch, argv, staleness):
    called = _dispatch(monkeypatch, ["--async-rollouts", *argv])
    assert called["builder"] == "async" and called["max_staleness"] == staleness and called["backend"] == "docker"


def test_training_on_the_acknowledged_local_backend(monkeypatch):
    called = _dispatch(monkeypatch, ["--async-rollouts", "--backend", "local", "--allow-unisolated"])
    assert called["backend"] == LocalBackendConfig(allow_unisolated=True)
    called = _dispatch(monkeypatch, ["--backend", "local", "--allow-unisolated"])
    assert called["builder"] == "sync" and called["backend"] == LocalBackendConfig(allow_unisolated=True)


def test_registry_and_prefetch_flags_reach_the_farm_config():
    args = launch.build_parser().parse_args(["--registry", "127.0.0.1:5000/", "--prefetch-images"])
    cfg = launch.farm_config(args)
    assert cfg.registry == "127.0.0.1:5000" and cfg.prefetch_images
    assert launch.farm_config(launch.build_parser().parse_args([])).prefetch_images is False


@pytest.mark.parametrize("bad", ["http://127.0.0.1:5000", "host:port", "a b:5000"])
def test_a_registry_given_as_a_url_is_refused_with_the_form_to_use(bad):
    with pytest.raises(launch.UserInputError, match="HOST:PORT"):
        launch.farm_config(launch.build_parser().parse_args(["--registry", bad]))


def test_oci_runtime_reaches_the_docker_backend_and_nothing_else():
    from envfarm.errors import UserInputError
    from envfarm.sandbox.backends import DockerBackendConfig

    assert backend_from_flags("docker", oci_runtime="crun") == DockerBackendConfig(runtime="crun")
    assert backend_from_flags("docker") == "docker"
    with pytest.raises(UserInputError, match="--oci-runtime applies to --backend docker only"):
        backend_from_flags("sim", oci_runtime="crun")


def test_oci_runtime_with_another_backend_exits_2_before_anything_starts():
    proc = subprocess.run([sys.executable, "-m", "envfarm.launch", "--backend", "sim", "--oci-runtime", "crun",
                           "--envs", "1", "--episodes", "1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "--oci-runtime applies to --backend docker only" in proc.stderr
