"""Unified diffs, parsed once: which files a patch touches, how, and its hunks; and turned around.

Every reader of a patch in envfarm goes through `parse_diff`: the task schema (the files a test
patch touches), the patch guard (every path an agent's patch could write) and the scripted
policy (the gold patch's hunks, replayed as editor calls). The tasks layer is the lowest layer
all of them may import, so the module lives here and imports nothing of envfarm.

Names are read the way `git apply -p1` reads them (git 2.39's apply.c), because grading applies
patches with `git apply`:

- `diff --git a/X b/Y`: the name comes from the header only when both sides agree (git's
  `git_header_name`), else from `rename from/to`, `copy from/to` and the `---`/`+++` lines;
- C-style quoted names (`"b/x y\\303\\251.py"`: `\\"`, `\\\\`, `\\t`, `\\n`, ... and octal
  bytes, decoded as UTF-8) are unquoted; one leading component is stripped, whatever it is;
- in a git diff a `---`/`+++` name ends at a tab or the end of the line, so spaces after it are
  part of the name (`git apply` then creates `x.py  `); `/dev/null` means no file on that side;
- without a `diff --git` header (a "traditional" diff), a name ends at a tab or before a
  `diff -u` timestamp, and both sides take the `+++` name, preferring the `---` name when the
  `+++` name merely extends it (`x.py.orig`).

Grading falls back to GNU `patch -p1` when `git apply` refuses a patch, and GNU patch reads a
name only up to the first white space (`+++ b/conftest.py junk` is `conftest.py` to it). Each
entry keeps those readings in `FileDiff.aliases`, so the guard can see every file either tool
might write.

Hunks are read by their line counts, as both tools read them: a `--- x` line inside a hunk is a
removed line, not a header. A hunk that falls short of its counts (a line that cannot belong to
it, or the end of the text) is corrupt, and `git apply` refuses the patch; its lines are read
again as possible headers, since no one can say how another tool reads them. A `---` or `+++`
line (or a `rename`/`copy` line) outside any header and hunk, which git ignores but GNU patch may
take as the name for the next hunk, becomes an entry of its own (`_lone_header`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

DEV_NULL = "/dev/null"

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_HUNK_RANGES = re.compile(r"^@@ -(\d+(?:,\d+)?) \+(\d+(?:,\d+)?) @@")  # the ranges as written, to swap
_GIT_HEADER = "diff --git "
# `diff -u` puts a timestamp after the name; git's diff_timestamp_len recognises these shapes
_TIMESTAMP = re.compile(r"\s+(?:\d{4}-\d\d-\d\d|\w{3} \w{3} [ \d]\d)[ T]\d\d?:\d\d(?::\d\d(?:\.\d+)?)?"
                        r"(?: \d{4})?(?: ?[+-]\d{4}| ?[A-Z]{2,5})?\s*$")
# how a plain reader (the patch guard before this module, GNU patch) splits `diff --git a/X b/Y`
_PLAIN_GIT_HEADER = re.compile(r'^(?:"a/((?:[^"\\]|\\.)*)"|a/(\S+)) (?:"b/((?:[^"\\]|\\.)*)"|b/(\S+))$')
_LONE = ("--- ", "+++ ", "rename from ", "rename to ", "copy from ", "copy to ")
_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}
# extended header lines of a git diff (git's parse_git_diff_header)
_EXTENDED = ("old mode ", "new mode ", "deleted file mode ", "new file mode ", "copy from ", "copy to ",
             "rename old ", "rename new ", "rename from ", "rename to ", "similarity index ",
             "dissimilarity index ", "index ", "--- ", "+++ ")


@dataclass
class Hunk:
    """One `@@ -a,b +c,d @@` block: the lines it expects and the lines it leaves."""

    old_start: int
    old_count: int = 1
    new_start: int = 0
    new_count: int = 1
    old_lines: list[str] = field(default_factory=list)
    new_lines: list[str] = field(default_factory=list)
    old_eof_newline: bool = True  # False after "\ No newline at end of file" on the old side
    new_eof_newline: bool = True

    @property
    def old_text(self) -> str:
        return "\n".join(self.old_lines) + ("\n" if self.old_eof_newline and self.old_lines else "")

    @property
    def new_text(self) -> str:
        return "\n".join(self.new_lines) + ("\n" if self.new_eof_newline and self.new_lines else "")


@dataclass
class FileDiff:
    """One file of a patch. `old_path` is None for a new file, `new_path` for a deleted one."""

    old_path: str | None = None
    new_path: str | None = None
    new_file: bool = False
    deleted: bool = False
    renamed: bool = False
    copied: bool = False
    old_mode: str | None = None  # e.g. "100644"; "120000" is a symbolic link
    new_mode: str | None = None
    binary: bool = False  # "Binary files ... differ" or "GIT binary patch": no text hunks
    git: bool = False  # came with a `diff --git` header
    hunks: list[Hunk] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)  # other readings of the names (GNU patch's)

    @property
    def path(self) -> str:
        """The file as it is after the patch (before it, for a deleted file)."""
        return self.new_path or self.old_path or ""

    @property
    def paths(self) -> list[str]:
        """Both sides' names, without duplicates (one for most files, two for a rename)."""
        return list(dict.fromkeys(p for p in (self.old_path, self.new_path) if p))

    @property
    def mode_changed(self) -> bool:
        """An existing file's mode changes (`old mode` / `new mode`)."""
        return bool(self.old_mode and self.new_mode and self.old_mode != self.new_mode)

    @property
    def symlink(self) -> bool:
        """The patch leaves a symbolic link at `new_path`."""
        return self.new_mode == "120000"


