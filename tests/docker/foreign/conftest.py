"""Foreign-style task images (see foreign_rows.py), built once per test session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from foreign_rows import build_foreign_rows

from envfarm.tasks.loading import load_jsonl


@pytest.fixture(scope="session")
def foreign_rows_file(inflection_image, tmp_path_factory) -> Path:
    rows = build_foreign_rows(tmp_path_factory.mktemp("foreign-images"))
    path = tmp_path_factory.mktemp("foreign-rows") / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def foreign_tasks(foreign_rows_file):
    return {t.instance_id.rsplit("-", 1)[1]: t for t in load_jsonl(foreign_rows_file)}
