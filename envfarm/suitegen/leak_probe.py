"""Find a task's fix anywhere in an image outside /testbed: runs *inside* the image (stdlib only).

`envfarm.suitegen.leaks` feeds this file to `python3 -` in a throwaway container of a repository
image (as root, no network) with the image's tasks as JSON on stdin, and reads a JSON report on
stdout. One walk of the file system serves every task of the image.

What counts as the fix being there (the image's /testbed holds the clean code; each task's
`bug_patch` turns it into what the agent starts from):
- byte code: a code object in any `.pyc` (or marshal stream) equal, line numbers and file name
  aside, to a code object of the clean file that the buggy file does not have (its name, byte
  code, names, variables and constants, nested code included). Compared with the image's own
  Python, so the byte code is the same compiler's;
- Python source anywhere (any extension) that names a changed function: compiled here and
  compared the same way, so formatting, comments and line numbers do not hide a copy;
- any text: the changed lines of the clean file with their nearest context lines, whitespace
  stripped and blank lines ignored, as one run of lines (a copy inside a `.patch`, a `.orig`, a
  README, a changelog).
Zip archives (wheels, eggs) and gzip/tar files are opened and their members checked the same way.
"""

import difflib
import gzip
import io
import json
import marshal
import os
import re
import sys
import tarfile
import time
import types
import zipfile

SKIP_ROOTS = ("/testbed", "/proc", "/sys", "/dev")
MAX_FILE = 64 << 20
ARCHIVE_EXT = (".whl", ".zip", ".egg", ".pyz", ".gz", ".tgz", ".tar", ".bz2", ".xz")


def apply_patch(files, patch):
    """Apply a unified diff (as `git apply -p1` would, exact context) to {path: text}."""
    out = dict(files)
    blocks = re.split(r"(?m)^diff --git ", patch)
    for block in blocks:
        m = re.search(r"(?m)^\+\+\+ (\S+)", block)
        if not m or m.group(1) == "/dev/null":
            continue
        path = m.group(1).split("/", 1)[1]
        old = out.get(path, "").split("\n")
        new, pos = [], 0
        lines = block.split("\n")
        i = 0
        while i < len(lines):
            h = re.match(r"@@ -(\d+)(?:,(\d+))? \+\d+(?:,(\d+))? @@", lines[i])
            i += 1
            if not h:
                continue
            n_old = int(h.group(2) if h.group(2) is not None else 1)
            n_new = int(h.group(3) if h.group(3) is not None else 1)
            start = int(h.group(1)) - (0 if n_old == 0 else 1)
            new += old[pos:start]
            pos = start
            while (n_old > 0 or n_new > 0) and i < len(lines):
                line = lines[i]
                i += 1
                if line.startswith("\\"):
                    continue
                op, body = (line[:1] or " "), line[1:]
                if op == " ":
                    new.append(body)
                    pos, n_old, n_new = pos + 1, n_old - 1, n_new - 1
                elif op == "-":
                    pos, n_old = pos + 1, n_old - 1
                elif op == "+":
                    new.append(body)
                    n_new -= 1
                else:
                    raise ValueError(f"unexpected line in a hunk of {path}: {line[:40]!r}")
        new += old[pos:]
        out[path] = "\n".join(new)
    return out


def fingerprint(code, memo):
    """Hashable identity of a code object without its line numbers or file name."""
    key = id(code)
    if key in memo:
        return memo[key]
    consts = tuple(fingerprint(c, memo) if isinstance(c, types.CodeType) else (type(c).__name__, repr(c))
                   for c in code.co_consts)
    fp = hash((code.co_name, code.co_code, code.co_names, code.co_varnames, code.co_freevars,
               code.co_cellvars, code.co_argcount, code.co_kwonlyargcount, code.co_flags, consts))
    memo[key] = fp
    return fp


def code_objects(code):
    yield code
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            yield from code_objects(c)


def fps_of(code):
    memo = {}
    return {fingerprint(c, memo): c.co_name for c in code_objects(code)}


def norm_lines(text):
    return [ln.strip() for ln in text.split("\n") if ln.strip()]


def text_needles(clean, buggy, context=1):
    """Runs of stripped clean lines around each change, widened until the buggy file lacks them."""
    a, b = norm_lines(clean), norm_lines(buggy)
    joined_b = "\n" + "\n".join(b) + "\n"
    needles = []
    for tag, i1, i2, _, _ in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        for ctx in range(context, 6):
            run = a[max(0, i1 - ctx):i2 + ctx]
            if run and "\n" + "\n".join(run) + "\n" not in joined_b:
                needles.append(run)
                break
    return needles


