"""Which repository images a build covers: the core ones up front, the others on first use."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from envfarm.sandbox import image_supply, images
from envfarm.sandbox.images import ImageBuildError, load_projects, select_projects

TOML = """
[alpha]
version = "1.0"
license = "MIT"
core = true
test_files = ["tests"]
test_cmd = "python3 -m pytest tests"
sources = ["alpha/core.py"]

[beta]
version = "2.0"
license = "BSD-3-Clause"
test_files = ["tests"]
test_cmd = "python3 -m pytest tests"
sources = ["src/beta/x.py"]
"""


@pytest.fixture
def projects_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "projects.toml").write_text(TOML)
    monkeypatch.setenv("ENVFARM_IMAGES_DIR", str(tmp_path))
    return tmp_path


def test_core_flag_is_read_and_defaults_to_lazy(projects_dir: Path):
    projects = load_projects()
    assert projects["alpha"].core and not projects["beta"].core
    assert projects["beta"].packages == ("beta",)


def test_selection_core_all_and_named(projects_dir: Path):
    projects = load_projects()
    assert select_projects(projects) == ["alpha"]
    assert select_projects(projects, everything=True) == ["alpha", "beta"]
    assert select_projects(projects, ["beta"]) == ["beta"]
    with pytest.raises(ImageBuildError, match=r"unknown project\(s\) \['gamma'\].*alpha"):
        select_projects(projects, ["gamma"])


def test_build_all_builds_what_was_selected(projects_dir: Path, monkeypatch: pytest.MonkeyPatch):
    built: list[str] = []
    monkeypatch.setattr(images, "build_base", lambda force=False: "base")
    monkeypatch.setattr(images, "build_repo", lambda p, force=False: built.append(p.name) or p.image)
    assert images.build_all() == ["base", "envfarm/repo-alpha:1.0"]
    assert images.build_all(everything=True)[1:] == ["envfarm/repo-alpha:1.0", "envfarm/repo-beta:2.0"]
    assert built == ["alpha", "alpha", "beta"]
    with pytest.raises(ImageBuildError):  # a bad name fails before anything is built
        images.build_all(["nope"])
    assert built == ["alpha", "alpha", "beta"]


def test_cli_refuses_names_with_all(projects_dir: Path, capsys: pytest.CaptureFixture):
    with pytest.raises(SystemExit):
        images.main(["build", "alpha", "--all"])
    assert "not both" in capsys.readouterr().err
    assert images.main(["list"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"alpha .* core .*repo-alpha:1.0", out) and re.search(r"beta .* lazy .*repo-beta:2.0", out)


def test_a_missing_lazy_image_is_built_on_first_use_and_says_so(projects_dir: Path, monkeypatch, capsys):
    built: list[str] = []
    monkeypatch.setattr(image_supply, "image_exists", lambda tag: tag in built)
    monkeypatch.setattr(images, "build_repo", lambda p, force=False: built.append(p.image) or p.image)
    assert image_supply.ensure_image("envfarm/repo-beta:2.0") == "built"
    err = capsys.readouterr().err
    assert "envfarm/repo-beta:2.0 is not on this machine: building it" in err and "beta==2.0" in err
    assert re.search(r"envfarm/repo-beta:2.0 built in \d+ s", err)
    assert image_supply.ensure_image("envfarm/repo-beta:2.0") == "present"
    assert image_supply.ensure_images(["envfarm/repo-alpha:1.0", "envfarm/repo-beta:2.0"]) == \
        ["envfarm/repo-alpha:1.0"]
    assert built == ["envfarm/repo-beta:2.0", "envfarm/repo-alpha:1.0"]


def test_shipped_project_list():
    """Every project records what the suite promises (version, SPDX-like licence, sources); the
    core ones are few, so bootstrap and CI build few images."""
    projects = load_projects()
    text = (images.images_dir() / "projects.toml").read_text()
    assert len(projects) >= 30
    core = select_projects(projects)
    assert 1 <= len(core) <= 12
    for name, p in projects.items():
        assert re.fullmatch(r"\d+(\.\d+)*(\.?(post|rc|a|b)\d+)?", p.version), name
        assert p.license and p.license != "UNKNOWN", name
        assert p.packages, f"{name} has no sources"
        assert f"[{name}]" in text
