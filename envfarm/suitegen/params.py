"""Parametrized tests: the arguments one pytest node id ran with, as source expressions.

A failing `test_parse[6-+0019850412-expected1-_1]` is one row of a `@pytest.mark.parametrize`
table. A user reporting the bug writes that row's values into the call, so the snippet builder
(`repro`) needs the row: it is found by rebuilding pytest's id of every row from the literal
table (strings and numbers by value, anything else as the argument's name and the row's index)
and matching the node id (or from a literal `ids=` list). Tables that are not literal, computed
ids, stacked or indirect parametrization give None: no snippet rather than a wrong one.
"""

from __future__ import annotations

import ast
import copy
import re

_SIMPLE = (str, int, float, bool, complex, type(None))


def _is_parametrize(dec: ast.expr) -> bool:
    return isinstance(dec, ast.Call) and isinstance(dec.func, ast.Attribute) and dec.func.attr == "parametrize"


def _argnames(node: ast.expr) -> list[str] | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [n.strip() for n in node.value.split(",") if n.strip()]
    if isinstance(node, (ast.Tuple, ast.List)) and all(isinstance(e, ast.Constant) and isinstance(e.value, str)
                                                       for e in node.elts):
        return [e.value for e in node.elts]  # type: ignore[attr-defined]
    return None


def _table(node: ast.expr, defs: dict[str, ast.stmt]) -> tuple[list[ast.expr], bool] | None:
    """The table's rows, and whether their order is the source's (a set's is not)."""
    if isinstance(node, ast.Name):
        bound = defs.get(node.id)
        if not isinstance(bound, ast.Assign) or len(bound.targets) != 1:
            return None
        node = bound.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return list(node.elts), True
    if isinstance(node, ast.Set):
        return list(node.elts), False
    return None


def _literal(node: ast.expr) -> object:
    """The value of a constant (a negative number included), or a marker for anything else."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant) \
            and isinstance(node.operand.value, (int, float, complex)) and not isinstance(node.operand.value, bool):
        return -node.operand.value
    return _table


def _id_pattern(value: ast.expr, argname: str, index: int, ordered: bool) -> str:
    """A regex for pytest's id of one argument value (`_idval`)."""
    lit = _literal(value)
    if lit is not _table and isinstance(lit, _SIMPLE):
        text = lit.encode("unicode_escape").decode("ascii") if isinstance(lit, str) else str(lit)
        return re.escape(text)
    if isinstance(value, (ast.Name, ast.Attribute)):
        return ".+?"  # a constant of another module: its value, or the name and index
    return re.escape(f"{argname}{index}") if ordered else re.escape(argname) + r"\d+"


def _rows(values: list[ast.expr], names: list[str]) -> list[tuple[list[ast.expr], str | None]] | None:
    rows = []
    for row in values:
        explicit = None
        if isinstance(row, ast.Call) and isinstance(row.func, ast.Attribute) and row.func.attr == "param":
            for kw in row.keywords:
                if kw.arg == "id":
                    if not (isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str)):
                        return None
                    explicit = kw.value.value
            args = list(row.args)
        elif len(names) == 1:
            args = [row]
        elif isinstance(row, (ast.Tuple, ast.List)):
            args = list(row.elts)
        else:
            return None
        if len(args) != len(names) or any(isinstance(a, ast.Starred) for a in args):
            return None
        rows.append((args, explicit))
    return rows


def case_arguments(func: ast.FunctionDef, case_id: str, defs: dict[str, ast.stmt]) -> dict[str, ast.expr] | None:
    """Each parameter's expression in the table row whose pytest id is `case_id` (the text in
    the node id's brackets), or None when that row cannot be told for sure."""
    if len(func.decorator_list) != 1 or not _is_parametrize(func.decorator_list[0]):
        return None
    dec = func.decorator_list[0]
    assert isinstance(dec, ast.Call)
    if len(dec.args) != 2 or any(kw.arg in ("indirect", "argnames", "argvalues") for kw in dec.keywords):
        return None
    names = _argnames(dec.args[0])
    table = _table(dec.args[1], defs)
    if not names or table is None:
        return None
    values, ordered = table
    rows = _rows(values, names)
    if rows is None:
        return None
    ids = next((kw.value for kw in dec.keywords if kw.arg == "ids"), None)
    if ids is not None:  # a literal list of ids, one per row, names the rows
        if not (ordered and isinstance(ids, (ast.List, ast.Tuple)) and len(ids.elts) == len(rows)
                and all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in ids.elts)):
            return None
        rows = [(args, explicit if explicit is not None else e.value)  # type: ignore[attr-defined]
                for (args, explicit), e in zip(rows, ids.elts, strict=True)]
    found = []
    for index, (args, explicit) in enumerate(rows):
        if explicit is not None:
            pattern = re.escape(explicit)
        else:
            pattern = "-".join(_id_pattern(a, n, index, ordered) for a, n in zip(args, names, strict=True))
        if re.fullmatch(rf"{pattern}(_?\d+)?", case_id):  # pytest numbers rows whose ids collide
            found.append(args)
    shown = {tuple(ast.unparse(a) for a in args) for args in found}
    if len(shown) != 1:
        return None
    return {n: copy.deepcopy(a) for n, a in zip(names, found[0], strict=True)}


class _Substitute(ast.NodeTransformer):
    """The parameters' names replaced by their row's expressions; a rebinding makes it unusable."""

    def __init__(self, values: dict[str, ast.expr]) -> None:
        self.values = values
        self.unusable = False

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in self.values:
            if not isinstance(node.ctx, ast.Load):
                self.unusable = True
                return node
            return copy.deepcopy(self.values[node.id])
        return node


def _known(test: ast.expr) -> bool | None:
    """The truth of an `if` test once the row's values are in, where it is plain: a constant, or
    `X is None` / `X is not None` of a literal or a call (a table's constructor calls are not
    None; a wrong guess fails the snippet's run on the clean code, so it is never shown)."""
    if isinstance(test, ast.Constant):
        return bool(test.value)
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], (ast.Is, ast.IsNot)) \
            and isinstance(test.comparators[0], ast.Constant) and test.comparators[0].value is None:
        left = test.left
        if isinstance(left, ast.Constant):
            is_none = left.value is None
        elif isinstance(left, (ast.Call, ast.List, ast.Tuple, ast.Dict, ast.Set, ast.JoinedStr, ast.UnaryOp)):
            is_none = False
        else:
            return None
        return is_none if isinstance(test.ops[0], ast.Is) else not is_none
    return None


def _folded(body: list[ast.stmt]) -> list[ast.stmt]:
    out: list[ast.stmt] = []
    for stmt in body:
        if isinstance(stmt, ast.If) and (truth := _known(stmt.test)) is not None:
            out += _folded(stmt.body if truth else stmt.orelse)
        else:
            out.append(stmt)
    return out


def with_arguments(body: list[ast.stmt], values: dict[str, ast.expr]) -> list[ast.stmt] | None:
    """The test body as the row ran it: parameters replaced by values, settled branches folded."""
    sub = _Substitute(values)
    done = [sub.visit(copy.deepcopy(s)) for s in body]
    if sub.unusable:
        return None
    return _folded(done)