def parse_diff(text: str) -> list[FileDiff]:
    """The files of a unified diff (git's extended format or a plain `diff -u`), in order.

    Lines that belong to no file (a commit message, an e-mail's signature) are skipped, as
    `git apply` skips them. Never raises: a corrupt patch yields what could be read of it.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    files: list[FileDiff] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(_GIT_HEADER):
            entry, i = _git_file(lines, i)
        elif line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            entry, i = _traditional_file(lines[i], lines[i + 1]), i + 2
        elif line.startswith(_LONE) and (lone := _lone_header(line)):
            entry, i = lone, i + 1
        else:
            i += 1
            continue
        i = _read_hunks(lines, i, entry)
        files.append(entry)
    return files


def files_in_diff(diff: str) -> list[str]:
    """The files a diff touches as they are after it (a deleted file by its old name), in order."""
    return list(dict.fromkeys(f.path for f in parse_diff(diff) if f.path))


def named_paths(files: list[FileDiff]) -> list[str]:
    """Every path parsed files name, as git apply or GNU patch could read it: both sides of each
    file (renames and copies included) and the aliases, in order, without duplicates."""
    return list(dict.fromkeys(p for f in files for p in (*f.paths, *f.aliases) if p))


def patch_paths(patch: str) -> list[str]:
    """`named_paths` of a patch: every path it could write or remove."""
    return named_paths(parse_diff(patch))


# -- names -------------------------------------------------------------------------------------
def unquote_c_style(s: str) -> tuple[str, int] | None:
    """A name git quoted (`"a/x y\\303\\251.py"`): the name and the index after the closing quote.

    None when `s` does not start with a well-formed quoted string.
    """
    if not s.startswith('"'):
        return None
    out = bytearray()
    i = 1
    while i < len(s):
        c = s[i]
        if c == '"':
            return out.decode("utf-8", errors="surrogateescape"), i + 1
        if c != "\\":
            out += c.encode("utf-8", errors="surrogateescape")
            i += 1
            continue
        nxt = s[i + 1: i + 2]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif re.fullmatch(r"[0-3][0-7][0-7]", s[i + 1: i + 4]):
            out.append(int(s[i + 1: i + 4], 8))
            i += 4
        else:
            return None
    return None


def _strip_component(name: str, leading: bool = True) -> str | None:
    """`-p1`: drop everything up to the first slash; None when there is none. A leading slash
    counts on `---`/`+++` lines (`/etc/x` is `etc/x` to git) but not in `diff --git` headers."""
    slash = name.find("/")
    return name[slash + 1:] if slash > 0 or (slash == 0 and leading) else None


def _squash(name: str | None) -> str | None:
    return re.sub(r"/{2,}", "/", name) if name else name


def _is_dev_null(rest: str) -> bool:
    return rest.startswith(DEV_NULL) and (len(rest) == len(DEV_NULL) or rest[len(DEV_NULL)].isspace())


def _header_name(rest: str, traditional: bool = False) -> str | None:
    """The name on a `---`/`+++` line (after the marker), as git apply reads it."""
    if rest.startswith('"'):
        quoted = unquote_c_style(rest)
        if quoted:
            return _squash(_strip_component(quoted[0]))
        if not traditional:
            return None
    if traditional and "\t" not in rest and (m := _TIMESTAMP.search(rest)):
        rest = rest[:m.start()]
    return _squash(_strip_component(rest.split("\t", 1)[0]))


def _line_name(rest: str) -> str | None:
    """The name on a `rename from`/`copy to` line: the whole rest of the line, no prefix."""
    if rest.startswith('"'):
        quoted = unquote_c_style(rest)
        return _squash(quoted[0]) if quoted else None
    return _squash(rest) or None


def _git_header_name(rest: str) -> str | None:
    """The name in `diff --git <rest>` when both sides name the same file (git_header_name)."""
    if rest.startswith('"'):
        first = unquote_c_style(rest)
        if not first:
            return None
        name = _strip_component(first[0], leading=False)
        second = rest[first[1]:].lstrip(" \t")
        if name is None or not second:
            return None
        if second.startswith('"'):
            other = unquote_c_style(second)
            other_name = _strip_component(other[0], leading=False) if other else None
        else:
            other_name = _strip_component(second, leading=False)
        return name if other_name == name else None
    name = _strip_component(rest, leading=False)
    if name is None:
        return None
    if '"' in name:  # the first name is plain, so a quote starts the second one
        quote = name.index('"')
        other = unquote_c_style(name[quote:])
        other_name = _strip_component(other[0], leading=False) if other else None
        if other_name and name[:len(other_name)] == other_name and name[len(other_name):quote].isspace():
            return other_name
        return None
    # both plain: accept a name only where it shows up twice in exactly the same form
    for k, c in enumerate(name):
        if c in " \t":
            second = _strip_component(name[k + 1:], leading=False)
            if second is not None and second == name[:k]:
                return second
    return None


def _first_word(rest: str) -> str | None:
    """GNU patch's reading of a header name: the first word, an `a/` or `b/` prefix dropped."""
    if rest.startswith('"'):
        quoted = unquote_c_style(rest)
        word = quoted[0] if quoted else rest.split()[0]
    else:
        word = rest.split()[0] if rest.split() else ""
    if word == DEV_NULL or not word:
        return None
    return word[2:] if word.startswith(("a/", "b/")) else word


