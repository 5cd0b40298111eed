#!/usr/bin/env bash
# The wheelhouse scripts/gpu_check.sh installs from, offline: wheels of envfarm's import closure
# beyond torch/transformers (rebuilt from this venv, so Python minor version and platform must
# match the GPU machine) and the builtin projects' sdists (sources/). Reports its size and fails
# past MAX_MB (default 60). envfarm itself travels as the checkout.
#
#   bash scripts/gpu_wheels.sh [DIR]      # default dist/gpu-wheels
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-dist/gpu-wheels}
PY=${PYTHON:-${ENVFARM_VENV:-.venv}/bin/python}
rm -rf "$OUT"
PYTHONPATH="$PWD" "$PY" scripts/gpu_check.py --build-wheels "$OUT" --max-mb "${MAX_MB:-60}" ${TASKS:+--tasks "$TASKS"}
