# Sourced by the GPU scripts (gpu_check.sh, gpu_tuning.sh) after setting OUT: the
# environment of a run from the repository root, and `stamp` for its log.
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export GRADSTEP_CACHE_DIR="${TMPDIR:-/tmp}/gradstep-kernels"
export PYTHONUNBUFFERED=1
# JAX, if anything imports it, must not take the GPU memory the bench measures with
export JAX_PLATFORMS=cpu XLA_PYTHON_CLIENT_PREALLOCATE=false
PY=${PYTHON:-python3}
LOG="$OUT/log.txt"
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$LOG"; }
