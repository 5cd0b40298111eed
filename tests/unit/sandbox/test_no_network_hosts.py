"""The fixed hosts file bound into sandboxes: rewritten when anything else stands at its path."""

from __future__ import annotations

import os

from envfarm.sandbox import no_network


def test_written_once_and_rewritten_when_changed(tmp_path, monkeypatch):
    monkeypatch.setattr(no_network, "hosts_dir", lambda: tmp_path / "envfarm")
    path = no_network.hosts_file()
    assert path is not None and open(path).read() == no_network.HOSTS
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    inode = os.stat(path).st_ino
    assert no_network.hosts_file() == path and os.stat(path).st_ino == inode  # left alone when right
    with open(path, "a") as fh:
        fh.write("6.6.6.6 pypi.org\n")
    assert no_network.hosts_file() == path and open(path).read() == no_network.HOSTS


def test_a_link_at_its_path_is_replaced_not_followed(tmp_path, monkeypatch):
    folder = tmp_path / "envfarm"
    folder.mkdir()
    target = tmp_path / "elsewhere"
    target.write_text("keep me\n")
    (folder / "hosts").symlink_to(target)
    monkeypatch.setattr(no_network, "hosts_dir", lambda: folder)
    path = no_network.hosts_file()
    assert open(path).read() == no_network.HOSTS and not os.path.islink(path)
    assert target.read_text() == "keep me\n"


def test_a_folder_others_may_write_is_not_used(tmp_path, monkeypatch):
    folder = tmp_path / "envfarm"
    folder.mkdir()
    folder.chmod(0o777)
    monkeypatch.setattr(no_network, "hosts_dir", lambda: folder)
    assert no_network.hosts_file() is None
    monkeypatch.setattr(no_network, "_disabled_for_process", False)
    assert no_network.create_options() == {"network_mode": "none"}
