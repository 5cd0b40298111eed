"""A test module with the helper modules of its own test tree written into it.

Test suites keep shared state in modules beside the tests (`from .base import DRYTest`,
`from . import CacheTestMixin`, `from pyflakes.test.harness import TestCase`). A user reporting the
bug has no such modules, so a snippet may not import them; but once their code is written into
the test module, at the place of the import, the snippet builder reads a base class or helper of
theirs as it reads the test module's own (and writes out only what the test uses).

Only modules under the project's test paths are written in (never the code under test), only
when every imported name is defined there, and only when no name would change its meaning. The
conftest files above the test come first, for their fixtures (see `fixtures`).
"""

from __future__ import annotations

import ast
import posixpath
from collections.abc import Awaitable, Callable

Reader = Callable[[str], Awaitable[str | None]]  # a path under /testbed -> its text, or None
MAX_DEPTH = 3


def _bindings(body: list[ast.stmt]) -> dict[str, str]:
    """Top-level names a module body binds, each with what it is bound to: an import's source for
    imports (the same import twice binds the same object), a unique mark for anything else."""
    out: dict[str, str] = {}
    for node in body:
        if isinstance(node, ast.Import):
            for a in node.names:
                out[a.asname or a.name.split(".")[0]] = f"import {a.name}" + (f" as {a.asname}" if a.asname else "")
        elif isinstance(node, ast.ImportFrom):
            for a in node.names:
                out[a.asname or a.name] = f"from {'.' * node.level}{node.module or ''} import {a.name}"
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out[node.name] = f"def@{id(node)}"
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        out[n.id] = f"def@{id(node)}"
    return out


def _candidates(path: str, node: ast.ImportFrom) -> list[str]:
    """Files the import may name, relative to /testbed."""
    here = posixpath.dirname(path)
    parts = (node.module or "").split(".") if node.module else []
    if node.level:
        base = here
        for _ in range(node.level - 1):
            base = posixpath.dirname(base)
        bases = [base]
    else:
        bases = ["", here]  # the repository root, or the test's own folder on sys.path
    out = []
    for base in bases:
        stem = posixpath.join(base, *parts) if parts else base
        if parts:
            out.append(posixpath.normpath(stem + ".py"))
        out.append(posixpath.normpath(posixpath.join(stem, "__init__.py")))
    return out


def _under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _own_statements(body: list[ast.stmt]) -> list[ast.stmt]:
    """A helper module's statements worth writing in: no docstring, no `__all__`, no main block."""
    out = []
    for i, node in enumerate(body):
        if i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        if isinstance(node, ast.If) and "__name__" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            continue
        out.append(node)
    return out


def absolute(path: str, node: ast.ImportFrom, packages: tuple[str, ...]) -> ast.ImportFrom | None:
    """`from .._events import X` in `h11/tests/test_io.py` as a user writes it, `from h11._events
    import X`: a relative import of the project's own package (its tests live inside it)."""
    if not node.level:
        return None
    parts = posixpath.dirname(path).split("/") if posixpath.dirname(path) else []
    if node.level - 1 > len(parts):
        return None
    parts = parts[: len(parts) - (node.level - 1)] + ((node.module or "").split(".") if node.module else [])
    start = next((i for i, part in enumerate(parts) if part in packages), None)
    if start is None:
        return None
    return ast.ImportFrom(module=".".join(parts[start:]), names=node.names, level=0)


async def merged_source(path: str, source: str, read: Reader, roots: list[str], packages: tuple[str, ...] = ()) -> str:
    """`source` (the test module at `path`) with each import from a helper module under `roots`
    replaced by that module's code, and relative imports of the project's `packages` made
    absolute; the source unchanged where nothing can be written in."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    body = await _merged(path, tree.body, read, roots, packages, 0)
    return source if body is tree.body else ast.unparse(ast.Module(body, [])) + "\n"


async def _merged(path: str, body: list[ast.stmt], read: Reader, roots: list[str], packages: tuple[str, ...],
                  depth: int) -> list[ast.stmt]:
    """`body` with helper modules written in (the same list object when nothing changed)."""
    if depth >= MAX_DEPTH:
        return body
    plain = [(absolute(path, n, packages) if isinstance(n, ast.ImportFrom) else None) or n for n in body]
    changed = any(a is not b for a, b in zip(plain, body, strict=True))
    out: list[ast.stmt] = []
    for node in plain:
        merged = await _written_in(path, node, plain, read, roots, packages, depth) \
            if isinstance(node, ast.ImportFrom) else None
        out.extend(merged if merged is not None else [node])
        changed = changed or merged is not None
    if depth == 0:  # pytest's conftest files above the test: their fixtures, before the module's own
        for conftest in _conftests(path, roots):
            ahead = await _helper(conftest, read, roots, packages, 1)
            if ahead:
                out = [*ahead, *out]  # the module's later definitions win, as its own fixtures do in pytest
                changed = True
    return out if changed else body


async def _helper(path: str, read: Reader, roots: list[str], packages: tuple[str, ...],
                  depth: int) -> list[ast.stmt] | None:
    """A helper module's statements, its own helpers written in; None when it cannot be read."""
    text = await read(path)
    if text is None:
        return None
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    return _own_statements(await _merged(path, tree.body, read, roots, packages, depth))


def _conftests(path: str, roots: list[str]) -> list[str]:
    """The conftest.py files pytest reads for a test at `path` within the test paths, nearest first."""
    out = []
    folder = posixpath.dirname(path)
    while True:
        candidate = posixpath.join(folder, "conftest.py") if folder else "conftest.py"
        if _under(candidate, roots) and candidate != path:
            out.append(candidate)
        if not folder:
            return out
        folder = posixpath.dirname(folder)


async def _written_in(path: str, node: ast.ImportFrom, module_body: list[ast.stmt], read: Reader,
                      roots: list[str], packages: tuple[str, ...], depth: int) -> list[ast.stmt] | None:
    """The helper module's statements that replace this import, or None to keep the import."""
    if any(a.name == "*" for a in node.names):
        return None
    for candidate in _candidates(path, node):
        if not _under(candidate, roots) or candidate == path:
            continue
        helper = await _helper(candidate, read, roots, packages, depth + 1)
        if helper is None:
            continue
        theirs = _bindings(helper)
        if any(a.name not in theirs or (a.asname and a.asname != a.name) for a in node.names):
            return None  # a submodule, a re-export it cannot see, or a renaming: left as it is
        ours = _bindings([n for n in module_body if n is not node])
        clash = [n for n, what in theirs.items() if n in ours and (ours[n] != what or what.startswith("def@"))]
        return None if clash else helper
    return None
