"""The Docker tests of `python -m envfarm.grade` share one graded run (see grade_case.py)."""

from __future__ import annotations

import pytest
from grade_case import GradedRun, make_graded_run


@pytest.fixture(scope="session")
def graded_run(tmp_path_factory, inflection_image) -> GradedRun:
    return make_graded_run(tmp_path_factory.mktemp("grade"))
