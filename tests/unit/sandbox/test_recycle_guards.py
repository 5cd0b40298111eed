"""The reset acts on a container's processes only once this machine sees them as that
container's: an engine's pid from another namespace may name any process of ours."""

from __future__ import annotations

import os

import pytest

from envfarm.sandbox.docker_recycle import NotRecyclable, PlacesState, container_facts, places_differ


def _info(pid: int, upper: str, container_id: str = "f" * 64) -> dict:
    return {"Id": container_id, "State": {"Pid": pid},
            "GraphDriver": {"Name": "overlay2", "Data": {"UpperDir": upper, "LowerDir": upper}}}


def test_a_pid_outside_the_container_is_never_used(tmp_path):
    # this test's own process: a live pid whose cgroup is not the container's
    with pytest.raises(NotRecyclable, match="not visible from this process"):
        container_facts(_info(os.getpid(), str(tmp_path)))


def test_no_running_container_or_no_overlay_is_not_recyclable(tmp_path):
    with pytest.raises(NotRecyclable, match="does not run"):
        container_facts(_info(0, str(tmp_path)))
    info = _info(os.getpid(), str(tmp_path))
    info["GraphDriver"]["Name"] = "btrfs"
    with pytest.raises(NotRecyclable, match="overlay"):
        container_facts(info)


def test_places_differ_names_what_changed():
    first = PlacesState({"dev/shm": (1,), "etc/hosts": ("aa",)})
    assert places_differ(first, PlacesState(dict(first.entries))) is None
    assert "/etc/hosts" in places_differ(first, PlacesState({"dev/shm": (1,), "etc/hosts": ("bb",)}))
    assert "/dev/shm/x" in places_differ(first, PlacesState({**first.entries, "dev/shm/x": (2,)}))
