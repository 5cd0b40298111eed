"""`python -m envfarm.gc`: remove every container the farm left behind, on this machine or a cluster.

Sandboxes remove themselves when their owner exits or dies (see envfarm.sandbox.owner_lease) and
at their maximum lifetime, and a container whose owner died between creating and starting it is
removed by the next process that creates sandboxes on that engine (after 5 minutes); this is for
what that cannot catch: containers from before that mechanism, an engine that lost track of them
while restarting, a node nobody creates sandboxes on any more. It says how many it found and
removed.

    python -m envfarm.gc                      # all envfarm containers on this machine
    python -m envfarm.gc --run NAME           # only one run's
    python -m envfarm.gc --address auto       # on every node of a Ray cluster
    python -m envfarm.gc --older-than 3600    # only those created over an hour ago
    python -m envfarm.gc --images             # also dangling envfarm images left by rebuilds
"""

from __future__ import annotations

import argparse

from envfarm.farm.reaper import gc_cluster, prune_images, remove_containers


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m envfarm.gc", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", help="only containers of this run (label envfarm.run)")
    ap.add_argument("--older-than", type=float, metavar="SECONDS", help="only containers older than this")
    ap.add_argument("--images", action="store_true", help="also remove dangling envfarm images")
    ap.add_argument("--address", help="a Ray cluster address ('auto' for the local cluster): clean every node")
    args = ap.parse_args(argv)
    if args.address:
        import ray

        ray.init(address=args.address, logging_level="ERROR")
        report = gc_cluster(args.run, args.older_than, args.images)
        for node, n in report.removed.items():
            print(f"{node}: removed {n} container(s) or image(s)")
        for node, why in report.unreachable.items():
            print(f"{node}: not reached ({why}): run `python -m envfarm.gc` on that machine")
        print(f"found and removed {report.total} container(s) or image(s) left behind on "
              f"{len(report.removed)} node(s)")
        if report.unreachable:
            return 1
    else:
        print(f"found and removed {remove_containers(run=args.run, older_than_s=args.older_than)} "
              "container(s) left behind")
        if args.images:
            print(f"removed {prune_images()} dangling image(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
