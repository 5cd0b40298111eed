"""What the training unit tests share: an event loop on its own thread (the farm's episodes run
on one, the trainer's thread takes from it). `fakes.FakePolicy` is the policy they play with."""

from __future__ import annotations

import pytest

from envfarm.env.loop_thread import LoopThread


@pytest.fixture
def loop():
    thread = LoopThread("test-train-episodes")
    yield thread
    thread.stop()

