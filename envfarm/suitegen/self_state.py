"""A unittest method's `self` state, written out as the plain code a user would paste.

Many failing tests are methods that read what their class set up: a class attribute
(`Cache = LRUCache`), an attribute made in `setUp` (`self.s = SimpleEval()`) or a helper method
(`self.t("1 + 1", 2)`). A user reporting the bug writes that state at the top of the snippet, so
`self.s` becomes `s`, `setUp`'s statements come first and a helper becomes a function. Only the
test's own class and the classes of the same file it derives from are read; anything else of
`self` (a base class from another module, `tearDown` effects, a helper that sets state) gives
None, and `repro` leaves the test out. The result is run before it is shown (`restate`).
"""

from __future__ import annotations

import ast
import copy
from dataclasses import dataclass, field

SKIPPED_METHODS = {"setUp", "tearDown", "setUpClass", "tearDownClass", "run", "__init__"}


@dataclass
class SelfState:
    """The prelude (class attributes, then `setUp`'s statements, then helpers) and the body."""

    prelude: list[ast.stmt] = field(default_factory=list)
    body: list[ast.stmt] = field(default_factory=list)


def class_chain(tree: ast.Module, names: list[str]) -> list[ast.ClassDef] | None:
    """The test's class and its same-file bases, nearest first (None for a nested path)."""
    if len(names) != 1:
        return None
    top = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    order: list[ast.ClassDef] = []

    def walk(name: str) -> None:
        cls = top.get(name)
        if cls is None or cls in order:
            return
        order.append(cls)
        for base in cls.bases:
            if isinstance(base, ast.Name):
                walk(base.id)

    walk(names[0])
    return order or None


def _is_self_attr(node: ast.AST, attr: str | None = None) -> bool:
    return isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self" \
        and (attr is None or node.attr == attr)


def _methods(classes: list[ast.ClassDef]) -> dict[str, ast.FunctionDef]:
    out: dict[str, ast.FunctionDef] = {}
    for cls in classes:
        for node in cls.body:
            if isinstance(node, ast.FunctionDef) and node.name not in out:
                out[node.name] = node
    return out


def _class_attrs(classes: list[ast.ClassDef]) -> dict[str, ast.Assign]:
    out: dict[str, ast.Assign] = {}
    for cls in classes:
        for node in cls.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                out.setdefault(node.targets[0].id, node)
    return out


def _own_body(func: ast.FunctionDef) -> list[ast.stmt]:
    """The body without its docstring and without calls of the base class's same method."""
    out = []
    for s in func.body:
        if isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant):
            continue
        if isinstance(s, ast.Expr) and isinstance(s.value, ast.Call) and isinstance(s.value.func, ast.Attribute) \
                and s.value.func.attr == func.name:
            continue  # super().setUp() / Base.setUp(self): the bases' setUp comes in order anyway
        out.append(s)
    return out


class _Rewrite(ast.NodeTransformer):
    """`self.x` -> `x` for known state, `self.helper(...)` -> `helper(...)`; records what it used."""

    def __init__(self, state: set[str], helpers: set[str]) -> None:
        self.state = state
        self.helpers = helpers
        self.used_helpers: list[str] = []
        self.assigned: set[str] = set()

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        if _is_self_attr(node):
            if node.attr in self.helpers:
                if node.attr not in self.used_helpers:
                    self.used_helpers.append(node.attr)
                return ast.copy_location(ast.Name(node.attr, ast.Load()), node)
            if node.attr in self.state or isinstance(node.ctx, ast.Store):
                if isinstance(node.ctx, ast.Store):
                    self.assigned.add(node.attr)
                return ast.copy_location(ast.Name(node.attr, node.ctx), node)
        return self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        return node if takes_self(node) else self.generic_visit(node)


def names_in(nodes: list[ast.AST]) -> set[str]:
    """Every plain name the nodes read or write."""
    return {n.id for node in nodes for n in ast.walk(node) if isinstance(n, ast.Name)}


def _plain(attr: ast.Assign) -> ast.Assign:
    """`x = staticmethod(f)` in a class is `x = f` outside it."""
    value = attr.value
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "staticmethod" \
            and len(value.args) == 1 and not value.keywords:
        attr.value = value.args[0]
    return attr


def _to_itself(attr: ast.Assign) -> bool:
    """`decode = decode` (a class's `decode = staticmethod(decode)`, written out): nothing to write."""
    target = attr.targets[0]
    return isinstance(target, ast.Name) and isinstance(attr.value, ast.Name) and attr.value.id == target.id


def takes_self(func: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Whether a function is a method of its own `self` (a class defined inside a test has such
    methods, and their `self` is not the test's)."""
    args = func.args.posonlyargs + func.args.args
    return bool(args) and args[0].arg == "self"


def inline(tree: ast.Module, names: list[str], body: list[ast.stmt]) -> SelfState | None:
    """The test method's body with its class's state written out; None when `self` is read in a
    way this cannot write out. `names`: the class path and the method (`["TestX", "test_y"]`)."""
    classes = class_chain(tree, names[:-1])
    if classes is None:
        return None
    methods = _methods(classes)
    attrs = _class_attrs(classes)
    setups = [m for m in (next((n for n in c.body if isinstance(n, ast.FunctionDef) and n.name == "setUp"), None)
                          for c in reversed(classes)) if m is not None]
    setup_stmts = [copy.deepcopy(s) for m in setups for s in _own_body(m)]
    state = set(attrs)
    for s in setup_stmts:
        for node in ast.walk(s):
            if _is_self_attr(node) and isinstance(node.ctx, ast.Store):  # type: ignore[attr-defined]
                state.add(node.attr)  # type: ignore[attr-defined]
    for s in body:  # the test's own `self.x = ...` are plain names in the snippet
        for node in ast.walk(s):
            if _is_self_attr(node) and isinstance(node.ctx, ast.Store):  # type: ignore[attr-defined]
                state.add(node.attr)  # type: ignore[attr-defined]
    helpers = {n for n in methods if n not in SKIPPED_METHODS and not n.startswith("test")
               and not n.startswith("assert")}
    rewrite = _Rewrite(state, helpers)
    new_body = [rewrite.visit(copy.deepcopy(s)) for s in body]
    new_setup = [rewrite.visit(s) for s in setup_stmts]
    helper_defs: list[ast.stmt] = []
    done: set[str] = set()
    while len(done) < len(rewrite.used_helpers):
        name = next(n for n in rewrite.used_helpers if n not in done)
        done.add(name)
        method = copy.deepcopy(methods[name])
        if method.decorator_list or not method.args.args or method.args.args[0].arg != "self":
            return None
        method.args.args = method.args.args[1:]
        before = set(rewrite.assigned)
        method.body = [rewrite.visit(s) for s in _own_body(method)] or [ast.Pass()]
        if rewrite.assigned != before:
            return None  # a helper that sets state would set a local name as a function
        helper_defs.append(method)
    used = names_in([*new_body, *new_setup, *helper_defs])
    todo = [k for k in attrs if k in used]
    while todo:  # an attribute may be made of others (`_LONG = _SHORT + "bar"`)
        todo = [k for k in attrs if k in names_in([attrs[t] for t in todo]) and k not in used]
        used |= set(todo)
    kept = sorted({id(a): a for k, a in attrs.items() if k in used}.values(), key=lambda a: a.lineno)
    prelude: list[ast.stmt] = [p for p in (_plain(copy.deepcopy(a)) for a in kept) if not _to_itself(p)]
    return SelfState(prelude + new_setup + helper_defs, new_body)
