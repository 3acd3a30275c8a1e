#!/usr/bin/env bash
# The verl engine's GPU check (issue 13), for anyone with CUDA GPUs: a few GRPO and DGPO steps on a 0.5B model
# trained by verl through the harness's generated launch files, read back, evaluated and ranked. Until this has
# run, the README marks the verl engine experimental. Prints verl's seconds per step and the rows' ledgers.
#
#   bash perf/verl_gpu_check.sh [MODEL] [DATA_DIR] [GPUS]
#
# MODEL: a local model directory or hub id (default Qwen/Qwen2.5-0.5B-Instruct); DATA_DIR: the benchmark JSONL
# (default ../shared/benchmarks); GPUS: GPUs per node (default 1). Needs the network once for verl's GPU extras.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="${1:-Qwen/Qwen2.5-0.5B-Instruct}"
DATA_DIR="${2:-../shared/benchmarks}"
GPUS="${3:-1}"
OUT="${OUT:-runs/verl-gpu-check}"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
[ -x .venv-verl/bin/python ] || bash envs/verl.sh
.venv-verl/bin/pip install --quiet "verl[vllm,fsdp]==0.9.1"  # verl's GPU extras pin their own CUDA torch
[ -x .venv/bin/python ] || { python3 -m venv .venv && .venv/bin/pip install --quiet -e ".[test]" -c constraints.txt; }
if [ ! -d "$MODEL" ]; then
    MODEL=$(.venv/bin/python -c "import sys; from huggingface_hub import snapshot_download; print(snapshot_download(sys.argv[1]))" "$MODEL")
fi
compare=(.venv/bin/harness compare --engine verl --model "$MODEL" --variants grpo,dgpo --train-task gsm8k
         --eval-tasks gsm8k --data-dir "$DATA_DIR" --budget steps=16 --limit 100 --n 4 --k 1,4 --out "$OUT"
         --name verl-gpu-check --leaderboard-dir "$OUT" --device cuda)
"${compare[@]}"                                    # writes each row's verl launch files
for launch in "$OUT"/*/verl/launch.sh; do
    started=$(date +%s)
    HF_HUB_OFFLINE=1 .venv-verl/bin/python -c "import verl" && PATH="$PWD/.venv-verl/bin:$PATH" bash "$launch" \
        trainer.n_gpus_per_node="$GPUS"
    echo "$launch: $(( $(date +%s) - started )) s"
done
"${compare[@]}"                                    # reads the checkpoints back, evaluates, ranks
for row in "$OUT"/*-seed0; do echo "$row: $(cat "$row/train/ledger.json")"; done
