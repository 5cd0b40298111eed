"""Reproduction snippets: a failing test's body turned into the few lines a user would paste.

The snippet is the test function's body (dedented), preceded by the imports it uses and the
module-level helpers and constants it refers to; unittest-style `self.assertX(a, b)` calls become
plain `assert`s, a parametrized test's row is written into the body (`params`) and a test class's
state is written out as plain code (`self_state`). Tests that need fixtures, relative imports or
`self` state from other modules are left out (None). The test's own name and file never appear:
the snippet reads as user code.
Whether it really reproduces the bug is decided by running it (see `restate`), not here.
"""

from __future__ import annotations

import ast
import copy
import textwrap
from dataclasses import dataclass

from envfarm.suitegen.fixtures import fixture_assignments
from envfarm.suitegen.params import case_arguments, with_arguments
from envfarm.suitegen.self_state import class_chain, inline, names_in, takes_self

MAX_BODY_LINES = 18
MOOT_DECORATORS = {"skipIf", "skipUnless", "skipif", "filterwarnings", "timeout"}
MAX_LINES = 40

UNITTEST_ASSERTS = {
    "assertEqual": "{0} == {1}", "assertEquals": "{0} == {1}", "assertNotEqual": "{0} != {1}",
    "assertTrue": "{0}", "assertFalse": "not {0}", "assertIs": "{0} is {1}", "assertIsNot": "{0} is not {1}",
    "assertIsNone": "{0} is None", "assertIsNotNone": "{0} is not None", "assertIn": "{0} in {1}",
    "assertNotIn": "{0} not in {1}", "assertIsInstance": "isinstance({0}, {1})",
    "assertGreater": "{0} > {1}", "assertLess": "{0} < {1}", "assertGreaterEqual": "{0} >= {1}",
    "assertLessEqual": "{0} <= {1}",
}


def _find(tree: ast.Module, names: list[str]) -> ast.FunctionDef | None:
    """The test function, or a test class's method, its own or one it inherits from a class of the
    same module (a suite's shared tests run once per subclass)."""
    body: list[ast.stmt] = tree.body
    node: ast.AST | None = None
    for name in names:
        node = next((n for n in body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == name), None)
        if node is None:
            break
        body = node.body
    if isinstance(node, ast.FunctionDef) and node.name == names[-1]:
        return node
    if len(names) == 2:
        for cls in class_chain(tree, names[:1]) or []:
            method = next((n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == names[1]), None)
            if method is not None:
                return method
    return None


class _Unself(ast.NodeTransformer):
    """`self.assertEqual(a, b)` -> `assert a == b`; any other use of `self` marks it unusable."""

    def __init__(self) -> None:
        self.unusable = False

    def visit_Expr(self, node: ast.Expr) -> ast.AST:
        call = node.value
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and \
                isinstance(call.func.value, ast.Name) and call.func.value.id == "self" and \
                call.func.attr in UNITTEST_ASSERTS and not call.keywords:
            form = UNITTEST_ASSERTS[call.func.attr]
            needed = form.count("{")
            if len(call.args) >= needed:
                args = [f"({ast.unparse(self.visit(a))})" for a in call.args[:needed]]
                return ast.parse(f"assert {form.format(*args)}").body[0]
        return self.generic_visit(node)

    def visit_With(self, node: ast.With) -> ast.AST:
        """`with self.assertRaises(E): ...` -> the body in a `try` that fails when E is not raised."""
        if len(node.items) == 1 and node.items[0].optional_vars is None:
            raised = _asserted_raise(node.items[0].context_expr)
            if raised is not None:
                return _expect_raise(raised, [self.visit(s) for s in node.body])
        return self.generic_visit(node)

    def visit_Return(self, node: ast.Return) -> ast.AST:
        """`return self.assertEqual(a, b)` (a helper's) is the assertion too."""
        if node.value is not None:
            converted = self.visit_Expr(ast.Expr(node.value))
            if isinstance(converted, ast.Assert):
                return converted
        return self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        return node if takes_self(node) else self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id == "self":
            self.unusable = True
        return node


