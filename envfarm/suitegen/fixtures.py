"""A test's pytest fixtures as the plain assignments a user would write (`val = Validator()`).

Only a fixture that is one `return` of an expression, taking only other such fixtures, is written
out; a fixture that yields, is parametrized, reads `request` or `__file__` (the snippet runs from
elsewhere) or is not found in the module (or the conftest files written into it) leaves the test
without a snippet.
"""

from __future__ import annotations

import ast

UNWRITABLE_NAMES = {"request", "__file__"}


def _is_fixture_decorator(dec: ast.expr) -> bool:
    call = dec if isinstance(dec, ast.Call) else None
    target = call.func if call else dec
    name = target.attr if isinstance(target, ast.Attribute) else target.id if isinstance(target, ast.Name) else ""
    if name != "fixture":
        return False
    return call is None or all(kw.arg in ("scope", "autouse") for kw in call.keywords) and not call.args


def _plain_fixture(node: ast.stmt | None) -> ast.FunctionDef | None:
    """The fixture function, when it is one `return EXPR` (a docstring aside)."""
    if not isinstance(node, ast.FunctionDef) or len(node.decorator_list) != 1 \
            or not _is_fixture_decorator(node.decorator_list[0]):
        return None
    if node.args.vararg or node.args.kwarg or node.args.kwonlyargs or node.args.posonlyargs:
        return None
    body = [s for s in node.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    if len(body) != 1 or not isinstance(body[0], ast.Return) or body[0].value is None:
        return None
    if any(isinstance(n, ast.Name) and n.id in UNWRITABLE_NAMES for n in ast.walk(body[0])):
        return None
    return node


def fixture_assignments(names: list[str], defs: dict[str, ast.stmt]) -> list[ast.stmt] | None:
    """`name = EXPR` for each fixture in `names` and the fixtures they take, dependencies first;
    None when any of them cannot be written out."""
    out: list[ast.stmt] = []
    done: set[str] = set()

    def add(name: str, chain: tuple[str, ...]) -> bool:
        if name in done:
            return True
        func = _plain_fixture(defs.get(name))
        if func is None or name in chain:
            return False
        if not all(add(a.arg, (*chain, name)) for a in func.args.args):
            return False
        value = func.body[-1].value  # type: ignore[attr-defined]
        out.append(ast.Assign(targets=[ast.Name(name, ast.Store())], value=value, lineno=func.lineno))
        done.add(name)
        return True

    return out if all(add(n, ()) for n in names) else None
