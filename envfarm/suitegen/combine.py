"""Multi-location bugs: 2 to 4 already-validated single bugs of one project combined into one task.

The parts are tasks from the shipped suite (each validated alone), in different functions and,
where the project has several modules, in different files, as SWE-smith combines its bugs.
Their bug patches must apply together; the combination is then validated as a whole like any
candidate, and also location by location (`Candidate.partials`): with every other location fixed,
each one alone must still leave a test failing, so no location is dead weight in the gold patch.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from envfarm.suitegen.derive import Candidate
from envfarm.tasks.diff import files_in_diff
from envfarm.tasks.schema import Task

KIND = "multi_location"
SIZES = (2, 2, 2, 3, 3, 4)  # weights: pairs most often, as in real multi-hunk fixes


def _meta(task: Task) -> dict:
    return getattr(task, "envfarm_meta", None) or {}


def apply_patches(clean: dict[str, str], patches: list[str]) -> dict[str, str] | None:
    """The files of `clean` that the patches touch, with every patch applied in turn (None when
    one does not apply: two bugs that overlap cannot be combined)."""
    with tempfile.TemporaryDirectory(prefix="envfarm-combine-") as tmp:
        root = Path(tmp)
        touched = sorted({p for patch in patches for p in files_in_diff(patch)})
        for path in touched:
            if path not in clean:
                return None
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(clean[path])
        for patch in patches:
            proc = subprocess.run(["git", "apply", "--whitespace=nowarn", "-"], cwd=root, input=patch,
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                return None
        return {p: (root / p).read_text() for p in touched}


@dataclass
class Combination:
    """A proposed multi-location bug (the interface `suite.drive` takes: check(), candidate())."""

    instance_id: str
    project: str
    parts: list[Task]
    clean: dict[str, str] = field(repr=False)
    kind: str = KIND
    _files: dict[str, str] | None = field(default=None, repr=False)

    @property
    def meta(self) -> dict:
        locations = [{"path": _meta(t).get("path"), "function": _meta(t).get("function"),
                      "kind": _meta(t).get("kind"), "line": _meta(t).get("line"), "from": t.instance_id}
                     for t in self.parts]
        return {"generator": "envfarm.suitegen.combine", "kind": KIND, "locations": locations}

    def check(self) -> bool:
        """All the parts' bug patches apply together."""
        if self._files is None:
            self._files = apply_patches(self.clean, [t.bug_patch for t in self.parts]) or {}
        return bool(self._files)

    def candidate(self) -> Candidate:
        if not self.check():
            raise ValueError(f"{self.instance_id}: the parts' bug patches do not apply together")
        files = dict(self._files or {})
        partials = []
        for part in self.parts:
            alone = apply_patches(self.clean, [part.bug_patch]) or {}
            partials.append({p: alone.get(p, self.clean[p]) for p in files})
        first = sorted(files)[0]
        return Candidate(self.instance_id, first, files[first], "", meta=self.meta, files=files,
                         partials=partials)


