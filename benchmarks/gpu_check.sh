#!/usr/bin/env bash
# longmem on an NVIDIA GPU: install the gpu extra, train a few steps on GPU and on
# CPU from one seed (the losses must agree), and time the training step at
# B=128 and 256, H=256, 512 and 1024 against torch.nn.LSTM (cuDNN) on the same
# GPU when a CUDA build of torch is installed. Prints one table.
#
#   benchmarks/gpu_check.sh              # installs from the package index
#   benchmarks/gpu_check.sh WHEELS       # installs from a folder of wheels, offline
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ge 1 ]; then
    python3 -m pip install -q --no-index --find-links "$1" -e ".[gpu]"
else
    python3 -m pip install -q -e ".[gpu]"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
cd benchmarks && exec python3 gpu.py "${@:2}"
