#!/usr/bin/env bash
# The GPU check: on a CUDA machine, train one pretrained-shaped member (random init, no download) for a few hundred
# steps in fp32, fp16, bf16 (only where native) and kagglekit's automatic choice, with and without channels_last and
# torch.compile, and with 0, 1 and the default number of loader workers; print images/s, peak GPU memory with
# accum 1 vs 4 at the same effective batch, and GPU utilisation.
#
#   benchmarks/gpu_check.sh [ARCH] [STEPS]      e.g. benchmarks/gpu_check.sh resnet50 300
#
# Writes benchmarks/results/gpu_check.txt. Needs nvidia-smi and the project's .venv (PYTHON overrides it).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
ARCH=${1:-resnet50}
STEPS=${2:-300}
OUT=benchmarks/results/gpu_check.txt

if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "gpu_check: nvidia-smi not found; this check needs a CUDA machine" >&2
    exit 2
fi
mkdir -p "$(dirname "$OUT")"
UTIL=$(mktemp)
{
    echo "kagglekit GPU check, $(date -u '+%Y-%m-%d %H:%M UTC'), arch $ARCH, $STEPS steps per configuration"
    nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv
} | tee "$OUT"

# GPU utilisation, sampled every second while the configurations train
nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -l 1 >"$UTIL" &
SAMPLER=$!
trap 'kill "$SAMPLER" 2>/dev/null || true; rm -f "$UTIL"' EXIT

"$PYTHON" benchmarks/gpu_check.py --arch "$ARCH" --steps "$STEPS" | tee -a "$OUT"

kill "$SAMPLER" 2>/dev/null || true
awk '{ sum += $1; n++; if ($1 > max) max = $1 }
     END { if (n) printf "GPU utilisation over the run: mean %.0f%%, max %d%%, %d samples\n", sum / n, max, n }' \
    "$UTIL" | tee -a "$OUT"
