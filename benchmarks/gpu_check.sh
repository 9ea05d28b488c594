#!/usr/bin/env bash
# One prepared run on a machine with a CUDA GPU: versions, the CUDA tests of the
# Triton engine, then `gradstep bench --backend torch --device cuda`.
# Run from the repository root; results go to $OUT (default: gpu-check/).
# Each part has its own time limit so that a slow part cannot starve the others.
set -u
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export GRADSTEP_CACHE_DIR="${TMPDIR:-/tmp}/gradstep-kernels"
PY=${PYTHON:-python3}
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start )) s] $*"; }

stamp "versions"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
  $PY -c "import sys, torch, triton, numpy; print('python', sys.version.split()[0]); \
print('torch', torch.__version__, 'cuda', torch.version.cuda); print('triton', triton.__version__); \
print('numpy', numpy.__version__); print(torch.cuda.get_device_name())"
} 2>&1 | tee "$OUT/versions.txt"

stamp "CUDA tests"
timeout 170 $PY -m pytest tests/cuda -q -p no:cacheprovider -rA -o addopts="" \
  > "$OUT/cuda-tests.txt" 2>&1
echo "exit $?" >> "$OUT/cuda-tests.txt"
tail -n 25 "$OUT/cuda-tests.txt"

stamp "bench: Adam family and clipping"
timeout 170 $PY -m gradstep bench --backend torch --device cuda --steps 10 --repeats 5 \
  --optimizers adam,adamw,clip+adamw --json "$OUT/bench-cuda-adam.json" \
  > "$OUT/bench-cuda-adam.txt" 2>&1
echo "exit $?" >> "$OUT/bench-cuda-adam.txt"
tail -n 22 "$OUT/bench-cuda-adam.txt"

stamp "bench: other rules, and 8-bit AdamW (issue 18: against float32 AdamW on 1x20M)"
timeout 150 $PY -m gradstep bench --backend torch --device cuda --steps 10 --repeats 5 \
  --optimizers adamw_int8,sgd_momentum,rmsprop,adagrad,nadam,radam,lion,schedule_free_adamw \
  --cuda-layouts gpt2,5000x1000,20000x64,1x20000000 \
  --json "$OUT/bench-cuda-rules.json" > "$OUT/bench-cuda-rules.txt" 2>&1
echo "exit $?" >> "$OUT/bench-cuda-rules.txt"
tail -n 32 "$OUT/bench-cuda-rules.txt"

stamp "bench: torch.compile'd Adam on GPT-2 small"
timeout 100 $PY -m gradstep bench --backend torch --device cuda --steps 10 --repeats 5 \
  --optimizers adam --cuda-layouts gpt2 --compile-torch \
  --json "$OUT/bench-cuda-compiled.json" > "$OUT/bench-cuda-compiled.txt" 2>&1
echo "exit $?" >> "$OUT/bench-cuda-compiled.txt"
tail -n 6 "$OUT/bench-cuda-compiled.txt"
stamp "bench: ResNet-50 with channels_last convolutions (the Triton engine's memory formats)"
timeout 60 $PY benchmarks/memory_formats.py --device cuda --repeats 10 \
  --out "$OUT/memory-formats-cuda.json" > "$OUT/memory-formats-cuda.txt" 2>&1
echo "exit $?" >> "$OUT/memory-formats-cuda.txt"
tail -n 4 "$OUT/memory-formats-cuda.txt"
stamp "done"
