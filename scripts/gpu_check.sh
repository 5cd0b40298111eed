#!/usr/bin/env bash
# GPU check of GRPO on the farm: a few steps with a small random Qwen2 on CUDA, reporting the same
# time split as scripts/bench_train.py (generation, sandboxes, grading, optimizer).
#
#   bash scripts/gpu_check.sh            # on a CUDA machine, after scripts/bootstrap.sh (a CUDA torch in .venv)
#
# Generation goes through TRL's vLLM server mode when vLLM is installed and two GPUs are visible
# (the server on the second one: NCCL weight sync cannot join two processes on one device);
# otherwise through the trainer's own model on the GPU (transformers generate). Everything runs
# under a 7.5-minute budget; the last line is the benchmark's JSON object.
set -euo pipefail
cd "$(dirname "$0")/.."

BUDGET_S=${BUDGET_S:-450}
STEPS=${STEPS:-4}
PORT=${VLLM_PORT:-8011}
START=$(date +%s)
WORK=$(mktemp -d /tmp/envfarm-gpu-check.XXXXXX)
SERVER_PID=""
cleanup() {
  if [[ -n "$SERVER_PID" ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }

# the project's venv (ENVFARM_VENV, default .venv), as `source .venv/bin/activate` would: its python, and its trl
VENV=${ENVFARM_VENV:-.venv}
[[ -x "$VENV/bin/python" ]] || { echo "no virtual environment at $VENV: run bash scripts/bootstrap.sh first" >&2; exit 1; }
VIRTUAL_ENV=$(cd "$VENV" && pwd)
export VIRTUAL_ENV PATH="$VIRTUAL_ENV/bin:$PATH"
PY="$VIRTUAL_ENV/bin/python"

"$PY" - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device: run scripts/bench_train.py on a CPU machine instead"
print(f"cuda: {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}", flush=True)
PY
docker info >/dev/null 2>&1 || bash scripts/docker-up.sh
# the fixture tasks' image (built offline when missing)
timeout "$(left)" "$PY" -c "from envfarm.sandbox.images import build_repo, load_projects; \
print('image', build_repo(load_projects()['inflection']))"

# a small random model (bigger than the CPU tests' tiny one), saved where a vLLM server can load it
"$PY" - "$WORK/model" <<'PY'
import sys
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM
from envfarm.policy.tiny import make_tokenizer

torch.manual_seed(0)
tok = make_tokenizer(vocab_size=2000)
cfg = Qwen2Config(vocab_size=len(tok), hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192,
                  eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
Qwen2ForCausalLM(cfg).save_pretrained(sys.argv[1])
tok.save_pretrained(sys.argv[1])
print("model", sys.argv[1], sum(p.numel() for p in Qwen2ForCausalLM(cfg).parameters()), "parameters", flush=True)
PY

GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())")
MODE=transformers
if "$PY" -c "import vllm" 2>/dev/null && [[ "$GPUS" -ge 2 ]] && command -v trl >/dev/null; then
  CUDA_VISIBLE_DEVICES=1 trl vllm-serve --model "$WORK/model" --port "$PORT" --gpu-memory-utilization 0.3 \
    --max-model-len 8192 >"$WORK/vllm.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 180); do
    if curl -sf "http://127.0.0.1:$PORT/health" >/dev/null; then MODE=vllm; break; fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
    sleep 1
  done
  if [[ "$MODE" != vllm ]]; then
    echo "vLLM server did not come up; falling back to transformers generation. Its log:" >&2
    tail -20 "$WORK/vllm.log" >&2 || true
    kill "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
  fi
elif ! "$PY" -c "import vllm" 2>/dev/null; then
  echo "vLLM is not installed: generation through the trainer's model (transformers)" >&2
else
  echo "one GPU: vLLM server mode needs a second device for weight sync; generation through transformers" >&2
fi

ARGS=(--steps "$STEPS" --model "$WORK/model" --max-new-tokens 64 --max-turns 3 --envs 4 --json)
if [[ "$MODE" == vllm ]]; then
  CUDA_VISIBLE_DEVICES=0 timeout "$(left)" "$PY" scripts/bench_train.py "${ARGS[@]}" \
    --vllm-server "http://127.0.0.1:$PORT" | tee "$WORK/bench.out"
else
  timeout "$(left)" "$PY" scripts/bench_train.py "${ARGS[@]}" | tee "$WORK/bench.out"
fi
echo "gpu_check: generation=$MODE, $(( $(date +%s) - START )) s in all"
tail -1 "$WORK/bench.out"
