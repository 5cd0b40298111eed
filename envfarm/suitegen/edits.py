"""Source positions and minimal textual edits.

Mutations are applied as replacements of the exact byte span of the changed AST node (or of
whole lines for statement-level changes), never by re-printing the file with `ast.unparse`:
the diff stays one or two lines and the rest of the file keeps its formatting and comments.
AST column offsets are UTF-8 byte offsets, so all spans here are byte spans of the encoded file.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass


@dataclass(frozen=True)
class Edit:
    """Replace bytes [start, end) of the encoded source with `text`."""

    start: int
    end: int
    text: str


class Source:
    """A file's text with byte-offset helpers for AST node positions."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.data = text.encode()
        self.line_starts = [0]
        for i, byte in enumerate(self.data):
            if byte == 0x0A:
                self.line_starts.append(i + 1)

    def offset(self, lineno: int, col: int) -> int:
        return self.line_starts[lineno - 1] + col

    def start(self, node: ast.AST) -> int:
        return self.offset(node.lineno, node.col_offset)  # type: ignore[attr-defined]

    def end(self, node: ast.AST) -> int:
        return self.offset(node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]

    def segment(self, start: int, end: int) -> str:
        return self.data[start:end].decode()

    def node_text(self, node: ast.AST) -> str:
        return self.segment(self.start(node), self.end(node))

    def line_span(self, first: int, last: int) -> tuple[int, int]:
        """Byte span of whole lines first..last (1-based, inclusive), newline included."""
        end = self.line_starts[last] if last < len(self.line_starts) else len(self.data)
        return self.line_starts[first - 1], end

    def owns_lines(self, node: ast.stmt) -> bool:
        """True when the statement alone occupies its lines (no `;` neighbours, no shared line)."""
        first, last = self.line_span(node.lineno, node.end_lineno or node.lineno)
        before = self.data[first:self.start(node)].strip()
        after = self.data[self.end(node):last].strip()
        return not before and (not after or after.startswith(b"#"))

    def apply(self, edits: list[Edit]) -> str:
        """The text with non-overlapping edits applied."""
        out, pos = [], 0
        for e in sorted(edits, key=lambda e: e.start):
            if e.start < pos:
                raise ValueError("overlapping edits")
            out += [self.data[pos:e.start], e.text.encode()]
            pos = e.end
        out.append(self.data[pos:])
        return b"".join(out).decode()


def operator_span(src: Source, start: int, end: int) -> tuple[int, int] | None:
    """Byte span of the operator in the gap between two operand nodes.

    The gap holds only brackets, whitespace, line continuations, comments and the operator
    (`<`, `not in`, `and`, `**`...), so the operator is what remains once those are skipped.
    """
    gap = src.data[start:end]
    first = last = None
    i = 0
    while i < len(gap):
        ch = gap[i:i + 1]
        if ch == b"#":
            nl = gap.find(b"\n", i)
            i = len(gap) if nl < 0 else nl + 1
            continue
        if ch not in b" \t\r\n\\()":
            if first is None:
                first = i
            last = i + 1
        i += 1
    if first is None or last is None:
        return None
    return start + first, start + last
