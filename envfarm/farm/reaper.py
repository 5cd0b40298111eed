"""Garbage collection of what the farm leaves behind: sandboxes (containers, by label) on every node.

The engine is the registry: every sandbox carries `envfarm`, `envfarm.owner` and `envfarm.run`
labels, so anyone can find and remove them, also after the driver or a host crashed. Removal
is the backend's (`SandboxBackend.reap`); this module runs it here or on every node.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from envfarm.sandbox.backends import BackendConfig, DockerBackendConfig, make_backend


def remove_containers(owner: str | None = None, run: str | None = None, older_than_s: float | None = None,
                      backend: BackendConfig | None = None) -> int:
    """Remove this node's sandboxes matching the filters (Docker's by default); returns how many."""
    return make_backend(backend or DockerBackendConfig()).reap(owner=owner, run=run, older_than_s=older_than_s)


def prune_images() -> int:
    """Remove dangling envfarm images (older builds that a rebuild replaced); returns how many."""
    from envfarm.sandbox.image_supply import prune_dangling_images

    return prune_dangling_images()


@dataclass
class ClusterGc:
    """What `gc_cluster` did: containers (and images) removed per node, and the nodes it could not ask."""

    removed: dict[str, int] = field(default_factory=dict)
    unreachable: dict[str, str] = field(default_factory=dict)  # node -> why

    @property
    def total(self) -> int:
        return sum(self.removed.values())


def gc_cluster(run: str | None = None, older_than_s: float | None = None, images: bool = False,
               backend: BackendConfig | None = None, timeout_s: float = 300.0) -> ClusterGc:
    """Run `remove_containers` (and `prune_images` with `images`) once on every alive node.

    A node Ray still lists as alive may have died a moment ago (a worker lost mid-run, the
    farm shutting down after it): its task cannot be scheduled, or never answers. That node
    is reported in `unreachable`, never raised, so one lost node cannot fail a finished run
    (its sandboxes remove themselves when their owner dies; `python -m envfarm.gc` on that
    machine catches the rest). `backend`: Docker's by default; one whose sandboxes cannot
    outlive their process (sim) has nothing to reap, and no node is asked.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    backend = backend or DockerBackendConfig()
    report = ClusterGc()
    if not make_backend(backend).leaves_orphans:
        return report

    @ray.remote(num_cpus=0)
    def _gc_node(run: str | None, older_than_s: float | None, images: bool) -> tuple[str, int]:
        import socket

        removed = remove_containers(run=run, older_than_s=older_than_s, backend=backend)
        return socket.gethostname(), removed + (prune_images() if images else 0)

    refs = {}
    for node in ray.nodes():
        if node.get("Alive"):
            strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            refs[node["NodeID"][:8]] = _gc_node.options(scheduling_strategy=strategy).remote(run, older_than_s, images)
    if not refs:
        return report
    done, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout_s)
    for node, ref in refs.items():
        if ref not in done:
            ray.cancel(ref, force=True)
            report.unreachable[node] = f"no answer within {timeout_s:g} s"
            continue
        try:
            report.removed[node] = ray.get(ref)[1]
        except ray.exceptions.RayError as exc:  # the node died, or its task could not run there
            report.unreachable[node] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return report
