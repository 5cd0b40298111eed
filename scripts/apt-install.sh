#!/usr/bin/env bash
# Install Debian packages for the set-up scripts: `bash scripts/apt-install.sh TAG PACKAGE...`.
# Quiet when it works (apt's log goes to a file, kept when it fails); on failure one message, tagged
# [TAG], that tells an unreachable mirror from a failed install, and a non-zero exit.
set -euo pipefail
tag=$1; shift
[ $# -gt 0 ] || { echo "usage: bash scripts/apt-install.sh TAG PACKAGE..." >&2; exit 2; }
die() { echo "[$tag] ERROR: $*" >&2; exit 1; }
command -v apt-get >/dev/null 2>&1 || die "no apt-get on this machine to install $*: install it yourself"
[ "$(id -u)" = 0 ] || die "installing $* needs root (run: sudo apt-get install $*)"
t0=$SECONDS
apt_log=$(mktemp /tmp/envfarm-apt.XXXXXX)
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >"$apt_log" 2>&1 \
  || die "apt-get update failed: is the Debian package mirror reachable (network, proxy)? Its log: $apt_log"
apt-get install -y -qq "$@" >>"$apt_log" 2>&1 || die "apt-get install $* failed; its log: $apt_log"
rm -f "$apt_log"
echo "[$tag] installed $* ($((SECONDS - t0)) s)" >&2
