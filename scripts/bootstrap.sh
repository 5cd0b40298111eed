#!/usr/bin/env bash
# Everything envfarm needs on a fresh machine, idempotently: a running Docker engine, the Python
# packages (envfarm editable, with its test tools), and the images (built offline if need be).
# Each step is skipped when already done, so running it again takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "[bootstrap] $*" >&2; }

bash scripts/docker-up.sh

PY=${PYTHON:-python3}
# envfarm as installed, seen from outside the checkout: an editable install of another checkout
# would make the scripts/ entry points import that one
installed=$(cd / && "$PY" -c "import envfarm; print(envfarm.__file__)" 2>/dev/null || true)
if ! "$PY" -c "import envfarm, ray, docker, gymnasium, swebench, trl, transformers, torch, pytest, pytest_timeout" 2>/dev/null \
   || [ "$installed" != "$PWD/envfarm/__init__.py" ] || [ pyproject.toml -nt .bootstrap-stamp ]; then
  say "installing Python packages (about a minute and a half on a fresh machine)"
  # the CPU wheel first: a plain `torch` requirement would fetch a multi-GB CUDA build
  "$PY" -m pip install -q "torch==2.13.0" 2>&1 | grep -v "Running pip as the 'root' user" || true
  "$PY" -m pip install -q -e ".[test]" 2>&1 | grep -v "Running pip as the 'root' user" || true
  "$PY" -c "import envfarm, ray, docker, gymnasium, swebench, trl, transformers, torch, pytest" \
    || { say "ERROR: Python packages did not install; see pip's messages above"; exit 1; }
  touch .bootstrap-stamp
fi

say "building images (cached: seconds when nothing changed)"
"$PY" -m envfarm.sandbox.images build >/dev/null
say "ready"
