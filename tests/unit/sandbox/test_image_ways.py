"""How an image reaches an engine, without an engine: the order of the ways, and one fetch per
image and engine however many ask at once (the engine's side is mocked; the lock is real)."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from envfarm.errors import ImageMissingError
from envfarm.sandbox import image_supply


@pytest.fixture
def engine(monkeypatch):
    """A fake engine: the images it holds; loads and pulls add to them."""
    held: set[str] = set()
    monkeypatch.setattr(image_supply, "image_exists", lambda tag: tag in held)
    eid = f"test-engine-{uuid.uuid4().hex}"
    monkeypatch.setattr(image_supply, "engine_id", lambda: eid)
    monkeypatch.setattr(image_supply, "_projects_by_image", lambda: {})
    monkeypatch.setattr(image_supply, "pull_image", lambda ref, tag_as=None, timeout=None: "connection refused")

    def load(data):
        body = b"".join(data) if not isinstance(data, bytes) else data
        held.add(body.decode())

    monkeypatch.setattr(image_supply, "load_image", load)
    return held


def test_concurrent_requests_on_one_engine_wait_for_one_fetch(engine):
    calls = []
    lock = threading.Lock()

    def peer(image):
        with lock:
            calls.append(image)
        time.sleep(0.3)  # a transfer under way: the other callers must wait, not fetch again
        yield image.encode()

    with ThreadPoolExecutor(4) as pool:
        hows = list(pool.map(lambda _: image_supply.ensure_image("img:1", peers=[peer]), range(4)))
    assert calls == ["img:1"]
    assert sorted(hows) == ["peer", "present", "present", "present"]


def test_a_dead_peer_is_passed_over_for_the_next(engine):
    def dead(image):
        raise RuntimeError("actor died")
        yield b""  # pragma: no cover

    def alive(image):
        yield image.encode()

    assert image_supply.ensure_image("img:2", peers=[dead, alive]) == "peer"


def test_the_registry_comes_before_peers(engine, monkeypatch):
    pulled = []

    def pull(ref, tag_as=None, timeout=None):
        pulled.append(ref)
        engine.add(tag_as)
        return None

    monkeypatch.setattr(image_supply, "pull_image", pull)
    monkeypatch.setattr(image_supply, "_untag", lambda ref: None)
    used = []
    assert image_supply.ensure_image("img:3", registry="127.0.0.1:5000/", peers=[used.append]) == "pulled"
    assert pulled == ["127.0.0.1:5000/img:3"] and used == []


def test_no_way_left_names_every_way_tried(engine):
    def empty(image):
        return iter([b"something-else:1"])

    with pytest.raises(ImageMissingError) as err:
        image_supply.ensure_image("img:4", registry="127.0.0.1:5000", peers=[empty])
    msg = str(err.value)
    assert "pull 127.0.0.1:5000/img:4: connection refused" in msg
    assert "peer 0: its stream did not hold img:4" in msg and "--registry" in msg
