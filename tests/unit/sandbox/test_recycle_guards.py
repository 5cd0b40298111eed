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


def test_a_view_left_mounted_by_a_killed_reset_is_swept_when_old(tmp_path):
    """A host killed in the middle of a reset leaves its image view mounted: the next reset on
    the node unmounts it once it is older than any reset can be, never a younger one."""
    import subprocess
    import tempfile
    import time

    from envfarm.sandbox import layer_reset

    if os.geteuid() != 0:
        pytest.skip("mounting needs root (CI runs as root)")
    now = time.time()
    old = os.path.join(tempfile.gettempdir(), f"{layer_reset.VIEW_PREFIX}{now - 3600:.0f}-test")
    young = os.path.join(tempfile.gettempdir(), f"{layer_reset.VIEW_PREFIX}{now - 5:.0f}-test")
    for point in (old, young):
        os.makedirs(point, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", point], check=True)
    try:
        layer_reset._last_sweep = 0.0
        assert layer_reset.sweep_stale_views(now) == 1
        mounted = open("/proc/self/mountinfo").read()
        assert old not in mounted and not os.path.exists(old)
        assert young in mounted
    finally:
        subprocess.run(["umount", "-l", young], check=False)
        os.rmdir(young)
