"""The `str_replace_editor` tool: view, create, str_replace, insert, undo_edit.

The editing logic is independent of where files live: it talks to a `FileIO` (a sandbox in the
environment, a local directory in tests). Files are decoded with `surrogateescape` so that edits
keep bytes that are not UTF-8 exactly as they were. Every answer is text for the model; a refused
edit says why and what to do instead.
"""

from __future__ import annotations

import base64
import posixpath
import shlex
from pathlib import Path
from typing import Any, Protocol

from envfarm.sandbox.base import Sandbox

SNIPPET_CONTEXT = 4
# The largest file the editor reads (view, and the read before an edit). Larger files are refused
# from their size alone, before any byte moves: the host that would hold them serves every sandbox
# on its node. An agent reads parts of them with the shell (sed -n, head, grep), whose output is
# capped anyway.
MAX_FILE_BYTES = 4 << 20


class EditorError(Exception):
    """A refused command; the message is what the model reads."""


def too_large(path: str, size: int) -> EditorError:
    return EditorError(f"Error: {path} is {size} bytes, more than the editor reads ({MAX_FILE_BYTES} bytes). "
                       "Look at parts of it with the shell instead (`sed -n '1,100p' FILE`, `grep -n WORD FILE`, "
                       "`head`), and edit it with a script if you must.")


def cannot_write(path: str, exc: OSError) -> EditorError:
    return EditorError(f"Error: cannot write {path}: permission denied (the editor writes as the sandbox's "
                       f"user). {str(exc)[-200:]}")


class FileIO(Protocol):
    async def read(self, path: str) -> bytes: ...  # FileNotFoundError / IsADirectoryError
    async def write(self, path: str, data: bytes) -> None: ...
    async def kind(self, path: str) -> str: ...  # "file", "dir" or "missing"
    async def listing(self, path: str) -> str: ...  # files and dirs up to 2 levels deep
    async def remove(self, path: str) -> None: ...


class SandboxFileIO:
    """Files in a sandbox: writes through `write_file` (never argv, as the sandbox's user), reads
    through the shell session.

    Reading as base64 over the persistent shell costs a few milliseconds; the archive API that
    `read_file` uses costs tens (measured by scripts/bench_env.py), and an agent views files often.
    The file's size is looked at first, in the same command: past MAX_FILE_BYTES nothing of it is
    sent (see `too_large`).
    """

    MAX_READ = MAX_FILE_BYTES

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    async def read(self, path: str) -> bytes:
        q = shlex.quote(path)
        res = await self.sandbox.exec(f"if [ -d {q} ]; then echo DIR; elif [ -f {q} ]; then "
                                      f"s=$(stat -L -c %s -- {q}) && if [ \"$s\" -gt {self.MAX_READ} ]; "
                                      f"then echo \"BIG $s\"; else echo FILE; base64 -w0 -- {q}; fi; "
                                      "else echo MISSING; fi", timeout=60,
                                      output_limit=self.MAX_READ * 4 // 3 + 4096)
        kind, _, body = res.output.partition("\n")
        if kind == "DIR":
            raise IsADirectoryError(path)
        if kind.startswith("BIG "):
            raise too_large(path, int(kind.split()[1]))
        if kind != "FILE" or not res.ok:
            raise FileNotFoundError(path)
        if res.truncated:  # the file grew between the size check and the read
            raise too_large(path, self.MAX_READ + 1)
        return base64.b64decode(body.strip())

    async def write(self, path: str, data: bytes) -> None:
        try:
            await self.sandbox.write_file(path, data)
        except PermissionError as exc:
            raise cannot_write(path, exc) from None

    async def kind(self, path: str) -> str:
        q = shlex.quote(path)
        res = await self.sandbox.exec(f"if [ -d {q} ]; then echo dir; elif [ -e {q} ]; then echo file; "
                                      "else echo missing; fi", timeout=10)
        return res.output.strip() or "missing"

    async def listing(self, path: str) -> str:
        res = await self.sandbox.exec(f"find {shlex.quote(path)} -maxdepth 2 -not -path '*/.*' | sort | head -500",
                                      timeout=30)
        return res.output.rstrip()

    async def remove(self, path: str) -> None:
        await self.sandbox.exec(f"rm -f {shlex.quote(path)}", timeout=10)


class LocalFileIO:
    """Files on this machine (tests, local tools)."""

    async def read(self, path: str) -> bytes:
        p = Path(path)
        if p.is_dir():
            raise IsADirectoryError(path)
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise too_large(path, size)
        return p.read_bytes()

    async def write(self, path: str, data: bytes) -> None:
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(data)
        except PermissionError as exc:
            raise cannot_write(path, exc) from None

    async def kind(self, path: str) -> str:
        p = Path(path)
        return "dir" if p.is_dir() else "file" if p.exists() else "missing"

    async def listing(self, path: str) -> str:
        root = Path(path)
        items = [root] + sorted(p for p in root.rglob("*") if len(p.relative_to(root).parts) <= 2
                                and not any(part.startswith(".") for part in p.relative_to(root).parts))
        return "\n".join(str(p) for p in items[:500])

    async def remove(self, path: str) -> None:
        Path(path).unlink(missing_ok=True)


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="surrogateescape")


