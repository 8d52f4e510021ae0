#!/usr/bin/env bash
# shrink.sh - the measurements of docs/compression/structured.md and
# docs/compression/factorization.md: trains fmnist_cnn and fmnist_mlp, then
# one `larch compress` per model writes structured pruning to half the
# multiply-adds and truncated SVD of the hidden dense layers at a few ranks
# (OUT_DIR/<model>.compress/<method>.*, a repeated method <method>-2.* ...;
# that run's table gives the accuracy as written); each result is fine-tuned
# for one epoch at a fifth of the training learning rate (`larch train
# OUT.yaml --set model.init_from=OUT.h5 --set train.epochs=1 --set
# optim.lr=0.01`: at the configs' 0.05 the factorized CNN diverges); then
# `larch compress` measures the original (as the first run rewrote it,
# without optimizer state) and every fine-tuned model in one run (--add; 1 thread, eval forward at batch 256 and batch-1 latency,
# medians of 20 passes, median of 3 interleaved rounds).
#   launch/experiments/shrink.sh [BUILD_DIR] [OUT_DIR]
# Writes OUT_DIR/results.md (accuracy as written and after the fine-tune, what
# each method did) and OUT_DIR/timing_{cnn,mlp}.md (the tables; .jsonl: --json;
# the fine-tuned checkpoints' bytes there include their optimizer state).
# Environment: FT, extra arguments of the fine-tunes (FT="--set train.max_steps=3"
# checks the script in a minute; the documented numbers are without it).
set -euo pipefail
BUILD=${1:-build}
OUT=${2:-/tmp/larch_shrink}
LARCH=$BUILD/larch
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
mkdir -p "$OUT"
rm -rf "$OUT"/cnn.* "$OUT"/mlp.* "$OUT"/cnn_* "$OUT"/mlp_*   # (a run directory left over would be resumed)
# jfield JSONL LABEL FIELD: a number or string field of that model's line
jfield() { grep "^{\"model\": \"$2\"," "$1" | sed -n "s/.*\"$3\": \"\{0,1\}\([^,\"]*\)\"\{0,1\}[,}].*/\1/p"; }
acc4() { printf '%.4f' "$(jfield "$@" accuracy)"; }

train_base() {   # name config
  if [ ! -f "$OUT/$1/done" ]; then
    "$LARCH" train "$2" --out "$OUT/$1" > "$OUT/$1.log" 2>&1
    touch "$OUT/$1/done"
  fi
  ls "$OUT/$1"/checkpoints/ckpt-*.h5 | tail -1
}

ROWS="$OUT/rows.md"
: > "$ROWS"
for fam in cnn mlp; do
  ckpt=$(train_base $fam launch/configs/fmnist_$fam.yaml)
  cfg="$OUT/$fam/config.yaml"
  specs=(structured:flops=0.5 structured:flops=0.5,multiple=8)
  if [ $fam = cnn ]; then ranks="8 16 32 64"; else ranks="32 64 128"; fi
  for r in $ranks; do specs+=(svd:rank=$r); done
  if [ $fam = cnn ]; then specs+=(svd:layers=[conv2],rank=24); fi
  args=()
  for s in "${specs[@]}"; do args+=(--method "$s"); done
  C=$OUT/$fam.compress
  "$LARCH" compress "$cfg" --checkpoint "$ckpt" "${args[@]}" --out "$C" --reps 1 --rounds 1 --batch 16 --threads 1 \
    --json "$C.jsonl" > "$C.log"
  echo "| $fam | (original, $(basename "$ckpt")) | $(acc4 "$C.jsonl" original) | | |" >> "$ROWS"
  adds=()
  declare -A seen=()
  for s in "${specs[@]}"; do
    m=${s%%:*}; seen[$m]=$(( ${seen[$m]:-0} + 1 ))
    label=$m; [ "${seen[$m]}" -gt 1 ] && label=$m-${seen[$m]}
    "$LARCH" train "$C/$label.yaml" --set model.init_from="$C/$label.h5" --set train.epochs=1 --set optim.lr=0.01 ${FT:-} \
      --out "$OUT/${fam}_$label.ft" > "$OUT/${fam}_$label.ft.log" 2>&1
    ft=$(ls "$OUT/${fam}_$label.ft"/checkpoints/ckpt-*.h5 | tail -1)
    adds+=(--add "${label}_ft=$C/$label.yaml:$ft")
    line=$(grep -F "compress: $s: " "$C.log"); what=${line#"compress: $s: "}; what=${what% -> *}
    echo "| $fam | \`$s\` ($label) | $(acc4 "$C.jsonl" "$label") | FT:${label}_ft | $what |" >> "$ROWS"
  done
  unset seen
  "$LARCH" compress "$C/original.yaml" --checkpoint "$C/original.h5" "${adds[@]}" --threads 1 --json "$OUT/timing_$fam.jsonl" \
    > "$OUT/timing_$fam.md"
  while read -r l; do   # the fine-tuned accuracies into the rows
    lab=$(sed 's/^{"model": "\([^"]*\)".*/\1/' <<<"$l")
    a=$(acc4 "$OUT/timing_$fam.jsonl" "$lab")
    sed -i "s/^\(| $fam | .*\)FT:$lab |/\1$a |/" "$ROWS"
  done < "$OUT/timing_$fam.jsonl"
done
{
  echo "| model | method (label) | test acc. as written | after 1 epoch fine-tune | what it did |"
  echo "|---|---|---|---|---|"
  cat "$ROWS"
} > "$OUT/results.md"
cat "$OUT/results.md" "$OUT"/timing_*.md
