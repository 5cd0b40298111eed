"""Unit tests: no Docker engine, no Ray. `fakes` (beside this file) holds the in-memory sandbox."""

from __future__ import annotations

import pytest
from fakes import FakeFactory


@pytest.fixture
def fake_factory() -> FakeFactory:
    return FakeFactory()
