#!/usr/bin/env bash
# Start a Docker engine that envfarm can use, idempotently.
#
# - An engine that already answers is used as it is.
# - Otherwise Debian's docker.io is installed when dockerd is missing, and dockerd is started
#   with the flags that work on hosts without iptables or a bridge (sandboxes run with
#   --network none; image builds use --network host).
# Exits non-zero with a message naming what failed.
set -euo pipefail

log() { echo "[docker-up] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if docker info >/dev/null 2>&1; then
  log "engine already running ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || die "no dockerd and no apt-get: install a Docker engine yourself"
  [ "$(id -u)" = 0 ] || die "dockerd is missing and installing docker.io needs root (run: sudo $0)"
  log "installing Debian's docker.io"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || die "apt-get update failed"
  apt-get install -y -qq docker.io >/dev/null || die "apt-get install docker.io failed"
fi

[ "$(id -u)" = 0 ] || die "no engine answers and starting dockerd needs root (run: sudo $0)"
logfile=${ENVFARM_DOCKERD_LOG:-/var/log/envfarm-dockerd.log}
log "starting dockerd (log: $logfile)"
nohup dockerd --iptables=false --ip-masq=false --bridge=none >"$logfile" 2>&1 &
pid=$!
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    log "engine up (pid $pid, storage $(docker info --format '{{.Driver}}'))"
    exit 0
  fi
  kill -0 "$pid" 2>/dev/null || die "dockerd exited; last lines of $logfile:
$(tail -n 20 "$logfile")"
  sleep 0.5
done
die "dockerd did not answer within 30 s; last lines of $logfile:
$(tail -n 20 "$logfile")"
