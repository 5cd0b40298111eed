#!/usr/bin/env bash
# Set up whatever is missing (Docker engine, packages, images), then run the farm:
# `python -m envfarm.launch --envs 8` unless other arguments are given.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
if [ $# -eq 0 ]; then set -- --envs 8; fi
exec "${PYTHON:-python3}" -m envfarm.launch "$@"