def _add_alias(entry: FileDiff, name: str | None) -> None:
    if name and name not in entry.aliases:
        entry.aliases.append(name)


def _drop_known_aliases(entry: FileDiff) -> None:
    if entry.aliases:
        known = (entry.old_path, entry.new_path)
        entry.aliases = [a for a in entry.aliases if a not in known]


# -- files -------------------------------------------------------------------------------------
def _git_file(lines: list[str], i: int) -> tuple[FileDiff, int]:
    """A `diff --git` header and its extended header lines; returns the entry and the next line."""
    rest = lines[i][len(_GIT_HEADER):]
    entry = FileDiff(git=True)
    default = _git_header_name(rest)
    plain = _PLAIN_GIT_HEADER.match(rest)
    old: str | None = None
    new: str | None = None
    i += 1
    while i < len(lines) and lines[i].startswith(_EXTENDED):
        line = lines[i]
        if line.startswith(("--- ", "+++ ")):
            side, value = line[:3], line[4:]
            _add_alias(entry, _first_word(value))
            if not _is_dev_null(value):
                name = _header_name(value)
                if side == "---":
                    old = old or name
                else:
                    new = new or name
            elif side == "---":
                entry.new_file = True
            else:
                entry.deleted = True
        elif line.startswith("new file mode "):
            entry.new_file, entry.new_mode = True, line.split()[-1]
        elif line.startswith("deleted file mode "):
            entry.deleted, entry.old_mode = True, line.split()[-1]
        elif line.startswith("old mode "):
            entry.old_mode = line.split()[-1]
        elif line.startswith("new mode "):
            entry.new_mode = line.split()[-1]
        elif line.startswith(("rename from ", "rename old ", "copy from ")):
            entry.renamed = entry.renamed or line.startswith("rename")
            entry.copied = entry.copied or line.startswith("copy")
            old = _line_name(line.split(" ", 2)[2])
            _add_alias(entry, line.split(" ", 2)[2].strip())
        elif line.startswith(("rename to ", "rename new ", "copy to ")):
            new = _line_name(line.split(" ", 2)[2])
            _add_alias(entry, line.split(" ", 2)[2].strip())
        i += 1
    if i < len(lines) and lines[i].startswith(("Binary files ", "GIT binary patch")):
        entry.binary = True
    entry.old_path = None if entry.new_file else (old or default)
    entry.new_path = None if entry.deleted else (new or default)
    if plain:  # a plain `a/X b/Y` header names X and Y for any tool that reads it
        for quoted, bare in ((plain.group(1), plain.group(2)), (plain.group(3), plain.group(4))):
            unq = unquote_c_style(f'"{quoted}"') if quoted is not None else None
            _add_alias(entry, unq[0] if unq else bare)
    _drop_known_aliases(entry)
    return entry, i