def combinations(project: str, singles: list[Task], read_clean: Callable[[str], str], seed: int,
                 limit: int, max_uses: int = 2, keep: Sequence[Sequence[str]] = ()) -> list[Combination]:
    """Up to `limit` seeded groups of 2-4 single bugs, each in its own function (and its own file
    where the singles span several); a single bug is part of at most `max_uses` groups.

    `keep` (groups of single-bug ids already validated together) come first where all their parts
    are still in `singles`: a change to the shipped single bugs then costs no validated
    combination, and the new groups are drawn around them."""
    pool = sorted((t for t in singles if _meta(t).get("path") and _meta(t).get("function")),
                  key=lambda t: t.instance_id)
    rng = random.Random(f"{seed}:{project}:{KIND}")
    rng.shuffle(pool)
    n_files = len({_meta(t)["path"] for t in pool})
    uses: dict[str, int] = {}
    seen: set[str] = set()
    clean: dict[str, str] = {}
    out: list[Combination] = []

    def add(group: list[Task]) -> None:
        for t in group:
            uses[t.instance_id] = uses.get(t.instance_id, 0) + 1
            for path in files_in_diff(t.bug_patch):
                if path not in clean:
                    clean[path] = read_clean(path)
        group.sort(key=lambda t: (_meta(t)["path"], _meta(t).get("line") or 0))
        out.append(Combination(group_id(project, [t.instance_id for t in group]), project, group, clean))

    by_id = {t.instance_id: t for t in pool}
    for ids in keep:
        iid = group_id(project, ids)
        if len(out) < limit and iid not in seen and all(i in by_id for i in ids) \
                and all(uses.get(i, 0) < max_uses for i in ids):
            seen.add(iid)
            add([by_id[i] for i in ids])
    for _ in range(limit * 20):
        if len(out) >= limit:
            break
        size = rng.choice(SIZES)
        if n_files > 1:
            size = min(size, n_files)
        group: list[Task] = []
        for t in rng.sample(pool, len(pool)):
            m = _meta(t)
            if uses.get(t.instance_id, 0) >= max_uses:
                continue
            if any(_meta(g)["function"] == m["function"] and _meta(g)["path"] == m["path"] for g in group):
                continue
            if n_files > 1 and any(_meta(g)["path"] == m["path"] for g in group):
                continue
            group.append(t)
            if len(group) == size:
                break
        if len(group) < 2:
            break
        iid = group_id(project, [t.instance_id for t in group])
        if iid in seen:
            continue
        seen.add(iid)
        add(group)
    return out


def group_id(project: str, part_ids: Sequence[str]) -> str:
    """A combination's instance id: the same parts make the same id, in any order."""
    digest = hashlib.sha256("\0".join(sorted(part_ids)).encode()).hexdigest()[:10]
    return f"{project}__multi-{digest}"


def validated_groups(records: Iterable[dict]) -> list[list[str]]:
    """The part ids of every combination a state file holds as accepted, in id order."""
    groups = []
    for rec in sorted(records, key=lambda r: r["instance_id"]):
        if rec.get("kind") == KIND and rec.get("status") == "accepted":
            meta = (rec.get("task") or {}).get("envfarm_meta") or {}
            ids = [loc.get("from") for loc in meta.get("locations") or []]
            if ids and all(ids):
                groups.append(ids)
    return groups


def diff_texts(before: dict[str, str], after: dict[str, str]) -> str:
    """A `git diff` turning `before` into `after` (same paths), as an agent's patch would be."""
    with tempfile.TemporaryDirectory(prefix="envfarm-combine-") as tmp:
        root = Path(tmp)
        git = ["git", "-c", "user.name=envfarm", "-c", "user.email=envfarm@localhost"]
        subprocess.run([*git, "init", "-q"], cwd=root, check=True)
        for path, text in before.items():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(text)
        subprocess.run([*git, "add", "-A"], cwd=root, check=True)
        subprocess.run([*git, "commit", "-qm", "before"], cwd=root, check=True)
        for path, text in after.items():
            (root / path).write_text(text)
        return subprocess.run([*git, "diff"], cwd=root, check=True, capture_output=True, text=True).stdout


def fix_all_but_one(task: Task, parts: list[Task], clean: dict[str, str]) -> list[str]:
    """For each location of a multi-location task, the patch that fixes every other location and
    leaves this one buggy (the gold patch minus that location's hunks)."""
    everything = apply_patches(clean, [p.bug_patch for p in parts])
    if everything is None:
        raise ValueError(f"{task.instance_id}: its parts' bug patches do not apply together")
    out = []
    for part in parts:
        alone = apply_patches(clean, [part.bug_patch]) or {}
        out.append(diff_texts(everything, {p: alone.get(p, clean[p]) for p in everything}))
    return out
