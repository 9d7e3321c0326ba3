#!/usr/bin/env bash
# gpu_check.sh: everything that needs a real GPU, in one call of under 8 minutes (`make gpu-check`).
#
#   1. install what is missing: CuPy for the driver's CUDA major (pip install -e .[dev,cuda12|cuda13]), torch
#   2. the CUDA kernel tests on the device (pytest tests -k "cuda and not test_emu"; CuPy arrays -> the real backend)
#   3. compute-sanitizer memcheck and racecheck on a tiny settle through both kernel paths
#      (python bench/gpu_bench.py --smoke: whole-settle kernel and per-step kernels, checked against ngc_ref)
#   4. the benchmark (python bench/gpu_bench.py): settle B=100/500 and one training epoch, ours vs PyTorch
#
# Output: every step's log, summary.txt and <card>.json under $OUT if set (the device tool's output
# folder), else bench/results/. Each step runs even if an earlier one failed (one GPU session should
# bring back everything it can), but the script exits 1 and prints FAILED for every failed step.
# Budget: GPU_CHECK_BUDGET seconds in all (default 450); each step gets min(its cap, what is left).
set -u
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PYTHON:-python3}
RESULTS=${OUT:-$REPO/bench/results}
mkdir -p "$RESULTS"
BUDGET=${GPU_CHECK_BUDGET:-450}
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export CONVNGC_BACKEND=cuda                # tests that read it use the real backend
FAILED=()
SUMMARY="$RESULTS/summary.txt"
: > "$SUMMARY"

note() { echo "$*" | tee -a "$SUMMARY"; }

# step NAME CAP_SECONDS COMMAND...: run with a timeout, log to $RESULTS/NAME.log, record the outcome
step() {
    local name=$1 cap=$2; shift 2
    local left=$((BUDGET - SECONDS))
    if [ "$left" -lt 15 ]; then
        note "FAILED  $name: not run, the ${BUDGET}s budget is spent"
        FAILED+=("$name"); return 1
    fi
    [ "$cap" -gt "$left" ] && cap=$left
    echo "=== $name (limit ${cap}s) ==="
    local t0=$SECONDS
    timeout --kill-after=10 "$cap" "$@" 2>&1 | tee "$RESULTS/$name.log"
    local rc=${PIPESTATUS[0]}
    if [ $rc -eq 0 ]; then
        note "ok      $name ($((SECONDS - t0))s)"
    else
        [ $rc -eq 124 ] && note "FAILED  $name: timed out after ${cap}s" || note "FAILED  $name: exit $rc ($((SECONDS - t0))s), see $name.log"
        FAILED+=("$name")
    fi
    return $rc
}

# ---- 0. the machine ----
{
    echo "date: $(date -u)"; echo "host: $(hostname)"; echo "repo: $REPO"
    nvidia-smi || echo "nvidia-smi failed"
    $PY --version
} > "$RESULTS/machine.log" 2>&1
cat "$RESULTS/machine.log"
CUDA_MAJOR=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9]*\).*/\1/p' | head -1)
[ "${CUDA_MAJOR:-13}" -ge 13 ] && EXTRA=cuda13 || EXTRA=cuda12
note "driver CUDA major: ${CUDA_MAJOR:-unknown} -> extra [$EXTRA]"

# ---- 1. install what is missing ----
have_cupy() { $PY -c "import cupy, sys; sys.exit(0 if cupy.cuda.is_available() else 1)" 2>/dev/null; }
if have_cupy; then
    note "ok      cupy already works ($($PY -c 'import cupy; print(cupy.__version__)'))"
else
    step install_cupy 150 $PY -m pip install -q -e ".[dev,$EXTRA]"
    have_cupy || { note "FAILED  cupy still does not see a GPU"; FAILED+=("cupy"); }
fi
for mod in pytest scipy; do
    $PY -c "import $mod" 2>/dev/null || step "install_$mod" 60 $PY -m pip install -q "$mod"
done
if $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    note "ok      torch already works ($($PY -c 'import torch; print(torch.__version__)'))"
else
    step install_torch 150 $PY -m pip install -q torch
fi

# ---- 2. kernel tests on the device ----
step tests 150 $PY -m pytest tests -k "cuda and not test_emu" -q -rs -p no:cacheprovider

# ---- 3. compute-sanitizer on a tiny settle (both kernel paths) ----
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda-*/bin/compute-sanitizer \
      /opt/nvidia/*/compute-sanitizer 2>/dev/null | head -1)
if [ -z "$SAN" ]; then
    note "FAILED  compute-sanitizer not found (looked on PATH and in /usr/local/cuda*/bin)"
    FAILED+=("sanitizer")
else
    step memcheck 90 "$SAN" --tool memcheck --error-exitcode 3 --target-processes all \
        $PY bench/gpu_bench.py --smoke
    step racecheck 120 "$SAN" --tool racecheck --racecheck-report hazard --error-exitcode 3 --target-processes all \
        $PY bench/gpu_bench.py --smoke
fi

# ---- 4. the benchmark ----
step bench 200 $PY bench/gpu_bench.py --out "$RESULTS"

echo
echo "==== summary (${SECONDS}s of ${BUDGET}s) ===="
cat "$SUMMARY"
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "gpu_check: FAILED: ${FAILED[*]}" | tee -a "$SUMMARY" >&2
    exit 1
fi
echo "gpu_check: all steps passed" | tee -a "$SUMMARY"
