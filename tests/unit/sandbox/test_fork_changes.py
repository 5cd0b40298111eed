"""Reading a fork's changes from an overlay upper directory: names only, links never followed."""

from __future__ import annotations

import os
import stat

import pytest

from envfarm.sandbox.base import SandboxError
from envfarm.sandbox.docker_fork import Changes, restore_script, upper_changes


def test_changes_are_listed_parents_first_and_links_are_not_walked(tmp_path):
    upper = tmp_path / "upper"
    (upper / "testbed" / "sub").mkdir(parents=True)
    (upper / "testbed" / "a.txt").write_text("a")
    (upper / "testbed" / "sub" / "b.txt").write_text("b")
    (upper / "testbed" / "escape").symlink_to("/")  # a folder swapped for a link to the host's root
    (upper / "tmp").mkdir()
    whiteout = os.geteuid() == 0  # a whiteout is a character device 0/0: only root can make one here
    if whiteout:
        os.mknod(upper / "testbed" / "gone.py", stat.S_IFCHR | 0o600, os.makedev(0, 0))
    changes = upper_changes(str(upper))
    assert changes is not None
    assert changes.copy == ["/testbed", "/testbed/a.txt", "/testbed/escape", "/testbed/sub", "/testbed/sub/b.txt",
                            "/tmp"]
    assert changes.delete == (["/testbed/gone.py"] if whiteout else [])


def test_an_upper_directory_that_cannot_be_read_gives_none(tmp_path):
    assert upper_changes(str(tmp_path / "missing")) is None
    (tmp_path / "link").symlink_to(tmp_path)
    assert upper_changes(str(tmp_path / "link")) is None  # not even the top is taken through a link


def test_changes_past_the_bounds_raise_sandbox_error(tmp_path):
    """Too many paths, or one too long: no fork (the agent decides both; this process holds them)."""
    (tmp_path / "many").mkdir()
    for i in range(5):
        (tmp_path / "many" / str(i)).write_text("")
    with pytest.raises(SandboxError, match="more than 3 changed paths"):
        upper_changes(str(tmp_path / "many"), limit=3)
    deep = tmp_path / "deep"
    os.makedirs(deep)
    fd = os.open(deep, os.O_RDONLY)
    try:  # a chain longer than PATH_MAX, made relative to each folder as an agent would
        for _ in range(20):
            os.mkdir("d" * 250, dir_fd=fd)
            sub = os.open("d" * 250, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = sub
    finally:
        os.close(fd)
    with pytest.raises(SandboxError, match="longer than"):
        upper_changes(str(deep))
    changes = Changes()
    with pytest.raises(SandboxError, match="MiB"):
        for i in range(20_000):
            changes.add("/" + "x" * 4000 + str(i))


def test_the_restore_script_keeps_the_childs_own_variables():
    script = restore_script('declare -x FOO="bar"\ndeclare -x HOSTNAME="parent"', "0027", "/testbed/it's")
    assert script.index("__ef_keep_HOSTNAME=${HOSTNAME-}") < script.index('declare -x HOSTNAME="parent"') \
        < script.index('export HOSTNAME="$__ef_keep_HOSTNAME"')
    assert script.endswith("builtin umask 0027\nbuiltin cd -- '/testbed/it'\\''s' 2>/dev/null || true")


def test_a_umask_that_is_not_octal_digits_never_reaches_the_childs_shell():
    """The parent's shell prints its own umask, and a function named `builtin` there can make it
    print anything: only octal digits are pasted, else the default."""
    script = restore_script("", "0002; touch /tmp/owned", "/testbed")
    assert "touch" not in script and "builtin umask 0022\n" in script
