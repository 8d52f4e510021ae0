#!/usr/bin/env bash
# The pruning measurement (docs/compression/pruning.md) on Fashion-MNIST
# (launch/configs/fmnist_cnn.yaml, 3 epochs):
#   dense       the config as shipped
#   gradual_*   the same run with prune.sparsity SPARSITY (0.9), per layer and
#               global: Zhu & Gupta's schedule from step 0 to three quarters
#               of the run, every 100 steps
#   oneshot_*   the dense checkpoint pruned once by the `prune` method (per
#               layer and global), evaluated as written, then fine-tuned for
#               one epoch (`larch train OUT.yaml`, lr 0.01, masks held)
# and tabulates test accuracy, the sparsity of the weights, the bytes of the
# checkpoint files (training checkpoints hold the momentum too; the method
# writes weights only and reports the same weights written dense) and the
# evaluation throughput of each (the same dense kernels run either way).
# Writes OUT/ and OUT/results.md.
# Usage: bash launch/experiments/prune.sh [OUT, default runs/prune]
# Environment: BUILD (build), THREADS (0 = cores), SPARSITY (0.9), CFG (the
# config, launch/configs/fmnist_cnn.yaml), DENSE (a
# finished dense run directory to reuse, e.g. runs/distill/teacher).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/prune}
BUILD=${BUILD:-build}
THREADS=${THREADS:-0}
SP=${SPARSITY:-0.9}
CFG=${CFG:-launch/configs/fmnist_cnn.yaml}
[ -x "$BUILD/larch" ] || { echo "prune.sh: $BUILD/larch not built" >&2; exit 1; }
mkdir -p "$OUT"
if [ ! -x "$BUILD/prune_oneshot" ]; then
  cc -O2 -Iinclude launch/experiments/prune_oneshot.c -L"$BUILD" -llarch -Wl,-rpath,"$PWD/$BUILD" -o "$BUILD/prune_oneshot"
fi
accuracy() { grep '"split": "test"' "$1" | tail -1 | sed 's/.*"accuracy": \([0-9.e-]*\).*/\1/'; }
evalrate() { grep '"split": "test"' "$1" | tail -1 | sed 's/.*"eval_samples_per_s": \([0-9.e-]*\).*/\1/'; }
bytes() { stat -c %s "$1"; }
last() { ls "$1"/checkpoints/ckpt-*.h5 | tail -1; }

DENSE=${DENSE:-$OUT/dense}
if [ ! -f "$DENSE/metrics.jsonl" ]; then
  "$BUILD/larch" train $CFG --out "$DENSE" --set train.threads="$THREADS" > "$DENSE.log" 2>&1
fi
for scope in layer global; do
  if [ ! -f "$OUT/gradual_$scope/metrics.jsonl" ]; then
    "$BUILD/larch" train $CFG --out "$OUT/gradual_$scope" --set train.threads="$THREADS" --set prune.sparsity="$SP" \
      --set prune.scope=$scope > "$OUT/gradual_$scope.log" 2>&1
  fi
done
row() {  # row NAME METRICS CKPT SPARSITY
  echo "| $1 | $(accuracy "$2") | $4 | $(bytes "$3") |"
}
{
  echo "| model | test accuracy | weight sparsity | checkpoint bytes |"
  echo "|---|---|---|---|"
  row "dense (training checkpoint, with momentum)" "$DENSE/metrics.jsonl" "$(last "$DENSE")" 0
  for scope in layer global; do
    sp=$(grep '"sparsity"' "$OUT/gradual_$scope/metrics.jsonl" | tail -1 | sed 's/.*"sparsity": \([0-9.]*\).*/\1/')
    row "gradual $scope $SP (training checkpoint, with momentum and masks)" "$OUT/gradual_$scope/metrics.jsonl" \
        "$(last "$OUT/gradual_$scope")" "$sp"
  done
  for scope in layer global; do
    base=$OUT/oneshot_$scope
    sum=$("$BUILD/prune_oneshot" $CFG "$(last "$DENSE")" "$base" "sparsity=$SP,scope=$scope")
    "$BUILD/larch" eval "$base.yaml" --checkpoint "$base.h5" --out "$base.eval" > "$base.eval.log" 2>&1
    dense_bytes=$(sed 's/.* \([0-9]*\) written dense.*/\1/' <<<"$sum")
    echo "| one-shot $scope $SP (the method's OUT.h5: weights + masks; the same weights dense: $dense_bytes) |" \
         "$(accuracy "$base.eval/metrics.jsonl") | $SP | $(bytes "$base.h5") |"
    if [ ! -f "$base.ft/metrics.jsonl" ]; then
      "$BUILD/larch" train "$base.yaml" --out "$base.ft" --set train.threads="$THREADS" --set train.epochs=1 \
        --set optim.lr=0.01 --set sched.warmup_epochs=0 > "$base.ft.log" 2>&1
    fi
    row "one-shot $scope $SP + 1 epoch fine-tuning (training checkpoint)" "$base.ft/metrics.jsonl" "$(last "$base.ft")" "$SP"
  done
} | tee "$OUT/results.md"

# Time: evaluation throughput (the 10,000 test images, eval batch 1000) of
# the dense model and the one-shot global pruned one, alternated REPS times
# in this run; the median of each. The same dense kernels run for both.
REPS=${REPS:-5}
for i in $(seq "$REPS"); do
  "$BUILD/larch" eval $CFG --checkpoint "$(last "$DENSE")" --out "$OUT/time_dense_$i" --set train.threads="$THREADS" > /dev/null 2>&1
  "$BUILD/larch" eval "$OUT/oneshot_global.yaml" --checkpoint "$OUT/oneshot_global.h5" --out "$OUT/time_pruned_$i" \
    --set train.threads="$THREADS" > /dev/null 2>&1
done
median() { for i in $(seq "$REPS"); do evalrate "$OUT/time_$1_$i/metrics.jsonl"; done | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
echo "eval samples/s (median of $REPS, alternated): dense $(median dense), pruned $SP $(median pruned)" | tee -a "$OUT/results.md"
