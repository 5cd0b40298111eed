#!/usr/bin/env bash
# Headless Chromium for the run report's browser checks (tests/docker/report, scripts/bench_report.py),
# idempotently: Debian's chromium and chromium-driver, used as they are when already installed.
# selenium is given both paths and never fetches a browser or a driver of its own.
# Exits non-zero with a message naming what failed.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "[browser-up] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

have() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }

if have; then
  log "chromium already installed ($(chromium --version 2>/dev/null | head -n 1))"
  exit 0
fi
log "installing Debian's chromium and chromium-driver"
bash scripts/apt-install.sh browser-up chromium chromium-driver || exit 1
have || die "chromium or chromedriver is still missing after apt-get install"
log "ready: $(chromium --version 2>/dev/null | head -n 1)"
