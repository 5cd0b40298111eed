"""Enumerate and pick mutants of a project's real functions, deterministically for a seed.

Every mutation site of every kind in every function is enumerated, invalid or no-op mutants are
dropped (the file must compile and its AST must change), and the rest are ordered by a seeded
shuffle that interleaves kinds round-robin and takes at most one mutant per (function, kind),
so a suite covers many functions and every kind instead of piling up on one long function.
"""

from __future__ import annotations

import ast
import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass

from envfarm.tasks.synth.edits import Source
from envfarm.tasks.synth.mutations import KINDS


@dataclass(frozen=True)
class Mutant:
    """A mutated file: the bug as a whole new file text, and where it is (metadata only)."""

    instance_id: str
    project: str
    path: str
    function: str
    kind: str
    lineno: int
    source: str

    @property
    def meta(self) -> dict[str, object]:
        return {"generator": "envfarm.tasks.synth", "kind": self.kind, "path": self.path,
                "function": self.function, "line": self.lineno}


def functions(tree: ast.Module) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Module-level functions and methods (nested functions are mutated as part of their parent)."""
    def visit(body: list[ast.stmt], prefix: str) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield prefix + node.name, node
            elif isinstance(node, ast.ClassDef):
                yield from visit(node.body, f"{prefix}{node.name}.")
    yield from visit(tree.body, "")


def first_line(func: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """The line a code object reports as its first: the first decorator's, else the `def`'s."""
    return min([func.lineno, *(d.lineno for d in func.decorator_list)])


def mutants_of_file(project: str, path: str, text: str, covered: set[int] | None = None) -> list[Mutant]:
    """Every valid mutant of the file; with `covered`, only in functions the tests execute."""
    src = Source(text)
    tree = ast.parse(text)
    original = ast.dump(tree)
    out: dict[str, Mutant] = {}
    for qualname, func in functions(tree):
        if covered is not None and first_line(func) not in covered:
            continue
        for kind, find in KINDS.items():
            for mutation in find(src, func):
                try:
                    new = src.apply(list(mutation.edits))
                    new_tree = compile(new, path, "exec", flags=ast.PyCF_ONLY_AST)
                    compile(new, path, "exec")
                except (SyntaxError, ValueError, UnicodeDecodeError):
                    continue
                if ast.dump(new_tree) == original:
                    continue
                digest = hashlib.sha256(f"{project}\0{path}\0{new}".encode()).hexdigest()[:10]
                iid = f"{project}__synth-{digest}"
                out.setdefault(iid, Mutant(iid, project, path, qualname, kind, mutation.lineno, new))
    return list(out.values())


def order(mutants: list[Mutant], seed: int) -> list[Mutant]:
    """Seeded order: kinds interleaved round-robin, one mutant per (file, function, kind)."""
    rng = random.Random(seed)
    by_kind: dict[str, list[Mutant]] = {}
    for m in sorted(mutants, key=lambda m: m.instance_id):
        by_kind.setdefault(m.kind, []).append(m)
    queues = []
    for kind in sorted(by_kind):
        items = by_kind[kind]
        rng.shuffle(items)
        seen: set[tuple[str, str]] = set()
        queue = []
        for m in items:
            if (m.path, m.function) not in seen:
                seen.add((m.path, m.function))
                queue.append(m)
        queues.append(queue)
    rng.shuffle(queues)
    out: list[Mutant] = []
    for i in range(max((len(q) for q in queues), default=0)):
        out += [q[i] for q in queues if i < len(q)]
    return out