def _traditional_file(minus: str, plus: str) -> FileDiff:
    """A `--- X` / `+++ Y` pair without a git header, as git apply reads it."""
    old_rest, new_rest = minus[4:], plus[4:]
    entry = FileDiff()
    if _is_dev_null(old_rest):
        entry.new_file, entry.new_path = True, _header_name(new_rest, traditional=True)
    elif _is_dev_null(new_rest):
        entry.deleted, entry.old_path = True, _header_name(old_rest, traditional=True)
    else:
        first = _header_name(old_rest, traditional=True)
        name = _header_name(new_rest, traditional=True)
        if first and name and len(first) < len(name) and name.startswith(first):
            name = first  # git prefers the shorter name ("x.py" over "x.py.orig")
        entry.old_path = entry.new_path = name or first
        _add_alias(entry, first)
    for rest in (old_rest, new_rest):
        _add_alias(entry, _first_word(rest))
    _drop_known_aliases(entry)
    return entry


def _lone_header(line: str) -> FileDiff | None:
    """A `---`, `+++`, `rename`/`copy` line outside any file's header and hunks.

    `git apply` ignores such a line and refuses the hunks after it ("patch fragment without
    header"), but GNU patch, grading's fallback, takes the last name it saw for the next hunk,
    even with other text between. The entry stands for that file (both sides named), so that what
    GNU patch could write is never missed.
    """
    if line.startswith(("--- ", "+++ ")):
        rest = line[4:]
        if _is_dev_null(rest):
            return None
        name = _header_name(rest, traditional=True)
        alias = _first_word(rest)
    else:
        rest = line.split(" ", 2)[2]
        name, alias = _line_name(rest), rest.strip()
    entry = FileDiff(old_path=name, new_path=name)
    _add_alias(entry, alias)
    _drop_known_aliases(entry)
    return entry if entry.paths or entry.aliases else None


# -- hunks -------------------------------------------------------------------------------------
def _read_hunks(lines: list[str], i: int, entry: FileDiff) -> int:
    """The hunks that follow a file's header, each read by its line counts."""
    n = len(lines)
    while i < n and (m := _HUNK.match(lines[i])):
        hunk = Hunk(old_start=int(m.group(1)), old_count=int(m.group(2) or 1),
                    new_start=int(m.group(3)), new_count=int(m.group(4) or 1))
        entry.hunks.append(hunk)
        old_add, new_add = hunk.old_lines.append, hunk.new_lines.append
        old_left, new_left, last = hunk.old_count, hunk.new_count, ""
        i += 1
        body = i
        while i < n and (old_left > 0 or new_left > 0):
            line = lines[i]
            kind = line[:1] or " "  # git reads an empty line as an empty context line
            if kind == " " and old_left > 0 and new_left > 0:
                old_add(line[1:])
                new_add(line[1:])
                old_left -= 1
                new_left -= 1
            elif kind == "-" and old_left > 0:
                old_add(line[1:])
                old_left -= 1
            elif kind == "+" and new_left > 0:
                new_add(line[1:])
                new_left -= 1
            elif kind == "\\":
                _no_newline(hunk, last)
                i += 1
                continue
            else:
                break
            last = kind
            i += 1
        if old_left > 0 or new_left > 0:  # corrupt or cut short: read its lines again as headers
            return body
        if i < n and lines[i].startswith("\\"):
            _no_newline(hunk, last)
            i += 1
    if i < n and lines[i].startswith("GIT binary patch"):
        entry.binary = True
    return i


