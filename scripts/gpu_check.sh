#!/usr/bin/env bash
# GPU check of GRPO on one CUDA machine with no Docker, no vLLM, no Ray and no network: a few steps
# of a random ~320M-parameter Qwen2 generating with the trainer's own model, episodes on the
# unisolated `local` sandbox backend, sync then async rollouts; the last line is one JSON object.
# The logic is scripts/gpu_check.py; this only installs the carried wheels and runs it under a budget.
#
#   here (network):  bash scripts/gpu_wheels.sh dist/gpu-wheels      # wheels + sdists, fails past 60 MB
#   there:           ENVFARM_ALLOW_UNISOLATED=1 bash scripts/gpu_check.sh [dist/gpu-wheels]
#
# Copy the checkout with its wheelhouse. The machine must already have CUDA, torch, transformers,
# numpy, pandas and pyarrow, git and the same Python minor version the wheelhouse was built with.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=${1:-${ENVFARM_WHEELS:-dist/gpu-wheels}}
BUDGET_S=${BUDGET_S:-290}
PY=${PYTHON:-$(command -v python3)}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
START=$(date +%s)

if [[ -d "$WHEELS" ]]; then
  # into $PY's environment (a venv where the system Python refuses pip installs)
  "$PY" scripts/gpu_check.py --install-from "$WHEELS" || echo "gpu_check: installing from $WHEELS failed" >&2
else
  echo "gpu_check: no wheelhouse at $WHEELS (build it with scripts/gpu_wheels.sh); using what is installed" >&2
fi
"$PY" scripts/gpu_check.py --preflight --device cuda --sources "$WHEELS/sources"
timeout "$(( BUDGET_S - ($(date +%s) - START) ))" \
  "$PY" scripts/gpu_check.py --device cuda --sources "$WHEELS/sources" --json "${@:2}" | tee /tmp/gpu_check.out
echo "gpu_check: $(( $(date +%s) - START )) s in all" >&2
tail -1 /tmp/gpu_check.out  # the JSON object, last
