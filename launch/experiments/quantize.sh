#!/usr/bin/env bash
# Post-training quantization of the Fashion-MNIST CNN and MLP, measured in
# one process per model (docs/compression/quantization.md):
#   1. train launch/configs/fmnist_cnn.yaml and fmnist_mlp.yaml into WORK/runs
#      (skipped when WORK/runs/<name>/checkpoints already holds a checkpoint);
#   2. write the float model without optimizer state (the size baseline) and
#      the fp16, bf16, int8 (min-max) and int8 (percentile 99.99) models;
#   3. bench them together (build/tests/quant_tool bench: test accuracy on
#      the 10,000 test images, eval-mode samples/s at batch 256 and latency at
#      batch 1, medians of REPS passes interleaved across the models) with
#      1 and 2 threads, and the float model again in train.precision bf16.
#      The bf16-stored model computes exactly like the float one (float
#      weights rounded to bf16): its ratio to fp32 is the run's noise.
# Writes OUT/<name>_t<threads>.jsonl and prints the tables' rows.
# Usage: bash launch/experiments/quantize.sh [OUT, default docs/compression/quantization_runs]
# Environment: BUILD (build), REPS (100), WORK (/tmp/larch_quantize: runs and models).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-docs/compression/quantization_runs}
BUILD=${BUILD:-build}
REPS=${REPS:-100}
WORK=${WORK:-/tmp/larch_quantize}
TOOL=$BUILD/tests/quant_tool
[ "${LARCH_KEEP_CORETYPE:-0}" = 1 ] || unset OPENBLAS_CORETYPE
[ -x "$TOOL" ] || { echo "quantize.sh: $TOOL not built (cmake --build $BUILD)" >&2; exit 1; }
mkdir -p "$OUT" "$WORK/runs"
for name in cnn mlp; do
  R=$WORK/runs/$name
  if ! ls "$R"/checkpoints/ckpt-*.h5 > /dev/null 2>&1; then
    echo "== training fmnist_$name" >&2
    "$BUILD/larch" train "launch/configs/fmnist_$name.yaml" --out "$R" --set checkpoint.keep=1 > "$R.log" 2>&1 \
      || { tail "$R.log" >&2; exit 1; }
  fi
  CK=$(ls "$R"/checkpoints/ckpt-*.h5 | tail -1)
  M=$WORK/models/$name
  mkdir -p "$M"
  "$TOOL" float "$R/config.yaml" "$CK" "$M/fp32.h5"
  cp "$R/config.yaml" "$M/fp32.yaml"
  sed 's/^  precision: fp32/  precision: bf16/' "$M/fp32.yaml" > "$M/fp32_bf16compute.yaml"
  for spec in fp16 bf16 int8 int8:calibration=percentile; do
    base=$(echo "$spec" | sed 's/:calibration=/_/')
    "$TOOL" compress "$R/config.yaml" "$CK" "$spec" "$M/$base" >&2
  done
  for t in 1 2; do
    OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t "$TOOL" bench --reps "$REPS" --threads "$t" \
      "$M/fp32.yaml" "$M/fp32.h5" "$M/fp32_bf16compute.yaml" "$M/fp32.h5" "$M/fp16.yaml" "$M/fp16.h5" \
      "$M/bf16.yaml" "$M/bf16.h5" "$M/int8.yaml" "$M/int8.h5" "$M/int8_percentile.yaml" "$M/int8_percentile.h5" \
      | tee "$OUT/${name}_t$t.jsonl"
  done
done
