"""Caller and callee disagree: a helper's contract changed in its own module, not in its callers'.

A module-level function's first two positional parameters trade places in its `def`, and every
call of it in its own file is updated to match (the module reads as a consistent refactor); the
calls in the project's other files still pass the arguments in the old order. The failure shows
up in those other modules, so the agent has to read the caller, then the callee in another file,
to see which side moved. The gold patch puts the contract back.
"""

from __future__ import annotations

import ast
import hashlib
import random
from dataclasses import dataclass

from envfarm.suitegen.edits import Edit, Source
from envfarm.suitegen.generate import Mutant, first_line, functions

KIND = "contract_change"


@dataclass(frozen=True)
class CallSite:
    path: str
    function: str  # the enclosing function's qualified name ("" at module level)
    first_line: int  # of the enclosing function (for coverage)
    call: ast.Call


def _positional_pair(func: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[ast.arg, ast.arg] | None:
    params = [*func.args.posonlyargs, *func.args.args]
    if len(params) < 2 or params[0].arg in ("self", "cls"):
        return None
    n_defaults = len(func.args.defaults)
    if n_defaults > len(params) - 2:
        return None  # one of the two has a default: swapping would not parse
    return params[0], params[1]


def _calls_of(name: str, tree: ast.Module, path: str) -> list[CallSite]:
    """Calls `name(a, b, ...)` or `x.name(a, b, ...)` with two plain positional arguments first."""
    out = []
    scopes = [(q, f, first_line(f)) for q, f in functions(tree)] + [("", tree, 0)]
    seen: set[int] = set()
    for qualname, scope, line in scopes:
        for node in ast.walk(scope):
            if not isinstance(node, ast.Call) or id(node) in seen:
                continue
            target = node.func
            called = target.id if isinstance(target, ast.Name) else target.attr if isinstance(
                target, ast.Attribute) else None
            if called == name and len(node.args) >= 2 and not any(isinstance(a, ast.Starred) for a in node.args[:2]):
                seen.add(id(node))
                out.append(CallSite(path, qualname, line, node))
    return out


def _swap(src: Source, a: ast.AST, b: ast.AST) -> Edit:
    ta, tb = src.node_text(a), src.node_text(b)
    middle = src.segment(src.end(a), src.start(b))
    return Edit(src.start(a), src.end(b), tb + middle + ta)


def contract_changes(project: str, texts: dict[str, str], covered: dict[str, set[int]],
                     seed: int) -> list[Mutant]:
    """Every helper with a tested caller in another file, as a contract-change candidate, seeded order."""
    trees = {p: ast.parse(t) for p, t in texts.items()}
    defs: dict[str, list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]] = {}
    for path, tree in trees.items():
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                defs.setdefault(node.name, []).append((path, node))
    out = []
    for name, found in sorted(defs.items()):
        if len(found) != 1 or name.startswith("__"):
            continue
        path, func = found[0]
        pair = _positional_pair(func)
        if pair is None:
            continue
        foreign = [c for p, tree in trees.items() if p != path for c in _calls_of(name, tree, p)
                   if c.function and c.first_line in covered.get(p, set())]
        if not foreign:
            continue
        src = Source(texts[path])
        edits = [_swap(src, *pair)]
        edits += [_swap(src, c.call.args[0], c.call.args[1]) for c in _calls_of(name, trees[path], path)]
        try:
            src.apply(edits)
        except ValueError:
            continue  # nested calls overlap: not a clean refactor
        digest = hashlib.sha256(f"{project}\0{path}\0{name}\0{KIND}".encode()).hexdigest()[:10]
        out.append(Mutant(f"{project}__contract-{digest}", project, path, name, KIND, func.lineno,
                          tuple(edits), src, generator="envfarm.suitegen.contract"))
    random.Random(f"{seed}:{project}:{KIND}").shuffle(out)
    return out
