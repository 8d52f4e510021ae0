#!/usr/bin/env bash
# shrink.sh - the measurements of docs/compression/structured.md and
# docs/compression/factorization.md: trains fmnist_cnn and fmnist_mlp, then
# structured pruning to half the multiply-adds and truncated SVD of the
# hidden dense layers at a few ranks; each result is evaluated as written
# (`larch eval`), fine-tuned for one epoch at a fifth of the training
# learning rate (`larch train OUT.yaml --set model.init_from=OUT.h5 --set
# train.epochs=1 --set optim.lr=0.01`: at the configs' 0.05 the factorized
# CNN diverges) and evaluated again; then
# every model is timed in one run (tests/shrink_tool time: eval forward,
# batch 256 over the test set and batch-1 latency, 1 thread, best of 3
# interleaved rounds).
#   launch/experiments/shrink.sh [BUILD_DIR] [OUT_DIR]
# Writes OUT_DIR/results.md (the table) and OUT_DIR/timing_{cnn,mlp}.txt.
set -euo pipefail
BUILD=${1:-build}
OUT=${2:-/tmp/larch_shrink}
LARCH=$BUILD/larch
TOOL=$BUILD/tests/shrink_tool
mkdir -p "$OUT"
rm -rf "$OUT"/cnn_* "$OUT"/mlp_*   # (a run directory left over would be resumed)
acc() { grep -o 'test accuracy [0-9.]*' "$1" | tail -1 | awk '{print $3}'; }

train_base() {   # name config
  if [ ! -f "$OUT/$1/done" ]; then
    "$LARCH" train "$2" --out "$OUT/$1" > "$OUT/$1.log" 2>&1
    touch "$OUT/$1/done"
  fi
  ls "$OUT/$1"/checkpoints/ckpt-*.h5 | tail -1
}

ROWS="$OUT/rows.md"
: > "$ROWS"
TIMED=()
# family base_cfg base_ckpt tag spec
variant() {
  local fam=$1 cfg=$2 ckpt=$3 tag=$4 spec=$5 base="$OUT/$1_$4"
  local summary
  summary=$("$TOOL" compress "$spec" "$cfg" "$ckpt" "$base" | head -1)
  "$LARCH" eval "$base.yaml" --checkpoint "$base.h5" > "$base.eval.log" 2>&1
  "$LARCH" train "$base.yaml" --set model.init_from="$base.h5" --set train.epochs=1 --set optim.lr=0.01 \
    --out "$base.ft" > "$base.ft.log" 2>&1
  local ft
  ft=$(ls "$base.ft"/checkpoints/ckpt-*.h5 | tail -1)
  echo "| $fam | \`$spec\` | $(acc "$base.eval.log") | $(acc "$base.ft.log") | ${summary#*: } |" >> "$ROWS"
  TIMED+=("$base.yaml" "$ft")
}

for fam in cnn mlp; do
  cfg=launch/configs/fmnist_$fam.yaml
  ckpt=$(train_base $fam "$cfg")
  base_cfg="$OUT/$fam/config.yaml"
  echo "| $fam | (original, $(basename "$ckpt")) | $(acc "$OUT/$fam.log") | | |" >> "$ROWS"
  TIMED=("$base_cfg" "$ckpt")
  variant $fam "$base_cfg" "$ckpt" half structured:flops=0.5
  variant $fam "$base_cfg" "$ckpt" half8 structured:flops=0.5,multiple=8
  if [ $fam = cnn ]; then ranks="8 16 32 64"; else ranks="32 64 128"; fi
  for r in $ranks; do variant $fam "$base_cfg" "$ckpt" svd$r svd:rank=$r; done
  if [ $fam = cnn ]; then variant $fam "$base_cfg" "$ckpt" svdconv2 svd:layers=[conv2],rank=24; fi
  "$TOOL" time --threads 1 --reps 3 "${TIMED[@]}" > "$OUT/timing_$fam.txt" 2>&1
done
{
  echo "| model | method | test acc. as written | after 1 epoch fine-tune | what it did |"
  echo "|---|---|---|---|---|"
  cat "$ROWS"
} > "$OUT/results.md"
cat "$OUT/results.md" "$OUT"/timing_*.txt
