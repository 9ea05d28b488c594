#!/usr/bin/env bash
# A prepared run on a machine with a CUDA GPU for tuning the Triton engine: versions,
# the CUDA tests, where a step's host time goes (benchmarks/host_overhead.py, with
# profiles), and kernel shapes against the traffic floor (benchmarks/triton_shapes.py).
# Run from the repository root; results go to $OUT (default: gpu-tuning/): log.txt,
# cuda-tests.txt, host-overhead.json, shapes.json. About five minutes.
set -u
OUT=${OUT:-gpu-tuning}
source "$(dirname "$0")/gpu_env.sh"

stamp "versions"
$PY -c "import sys, torch, triton; print('python', sys.version.split()[0]); \
print('torch', torch.__version__, 'cuda', torch.version.cuda); print('triton', triton.__version__); \
print(torch.cuda.get_device_name())" 2>&1 | tee -a "$LOG"

stamp "CUDA tests"
extra=()
$PY -c "import xdist" 2>/dev/null && extra+=(-n 4)
$PY -c "import pytest_timeout" 2>/dev/null && extra+=(--timeout 90)
timeout 150 $PY -m pytest tests/cuda -q -p no:cacheprovider -o addopts="" "${extra[@]}" \
  -rfE --tb=short > "$OUT/cuda-tests.txt" 2>&1
echo "exit $?" >> "$OUT/cuda-tests.txt"
tail -n 5 "$OUT/cuda-tests.txt" | tee -a "$LOG"

stamp "host overhead"
cases=adam:1x20000000,clip+adamw:1x20000000,rmsprop:1x20000000,sgd_momentum:1x20000000
cases=$cases,lion:1x20000000,nadam:1x20000000,schedule_free_adamw:1x20000000,adam:5000x1000
timeout 150 $PY benchmarks/host_overhead.py --cases "$cases" --steps 50 --profile 2 --top 30 \
  --out "$OUT/host-overhead.json" 2>&1 | tee -a "$LOG" | grep "^{"

stamp "kernel shapes"
timeout 240 $PY benchmarks/triton_shapes.py --out "$OUT/shapes.json" 2>&1 | tee -a "$LOG" | tail -n 3
stamp "done"
