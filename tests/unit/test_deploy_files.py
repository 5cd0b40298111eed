"""The deployment files (docs/CLUSTER.md) hold together, since no cloud is reachable to try them:
the launcher YAML against the schema Ray ships, the KubeRay manifest against RayCluster's fields,
and both against the code (image names, entry points, ports, environment variables)."""

from __future__ import annotations

import importlib.util
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
import yaml

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ROOT / "deploy" / "ray-cluster.yaml"
KUBERAY = ROOT / "deploy" / "kuberay-raycluster.yaml"
NODE_DOCKERFILE = ROOT / "images" / "node" / "Dockerfile"
NODE_ENTRY = ROOT / "images" / "node" / "envfarm-node.sh"
DOCS = ROOT / "docs" / "CLUSTER.md"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
NODE_IMAGE = f"REGISTRY/envfarm/node:{VERSION}"
GCS_PORT, DASHBOARD_PORT, CLIENT_PORT = 6379, 8265, 10001
ENGINE_HOST = "tcp://127.0.0.1:2375"

# KubeRay's RayCluster (ray.io/v1, ray-operator/apis/ray/v1/raycluster_types.go): the fields each
# level may have, and those it must have. rayStartParams is a map[string]string.
RAYCLUSTER_SPEC = {"headGroupSpec", "workerGroupSpecs", "rayVersion", "enableInTreeAutoscaling",
                   "autoscalerOptions", "headServiceAnnotations", "suspend"}
HEAD_GROUP = ({"serviceType", "headService", "enableIngress", "rayStartParams", "template"}, {"template"})
WORKER_GROUP = ({"groupName", "replicas", "minReplicas", "maxReplicas", "numOfHosts", "rayStartParams", "template",
                 "scaleStrategy"}, {"groupName", "template"})
# corev1.Container fields this project uses or may use (a subset of Kubernetes' own)
CONTAINER = ({"name", "image", "imagePullPolicy", "command", "args", "env", "envFrom", "ports", "resources",
              "securityContext", "volumeMounts", "lifecycle", "livenessProbe", "readinessProbe", "workingDir"},
             {"name", "image"})


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _check_fields(obj: dict[str, Any], fields: tuple[set[str], set[str]], where: str) -> None:
    allowed, required = fields
    assert set(obj) <= allowed, f"{where}: fields RayCluster does not have: {set(obj) - allowed}"
    assert required <= set(obj), f"{where}: missing {required - set(obj)}"


def _pod_containers(template: dict[str, Any], where: str) -> list[dict[str, Any]]:
    spec = template["spec"]
    containers = spec["containers"]
    volumes = {v["name"] for v in spec.get("volumes", [])}
    for c in containers:
        _check_fields(c, CONTAINER, f"{where} container {c.get('name')}")
        for mount in c.get("volumeMounts", []):
            assert mount["name"] in volumes, f"{where}: volume {mount['name']} is mounted but not declared"
    return containers


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_launcher_yaml_is_valid_for_the_schema_ray_ships():
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = _load(LAUNCHER)
    jsonschema.validate(config, schema)
    assert config["head_node_type"] in config["available_node_types"]


def test_kuberay_manifest_has_raycluster_fields():
    doc = _load(KUBERAY)
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayCluster" and doc["metadata"]["name"]
    spec = doc["spec"]
    assert set(spec) <= RAYCLUSTER_SPEC and "headGroupSpec" in spec
    assert spec["rayVersion"].split(".")[:2] == ray.__version__.split(".")[:2]  # the image's Ray is the driver's
    head = spec["headGroupSpec"]
    _check_fields(head, HEAD_GROUP, "headGroupSpec")
    groups = spec["workerGroupSpecs"]
    assert groups
    for g in groups:
        _check_fields(g, WORKER_GROUP, f"worker group {g.get('groupName')}")
        assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
    for params in [head["rayStartParams"], *(g["rayStartParams"] for g in groups)]:
        assert all(isinstance(v, str) for v in params.values()), f"rayStartParams is a map of strings: {params}"


