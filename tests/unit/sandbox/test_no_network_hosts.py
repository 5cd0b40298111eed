"""The hosts files bound into sandboxes: one new file per sandbox, never a link followed, swept once stale."""

from __future__ import annotations

import os
import time

import pytest

from envfarm.sandbox import no_network


@pytest.fixture
def folder(tmp_path, monkeypatch):
    where = tmp_path / "envfarm" / "hosts"
    monkeypatch.setattr(no_network, "hosts_dir", lambda: where)
    return where


def test_one_new_file_per_sandbox_removed_at_its_close(folder):
    old_umask = os.umask(0o077)  # a farm started with a strict umask: the sandbox's user must still read it
    try:
        a, b = no_network.hosts_file("envfarm-a"), no_network.hosts_file("envfarm-b")
    finally:
        os.umask(old_umask)
    assert a and b and a != b and os.stat(a).st_ino != os.stat(b).st_ino  # no inode two sandboxes share
    assert open(a).read() == no_network.HOSTS and oct(os.stat(a).st_mode & 0o777) == "0o644"
    no_network.remove_hosts_file("envfarm-a")
    assert not os.path.exists(a) and os.path.exists(b)
    no_network.remove_hosts_file("envfarm-a")  # twice is fine
    no_network.remove_hosts_file(None)


def test_anything_already_at_its_path_is_refused_not_followed(folder):
    folder.mkdir(parents=True)
    target = folder.parent / "elsewhere"
    target.write_text("keep me\n")
    (folder / "envfarm-x").symlink_to(target)
    assert no_network.hosts_file("envfarm-x") is None
    assert target.read_text() == "keep me\n"


@pytest.mark.parametrize("which", ["folder", "above"])
def test_a_folder_others_may_write_is_not_used(folder, monkeypatch, which):
    folder.mkdir(parents=True)
    (folder if which == "folder" else folder.parent).chmod(0o777)  # whoever may write there may swap the path
    assert no_network.hosts_file("envfarm-y") is None
    monkeypatch.setattr(no_network, "_disabled_for_process", False)
    assert no_network.create_options("envfarm-y") == {"network_mode": "none"}


def test_stale_files_of_gone_containers_are_swept(folder):
    for name in ("envfarm-gone", "envfarm-live", "envfarm-young"):
        no_network.hosts_file(name)
    old = time.time() - no_network.STALE_AFTER_S - 60
    for name in ("envfarm-gone", "envfarm-live"):
        os.utime(folder / name, (old, old))
    asked = []

    def live() -> set[str]:
        asked.append(1)
        return {"envfarm-live"}

    assert no_network.sweep_stale(live) == 1
    assert sorted(os.listdir(folder)) == ["envfarm-live", "envfarm-young"]
    assert no_network.sweep_stale(live) == 0 and len(asked) == 2
    os.utime(folder / "envfarm-live", None)
    assert no_network.sweep_stale(live) == 0 and len(asked) == 2  # nothing old: the engine is not asked


def test_a_folder_above_anyone_may_rename_is_not_used(tmp_path, monkeypatch):
    shared = tmp_path / "shared"  # like /tmp without its sticky bit
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setattr(no_network, "hosts_dir", lambda: shared / "envfarm-0" / "hosts")
    assert no_network.hosts_file("envfarm-z") is None
    shared.chmod(0o1777)  # sticky: only the owner renames what it owns there
    assert no_network.hosts_file("envfarm-z") is not None


def test_only_a_refusal_of_this_very_file_counts_as_an_engine_that_cannot_bind():
    text = 'invalid mount config for type "bind": bind source path does not exist: /run/envfarm/sandbox-hosts/envfarm-a'
    assert no_network.is_refused_bind(Exception(text), "/run/envfarm/sandbox-hosts/envfarm-a")
    assert not no_network.is_refused_bind(Exception(text), "/run/envfarm/sandbox-hosts/envfarm-b")
    assert not no_network.is_refused_bind(Exception("Conflict. The container name is in use"),
                                          "/run/envfarm/sandbox-hosts/envfarm-a")
