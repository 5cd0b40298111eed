"""Tasks: the SWE-bench row schema, loaders, the builtin suite, grading.

The common entry points are importable from here (lazily, so importing a submodule stays cheap):
`load(spec)`, `split_by_project(tasks)`, `ensure_task_images(tasks)`, `Task`.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Task": "envfarm.tasks.schema",
    "TaskError": "envfarm.tasks.schema",
    "load": "envfarm.tasks.loading",
    "select": "envfarm.tasks.loading",
    "split_by_project": "envfarm.tasks.loading",
    "ensure_task_images": "envfarm.tasks.images_needed",
    "missing_images": "envfarm.tasks.images_needed",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'envfarm.tasks' has no attribute {name!r}")


__all__ = list(_EXPORTS)
