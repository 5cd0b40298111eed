"""Problem statements at three levels: traceback (a failing test quoted), issue, terse.

- *traceback*: `statement.compose` (the failing test's call and pytest's error lines);
- *issue*: the wrong behaviour in words and a short reproduction snippet a user would write
  (`repro`), with no test name and no traceback; the snippet was run: it fails on the buggy code
  and runs cleanly on the fixed code (`restate`);
- *terse*: one or two sentences.

All three are built from what the tests and the snippets show (the called function, the error,
the value a call returned) and, for a re-implementation, the function's kept docstring; never
from the diff. `safe` checks the result: no changed or removed line, no diff marker, no test name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from envfarm.suitegen.statement import leaked_lines

LEVELS = ("traceback", "issue", "terse")
MAX_VALUE = 160


@dataclass(frozen=True)
class Observation:
    """What one reproduction snippet showed on the buggy code."""

    snippet: str
    subject: str | None  # the library call the failing test makes, e.g. `inflection.ordinal`
    exception: str | None  # last line of the error, e.g. "TypeError: unsupported operand"
    got: str | None = None  # repr of the value the final comparison got
    compared: tuple[str, str] | None = None  # (expression, expected expression)


def _short(text: str, limit: int = MAX_VALUE) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _exc_name(exception: str | None) -> str | None:
    if not exception:
        return None
    m = re.match(r"^([A-Za-z_][\w.]*)", exception)
    return m.group(1) if m else None


def words(obs: Observation) -> str:
    """One sentence: what goes wrong, as a user would say it."""
    name = _exc_name(obs.exception)
    if name and name != "AssertionError":
        call = f"`{obs.subject}`" if obs.subject else "The code below"
        return f"{call} raises `{_short(obs.exception or name)}` where it should work."
    if obs.compared and obs.got is not None:
        expr, expected = obs.compared
        return f"`{_short(expr, 100)}` gives `{_short(obs.got)}`, but `{_short(expected, 100)}` is expected."
    call = f"`{obs.subject}`" if obs.subject else "The code below"
    return f"{call} returns a wrong result: the last assertion below does not hold."


def title(obs: Observation) -> str:
    name = _exc_name(obs.exception)
    where = f"`{obs.subject}`" if obs.subject else "A call"
    return f"{where} raises {name}" if name and name != "AssertionError" else f"{where} returns a wrong result"


def _block(obs: Observation) -> list[str]:
    return [words(obs), "", "```python", obs.snippet.rstrip("\n"), "```"]


EXPECT = "Expected: the snippet runs to the end without an error."


def issue(kind: str, observations: list[Observation], function: str | None = None,
          doc: str | None = None) -> str:
    """The issue-level statement from one or more validated snippets."""
    if kind == "reimplement":
        lines = [f"`{function}` is not implemented", "",
                 f"`{function}` only raises `NotImplementedError`; it should do what its name, signature and "
                 "docstring promise."]
        if doc:
            lines += ["", "Its docstring says:", "", *(f"> {ln}" if ln else ">" for ln in doc.splitlines()[:12])]
        lines += ["", "For example, this should work:", "", "```python", observations[0].snippet.rstrip("\n"), "```",
                  "", EXPECT]
        return "\n".join(lines)
    if len(observations) == 1:
        obs = observations[0]
        return "\n".join([title(obs), "", *_block(obs), "", EXPECT])
    lines = [f"{len(observations)} problems", "", "Several things misbehave on this checkout:"]
    for i, obs in enumerate(observations, 1):
        lines += ["", f"{i}. " + words(obs), "", "```python", obs.snippet.rstrip("\n"), "```"]
    lines += ["", "Expected: each snippet runs to the end without an error."]
    return "\n".join(lines)


def terse(kind: str, observations: list[Observation], n_failing: int, locations: int = 1,
          function: str | None = None, doc: str | None = None) -> str:
    """One or two sentences."""
    tests = f"{n_failing} test{'s' if n_failing != 1 else ''} fail{'s' if n_failing == 1 else ''}."
    if kind == "reimplement":
        summary = first_sentence((doc or "").strip().split("\n\n")[0].replace("\n", " "))
        return f"Implement `{function}`" + (f": {summary}." if summary else ".") + f" {tests}"
    subjects = list(dict.fromkeys(f"`{o.subject}`" for o in observations if o.subject))
    if locations > 1:
        named = f" ({', '.join(subjects)} among them)" if subjects else ""
        return f"{locations} separate bugs{named}; {tests}"
    obs = observations[0] if observations else None
    what = title(obs) if obs else "Something returns a wrong result"
    return f"{what}; {tests}"


def first_sentence(text: str) -> str:
    """A docstring's first sentence (ended by . ! or ?), without its end mark, at most 140 characters."""
    first = re.split(r"(?<=[.!?])\s+", text.strip())[0] if text.strip() else ""
    return _short(first.rstrip(".!? "), 140) if first else ""


def retrimmed(terse_text: str) -> str:
    """A re-implementation's terse level cut at its docstring's first sentence, as `terse` cuts it
    now (records validated before that cut keep the whole first paragraph)."""
    m = re.match(r"^(Implement `[^`]+`): (.*)\. (\d+ tests? fails?\.)$", terse_text, re.S)
    return f"{m.group(1)}: {first_sentence(m.group(2))}. {m.group(3)}" if m else terse_text


def safe(text: str, bug_patch: str, test_ids: list[str]) -> bool:
    """No changed line, no diff marker, and no test's name (file or function) in the text."""
    if leaked_lines(text, bug_patch):
        return False
    for test_id in test_ids:
        parts = test_id.split("[")[0].split("::")
        names = [parts[0].rsplit("/", 1)[-1], *(p for p in parts[1:] if p.lower().startswith("test"))]
        if any(re.search(rf"\b{re.escape(n)}\b", text) for n in names if n):
            return False
    return True
