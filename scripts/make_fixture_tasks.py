"""Rebuild the hand-written fixture tasks (envfarm/tasks/builtin/fixtures.jsonl).

Each fixture is a real bug in a real project: a small hand-made change to its source, with an
issue-style problem statement. FAIL_TO_PASS and PASS_TO_PASS come from real test runs in the
repository image, and each task is kept only if its gold patch resolves it and the empty patch
does not (envfarm.suitegen.derive).

    python scripts/make_fixture_tasks.py
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from envfarm.sandbox.base import SandboxSpec
from envfarm.sandbox.docker_backend import DockerSandbox
from envfarm.sandbox.images import build_repo, load_projects, read_file_from_image
from envfarm.suitegen.derive import Candidate, derive_task

OUT = Path(__file__).resolve().parents[1] / "envfarm" / "tasks" / "builtin" / "fixtures.jsonl"

# (instance id, file, original text, buggy text, problem statement)
FIXTURES = [
    (
        "inflection__ordinal-teens", "inflection/__init__.py",
        "    if number % 100 in (11, 12, 13):",
        "    if number % 10 in (11, 12, 13):",
        "`ordinalize` gives the wrong suffix for 11, 12 and 13\n\n"
        "```python\n>>> import inflection\n>>> inflection.ordinalize(11)\n'11st'\n"
        ">>> inflection.ordinal(112)\n'nd'\n```\n\n"
        "Expected `'11th'` and `'th'`: numbers ending in 11, 12 or 13 always take \"th\".",
    ),
    (
        "inflection__parameterize-trailing-separator", "inflection/__init__.py",
        '        string = re.sub(r"(?i)^{sep}|{sep}$".format(sep=re_sep), \'\', string)',
        '        string = re.sub(r"(?i)^{sep}".format(sep=re_sep), \'\', string)',
        "`parameterize` leaves a separator at the end of the slug\n\n"
        "```python\n>>> import inflection\n>>> inflection.parameterize('Trailing bad characters!@#')\n"
        "'trailing-bad-characters-'\n```\n\n"
        "Expected `'trailing-bad-characters'`: a slug should neither start nor end with the separator.",
    ),
    (
        "inflection__underscore-acronyms", "inflection/__init__.py",
        "    word = re.sub(r\"([A-Z]+)([A-Z][a-z])\", r'\\1_\\2', word)\n",
        "",
        "`underscore` does not split an acronym from the word after it\n\n"
        "```python\n>>> import inflection\n>>> inflection.underscore('HTMLTidy')\n'htmltidy'\n"
        "```\n\nExpected `'html_tidy'`. Words without acronyms, such as `DeviceType`, are fine.",
    ),
    (
        "inflection__ordinal-negative", "inflection/__init__.py",
        "    number = abs(int(number))",
        "    number = int(number)",
        "`ordinal` and `ordinalize` give the wrong suffix for negative numbers\n\n"
        "```python\n>>> import inflection\n>>> inflection.ordinalize(-1021)\n'-1021th'\n```\n\n"
        "Expected `'-1021st'`: the suffix should not depend on the sign.",
    ),
]


async def sandbox_factory(spec: SandboxSpec, task_id: str) -> DockerSandbox:
    return await DockerSandbox.create(spec, run="fixtures", task=task_id)


async def main() -> int:
    project = load_projects()["inflection"]
    build_repo(project)
    sources: dict[str, str] = {}
    tasks = []
    for iid, path, old, new, statement in FIXTURES:
        src = sources.setdefault(path, read_file_from_image(project.image, f"/testbed/{path}"))
        if src.count(old) != 1:
            print(f"{iid}: the original text is not found exactly once in {path}", file=sys.stderr)
            return 1
        cand = Candidate(iid, path, src.replace(old, new), statement)
        task = await derive_task(cand, project, sandbox_factory)
        print(f"{iid}: FAIL_TO_PASS {len(task.FAIL_TO_PASS)}, PASS_TO_PASS {len(task.PASS_TO_PASS)}")
        tasks.append(task)
    OUT.write_text("".join(json.dumps(t.model_dump()) + "\n" for t in tasks))
    print(f"wrote {len(tasks)} tasks to {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
