"""AST mutation kinds: the small, plausible bugs the generator injects into real functions.

Each kind finds its sites in one function and returns minimal textual edits (see edits.py).
A mutant is kept only if the file still parses and its AST differs from the original, so every
mutation is valid Python and changes behaviour-relevant code (not formatting).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from envfarm.suitegen.edits import Edit, Source, operator_span


@dataclass(frozen=True)
class Mutation:
    """One proposed bug: the kind, the edits, and where (for the task's metadata only)."""

    kind: str
    edits: tuple[Edit, ...]
    lineno: int


COMPARE_FLIP = {ast.Lt: ">=", ast.GtE: "<", ast.Gt: "<=", ast.LtE: ">", ast.Eq: "!=", ast.NotEq: "==",
                ast.In: "not in", ast.NotIn: "in", ast.Is: "is not", ast.IsNot: "is"}
BINOP_SWAP = {ast.Add: "-", ast.Sub: "+", ast.Mult: "//", ast.FloorDiv: "*", ast.Div: "*", ast.Mod: "//",
              ast.BitAnd: "|", ast.BitOr: "&", ast.LShift: ">>", ast.RShift: "<<", ast.Pow: "*"}
NON_COMMUTATIVE = (ast.Sub, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.LShift, ast.RShift)
BUILTIN_SWAP = {"min": "max", "max": "min", "any": "all", "all": "any",
                "startswith": "endswith", "endswith": "startswith", "lstrip": "rstrip", "rstrip": "lstrip"}
MAX_BLOCK_LINES = 6  # statement-level kinds leave small diffs, as real one-line-ish bugs do
SKIP_FIELDS = {"annotation", "returns", "decorator_list", "type_comment"}


def walk_body(node: ast.AST) -> Iterator[ast.AST]:
    """Nodes of a function body, skipping annotations, decorators and f-strings.

    F-string parts carry unreliable positions in Python 3.11; annotations and decorators are not
    behaviour a test would see.
    """
    for name, value in ast.iter_fields(node):
        if name in SKIP_FIELDS:
            continue
        children = value if isinstance(value, list) else [value]
        for child in children:
            if isinstance(child, ast.AST) and not isinstance(child, ast.JoinedStr):
                yield child
                yield from walk_body(child)


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def _blocks(func: ast.AST) -> Iterator[list[ast.stmt]]:
    """Every statement list (function body, if/for/while/with/try bodies) inside the function."""
    for node in [func, *walk_body(func)]:
        for name in ("body", "orelse", "finalbody"):
            block = getattr(node, name, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                yield block
        for handler in getattr(node, "handlers", []) or []:
            yield handler.body


# -- expression-level kinds ---------------------------------------------------------------------

def flipped_comparison(src: Source, func: ast.AST) -> Iterator[Mutation]:
    for node in walk_body(func):
        if isinstance(node, ast.Compare):
            left = node.left
            for op, right in zip(node.ops, node.comparators, strict=True):
                span = operator_span(src, src.end(left), src.start(right))
                if span and type(op) in COMPARE_FLIP:
                    yield Mutation("flipped_comparison", (Edit(*span, COMPARE_FLIP[type(op)]),), node.lineno)
                left = right


def wrong_operator(src: Source, func: ast.AST) -> Iterator[Mutation]:
    for node in walk_body(func):
        if isinstance(node, ast.BinOp) and type(node.op) in BINOP_SWAP:
            if isinstance(node.left, ast.Constant) and isinstance(node.left.value, str):
                continue  # "%" formatting and string concatenation: not an arithmetic bug
            span = operator_span(src, src.end(node.left), src.start(node.right))
            if span:
                yield Mutation("wrong_operator", (Edit(*span, BINOP_SWAP[type(node.op)]),), node.lineno)
        elif isinstance(node, ast.BoolOp) and len(node.values) == 2:
            span = operator_span(src, src.end(node.values[0]), src.start(node.values[1]))
            if span:
                new = "or" if isinstance(node.op, ast.And) else "and"
                yield Mutation("wrong_operator", (Edit(*span, new),), node.lineno)
        elif isinstance(node, ast.AugAssign) and type(node.op) in (ast.Add, ast.Sub):
            span = operator_span(src, src.end(node.target), src.start(node.value))
            if span:
                yield Mutation("wrong_operator", (Edit(*span, "-=" if isinstance(node.op, ast.Add) else "+="),),
                               node.lineno)


def _int_const(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is int


def _off_by_one_sites(func: ast.AST) -> Iterator[ast.Constant]:
    """Integer constants used as an index, a slice bound, a range() bound or a +/- offset."""
    for node in walk_body(func):
        if isinstance(node, ast.Subscript):
            sl = node.slice
            parts = [sl.lower, sl.upper] if isinstance(sl, ast.Slice) else [sl]
            for part in parts:
                if isinstance(part, ast.UnaryOp) and isinstance(part.op, ast.USub):
                    part = part.operand
                if _int_const(part):
                    yield part  # type: ignore[misc]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
            yield from (a for a in node.args[:2] if _int_const(a))  # type: ignore[misc]
        elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)) and _int_const(node.right):
            yield node.right  # type: ignore[misc]


def off_by_one(src: Source, func: ast.AST) -> Iterator[Mutation]:
    for const in _off_by_one_sites(func):
        if src.node_text(const).isdigit():
            yield Mutation("off_by_one", (Edit(src.start(const), src.end(const), str(const.value + 1)),),
                           const.lineno)


def changed_constant(src: Source, func: ast.AST) -> Iterator[Mutation]:
    skip = {id(c) for c in _off_by_one_sites(func)}
    for node in walk_body(func):
        if not isinstance(node, ast.Constant) or id(node) in skip:
            continue
        text = src.node_text(node)
        if node.value is True or node.value is False:
            new = "False" if node.value else "True"
        elif type(node.value) is int and text.isdigit():
            new = "1" if node.value == 0 else "0" if node.value == 1 else str(node.value * 2)
        elif isinstance(node.value, str) and len(node.value) == 1 and text in (f"'{node.value}'", f'"{node.value}"'):
            new = repr(" " if node.value != " " else "")
        else:
            continue
        yield Mutation("changed_constant", (Edit(src.start(node), src.end(node), new),), node.lineno)


def swapped_arguments(src: Source, func: ast.AST) -> Iterator[Mutation]:
    for node in walk_body(func):
        pair: tuple[ast.expr, ast.expr] | None = None
        if isinstance(node, ast.Call) and len(node.args) >= 2 and not any(
                isinstance(a, ast.Starred) for a in node.args[:2]):
            pair = (node.args[0], node.args[1])
        elif isinstance(node, ast.BinOp) and isinstance(node.op, NON_COMMUTATIVE) and not (
                isinstance(node.left, ast.Constant) and isinstance(node.left.value, str)):
            pair = (node.left, node.right)
        if pair is None:
            continue
        a, b = pair
        ta, tb = src.node_text(a), src.node_text(b)
        if ta == tb or src.end(a) > src.start(b):
            continue
        middle = src.segment(src.end(a), src.start(b))
        yield Mutation("swapped_arguments", (Edit(src.start(a), src.end(b), tb + middle + ta),), node.lineno)


def swapped_builtin(src: Source, func: ast.AST) -> Iterator[Mutation]:
    """A call to the wrong one of a pair: min/max, any/all, startswith/endswith..."""
    for node in walk_body(func):
        if not isinstance(node, ast.Call):
            continue
        target = node.func
        if isinstance(target, ast.Name) and target.id in ("min", "max", "any", "all"):
            yield Mutation("swapped_builtin", (Edit(src.start(target), src.end(target), BUILTIN_SWAP[target.id]),),
                           node.lineno)
        elif isinstance(target, ast.Attribute) and target.attr in ("startswith", "endswith", "lstrip", "rstrip"):
            end = src.end(target)
            yield Mutation("swapped_builtin", (Edit(end - len(target.attr), end, BUILTIN_SWAP[target.attr]),),
                           node.lineno)


def removed_condition(src: Source, func: ast.AST) -> Iterator[Mutation]:
    """One operand of an `and`/`or` in a branch or loop test is dropped."""
    for node in walk_body(func):
        if not isinstance(node, (ast.If, ast.While, ast.IfExp, ast.Assert)):
            continue
        test = node.test
        if not isinstance(test, ast.BoolOp):
            continue
        values = test.values
        for i in range(len(values)):
            if i + 1 < len(values):
                edit = Edit(src.start(values[i]), src.start(values[i + 1]), "")
            else:
                edit = Edit(src.end(values[i - 1]), src.end(values[i]), "")
            yield Mutation("removed_condition", (edit,), node.lineno)


def negated_condition(src: Source, func: ast.AST) -> Iterator[Mutation]:
    for node in walk_body(func):
        if isinstance(node, (ast.If, ast.While, ast.IfExp)):
            test = node.test
            if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
                inner = src.node_text(test.operand)
                simple = isinstance(test.operand, (ast.Name, ast.Call, ast.Attribute, ast.Subscript))
                edit = Edit(src.start(test), src.end(test), inner if simple else f"({inner})")
            else:
                edit = Edit(src.start(test), src.end(test), f"not ({src.node_text(test)})")
            yield Mutation("negated_condition", (edit,), node.lineno)


# -- statement-level kinds ----------------------------------------------------------------------

def _lines(stmts: list[ast.stmt]) -> int:
    return (stmts[-1].end_lineno or stmts[-1].lineno) - stmts[0].lineno + 1


def _delete_lines(src: Source, stmt: ast.stmt) -> Edit:
    start, end = src.line_span(stmt.lineno, stmt.end_lineno or stmt.lineno)
    return Edit(start, end, "")


def removed_branch(src: Source, func: ast.AST) -> Iterator[Mutation]:
    """A whole `if` block without `else` is deleted (a guard or special case disappears)."""
    for block in _blocks(func):
        if len(block) < 2:
            continue
        for stmt in block:
            if isinstance(stmt, ast.If) and not stmt.orelse and src.owns_lines(stmt) and \
                    _lines([stmt]) <= MAX_BLOCK_LINES:
                yield Mutation("removed_branch", (_delete_lines(src, stmt),), stmt.lineno)


def dropped_statement(src: Source, func: ast.AST) -> Iterator[Mutation]:
    """A simple statement (assignment, call, augmented assignment) is deleted."""
    for block in _blocks(func):
        stmts = [s for s in block if not _is_docstring(s)]
        if len(stmts) < 2:
            continue
        for stmt in stmts:
            if isinstance(stmt, (ast.Assign, ast.AugAssign, ast.Expr)) and src.owns_lines(stmt) and \
                    _lines([stmt]) <= MAX_BLOCK_LINES:
                yield Mutation("dropped_statement", (_delete_lines(src, stmt),), stmt.lineno)


def dropped_return(src: Source, func: ast.AST) -> Iterator[Mutation]:
    """`return value` becomes a bare `return` (the caller gets None)."""
    for node in walk_body(func):
        if isinstance(node, ast.Return) and node.value is not None and not (
                isinstance(node.value, ast.Constant) and node.value.value is None):
            yield Mutation("dropped_return", (Edit(src.start(node), src.end(node), "return"),), node.lineno)


def inverted_if_else(src: Source, func: ast.AST) -> Iterator[Mutation]:
    """The bodies of an `if`/`else` are swapped (not `elif` chains)."""
    for node in walk_body(func):
        if not isinstance(node, ast.If) or not node.orelse:
            continue
        body, orelse = node.body, node.orelse
        if _lines(body) > MAX_BLOCK_LINES or _lines(orelse) > MAX_BLOCK_LINES:
            continue
        if body[0].lineno == node.lineno or orelse[0].col_offset != body[0].col_offset:
            continue
        if len(orelse) == 1 and isinstance(orelse[0], ast.If) and src.segment(
                *src.line_span(orelse[0].lineno, orelse[0].lineno)).lstrip().startswith("elif"):
            continue
        b0, b1 = src.line_span(body[0].lineno, body[-1].end_lineno or body[-1].lineno)
        e0, e1 = src.line_span(orelse[0].lineno, orelse[-1].end_lineno or orelse[-1].lineno)
        if not (b1 <= e0) or orelse[0].lineno == body[-1].end_lineno:
            continue
        header = src.segment(b1, e0)
        if header.strip() != "else:":
            continue
        yield Mutation("inverted_if_else", (Edit(b0, e1, src.segment(e0, e1) + header + src.segment(b0, b1)),),
                       node.lineno)


KINDS: dict[str, Callable[[Source, ast.AST], Iterator[Mutation]]] = {
    "flipped_comparison": flipped_comparison,
    "off_by_one": off_by_one,
    "wrong_operator": wrong_operator,
    "changed_constant": changed_constant,
    "swapped_arguments": swapped_arguments,
    "swapped_builtin": swapped_builtin,
    "removed_condition": removed_condition,
    "negated_condition": negated_condition,
    "removed_branch": removed_branch,
    "inverted_if_else": inverted_if_else,
    "dropped_statement": dropped_statement,
    "dropped_return": dropped_return,
}
