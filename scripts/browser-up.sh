#!/usr/bin/env bash
# Headless Chromium for the run report's browser checks (tests/docker/report, scripts/bench_report.py),
# idempotently: Debian's chromium and chromium-driver, used as they are when already installed.
# selenium is given both paths and never fetches a browser or a driver of its own.
# Exits non-zero with a message naming what failed.
set -euo pipefail

log() { echo "[browser-up] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

have() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }

if have; then
  log "chromium already installed ($(chromium --version 2>/dev/null | head -n 1))"
  exit 0
fi
command -v apt-get >/dev/null 2>&1 \
  || die "no chromium/chromedriver and no apt-get: install Chromium and its chromedriver yourself (the report's browser tests need both)"
[ "$(id -u)" = 0 ] || die "installing chromium and chromium-driver needs root (run: sudo $0)"
log "installing Debian's chromium and chromium-driver"
t0=$SECONDS
apt_log=$(mktemp /tmp/envfarm-apt.XXXXXX)
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >"$apt_log" 2>&1 \
  || die "apt-get update failed: is the Debian package mirror reachable (network, proxy)? Its log: $apt_log"
apt-get install -y -qq chromium chromium-driver >>"$apt_log" 2>&1 \
  || die "apt-get install chromium chromium-driver failed; its log: $apt_log"
have || die "chromium or chromedriver is still missing after apt-get install (its log: $apt_log)"
rm -f "$apt_log"
log "chromium installed in $((SECONDS - t0)) s ($(chromium --version 2>/dev/null | head -n 1))"
