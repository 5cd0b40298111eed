"""Problem statements written from what a user sees: a failing call and its wrong result or error.

The statement comes from really running one FAIL_TO_PASS test on the buggy code and quoting
pytest's short traceback: the test's own line (the example call) and the assertion or exception
lines. Frames inside the library are left out, because they could show the changed line; the
diff, the changed lines and the kind of mutation are never used, and `leaked_lines` checks that
none of the changed lines slipped through.
"""

from __future__ import annotations

import ast
import re
import shlex

from envfarm.sandbox.base import Sandbox
from envfarm.sandbox.images import Project

FRAME = re.compile(r"^(\S+\.py):(\d+): in (\S+)$")
MAX_E_LINES = 12
MAX_LINE = 200


def single_test_command(project: Project, test_id: str) -> str:
    """The project's pytest command narrowed to one test, with a short traceback."""
    tokens = shlex.split(project.test_cmd)
    opts: list[str] = []
    i = tokens.index("pytest") + 1 if "pytest" in tokens else 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in ("-o", "-p") and i + 1 < len(tokens):
            opts += [tok, tokens[i + 1]]
            i += 2
            continue
        if tok == "--deselect":
            i += 2
            continue
        if tok.startswith("-") and not tok.startswith("-r"):
            opts.append(tok)
        i += 1
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in project.env.items())
    return (f"cd /testbed && {env} python3 -m pytest {shlex.join(opts)} -q --no-header --tb=short "
            f"-p no:warnings {shlex.quote(test_id)}")


def _is_test_path(path: str, project: Project) -> bool:
    return any(path == t or path.startswith(t.rstrip("/") + "/") for t in project.test_files)


def excerpt(output: str, project: Project) -> tuple[list[str], list[str]]:
    """(test-frame lines, error lines) from pytest's --tb=short output of one failing test."""
    lines = output.splitlines()
    try:
        start = next(i for i, ln in enumerate(lines) if re.match(r"^=+ (FAILURES|ERRORS) =+$", ln))
    except StopIteration:
        return [], []
    frames: list[str] = []
    errors: list[str] = []
    keep = False
    for ln in lines[start + 1:]:
        if re.match(r"^=+ .* =+$", ln):
            break
        m = FRAME.match(ln)
        if m:
            keep = _is_test_path(m.group(1), project)
            if keep:
                frames.append(ln)
            continue
        if ln.startswith("E "):
            if len(errors) < MAX_E_LINES:
                errors.append(ln[:MAX_LINE])
        elif keep and ln.startswith("    ") and ln.strip() and ln.strip() != "???":
            frames.append(ln[:MAX_LINE])
    return frames, errors


NOT_A_SUBJECT = re.compile(r"^(self\.)?(assert\w*|fail\w*)$|^(len|list|tuple|set|dict|str|repr|sorted|next|iter|"
                           r"isinstance|type|print|exec|eval|compile|getattr|range|int|float|bool|"
                           r"pytest\.\w+|self\.\w+Raises\w*)$")


def subject(frames: list[str]) -> str | None:
    """The library call in the test's failing line, e.g. `inflection.ordinal` (None if unclear)."""
    for ln in reversed([f for f in frames if f.startswith("    ")]):
        try:
            tree = ast.parse(ln.strip())
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Constant):
                    continue  # "...".format(...)
                name = ast.unparse(func)
                if 3 <= len(name) <= 60 and not NOT_A_SUBJECT.match(name):
                    return name
    return None


def compose(test_id: str, frames: list[str], errors: list[str], others: list[str], with_source: bool = True) -> str:
    """The issue text: title, the failing test and what it shows, how widespread it is."""
    call = subject(frames) if with_source else None
    first = errors[0][1:].strip() if errors else ""
    exc = re.match(r"^([A-Za-z_][\w.]*(Error|Exception|Warning|Interrupt|Exit|Iteration))\b", first)
    where = f"`{call}`" if call else f"the code under `{test_id.split('::')[-1].split('[')[0]}`"
    if exc and not exc.group(1).startswith("AssertionError"):
        title = f"{where} raises {exc.group(1)}"
    else:
        title = f"{where} returns a wrong result"
    body = [title, "", f"The test `{test_id}` fails on this checkout:", "", "```"]
    body += (frames if with_source else []) + errors + ["```", ""]
    if others:
        shown = ", ".join(f"`{t}`" for t in others[:3])
        more = f" and {len(others) - 3} more" if len(others) > 3 else ""
        body.append(f"Other tests fail as well: {shown}{more}.")
        body.append("")
    body.append("The tests describe the intended behaviour and should pass without being changed.")
    return "\n".join(body)


def changed_lines(bug_patch: str) -> list[str]:
    """The stripped added and removed source lines of a diff (what a statement must not quote)."""
    out = []
    for ln in bug_patch.splitlines():
        if ln.startswith(("+++", "---")) or not ln.startswith(("+", "-")):
            continue
        text = ln[1:].strip()
        if len(text) >= 6 and re.search(r"[A-Za-z0-9]", text) and text not in ("else:", "return", "pass"):
            out.append(text)
    return out


def leaked_lines(statement: str, bug_patch: str) -> list[str]:
    """Changed lines or diff markers that appear in the statement (must be empty)."""
    leaks = [ln for ln in changed_lines(bug_patch) if ln in statement]
    leaks += [m for m in ("diff --git", "@@ -", "+++ b/", "--- a/") if m in statement]
    return leaks


async def describe(sandbox: Sandbox, project: Project, fail_to_pass: list[str], bug_patch: str) -> str | None:
    """Run failing tests one at a time and write the statement from the first clear failure.

    Parametrized ids can come back cut at a space by the log parser and then select nothing;
    the test function itself is tried next, stopping at its first failure (`-x`).
    """
    ranked = sorted(fail_to_pass, key=lambda t: (" " in t, "[" in t, len(t), t))
    attempts = [(t, t) for t in ranked[:2]]
    attempts += [(t, t.split("[")[0]) for t in ranked[:2] if "[" in t]
    for test_id, selector in attempts:
        cmd = single_test_command(project, selector) + (" -x" if selector != test_id else "")
        res = await sandbox.exec(cmd, timeout=120, output_limit=1 << 20)
        frames, errors = excerpt(res.output, project)
        if not errors:
            continue
        shown = test_id if selector == test_id else selector
        others = [t for t in fail_to_pass if t != test_id]
        for with_source in (True, False):
            text = compose(shown, frames, errors, others, with_source)
            if not leaked_lines(text, bug_patch):
                return text
    return None