def _dotted(node: ast.expr) -> str:
    """`unittest.skipIf` for `@unittest.skipIf(...)`; "" for anything but a (called) dotted name."""
    if isinstance(node, ast.Call):
        node = node.func
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else ""


def _asserted_raise(expr: ast.expr) -> ast.expr | None:
    """E of `self.assertRaises(E)` (the context-manager form, nothing else)."""
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) and expr.func.attr == "assertRaises" \
            and isinstance(expr.func.value, ast.Name) and expr.func.value.id == "self" \
            and len(expr.args) == 1 and not expr.keywords:
        return expr.args[0]
    return None


def _expect_raise(raised: ast.expr, body: list[ast.stmt]) -> ast.Try:
    name = ast.unparse(raised)
    fail = ast.parse(f"raise AssertionError({f'expected {name}'!r})").body[0]
    return ast.Try(body=body, handlers=[ast.ExceptHandler(type=raised, name=None, body=[ast.Pass()])],
                   orelse=[fail], finalbody=[])


def _module_defs(tree: ast.Module) -> dict[str, ast.stmt]:
    out: dict[str, ast.stmt] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            out[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out[target.id] = node
    return out


ACTUAL = "ENVFARM_ACTUAL:"


@dataclass(frozen=True)
class Repro:
    """A snippet as shown (`text`), as run (`script`: it also prints the value a final
    `assert X == Y` got), and that comparison's two sides (for the statement's words)."""

    text: str
    script: str
    compared: tuple[str, str] | None


def repro(test_id: str, test_source: str, stop_line: int | None = None) -> Repro | None:
    """`snippet`, ending at the statement that holds `stop_line` (the failing line), with the
    final equality assertion instrumented to report the value it got."""
    text = snippet(test_id, test_source, stop_line)
    if text is None:
        return None
    tree = ast.parse(text)
    last = tree.body[-1]
    sides = _compared(last)
    if sides is not None:
        left, right = sides
        got = ast.unparse(left)
        pair = (got, ast.unparse(right))
        _replace(last, left, ast.Name("_envfarm_got", ast.Load()))
        head = "\n".join(ast.unparse(n) for n in tree.body[:-1])
        script = (f"{head}\n_envfarm_got = {got}\nprint({ACTUAL!r}, repr(_envfarm_got)[:300], flush=True)\n"
                  f"{ast.unparse(last)}\n")
        return Repro(text, script, pair)
    return Repro(text, text, None)


def _compared(stmt: ast.stmt) -> tuple[ast.expr, ast.expr] | None:
    """The (got, expected) sides of `assert X == Y` or `assert same(X, Y)`."""
    if not isinstance(stmt, ast.Assert) or stmt.msg is not None:
        return None
    test = stmt.test
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq):
        left, right = test.left, test.comparators[0]
        if _is_literal(left) and not _is_literal(right):  # `assert 'x-y' == slug('x y')`
            return right, left
        return left, right
    if isinstance(test, ast.Call) and len(test.args) == 2 and not test.keywords \
            and "raise" not in _dotted(test.func).lower():  # `raises(TypeError, f)` compares nothing
        return test.args[0], test.args[1]
    return None


def _joined(stmts: list[ast.stmt]) -> str:
    """Statements as source, a function definition set apart by blank lines."""
    out = ""
    for prev, stmt in zip([None, *stmts], stmts, strict=False):
        gap = "\n\n" if prev is not None and (isinstance(stmt, ast.FunctionDef) or isinstance(prev, ast.FunctionDef)) \
            else "\n"
        out += (gap if prev is not None else "") + ast.unparse(stmt)
    return out


def _is_literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _replace(root: ast.AST, old: ast.AST, new: ast.AST) -> None:
    for node in ast.walk(root):
        for name, value in ast.iter_fields(node):
            if value is old:
                setattr(node, name, new)
            elif isinstance(value, list):
                node.__dict__[name] = [new if v is old else v for v in value]


