"""Every task kind's candidates for one project, in the seed's order: what `suite.drive` validates.

`single` is the original one-mutation bug; the other kinds build on the project's sources
(`reimplement`, `contract_change`) or on its already-validated single bugs (`multi_location`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from envfarm.sandbox.images import Project, read_file_from_image
from envfarm.suitegen import combine, contract, reimplement
from envfarm.suitegen.baseline import Baseline, source_texts
from envfarm.suitegen.suite import Proposal, candidates_for
from envfarm.tasks.loading import BUILTIN_DIR, load_jsonl

_read = lru_cache(maxsize=256)(read_file_from_image)  # a combined bug's file outside `sources`: once
KINDS = ("single", combine.KIND, reimplement.KIND, contract.KIND)


def out_name(project: str, kind: str) -> str:
    """The shipped file of a project's tasks of one kind (single bugs keep `<project>.jsonl`)."""
    return f"{project}.jsonl" if kind == "single" else f"{project}.{kind}.jsonl"


def proposals_for(kind: str, project: Project, baseline: Baseline, seed: int, limit: int,
                  validated: Sequence[Sequence[str]] = ()) -> Sequence[Proposal]:
    """`validated`: multi-location groups already validated (`combine.validated_groups`), kept first."""
    if kind not in KINDS:
        raise ValueError(f"unknown task kind {kind!r}; known: {', '.join(KINDS)}")
    if kind == "single":
        return candidates_for(project, baseline, seed)
    texts = source_texts(project)
    if kind == reimplement.KIND:
        found = [m for p, t in texts.items()
                 for m in reimplement.removals_of_file(project.name, p, t, baseline.covered_lines(p))]
        return reimplement.order_removals(found, seed, reimplement.documented(found))
    if kind == contract.KIND:
        covered = {p: baseline.covered_lines(p) for p in texts}
        return contract.contract_changes(project.name, texts, covered, seed)
    single_file = BUILTIN_DIR / out_name(project.name, "single")
    singles = load_jsonl(single_file) if single_file.exists() else []
    return combine.combinations(project.name, singles,
                                lambda p: texts.get(p) or _read(project.image, f"/testbed/{p}"), seed, limit,
                                keep=validated)
