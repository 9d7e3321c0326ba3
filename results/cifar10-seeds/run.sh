#!/usr/bin/env bash
# The five-seed CIFAR-10 table of results/STUDY.md ("Five seeds"): every step is skipped when its output exists,
# so rerunning this script continues where it stopped (a stopped training resumes bit-identically).
#   bash results/cifar10-seeds/run.sh [SEED ...]        (default: seeds 0 1 2 3 4), from the repository root
# A variant of the recipe runs into folders of its own, e.g. the seeds without the spike guard:
#   OUT=results/cifar10-seeds/before-guard RUNS=runs/before-guard/cifar10-s TRAIN_ARGS="--spike 0" bash results/cifar10-seeds/run.sh 2 3 4
# Per seed on 2 idle cores: training ~25-45 min, tuning ~2 min, the test set (10,000 images x 5 trials) ~10 min
# (the denoising settle: 120 steps with momentum 0.9; a seed tuned before momentum is tuned again).
set -euo pipefail
cd "$(dirname "$0")/../.."
CONVNGC="${CONVNGC:-.venv/bin/python -m convngc}"
OUT="${OUT:-results/cifar10-seeds}"            # the seeds' test metrics, history and pictures (committed)
RUNS="${RUNS:-runs/cifar10-s}"                   # + the seed: its run folder
TRAIN_ARGS="${TRAIN_ARGS:-}"                     # more `convngc train` options (a variant of the recipe)
# is best.npz tuned with the grid the code uses now? (a run tuned by an earlier grid is tuned again)
tuned() { .venv/bin/python -c "import sys; from convngc import checkpoint, tune; sys.exit(0 if tune.is_current(checkpoint.load('$1')[3].get('denoise_tuning')) else 1)"; }
# does the evaluation in metrics.json ($2) denoise as best.npz ($1) says now (pi0, T, momentum)?
same_reading() { .venv/bin/python -c "import json, sys; from convngc import checkpoint; c = checkpoint.load('$1')[0]; m = json.load(open('$2')); sys.exit(0 if (c.denoise_pi0, c.denoise_T, c.denoise_momentum) == (m['pi0'], m['T_denoise'], m.get('momentum', 0.0)) else 1)"; }
for seed in ${@:-0 1 2 3 4}; do
  run=$RUNS$seed
  if [ -d "$run" ]; then
    $CONVNGC train --resume "$run" --no-progress                 # says "already complete" when it is
  else
    $CONVNGC train --dataset cifar10 --batch-size 100 --lr 3e-3 --epochs 4 --seed "$seed" $TRAIN_ARGS --no-progress --out "$run"
  fi
  if ! tuned "$run/best.npz"; then
    $CONVNGC tune "$run" --no-progress
    # a tuning that changed the reading makes the seed's test numbers stale: set them aside and evaluate again
    if [ -f "$OUT/s$seed/metrics.json" ] && ! same_reading "$run/best.npz" "$OUT/s$seed/metrics.json"; then
      mv "$OUT/s$seed/metrics.json" "$OUT/s$seed/metrics-before-retune.json"
    fi
  fi
  if [ ! -f "$OUT/s$seed/metrics.json" ]; then
    $CONVNGC evaluate "$run" --trials 5 --no-progress --out "$OUT/s$seed"
    cp "$run/history.json" "$run/training.png" "$run/config.json" "$OUT/s$seed/"
  fi
done