def _no_newline(hunk: Hunk, last: str) -> None:
    """`\\ No newline at end of file` applies to the side(s) of the line before it."""
    if last in (" ", "-"):
        hunk.old_eof_newline = False
    if last in (" ", "+"):
        hunk.new_eof_newline = False


# -- reversing ---------------------------------------------------------------------------------
class DiffError(ValueError):
    """A diff that cannot be turned around as text; the message says why."""


_SWAPPED_LINES = (("new file mode ", "deleted file mode "), ("deleted file mode ", "new file mode "))
_SIDE_PAIRS = (("old mode ", "new mode "), ("rename from ", "rename to "), ("rename old ", "rename new "))


def reverse_diff(diff: str) -> str:
    """The diff that undoes `diff`, as `git diff -R` writes it.

    Datasets that make tasks by injecting bugs (SWE-smith) publish the bug-introducing diff; the
    fix is its reverse. Old and new sides swap everywhere: the `diff --git` names, the `---` and
    `+++` lines, new and deleted file headers, old and new modes, renames, `index` hashes, hunk
    ranges and the +/- lines (removed lines first in each change, as git writes them), with every
    `\\ No newline at end of file` marker kept after its line. Text outside any file (a commit
    message) is kept as it is. Raises DiffError for what text cannot reverse: binary files,
    copies (undoing one needs the whole copied file), combined diffs, hunks outside a file and
    hunks cut short.
    """
    lines = diff.split("\n")
    ends_with_newline = bool(lines) and lines[-1] == ""
    if ends_with_newline:
        lines.pop()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(_GIT_HEADER):
            entry, end = _git_file(lines, i)
            _check_reversible(entry, line)
            out += _reverse_git_header(lines[i:end], entry)
            i = _reverse_hunks(lines, end, out)
        elif line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            out += ["--- " + lines[i + 1][4:], "+++ " + line[4:]]
            i = _reverse_hunks(lines, i + 2, out)
        elif line.startswith(("diff --cc ", "diff --combined ")):
            raise DiffError(f"a combined (merge) diff cannot be reversed: {line[:200]!r}")
        elif line.startswith(("Binary files ", "GIT binary patch")):
            raise DiffError(f"binary content cannot be reversed as text: {line[:200]!r}")
        elif _HUNK_RANGES.match(line):
            raise DiffError(f"a hunk outside any file's header: {line[:200]!r}")
        else:
            out.append(line)
            i += 1
    return "\n".join(out) + ("\n" if ends_with_newline else "")


def _check_reversible(entry: FileDiff, header: str) -> None:
    if entry.binary:
        raise DiffError(f"binary content cannot be reversed as text ({entry.path or header[:200]!r}): "
                        "regenerate the diff the other way round with `git diff -R --binary`")
    if entry.copied:
        raise DiffError(f"a copy cannot be reversed without the copied file's content ({entry.path}): "
                        "regenerate the diff without copy detection (no -C)")


def _reverse_git_header(header: list[str], entry: FileDiff) -> list[str]:
    """A `diff --git` line and its extended header lines with old and new sides swapped."""
    first, sep, second = _split_git_names(header[0][len(_GIT_HEADER):], entry)
    out = [f"{_GIT_HEADER}{second}{sep}{first}"]
    values = {prefix: line[len(prefix):] for line in header[1:]
              for pair in _SIDE_PAIRS for prefix in pair if line.startswith(prefix)}
    minus = next((line[4:] for line in header[1:] if line.startswith("--- ")), None)
    plus = next((line[4:] for line in header[1:] if line.startswith("+++ ")), None)
    for line in header[1:]:
        out.append(_reverse_header_line(line, values, minus, plus))
    return out


