#!/usr/bin/env bash
# A GPU machine, checked in minutes: install vLLM's GPU build in a fresh venv, run the tests that need a GPU
# (sleep mode, NCCL weight pushes, training on a GPU engine) with every vLLM test, and print the rollout
# throughput of vLLM against raw LLM.generate and the hf: backend on the same plans.
#
#   bash benchmarks/gpu_check.sh                 # from the repository root; needs CUDA and a network to PyPI
#   ARENA_GPU_VENV=/path/venv bash benchmarks/gpu_check.sh   # reuse a venv that already has '.[vllm,dev]'
#
# Nothing here downloads a model: the tests and the benchmark use the shipped seed model.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nvidia-smi > /dev/null || ! nvidia-smi > /dev/null 2>&1; then
    echo "gpu_check: no GPU here (nvidia-smi does not answer); on a CPU run .ci/run instead" >&2
    exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv

venv="${ARENA_GPU_VENV:-/tmp/arena-gpu-venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    # vLLM's GPU build brings the CUDA torch it was built for; the project accepts any torch >= 2.4
    "$venv/bin/python" -m pip install -q -e ".[vllm,dev]"
fi
# shellcheck disable=SC1091
. "$venv/bin/activate"
python -c "import torch, vllm; print(f'torch {torch.__version__}, CUDA {torch.version.cuda}, vLLM {vllm.__version__}, GPUs {torch.cuda.device_count()}')"

export HF_HUB_OFFLINE=1
# the tests hide GPUs unless told which to use (tests/conftest.py): every GPU here
CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-$(nvidia-smi --query-gpu=index --format=csv,noheader | paste -sd,)}"
export CUDA_VISIBLE_DEVICES
python -m pytest -q -rs tests/test_gpu.py tests/test_vllm.py tests/test_vllm_server.py tests/test_weight_sync.py

echo "--- rollout throughput (seed model, negotiation self-play, fp32)"
python benchmarks/rollout_vllm.py --episodes 256 --concurrency 256
