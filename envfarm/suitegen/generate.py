"""Enumerate and pick mutants of a project's real functions, deterministically for a seed.

Every mutation site of every kind in every function is enumerated cheaply (edits only) and
ordered by a seeded
shuffle that interleaves kinds round-robin and takes at most one mutant per (function, kind),
so a suite covers many functions and every kind instead of piling up on one long function.
Whether a mutant compiles and really changes the AST is checked only when it is about to be
validated (`Mutant.check`): compiling every mutant of a large file up front takes minutes.
"""

from __future__ import annotations

import ast
import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

from envfarm.suitegen.derive import Candidate
from envfarm.suitegen.edits import Edit, Source
from envfarm.suitegen.mutations import KINDS


@dataclass(frozen=True)
class Mutant:
    """A proposed bug: edits to one file of a project, and where it is (metadata only).

    The mutated text is made on demand from the shared original, so enumerating thousands of
    mutants of a large file costs little memory; `check()` compiles it, also on demand.
    """

    instance_id: str
    project: str
    path: str
    function: str
    kind: str
    lineno: int
    edits: tuple[Edit, ...]
    original: Source = field(repr=False, compare=False)
    generator: str = "envfarm.tasks.synth"

    @property
    def source(self) -> str:
        return self.original.apply(list(self.edits))

    @property
    def meta(self) -> dict[str, object]:
        # "generator" is a stable label recorded in the shipped suite (envfarm_meta), not a module
        # path: it keeps its value from before the package moved so new rows match the old ones.
        return {"generator": self.generator, "kind": self.kind, "path": self.path,
                "function": self.function, "line": self.lineno}

    def candidate(self) -> Candidate:
        """What validation takes: the mutated file, no statement yet."""
        return Candidate(self.instance_id, self.path, self.source, "", meta=self.meta)

    def check(self) -> bool:
        """The mutated file compiles and its AST differs from the original's (not a no-op)."""
        try:
            new = self.source
            tree = ast.parse(new, self.path)
            compile(tree, self.path, "exec")
        except (SyntaxError, ValueError, UnicodeDecodeError):
            return False
        return ast.dump(tree) != _dump(self.original.text)


@lru_cache(maxsize=32)
def _dump(text: str) -> str:
    return ast.dump(ast.parse(text))


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
    """Every mutant of the file, unchecked (see Mutant.check); with `covered`, only in functions
    whose first line is in it (the functions the tests execute)."""
    src = Source(text)
    tree = ast.parse(text)
    out: dict[str, Mutant] = {}
    for qualname, func in functions(tree):
        if covered is not None and first_line(func) not in covered:
            continue
        for kind, find in KINDS.items():
            for mutation in find(src, func):
                key = repr(sorted((e.start, e.end, e.text) for e in mutation.edits))
                digest = hashlib.sha256(f"{project}\0{path}\0{key}".encode()).hexdigest()[:10]
                iid = f"{project}__synth-{digest}"
                out.setdefault(iid, Mutant(iid, project, path, qualname, kind, mutation.lineno, mutation.edits, src))
    return list(out.values())


def valid_mutants(mutants: list[Mutant]) -> list[Mutant]:
    """Only the mutants that compile and change the AST (compiles each: use on small lists)."""
    return [m for m in mutants if m.check()]


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
