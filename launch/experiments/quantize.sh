#!/usr/bin/env bash
# Post-training quantization of the Fashion-MNIST CNN and MLP through
# `larch compress`, every model of a table measured in one process
# (docs/compression/quantization.md):
#   1. train launch/configs/fmnist_cnn.yaml and fmnist_mlp.yaml into WORK/runs
#      (skipped when WORK/runs/<name>/checkpoints already holds a checkpoint);
#   2. `larch compress` writes WORK/models/<name>/: original.* (the float
#      model without optimizer state, the size baseline), fp16.*, bf16.*,
#      int8.* (min-max) and int8-2.* (percentile 99.99); that run's own table
#      is a quick one (--reps 1 --rounds 1 --batch 16) and not kept;
#   3. `larch compress` measures them together with 1 and 2 threads (test
#      accuracy on the 10,000 test images, eval-mode samples/s at batch 256
#      and latency at batch 1, medians of REPS passes, medians over 3 rounds
#      interleaved across the models, the kernels that ran), and the float
#      model again in train.precision bf16. The bf16-stored model computes
#      exactly like the float one (float weights rounded to bf16): its ratio
#      to fp32 is the run's noise.
# Writes OUT/compress_<name>_t<threads>.md (the table) and .jsonl (--json).
# Usage: bash launch/experiments/quantize.sh [OUT, default docs/compression/quantization_runs]
# Environment: BUILD (build), REPS (100), WORK (/tmp/larch_quantize: runs and models).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-docs/compression/quantization_runs}
BUILD=${BUILD:-build}
REPS=${REPS:-100}
WORK=${WORK:-/tmp/larch_quantize}
LARCH=$BUILD/larch
[ "${LARCH_KEEP_CORETYPE:-0}" = 1 ] || unset OPENBLAS_CORETYPE
[ -x "$LARCH" ] || { echo "quantize.sh: $LARCH not built (cmake --build $BUILD)" >&2; exit 1; }
mkdir -p "$OUT" "$WORK/runs"
for name in cnn mlp; do
  R=$WORK/runs/$name
  if ! ls "$R"/checkpoints/ckpt-*.h5 > /dev/null 2>&1; then
    echo "== training fmnist_$name" >&2
    "$LARCH" train "launch/configs/fmnist_$name.yaml" --out "$R" --set checkpoint.keep=1 > "$R.log" 2>&1 \
      || { tail "$R.log" >&2; exit 1; }
  fi
  CK=$(ls "$R"/checkpoints/ckpt-*.h5 | tail -1)
  M=$WORK/models/$name
  mkdir -p "$M"
  echo "== writing the $name models into $M" >&2
  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$LARCH" compress "$R/config.yaml" --checkpoint "$CK" --out "$M" \
    --method fp16 --method bf16 --method int8 --method int8:calibration=percentile,percentile=99.99 \
    --reps 1 --rounds 1 --batch 16 --threads 1 | grep '^compress: ' >&2
  sed 's/^  precision: fp32/  precision: bf16/' "$M/original.yaml" > "$M/fp32_bf16compute.yaml"
  grep -q '^  precision: bf16' "$M/fp32_bf16compute.yaml" || { echo "quantize.sh: no train.precision in $M/original.yaml" >&2; exit 1; }
  for t in 1 2; do
    echo "== measuring $name, $t thread(s)" >&2
    OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t "$LARCH" compress "$M/original.yaml" --checkpoint "$M/original.h5" \
      --add "fp32_bf16compute=$M/fp32_bf16compute.yaml:$M/original.h5" \
      --add "fp16=$M/fp16.yaml:$M/fp16.h5" --add "bf16=$M/bf16.yaml:$M/bf16.h5" \
      --add "int8_minmax=$M/int8.yaml:$M/int8.h5" --add "int8_percentile=$M/int8-2.yaml:$M/int8-2.h5" \
      --reps "$REPS" --threads "$t" --json "$OUT/compress_${name}_t$t.jsonl" | tee "$OUT/compress_${name}_t$t.md"
  done
done
