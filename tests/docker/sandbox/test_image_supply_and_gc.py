"""Images on a node (present, shipped as a tarball, or a clear error) and garbage collection."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from envfarm.sandbox.base import ImageMissingError, SandboxSpec
from envfarm.sandbox.docker_backend import LABEL_RUN, DockerSandbox, list_containers
from envfarm.sandbox.image_supply import ensure_image, export_image, image_exists

pytestmark = pytest.mark.docker


def test_present_image_is_used_as_is(inflection_image):
    assert ensure_image(inflection_image) == "present"


def test_image_shipped_as_a_tarball_is_loaded(inflection_image):
    tag = "envfarm/test-shipped:1"
    subprocess.run(["docker", "tag", inflection_image, tag], check=True)
    data = export_image(tag)
    subprocess.run(["docker", "rmi", tag], check=True, capture_output=True)
    assert not image_exists(tag)
    try:
        assert ensure_image(tag, tarball=data) == "loaded"
        assert image_exists(tag)
    finally:
        subprocess.run(["docker", "rmi", tag], capture_output=True)


def test_missing_image_error_names_it_and_every_way_tried(docker_engine):
    with pytest.raises(ImageMissingError) as err:
        ensure_image("envfarm/never-built:0", registry="127.0.0.1:9")
    msg = str(err.value)
    assert "envfarm/never-built:0" in msg and "pull" in msg and "docker load" in msg and "build" in msg


def test_gc_removes_a_runs_containers_and_only_those(inflection_image):
    async def make(run: str) -> DockerSandbox:
        return await DockerSandbox.create(SandboxSpec(image=inflection_image), run=run)

    async def main():
        return [await make("gc-doomed"), await make("gc-doomed"), await make("gc-kept")]

    doomed_a, doomed_b, kept = asyncio.run(main())
    try:
        proc = subprocess.run([sys.executable, "-m", "envfarm.gc", "--run", "gc-doomed"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and "removed 2 container(s)" in proc.stdout
        assert not list_containers(**{LABEL_RUN: "gc-doomed"})
        assert len(list_containers(**{LABEL_RUN: "gc-kept"})) == 1
    finally:
        asyncio.run(kept.close())
