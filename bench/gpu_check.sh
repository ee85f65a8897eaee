#!/usr/bin/env bash
# For the day a GPU machine is lent: the CUDA figures docs/figures.md lacks, in under 8 minutes.
# Reduced-vs-full step speed-ups (ResNet-20/56, batch 128/512, fp32 / channels_last / bf16 autocast, FLOP
# ratio beside them) and one lockstep job on the full CIFAR-10 set (see bench/gpu_check.py's docstring).
# Without CUDA it runs a tiny CPU smoke run instead (prints "no CUDA: CPU fallback") and exits 0.
#
#   bash bench/gpu_check.sh 2>&1 | tee gpu_check.log
#   bash bench/gpu_check.sh --cpu --threads 1          # force the CPU fallback
# Extra arguments go to bench/gpu_check.py (--help lists them). GPU_CHECK_TIMEOUT_S (default 470) bounds it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python3
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader || true
fi
exec timeout --signal=TERM --kill-after=10 "${GPU_CHECK_TIMEOUT_S:-470}" "$PY" bench/gpu_check.py "$@"