def snippet(test_id: str, test_source: str, stop_line: int | None = None) -> str | None:
    """The user-style snippet for a pytest node id of a test in `test_source`, or None; with
    `stop_line`, the body ends at the statement that holds that line."""
    node_id, _, case = test_id.partition("[")
    parts = node_id.split("::")[1:]
    if not parts or (case and not case.endswith("]")):
        return None
    try:
        tree = ast.parse(test_source)
    except SyntaxError:
        return None
    func = _find(tree, parts)
    defs = _module_defs(tree)
    if func is None:
        return None
    func = copy.copy(func)  # the decorators that decide whether a test runs: it ran, they are moot
    func.decorator_list = [d for d in func.decorator_list if _dotted(d).rsplit(".", 1)[-1] not in MOOT_DECORATORS]
    if bool(func.decorator_list) != bool(case):
        return None
    values = case_arguments(func, case[:-1], defs) if case else {}
    if values is None:
        return None
    args = [a.arg for a in (*func.args.posonlyargs, *func.args.args, *func.args.kwonlyargs)]
    in_class = len(parts) > 1
    if in_class and (not args or args[0] != "self") or func.args.vararg or func.args.kwarg:
        return None
    wanted = [a for a in args[in_class:] if a not in values]  # the fixtures it takes
    fixtures = fixture_assignments(wanted, defs)
    if fixtures is None:
        return None
    body = [s for s in func.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    if stop_line is not None:
        body = [s for s in body if s.lineno <= stop_line]
    if values:
        body = with_arguments(body, values) or []
    if not body:
        return None
    prelude: list[ast.stmt] = []
    if in_class:
        state = inline(tree, parts, body)
        if state is None:
            return None
        prelude, body = state.prelude, state.body
    prelude = [*fixtures, *prelude]
    unself = _Unself()
    body = [unself.visit(s) for s in body]
    prelude = [unself.visit(s) for s in prelude]
    if unself.unusable:
        return None
    body_text = "\n".join(ast.unparse(s) for s in body)
    if len(body_text.splitlines()) > MAX_BODY_LINES or any(isinstance(n, ast.Yield) for s in body for n in ast.walk(s)):
        return None
    needed: list[ast.stmt] = []
    todo = names_in([*prelude, *body])
    seen: set[str] = {t.id for f in fixtures for t in f.targets if isinstance(t, ast.Name)}  # type: ignore[attr-defined]
    while todo:
        name = todo.pop()
        if name in seen or name not in defs:
            continue
        seen.add(name)
        node = defs[name]
        if node not in needed:
            needed.append(node)
            todo |= names_in([node])
    needed.sort(key=lambda n: n.lineno)
    shown = [*prelude, *body]
    used = names_in([*shown, *needed]) | {n.attr for s in shown for n in ast.walk(s) if isinstance(n, ast.Attribute)}
    imports = []
    imported: set[str] = set()  # a conftest written in imports much of what the module does
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            keep = [a for a in node.names if ((a.asname or a.name) in used or a.name == "*")
                    and f"{node.module}:{a.name}:{a.asname}" not in imported]
            if keep and node.level:
                return None  # a user's snippet has no package of tests to import from
            if keep:
                imports.append(ast.unparse(ast.ImportFrom(node.module, keep, 0)))
                imported |= {f"{node.module}:{a.name}:{a.asname}" for a in keep}
        elif isinstance(node, ast.Import):
            keep = [a for a in node.names if (a.asname or a.name.split(".")[0]) in used]
            if keep:
                imports.append(ast.unparse(ast.Import(keep)))
    imports = list(dict.fromkeys(imports))
    pieces = ["\n".join(imports)] if imports else []
    pieces += [ast.unparse(n) for n in needed]
    pieces += [_joined(prelude)] if prelude else []
    pieces.append(body_text)
    text = "\n\n".join(pieces) + "\n"
    if len(text.splitlines()) > MAX_LINES or any(p in text for p in parts):
        return None
    return textwrap.dedent(text)
