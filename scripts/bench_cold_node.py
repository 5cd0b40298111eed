"""Cold nodes on a real two-node cluster on this machine: how an image reaches an engine that
lacks it, and what a second node with its own engine costs once images are in place.

The cluster is the one tests/cluster/test_multi_engine.py uses: head and worker started with
`ray start` (token authentication), the worker on a second dockerd with its own data root.

- `cold_node_image_arrival_s_<way>`: seconds from "the worker lacks the task image" to "it can
  start sandboxes of it", by way: `registry` (a local Debian docker-registry, `--registry`),
  `peer` (streamed from the head's engine through Ray's object store, `--prefetch-images`),
  `build` (no registry, no peer: debootstrap of the base, then `docker build`).
- `two_node_vs_one_node_ratio`: the same episodes (`--envs`, `--episodes`) run by
  `python -m envfarm.launch --address` on a one-node cluster (a head alone, the main engine)
  and on the two-node cluster with images prefetched; the ratio of the launches' own run times
  (farm start to last episode), median of `--cold-repeats` pairs run side by side. Both nodes
  share this machine's cores, so the ratio is the overhead of the second node and engine, not
  a speed-up.

Run from scripts/bench_farm.py (`--cold-node`). Needs root (a second dockerd), Docker, and
Debian's docker-registry for the registry way.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "cluster"))

from cli_cluster import CliCluster  # noqa: E402
from local_registry import LocalRegistry  # noqa: E402
from second_engine import SecondEngine  # noqa: E402

FIXTURES = str(ROOT / "envfarm" / "tasks" / "builtin" / "fixtures.jsonl")
IMAGE = "envfarm/repo-inflection:0.5.1"


def _launch(out: Path, run: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "envfarm.launch", "--tasks", FIXTURES, "--out", str(out), "--run", run,
           "--no-live", "--warm-fraction", "0", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"launch {' '.join(args)} failed: {proc.stderr[-3000:]}")
    return json.loads((out / run / "summary.json").read_text())


def _arrival(summary: dict[str, Any], way: str) -> float:
    arrivals = [a for a in summary["image_arrivals"] if a["how"] == way]
    if not arrivals:
        raise RuntimeError(f"no image arrived by {way}: {summary['image_arrivals']}")
    return float(arrivals[0]["seconds"])


def _build_on(engine: SecondEngine) -> float:
    """The last resort on a cold engine: no registry, no peer (debootstrap, then docker build)."""
    engine.docker("rmi", IMAGE, check=False)
    code = (f"import time; from envfarm.sandbox.image_supply import ensure_image; t = time.monotonic(); "
            f"how = ensure_image({IMAGE!r}); print(how, time.monotonic() - t)")
    proc = subprocess.run([sys.executable, "-c", code], env={**engine.env, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=3600)
    how, seconds = proc.stdout.split()[-2:] if proc.returncode == 0 else ("", "")
    if how != "built":
        raise RuntimeError(f"the build way did not build ({how!r}): {proc.stderr[-2000:]}")
    return float(seconds)


def cold_node_figures(envs: int = 4, episodes: int = 16, repeats: int = 2, build: bool = True) -> dict[str, Any]:
    """The figures named in this module's doc, measured on a cluster started and removed here."""
    from envfarm.sandbox.images import build_repo, load_projects

    build_repo(load_projects()["inflection"])  # the head's engine holds the image
    out = Path(tempfile.mkdtemp(prefix="envfarm-bench-cold-"))
    engine, cluster, single, registry = SecondEngine(), CliCluster(), CliCluster(), None
    figures: dict[str, Any] = {}
    try:
        engine.start()
        cluster.start_head()
        cluster.start_worker(env={"DOCKER_HOST": engine.host})
        single.start_head()  # the one-node side: a running Ray too, so both sides pay the same start
        cluster.wait_for_nodes(2)
        single.wait_for_nodes(1)
        two = ("--address", cluster.address, "--envs", str(envs))
        summary = _launch(out, "cold-peer", *two, "--episodes", "2", "--prefetch-images", env=cluster.env)
        figures["cold_node_image_arrival_s_peer"] = _arrival(summary, "peer")
        registry = LocalRegistry(IMAGE)
        engine.docker("rmi", IMAGE, check=False)
        summary = _launch(out, "cold-registry", *two, "--episodes", "2", "--prefetch-images",
                          "--registry", registry.address, env=cluster.env)
        figures["cold_node_image_arrival_s_registry"] = _arrival(summary, "pulled")
        # the one-node cluster's first launch, as the two-node one had its own above: a cluster's
        # first job pays for starting what later ones find running
        _launch(out, "one-warm-up", "--address", single.address, "--envs", str(envs), "--episodes", "2",
                env=single.env)
        ratios, one_s, two_s = [], [], []
        for i in range(repeats):  # side by side: one node, then two, each time
            one = _launch(out, f"one-{i}", "--address", single.address, "--envs", str(envs),
                          "--episodes", str(episodes), env=single.env)
            both = _launch(out, f"two-{i}", *two, "--episodes", str(episodes), "--prefetch-images", env=cluster.env)
            for s in (one, both):
                if s["episodes_finished"] != episodes or s["failed_infrastructure"]:
                    raise RuntimeError(f"a comparison run lost episodes: {s}")
            one_s.append(one["seconds"])
            two_s.append(both["seconds"])
            ratios.append(both["seconds"] / one["seconds"])
        figures.update({"cold_node_envs": envs, "cold_node_episodes": episodes,
                        "one_node_run_s": statistics.median(one_s), "two_node_run_s": statistics.median(two_s),
                        "two_node_vs_one_node_ratio": statistics.median(ratios)})
        if build:
            figures["cold_node_image_arrival_s_build"] = _build_on(engine)
    finally:
        if registry is not None:
            registry.close()
        cluster.stop()
        single.stop()
        engine.stop()
        shutil.rmtree(out, ignore_errors=True)
    return figures