class Task:
    def __init__(self, row):
        self.id = row["instance_id"]
        self.hits = []
        self.fps = {}  # fingerprint -> function name: code objects only the clean files have
        self.needles = []  # (key line as bytes, the run of lines as one normalised string)
        self.names = set()
        self.error = ""
        try:
            self._prepare(row)
        except Exception as exc:  # noqa: BLE001 - reported per task, the others still scanned
            self.error = f"{type(exc).__name__}: {exc}"

    def _prepare(self, row):
        paths = set(re.findall(r"(?m)^\+\+\+ [^/\s]+/(\S+)", row.get("bug_patch") or row["patch"]))
        base = {}
        for p in paths:
            with open(os.path.join("/testbed", p), encoding="utf-8", errors="surrogateescape") as fh:
                base[p] = fh.read()
        if row.get("bug_patch"):
            clean, buggy = base, apply_patch(base, row["bug_patch"])
            if row.get("patch") and apply_patch(buggy, row["patch"]) != clean:
                raise ValueError("the gold patch does not turn the buggy files back into /testbed's")
        else:
            buggy, clean = base, apply_patch(base, row["patch"])
        for p in paths:
            if clean[p] == buggy[p]:
                raise ValueError(f"the patch does not change {p}")
            if p.endswith(".py"):
                good = fps_of(compile(clean[p], p, "exec", dont_inherit=True))
                bad = fps_of(compile(buggy[p], p, "exec", dont_inherit=True))
                self.fps.update({fp: name for fp, name in good.items() if fp not in bad})
            for run in text_needles(clean[p], buggy[p]):
                key = max(run, key=len).encode("utf-8", "surrogateescape")
                self.needles.append((key, "\n" + "\n".join(run) + "\n"))
        self.names = {n for n in self.fps.values() if not n.startswith("<")}


def scan_bytes(path, data, tasks, names_re, stats):
    """Check one file's bytes (or an archive member's) against every task."""
    stats["files"] += 1
    if data[:4] == b"\x7fELF":
        return
    low = path.lower()
    if low.endswith(ARCHIVE_EXT) and stats["depth"] < 2:
        stats["depth"] += 1
        try:
            scan_archive(path, data, tasks, names_re, stats)
        finally:
            stats["depth"] -= 1
        return
    is_pyc = low.endswith(".pyc") or (len(data) > 16 and data[2:4] == b"\r\n" and low.endswith(".pyo"))
    text_hits = [t for t in tasks for key, _ in t.needles if key in data]
    if text_hits and not is_pyc:
        normal = "\n" + "\n".join(norm_lines(data.decode("utf-8", "surrogateescape"))) + "\n"
        for t in set(text_hits):
            if any(key in data and run in normal for key, run in t.needles):
                t.hits.append(path)
    if names_re is None or not names_re.search(data):
        return
    code = None
    if is_pyc:
        try:
            code = marshal.loads(data[16:])
        except Exception:  # noqa: BLE001 - another Python's byte code, or not byte code at all
            return
    elif b"def " in data or b"lambda" in data:
        try:
            code = compile(data, path, "exec", dont_inherit=True)
        except Exception:  # noqa: BLE001 - not Python (or not this Python's): the text check covers it
            return
    if not isinstance(code, types.CodeType):
        return
    stats["compared"] += 1
    found = set(fps_of(code))
    for t in tasks:
        if t.fps and found & t.fps.keys() and path not in t.hits:
            t.hits.append(path)


def scan_archive(path, data, tasks, names_re, stats):
    buf = io.BytesIO(data)
    try:
        if zipfile.is_zipfile(buf):
            with zipfile.ZipFile(buf) as zf:
                for info in zf.infolist():
                    if not info.is_dir() and info.file_size <= MAX_FILE:
                        scan_bytes(f"{path}!{info.filename}", zf.read(info), tasks, names_re, stats)
            return
        buf.seek(0)
        try:
            with tarfile.open(fileobj=buf) as tf:
                for member in tf:
                    if member.isfile() and member.size <= MAX_FILE:
                        fh = tf.extractfile(member)
                        if fh is not None:
                            scan_bytes(f"{path}!{member.name}", fh.read(), tasks, names_re, stats)
            return
        except tarfile.TarError:
            pass
        if data[:2] == b"\x1f\x8b":
            inner = gzip.decompress(data)[:MAX_FILE]
            scan_bytes(path[:-3] if path.endswith(".gz") else path + "~", inner, tasks, names_re, stats)
    except Exception:  # noqa: BLE001 - a damaged archive is read as plain bytes
        scan_plain(path, data, tasks, stats)


def scan_plain(path, data, tasks, stats):
    normal = None
    for t in tasks:
        for key, run in t.needles:
            if key in data:
                normal = normal or "\n" + "\n".join(norm_lines(data.decode("utf-8", "surrogateescape"))) + "\n"
                if run in normal and path not in t.hits:
                    t.hits.append(path)


def main():
    started = time.monotonic()
    tasks = [Task(row) for row in json.load(sys.stdin)]
    names = sorted({n for t in tasks for n in t.names})
    names_re = re.compile(b"|".join(re.escape(n.encode()) for n in names)) if names else None
    stats = {"files": 0, "compared": 0, "depth": 0, "unreadable": 0}
    for root, dirs, files in os.walk("/", topdown=True):
        if root == "/":
            dirs[:] = [d for d in dirs if "/" + d not in SKIP_ROOTS]
        for name in files:
            path = os.path.join(root, name)
            try:
                if os.path.islink(path) or not os.path.isfile(path) or os.path.getsize(path) > MAX_FILE:
                    continue
                with open(path, "rb") as fh:
                    data = fh.read()
            except OSError:
                stats["unreadable"] += 1
                continue
            scan_bytes(path, data, tasks, names_re, stats)
    stats.pop("depth")
    json.dump({"leaks": {t.id: sorted(t.hits) for t in tasks if t.hits},
               "errors": {t.id: t.error for t in tasks if t.error},
               "files": stats["files"], "compared": stats["compared"], "unreadable": stats["unreadable"],
               "seconds": round(time.monotonic() - started, 2)}, sys.stdout)


if __name__ == "__main__":
    main()
