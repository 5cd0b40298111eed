#!/usr/bin/env bash
# Set up whatever is missing (Docker engine, .venv and its packages, images), then run the whole
# test suite on the venv's interpreter; arguments go to pytest. Nothing needs activating.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
VENV=${ENVFARM_VENV:-.venv}
# as `source $VENV/bin/activate` would: tools and subprocesses started by name find the venv's
VIRTUAL_ENV=$(cd "$VENV" && pwd)
export VIRTUAL_ENV PATH="$VIRTUAL_ENV/bin:$PATH"
# the static checks first (seconds): style, and the layer rule as import-linter contracts
echo "[test] ruff check; lint-imports (the layers of README's Layout)" >&2
ruff check -q envfarm tests scripts
lint-imports --no-cache >/dev/null || { lint-imports --no-cache; exit 1; }
exec "$VIRTUAL_ENV/bin/python" -m pytest "$@"
