#!/usr/bin/env bash
# One-GPU benchmark (< 10 min on an H100/H200-class GPU): HF padded vs HF packed vs vLLM, bf16,
# a 0.5B-class random-weight model, sessions of 2k/8k/32k tokens and a batch of short real
# sessions. Writes benchmarks/results/gpu.json (tokens/s, MFU, peak memory per engine).
#   benchmarks/gpu.sh [extra args for benchmarks/gpu.py]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU')"
exec timeout 600 "$PY" benchmarks/gpu.py "$@"
