"""Which tasks' fixes an image holds outside /testbed: one scan of the whole image per image.

An image that carries another copy of a project's source (a Debian package, a copy vendored in
another package, a pip cache, an sdist, byte code compiled from any of them) hands the agent the
fix: `grep -r` or `find / -name recipes.py` and copy. The repository images remove such copies
(images/repo/Dockerfile); this scan is the check that nothing is left, and the suite generator
drops any task it still finds (see `leak_probe` for what counts as the fix being there).

    python -m envfarm.suitegen.leaks                # every builtin task, grouped by image
    python -m envfarm.suitegen.leaks builtin:parse
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from envfarm.tasks.schema import Task

PROBE = Path(__file__).with_name("leak_probe.py")


@dataclass
class ImageScan:
    """What one scan of one image found."""

    image: str
    leaks: dict[str, list[str]] = field(default_factory=dict)  # task id -> paths holding its fix
    errors: dict[str, str] = field(default_factory=dict)  # task id -> why it could not be checked
    files: int = 0
    seconds: float = 0.0

    @property
    def unsafe(self) -> set[str]:
        """Tasks to drop: a fix found, or a task the scan could not check."""
        return set(self.leaks) | set(self.errors)


class LeakScanError(RuntimeError):
    """The scan itself failed (the image is missing, the probe crashed)."""


def scan_image(image: str, tasks: Iterable[Task], timeout: float = 600.0) -> ImageScan:
    """Walk `image`'s file system once (as root, no network) and check every task of it."""
    rows = [{"instance_id": t.instance_id, "patch": t.patch, "bug_patch": t.bug_patch or ""}
            for t in tasks]
    started = time.monotonic()
    proc = subprocess.run(
        ["docker", "run", "--rm", "-i", "--network", "none", "--user", "root", "--entrypoint", "python3",
         "-e", "PYTHONDONTWRITEBYTECODE=1", image, "-I", "-c", PROBE.read_text()],
        input=json.dumps(rows), capture_output=True, text=True, timeout=timeout,
    )
    if proc.returncode != 0:
        raise LeakScanError(f"the leak scan of {image} failed (exit {proc.returncode}): {proc.stderr[-800:]}")
    out = json.loads(proc.stdout)
    return ImageScan(image, out["leaks"], out["errors"], out["files"], round(time.monotonic() - started, 2))


def scan_tasks(tasks: Iterable[Task]) -> dict[str, ImageScan]:
    """One scan per image over all the given tasks; image -> result."""
    by_image: dict[str, list[Task]] = defaultdict(list)
    for t in tasks:
        by_image[t.image].append(t)
    return {image: scan_image(image, group) for image, group in sorted(by_image.items())}


def main(argv: list[str] | None = None) -> int:
    from envfarm.tasks.loading import load

    specs = (argv if argv is not None else sys.argv[1:]) or ["builtin"]
    tasks = [t for spec in specs for t in load(spec)]
    bad = 0
    for image, scan in scan_tasks(tasks).items():
        print(f"{image}: {scan.files} files in {scan.seconds:.1f} s, {len(scan.leaks)} leaking, "
              f"{len(scan.errors)} unchecked")
        for iid, paths in sorted(scan.leaks.items()):
            print(f"  LEAK {iid}: {', '.join(paths[:4])}{' ...' if len(paths) > 4 else ''}")
        for iid, why in sorted(scan.errors.items()):
            print(f"  UNCHECKED {iid}: {why}")
        bad += len(scan.unsafe)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
