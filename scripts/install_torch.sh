#!/usr/bin/env bash
# Installs a PyTorch build suited to this machine into the active Python environment, unless torch imports.
#
# hf-cpt depends on an unpinned `torch>=2.6`; left to pip, that pulls the default build, which on Linux carries
# several GB of CUDA packages even on a machine without a GPU. `make demo` and `make test` run this first:
# - `nvidia-smi` works (an NVIDIA GPU and its driver): the default build from the package index (CUDA);
# - otherwise the CPU build: the same version, with PyTorch's CPU wheel index added, whose `+cpu` wheels pip
#   prefers (an index that only reaches PyPI, or a local wheel folder, serves whatever CPU wheel it holds).
# Environment: TORCH_SPEC (default torch==2.13.0, the tested version), TORCH_CPU_INDEX_URL (default
# https://download.pytorch.org/whl/cpu; empty to use only the configured indexes).
# Usage: scripts/install_torch.sh [python]   (default: python3)
set -euo pipefail

python="${1:-python3}"
spec="${TORCH_SPEC:-torch==2.13.0}"
cpu_index="${TORCH_CPU_INDEX_URL-https://download.pytorch.org/whl/cpu}"

if "$python" -c "import torch" >/dev/null 2>&1; then
  echo "PyTorch: $("$python" -c 'import torch; print(torch.__version__)') already installed."
  exit 0
fi

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
  echo "PyTorch: nvidia-smi sees a GPU; installing the default (CUDA) build, $spec."
  "$python" -m pip install "$spec"
else
  # An index that cannot be reached (an offline mirror, a closed network) would only add minutes of retries.
  if [ -n "$cpu_index" ] && ! "$python" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)" \
      "$cpu_index/" >/dev/null 2>&1; then
    echo "PyTorch: $cpu_index cannot be reached; using the configured package indexes only."
    cpu_index=""
  fi
  echo "PyTorch: no GPU (nvidia-smi absent or failing); installing the CPU build, $spec."
  "$python" -m pip install "$spec" ${cpu_index:+--extra-index-url "$cpu_index"}
fi