def _encode(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogateescape")


def _printable(text: str) -> str:
    """Text safe to show (surrogates from non-UTF-8 bytes become U+FFFD)."""
    return text.encode("utf-8", errors="replace").decode("utf-8", errors="replace")


def numbered(text: str, start: int = 1) -> str:
    """Lines with right-aligned numbers and a tab, as `cat -n` prints them."""
    return "\n".join(f"{i:6d}\t{line}" for i, line in enumerate(text.split("\n"), start))


class Editor:
    """One editor per episode: it keeps the undo history of every file it changed."""

    def __init__(self, files: FileIO, workdir: str = "/testbed") -> None:
        self.files = files
        self.workdir = workdir
        self.history: dict[str, list[bytes | None]] = {}

    def resolve(self, path: str) -> str:
        if not path:
            raise EditorError("Error: `path` is required.")
        return posixpath.normpath(path if path.startswith("/") else posixpath.join(self.workdir, path))

    async def run(self, args: dict[str, Any]) -> str:
        """Run one editor command; refusals come back as text starting with 'Error:'."""
        command = args.get("command")
        handlers = {"view": self.view, "create": self.create, "str_replace": self.str_replace,
                    "insert": self.insert, "undo_edit": self.undo_edit}
        if command not in handlers:
            return f"Error: unknown command {command!r}; use one of {', '.join(handlers)}."
        try:
            return await handlers[command](self.resolve(str(args.get("path") or "")), args)
        except EditorError as exc:
            return str(exc)

    async def _read(self, path: str) -> str:
        try:
            return _decode(await self.files.read(path))
        except FileNotFoundError:
            raise EditorError(f"Error: {path} does not exist. Use `view` on a directory to see what is there, "
                              "or `create` to make a new file.") from None
        except IsADirectoryError:
            raise EditorError(f"Error: {path} is a directory; only `view` works on directories.") from None

    async def _write(self, path: str, text: str, previous: bytes | None) -> None:
        await self.files.write(path, _encode(text))
        self.history.setdefault(path, []).append(previous)

    def _snippet(self, path: str, text: str, first_line: int, last_line: int) -> str:
        lines = text.split("\n")
        start = max(1, first_line - SNIPPET_CONTEXT)
        end = min(len(lines), last_line + SNIPPET_CONTEXT)
        body = numbered("\n".join(lines[start - 1:end]), start)
        return f"The file {path} has been edited. Here is the result of `cat -n` on lines {start}-{end}:\n" \
               f"{_printable(body)}\nReview the changes and make sure they are as expected."

    async def view(self, path: str, args: dict[str, Any]) -> str:
        kind = await self.files.kind(path)
        if kind == "missing":
            raise EditorError(f"Error: {path} does not exist.")
        if kind == "dir":
            if args.get("view_range"):
                raise EditorError("Error: `view_range` only applies to files, not directories.")
            listing = await self.files.listing(path)
            return f"Files and directories up to 2 levels deep in {path}, hidden items excluded:\n{listing}"
        text = await self._read(path)
        lines = text.split("\n")
        start, end = 1, len(lines)
        view_range = args.get("view_range")
        if view_range is not None:
            if (not isinstance(view_range, list | tuple) or len(view_range) != 2
                    or not all(isinstance(v, int) for v in view_range)):
                raise EditorError("Error: `view_range` must be two integers [start, end].")
            start, end = view_range
            if end == -1:
                end = len(lines)
            if not 1 <= start <= len(lines):
                raise EditorError(f"Error: start line {start} is outside the file's lines [1, {len(lines)}].")
            if end < start or end > len(lines):
                raise EditorError(f"Error: end line {end} must be between {start} and {len(lines)} "
                                  "(or -1 for the last line).")
        body = numbered("\n".join(lines[start - 1:end]), start)
        return f"Here is the result of `cat -n` on {path} (lines {start}-{end} of {len(lines)}):\n{_printable(body)}"

    async def create(self, path: str, args: dict[str, Any]) -> str:
        text = args.get("file_text")
        if not isinstance(text, str):
            raise EditorError("Error: `file_text` is required for `create`.")
        kind = await self.files.kind(path)
        if kind == "dir":
            raise EditorError(f"Error: {path} is a directory.")
        previous = await self.files.read(path) if kind == "file" else None
        await self._write(path, text, previous)
        verb = "overwritten (use undo_edit to restore it)" if previous is not None else "created"
        return f"File {path} {verb}."

    async def str_replace(self, path: str, args: dict[str, Any]) -> str:
        old, new = args.get("old_str"), args.get("new_str", "")
        if not isinstance(old, str) or old == "":
            raise EditorError("Error: `old_str` is required and must not be empty for `str_replace`.")
        if not isinstance(new, str):
            raise EditorError("Error: `new_str` must be a string.")
        raw = await self.files.read(path) if await self.files.kind(path) == "file" else None
        text = _decode(raw) if raw is not None else await self._read(path)
        count = text.count(old)
        if count == 0:
            raise EditorError(f"Error: no replacement was performed: old_str did not appear verbatim in {path}."
                              f"{_near_miss(text, old)} View the file and copy the text exactly, including "
                              "whitespace and indentation.")
        if count > 1:
            lines = _match_lines(text, old)
            raise EditorError(f"Error: no replacement was performed: old_str occurs {count} times in {path} "
                              f"(starting at lines {lines}). Include more surrounding lines so that it is unique.")
        at = text.index(old)
        updated = text[:at] + new + text[at + len(old):]
        await self._write(path, updated, raw)
        first = text[:at].count("\n") + 1
        return self._snippet(path, updated, first, first + new.count("\n"))

    async def insert(self, path: str, args: dict[str, Any]) -> str:
        line, new = args.get("insert_line"), args.get("new_str")
        if not isinstance(line, int) or isinstance(line, bool):
            raise EditorError("Error: `insert_line` (an integer) is required for `insert`.")
        if not isinstance(new, str):
            raise EditorError("Error: `new_str` is required for `insert`.")
        raw = await self.files.read(path) if await self.files.kind(path) == "file" else None
        text = _decode(raw) if raw is not None else await self._read(path)
        lines = text.split("\n")
        if not 0 <= line <= len(lines):
            raise EditorError(f"Error: insert_line {line} is outside [0, {len(lines)}].")
        updated = "\n".join(lines[:line] + new.split("\n") + lines[line:])
        await self._write(path, updated, raw)
        return self._snippet(path, updated, line + 1, line + 1 + new.count("\n"))

    async def undo_edit(self, path: str, args: dict[str, Any]) -> str:
        stack = self.history.get(path)
        if not stack:
            raise EditorError(f"Error: no edit of {path} to undo.")
        previous = stack.pop()
        if previous is None:
            await self.files.remove(path)
            return f"Undid the creation of {path}: the file is removed."
        await self.files.write(path, previous)
        return f"Last edit of {path} undone. Current content:\n{_printable(numbered(_decode(previous)))}"


def _match_lines(text: str, needle: str) -> list[int]:
    lines, pos = [], text.find(needle)
    while pos != -1:
        lines.append(text[:pos].count("\n") + 1)
        pos = text.find(needle, pos + 1)
    return lines


def _near_miss(text: str, old: str) -> str:
    """A hint when old_str matches once whitespace is ignored (the commonest mistake)."""
    first = next((ln.strip() for ln in old.split("\n") if ln.strip()), "")
    if not first:
        return ""
    hits = [i for i, ln in enumerate(text.split("\n"), 1) if first in ln]
    if not hits:
        return ""
    return f" Its first line ({first[:60]!r}) appears, stripped of whitespace, at line(s) {hits[:5]}."
