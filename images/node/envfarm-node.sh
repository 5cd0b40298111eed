#!/usr/bin/env bash
# Entry point of the node image: make sure a Docker engine answers (DOCKER_HOST's, the mounted
# socket's, or one started here when the container is privileged: scripts/docker-up.sh), then
# run the command (by default `ray start ... --block`).
#
#   envfarm-node engine       start the engine in the foreground (a sidecar's command)
#   envfarm-node CMD ARGS...  engine up (unless ENVFARM_NODE_NO_ENGINE=1), then exec CMD
set -euo pipefail

if [ "${1:-}" = engine ]; then
  # a sidecar: one engine for the pod, on localhost only (the Ray container sets DOCKER_HOST)
  exec dockerd --host="${ENVFARM_ENGINE_HOST:-tcp://127.0.0.1:2375}" --iptables=false --ip-masq=false --bridge=none
fi
if [ "${ENVFARM_NODE_NO_ENGINE:-0}" != 1 ]; then
  if [ -n "${DOCKER_HOST:-}" ]; then
    for _ in $(seq 1 120); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    docker info >/dev/null 2>&1 || { echo "[envfarm-node] no engine answers at $DOCKER_HOST" >&2; exit 1; }
  else
    bash /opt/envfarm/scripts/docker-up.sh
  fi
fi
exec "$@"
