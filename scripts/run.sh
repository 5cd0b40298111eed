#!/usr/bin/env bash
# Set up whatever is missing (Docker engine, .venv and its packages, images), then run the farm on
# the venv's interpreter: `python -m envfarm.launch --envs 8` unless other arguments are given.
# Nothing needs activating: PYTHON, ENVFARM_VENV and the others are scripts/bootstrap.sh's.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
VENV=${ENVFARM_VENV:-.venv}
# as `source $VENV/bin/activate` would: tools and subprocesses started by name find the venv's
VIRTUAL_ENV=$(cd "$VENV" && pwd)
export VIRTUAL_ENV PATH="$VIRTUAL_ENV/bin:$PATH"
if [ $# -eq 0 ]; then set -- --envs 8; fi
exec "$VIRTUAL_ENV/bin/python" -m envfarm.launch "$@"