def test_images_and_entry_points_match_the_code():
    launcher, kuberay = _load(LAUNCHER), _load(KUBERAY)
    spec = kuberay["spec"]
    images = {launcher["docker"]["image"]}
    templates = [("head", spec["headGroupSpec"]["template"])] + [(g["groupName"], g["template"])
                                                                 for g in spec["workerGroupSpecs"]]
    for where, template in templates:
        images |= {c["image"] for c in _pod_containers(template, where)}
    assert images == {NODE_IMAGE}
    dockerfile = NODE_DOCKERFILE.read_text()
    assert f"-t envfarm/node:{VERSION} " in dockerfile and f"envfarm/node:{VERSION}" in DOCS.read_text()
    # what the Dockerfile copies exists, and its entry point is the script
    for src in re.findall(r"^COPY (\S+)", dockerfile, flags=re.M):
        assert (ROOT / src).exists(), src
    assert "envfarm-node" in dockerfile and NODE_ENTRY.exists()
    # every `python -m MODULE` in the files is a module of this package that runs as a program
    text = "\n".join(p.read_text() for p in (LAUNCHER, KUBERAY, DOCS, NODE_DOCKERFILE, NODE_ENTRY))
    modules = set(re.findall(r"python -m (envfarm[\w.]*)", text))
    assert {"envfarm.launch", "envfarm.gc", "envfarm.sandbox.images"} <= modules
    for module in modules:
        spec_ = importlib.util.find_spec(module)
        assert spec_ is not None, module
        source = Path(spec_.origin).read_text()
        assert "__main__" in source or (spec_.submodule_search_locations and importlib.util.find_spec(
            f"{module}.__main__")), f"{module} does not run with python -m"
    # scripts the files name exist
    for script in set(re.findall(r"scripts/[\w.-]+\.(?:sh|py)", text)):
        assert (ROOT / script).exists(), script


def test_ports_match_between_ray_start_manifest_and_image():
    launcher, kuberay = _load(LAUNCHER), _load(KUBERAY)
    head_cmd = " ".join(launcher["head_start_ray_commands"])
    assert f"--port={GCS_PORT}" in head_cmd and f"--ray-client-server-port={CLIENT_PORT}" in head_cmd
    assert all(f":{GCS_PORT}" in c for c in launcher["worker_start_ray_commands"] if "ray start" in c)
    head = kuberay["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["port"] == str(GCS_PORT)
    assert head["rayStartParams"]["ray-client-server-port"] == str(CLIENT_PORT)
    ray_container = head["template"]["spec"]["containers"][0]  # KubeRay's Ray container is the first
    ports = {p["name"]: p["containerPort"] for p in ray_container["ports"]}
    assert ports == {"gcs-server": GCS_PORT, "dashboard": DASHBOARD_PORT, "client": CLIENT_PORT}
    exposed = {int(p) for p in re.findall(r"^EXPOSE (.+)$", NODE_DOCKERFILE.read_text(), flags=re.M)[0].split()}
    assert exposed == {GCS_PORT, DASHBOARD_PORT, CLIENT_PORT}
    from ray._private import ray_constants

    assert (ray_constants.DEFAULT_PORT, ray_constants.DEFAULT_DASHBOARD_PORT) == (GCS_PORT, DASHBOARD_PORT)


def test_every_ray_container_authenticates_and_reaches_its_own_engine():
    from ray._private.authentication.authentication_token_setup import AUTH_MODE_ENV_VAR
    from ray.scripts.scripts import cli

    from envfarm.sandbox.owner_lease import GRACE_ENV

    assert "get-auth-token" in cli.commands  # what the docs and the launcher header tell users to run
    launcher = _load(LAUNCHER)
    assert f"-e {AUTH_MODE_ENV_VAR}=token" in launcher["docker"]["run_options"]
    assert any(o.startswith(f"-e {GRACE_ENV}=") for o in launcher["docker"]["run_options"])
    assert "~/.ray/auth_token" in launcher["file_mounts"]
    spec = _load(KUBERAY)["spec"]
    entry = NODE_ENTRY.read_text()
    assert ENGINE_HOST in entry  # the sidecar's engine address
    for template in [spec["headGroupSpec"]["template"], *(g["template"] for g in spec["workerGroupSpecs"])]:
        ray_container, *sidecars = template["spec"]["containers"]
        env = _env(ray_container)
        assert env[AUTH_MODE_ENV_VAR] == "token" and "secretKeyRef" in env["RAY_AUTH_TOKEN"]
        assert env["DOCKER_HOST"] == ENGINE_HOST
        engines = [c for c in sidecars if c.get("args") == ["engine"]]
        assert len(engines) == 1 and engines[0]["securityContext"]["privileged"] is True
    # the token variable is one Ray reads (named in its own error for a missing token)
    assert "RAY_AUTH_TOKEN" in (Path(ray.__file__).parent / "exceptions.py").read_text()


@pytest.mark.parametrize("path", [LAUNCHER, KUBERAY])
def test_sandbox_capacity_matches_the_sizing_in_the_docs(path):
    """64 sandboxes per worker node, 250 nodes for 16,000 and room for 313 (20,000)."""
    if path == LAUNCHER:
        node = _load(path)["available_node_types"]["sandbox_node"]
        assert node["resources"]["CPU"] == 64 and node["max_workers"] >= 313
    else:
        group = _load(path)["spec"]["workerGroupSpecs"][0]
        assert group["rayStartParams"]["num-cpus"] == "64"
        assert group["replicas"] * 64 == 16000 and group["maxReplicas"] * 64 >= 20000
        engine = group["template"]["spec"]["containers"][1]
        assert engine["resources"]["limits"]["cpu"] == "64"
