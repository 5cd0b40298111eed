"""Shared fixtures. Docker tests run against a real engine: a missing engine is a failure, not a skip.

The folders say what a test needs: tests/unit nothing (no engine, no Ray), tests/docker a Docker
engine and the images, tests/cluster Ray (a local instance or a `ray.cluster_utils.Cluster`),
often Docker as well. Tests under tests/docker are marked `docker` here, so `-m "not docker"`
still selects what runs without an engine.
"""

from __future__ import annotations

import pytest

from envfarm.sandbox.docker_backend import LABEL_OWNER, default_owner, list_containers


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if "/tests/docker/" in str(item.path):
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def docker_engine():
    """The shared Docker client; fails with the fix when no engine answers."""
    from envfarm.sandbox.docker_backend import docker_client

    return docker_client()


@pytest.fixture(scope="session")
def inflection_image(docker_engine) -> str:
    from envfarm.sandbox.images import build_repo, load_projects

    return build_repo(load_projects()["inflection"])


@pytest.fixture(scope="session")
def fixture_tasks(inflection_image):
    from envfarm.tasks.loading import BUILTIN_DIR, load_jsonl

    return load_jsonl(BUILTIN_DIR / "fixtures.jsonl")


@pytest.fixture(scope="session", autouse=True)
def no_leaked_containers(request):
    """After the whole session, no container started by this test process may remain."""
    yield
    if not any(item.get_closest_marker("docker") for item in request.session.items):
        return
    left = list_containers(**{LABEL_OWNER: default_owner()})
    names = [c.name for c in left]
    for c in left:
        c.remove(force=True)
    assert not names, f"containers leaked by the tests: {names}"
