"""Garbage collection of what the farm leaves behind: containers (by label) on every node.

The engine is the registry: every sandbox carries `envfarm`, `envfarm.owner` and `envfarm.run`
labels, so anyone can find and remove them, also after the driver or a host crashed.
"""

from __future__ import annotations

import time

from envfarm.sandbox.docker_backend import LABEL_CREATED, LABEL_OWNER, LABEL_RUN, list_containers, remove_container


def remove_containers(owner: str | None = None, run: str | None = None, older_than_s: float | None = None) -> int:
    """Remove this node's envfarm containers matching the filters; returns how many."""
    filters = {}
    if owner:
        filters[LABEL_OWNER] = owner
    if run:
        filters[LABEL_RUN] = run
    removed = 0
    now = time.time()
    for container in list_containers(**filters):
        if older_than_s is not None:
            created = float(container.labels.get(LABEL_CREATED, now))
            if now - created < older_than_s:
                continue
        remove_container(container.id)
        removed += 1
    return removed


def prune_images() -> int:
    """Remove dangling envfarm images (older builds that a rebuild replaced); returns how many."""
    from envfarm.sandbox.docker_backend import docker_client

    result = docker_client().images.prune(filters={"dangling": True, "label": "envfarm.spec"})
    return len(result.get("ImagesDeleted") or [])


def gc_cluster(run: str | None = None, older_than_s: float | None = None, images: bool = False) -> dict[str, int]:
    """Run `remove_containers` (and `prune_images` with `images`) once on every alive node."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0)
    def _gc_node(run: str | None, older_than_s: float | None, images: bool) -> tuple[str, int]:
        import socket

        removed = remove_containers(run=run, older_than_s=older_than_s)
        return socket.gethostname(), removed + (prune_images() if images else 0)

    refs = {}
    for node in ray.nodes():
        if node.get("Alive"):
            strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            refs[node["NodeID"][:8]] = _gc_node.options(scheduling_strategy=strategy).remote(run, older_than_s, images)
    return {node: ray.get(ref)[1] for node, ref in refs.items()}
