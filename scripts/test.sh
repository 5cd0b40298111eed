#!/usr/bin/env bash
# Set up whatever is missing (Docker engine, packages, images), then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec "${PYTHON:-python3}" -m pytest "$@"
