"""Re-implementation tasks: a tested function's body removed, its signature and docstring kept.

The body (every statement after the docstring) becomes `raise NotImplementedError`; the agent
writes the function again from its name, signature, docstring and the tests' expectations. The
removed lines are the bug patch's removed lines, so the statement checks (`leaked_lines`) keep
every one of them out of the statement.
"""

from __future__ import annotations

import ast
import hashlib
import random

from envfarm.suitegen.edits import Edit, Source
from envfarm.suitegen.generate import Mutant, first_line, functions

KIND = "reimplement"
MIN_LINES, MAX_LINES = 3, 40  # a body worth writing, small enough to write in an episode


def _docstring(func: ast.FunctionDef | ast.AsyncFunctionDef) -> str | None:
    return ast.get_docstring(func)


def _body(func: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.stmt]:
    body = list(func.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and \
            isinstance(body[0].value.value, str):
        body = body[1:]
    return body


def _already_abstract(body: list[ast.stmt]) -> bool:
    if len(body) != 1:
        return False
    stmt = body[0]
    return isinstance(stmt, (ast.Pass, ast.Raise)) or (
        isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant))


def removal(src: Source, func: ast.FunctionDef | ast.AsyncFunctionDef) -> Edit | None:
    """The edit that replaces the body after the docstring, or None when the function does not
    qualify (one-liner, too short or long, dunder method, already abstract)."""
    name = func.name
    if name.startswith("__") and name.endswith("__"):
        return None
    body = _body(func)
    if not body or _already_abstract(body) or body[0].lineno == func.lineno:
        return None
    first, last = body[0].lineno, body[-1].end_lineno or body[-1].lineno
    if not MIN_LINES <= last - first + 1 <= MAX_LINES or not src.owns_lines(body[0]):
        return None
    start, end = src.line_span(first, last)
    indent = src.segment(start, src.start(body[0]))
    if indent.strip():
        return None
    return Edit(start, end, f"{indent}raise NotImplementedError\n")


def removals_of_file(project: str, path: str, text: str, covered: set[int] | None = None) -> list[Mutant]:
    """One re-implementation candidate per qualifying function the tests execute."""
    src = Source(text)
    out = []
    for qualname, func in functions(ast.parse(text)):
        if covered is not None and first_line(func) not in covered:
            continue
        edit = removal(src, func)
        if edit is None:
            continue
        digest = hashlib.sha256(f"{project}\0{path}\0{qualname}\0{KIND}".encode()).hexdigest()[:10]
        out.append(Mutant(f"{project}__reimpl-{digest}", project, path, qualname, KIND, func.lineno, (edit,), src,
                          generator="envfarm.suitegen.reimplement"))
    return out


def order_removals(mutants: list[Mutant], seed: int, has_doc: set[str]) -> list[Mutant]:
    """Seeded order, functions with a docstring first (their statement has more to say)."""
    items = sorted(mutants, key=lambda m: m.instance_id)
    random.Random(f"{seed}:{KIND}").shuffle(items)
    return sorted(items, key=lambda m: m.instance_id not in has_doc)


def documented(mutants: list[Mutant]) -> set[str]:
    """Ids of the candidates whose function has a docstring."""
    out = set()
    for m in mutants:
        tree = ast.parse(m.original.text)
        for qualname, func in functions(tree):
            if qualname == m.function and func.lineno == m.lineno and _docstring(func):
                out.add(m.instance_id)
    return out
