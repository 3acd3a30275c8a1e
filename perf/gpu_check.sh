#!/usr/bin/env bash
# The GPU check for the vLLM paths (issue 12), for anyone with one CUDA GPU: makes .venv-gpu with the CUDA build
# of vLLM (which brings its own CUDA torch), evaluates a 0.5-1.5B model with the vllm backend, trains a few GRPO
# steps with vLLM rollouts, and prints throughput and memory. About 10 minutes on one H100-class GPU.
#
#   bash perf/gpu_check.sh [MODEL] [DATA_DIR]
#
# MODEL: a local model directory or a hub id (default Qwen/Qwen2.5-0.5B-Instruct; needs the hub once, or
# HF_HUB_OFFLINE=1 with the model in the hub cache); DATA_DIR: the benchmark JSONL (default ../shared/benchmarks).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="${1:-Qwen/Qwen2.5-0.5B-Instruct}"
DATA_DIR="${2:-../shared/benchmarks}"
OUT="${OUT:-runs/gpu-check}"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
if [ ! -x .venv-gpu/bin/python ]; then
    python3 -m venv .venv-gpu
    .venv-gpu/bin/pip install --quiet "vllm>=0.8" -e ".[test]"
fi
. .venv-gpu/bin/activate
python -c "import torch, vllm; print(f'torch {torch.__version__} (CUDA {torch.version.cuda}), vLLM {vllm.__version__}')"
if [ ! -d "$MODEL" ] && ! harness list models 2>/dev/null | grep -q "^$MODEL "; then
    # the harness itself never downloads; fetch the hub model once into the hub cache and use its directory
    MODEL=$(python -c "import sys; from huggingface_hub import snapshot_download; print(snapshot_download(sys.argv[1]))" "$MODEL")
fi
echo "model: $MODEL"

peak_memory() {  # the GPU memory in use every second while "$@" runs; prints the peak after it
    local log; log=$(mktemp)
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -l 1 > "$log" &
    local watcher=$!
    local started=$SECONDS
    "$@"
    kill "$watcher" 2>/dev/null || true
    echo "  wall $((SECONDS - started)) s, peak GPU memory $(sort -n "$log" | tail -1) MiB"
    rm -f "$log"
}

echo "== 1. harness eval --backend vllm: GSM8K, 256 problems x 4 samples"
peak_memory harness eval --model "$MODEL" --backend vllm --tasks gsm8k --limit 256 --n 4 --k 1,4 \
    --max-new-tokens 512 --data-dir "$DATA_DIR" --out "$OUT/eval" --quiet
python - "$OUT/eval" <<'PY'
import json, sys
from pathlib import Path
run = Path(sys.argv[1])
rows = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
card = json.loads((run / "card.json").read_text())
print(f"  {len(rows)} samples, {sum(r['num_tokens'] or 0 for r in rows)} generated tokens; backend {card['backend']}")
PY

echo "== 2. harness compare with vLLM rollouts: GRPO, 4 rollout steps of 8 prompts x G=8 (16 optimizer updates)"
peak_memory harness compare --model "$MODEL" --variants grpo --train-task gsm8k --eval-tasks gsm8k \
    --data-dir "$DATA_DIR" --device cuda --rollout-engine vllm --eval-backend vllm --budget steps=16 \
    --set all.prompts_per_step=8 --set all.max_new_tokens=256 --n 1 --k 1 --limit 64 --max-new-tokens 256 \
    --out "$OUT/compare" --leaderboard-dir "$OUT/boards" --name gpu-check --quiet
python - "$OUT/compare" <<'PY'
import json, sys
from pathlib import Path
log = Path(sys.argv[1]) / "grpo-seed0" / "train" / "train_log.jsonl"
for step in map(json.loads, log.read_text().splitlines()):
    print(f"  step {step['step']}: wall {step['wall_s']:.1f} s, tokens {step['tokens']}, sampler gap "
          f"{step['sampler_gap']:.2e}, TIS at cap {step.get('tis_truncated')}, weight pushes {step['weight_pushes']} "
          f"({step['weight_push_s']} s)")
PY

echo "== 3. generation throughput and the sampler/trainer gap (fp32 and bf16 engines)"
python perf/vllm_throughput.py --model "$MODEL" --data-dir "$DATA_DIR" --device cuda --prompts 32 --samples 8 \
    --max-new-tokens 256
