#!/usr/bin/env bash
# One prepared run on a machine with a CUDA GPU: versions, the CUDA tests of the
# Triton engine, then `gradstep bench --backend torch --device cuda`.
# Run from the repository root; results go to $OUT (default: gpu-check/): log.txt,
# cuda-tests.txt and one JSON file per bench part (six files in all).
# Each part has its own time limit so that a slow part cannot starve the others;
# the whole run stays under eight minutes.
set -u
OUT=${OUT:-gpu-check}
source "$(dirname "$0")/gpu_env.sh"
bench() {  # bench SECONDS NAME ARGS...: one part of the bench, its table in the log
  local limit=$1 name=$2
  shift 2
  timeout "$limit" $PY -m gradstep bench --backend torch --device cuda --steps 10 \
    --repeats 5 --json "$OUT/bench-cuda-$name.json" "$@" 2>&1 | tee -a "$LOG" | tail -n 40
  echo "exit ${PIPESTATUS[0]}" | tee -a "$LOG"
}

stamp "versions"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
  $PY -c "import sys, torch, triton, numpy; print('python', sys.version.split()[0]); \
print('torch', torch.__version__, 'cuda', torch.version.cuda); print('triton', triton.__version__); \
print('numpy', numpy.__version__); print(torch.cuda.get_device_name())"
} 2>&1 | tee -a "$LOG"

# four workers share the Triton compilations (CPU-bound); a test that hangs fails alone
stamp "CUDA tests"
extra=()
$PY -c "import xdist" 2>/dev/null && extra+=(-n 4)
$PY -c "import pytest_timeout" 2>/dev/null && extra+=(--timeout 90)
timeout 150 $PY -m pytest tests/cuda -q -p no:cacheprovider -o addopts="" "${extra[@]}" \
  -rfE --tb=short --durations=8 > "$OUT/cuda-tests.txt" 2>&1
echo "exit $?" >> "$OUT/cuda-tests.txt"
tail -n 30 "$OUT/cuda-tests.txt"

stamp "bench: Adam family and clipping"
bench 120 adam --optimizers adam,adamw,clip+adamw

stamp "bench: other rules, and 8-bit AdamW (issue 18: against float32 AdamW on 1x20M)"
bench 120 rules --cuda-layouts gpt2,5000x1000,20000x64,1x20000000 \
  --optimizers adamw_int8,sgd_momentum,rmsprop,adagrad,nadam,radam,lion,schedule_free_adamw

stamp "bench: torch.compile'd Adam on GPT-2 small"
bench 60 compiled --optimizers adam --cuda-layouts gpt2 --compile-torch

stamp "bench: ResNet-50 with channels_last convolutions (the Triton engine's memory formats)"
timeout 30 $PY benchmarks/memory_formats.py --device cuda --repeats 10 \
  --out "$OUT/memory-formats-cuda.json" 2>&1 | tee -a "$LOG" | tail -n 4
stamp "done"
