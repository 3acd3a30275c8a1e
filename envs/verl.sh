#!/usr/bin/env bash
# verl's environment, .venv-verl: verl 0.9.1 pins transformers (>=5.5.3,<5.11) and hydra (antlr4 4.9) apart from
# this project's own pins, so it gets a virtualenv of its own, from the pins in envs/verl.constraints.txt. The
# harness goes in without its dependencies (the variant math, the reward function and the verl plugin need
# torch, math-verify and verl's own packages only); its `verl.plugins` entry point is what puts the variants into
# verl's registries. About 2 minutes on 2 cores. On a GPU machine add verl's GPU extras
# (pip install "verl[vllm,fsdp]==0.9.1"): they pin their own CUDA torch.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv-verl
. .venv-verl/bin/activate
pip install --quiet "verl==0.9.1" torch==2.13.0 "transformers>=5.5.3,<5.11" math-verify pyarrow pandas pytest \
    pytest-timeout cachetools uvicorn fastapi -c envs/verl.constraints.txt
pip install --quiet --no-deps -e .
python -c "import verl, trainers.engines.verl.plugin as p; print(f'verl {verl.__version__} ready in .venv-verl with {len(p.REGISTERED)} harness variants registered')"
