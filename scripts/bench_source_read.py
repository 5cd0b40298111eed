"""Reading a project's sources from its image: one container per file against one for all (a tar
stream), as suite generation does at start-up for every project.

    python scripts/bench_source_read.py [--project toolz] [--rounds 5] [--json]

Rounds alternate the two ways (per file, then all at once) so that both see the same machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchlib import report

from envfarm.sandbox.images import build_repo, load_projects, read_file_from_image, read_files_from_image
from envfarm.suitegen.baseline import project_sources


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--project", default="toolz", help="a project of images/projects.toml")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args(argv)
    projects = load_projects()
    if args.project not in projects:
        ap.error(f"unknown project {args.project!r}: images/projects.toml has {', '.join(sorted(projects))}")
    image = build_repo(projects[args.project])
    paths = project_sources(args.project)
    per_file, at_once = [], []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        one_by_one = {p: read_file_from_image(image, f"/testbed/{p}") for p in paths}
        t1 = time.perf_counter()
        together = read_files_from_image(image, paths)
        t2 = time.perf_counter()
        if together != one_by_one:
            raise SystemExit("the two ways read different texts")
        per_file.append(t1 - t0)
        at_once.append(t2 - t1)
    per_file_s, at_once_s = statistics.median(per_file), statistics.median(at_once)
    report({"project": args.project, "files": len(paths), "rounds": args.rounds,
            "per_file_read_p50_s": per_file_s, "one_container_read_p50_s": at_once_s,
            "one_container_vs_per_file_ratio": at_once_s / per_file_s}, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