def _reverse_header_line(line: str, values: dict[str, str], minus: str | None, plus: str | None) -> str:
    for prefix, other in _SWAPPED_LINES:
        if line.startswith(prefix):
            return other + line[len(prefix):]
    for old, new in _SIDE_PAIRS:
        if line.startswith(old) and new in values:
            return old + values[new]
        if line.startswith(new) and old in values:
            return new + values[old]
    if line.startswith("index ") and (m := re.match(r"index (\w+)\.\.(\w+)(.*)$", line)):
        return f"index {m.group(2)}..{m.group(1)}{m.group(3)}"
    if line.startswith("--- ") and plus is not None:
        return "--- " + plus
    if line.startswith("+++ ") and minus is not None:
        return "+++ " + minus
    return line  # similarity and dissimilarity index: the same both ways


def _split_git_names(rest: str, entry: FileDiff) -> tuple[str, str, str]:
    """`diff --git <rest>` split into its two names (as written, quotes kept) and what is between.

    Names may hold spaces, so where the header cannot be split at a lone space or a quote, the
    split is the one whose sides name the file before and after the change, as parsed."""
    if rest.startswith('"'):
        quoted = unquote_c_style(rest)
        if quoted and rest[quoted[1]:quoted[1] + 1] == " ":
            second = rest[quoted[1]:].lstrip(" ")
            return rest[:quoted[1]], rest[quoted[1]:len(rest) - len(second)], second
    else:
        spaces = [k for k, c in enumerate(rest) if c == " "]
        before = entry.old_path or entry.new_path
        after = entry.new_path or entry.old_path
        for k in spaces:
            first, second = rest[:k], rest[k + 1:]
            if second.startswith('"'):
                quoted = unquote_c_style(second)
                if quoted and quoted[1] == len(second):
                    return first, " ", second
            elif len(spaces) == 1 or (
                    _squash(_strip_component(first, leading=False)) == before
                    and _squash(_strip_component(second, leading=False)) == after):
                return first, " ", second
    raise DiffError(f"cannot tell the two names apart in {_GIT_HEADER}{rest[:200]!r}")


def _reverse_hunks(lines: list[str], i: int, out: list[str]) -> int:
    """The hunks after a file's header, each with its ranges and +/- lines swapped; returns the
    next line. Read by their line counts, as `_read_hunks` reads them."""
    n = len(lines)
    while i < n and (m := _HUNK_RANGES.match(lines[i])):
        old_range, new_range = m.group(1), m.group(2)
        out.append(f"@@ -{new_range} +{old_range} @@{lines[i][m.end():]}")
        old_left, new_left = _range_count(old_range), _range_count(new_range)
        units: list[list[str]] = []  # the hunk's lines in their new order; a marker joins its line
        removed: list[list[str]] = []  # the reverse removes what the diff added, and the other way
        added: list[list[str]] = []
        last: list[str] | None = None
        start = i
        i += 1
        while i < n and (old_left > 0 or new_left > 0 or (lines[i].startswith("\\") and last is not None)):
            line = lines[i]
            kind = line[:1] or " "  # git reads an empty line as an empty context line
            if kind == "\\" and last is not None:
                last.append(line)
            elif kind == " " and old_left > 0 and new_left > 0:
                units += removed + added
                removed, added = [], []
                last = [line]
                units.append(last)
                old_left, new_left = old_left - 1, new_left - 1
            elif kind == "-" and old_left > 0:
                last = ["+" + line[1:]]
                added.append(last)
                old_left -= 1
            elif kind == "+" and new_left > 0:
                last = ["-" + line[1:]]
                removed.append(last)
                new_left -= 1
            else:
                break
            i += 1
        if old_left > 0 or new_left > 0:
            raise DiffError(f"the hunk {lines[start][:80]!r} is cut short (line {i + 1} of the diff): "
                            "a corrupt diff cannot be reversed")
        units += removed + added
        out += [text for unit in units for text in unit]
    return i


def _range_count(text: str) -> int:
    """The line count of a hunk range (`12,3` is 3 lines; a bare `12` is one)."""
    return int(text.split(",")[1]) if "," in text else 1
