#!/usr/bin/env bash
# The transfer-learning demonstration (docs/transfer.md):
#   1. pretrain the CNN on Fashion-MNIST classes 0-4 (launch/configs/transfer_pretrain.yaml);
#   2. on classes 5-9 with only the first 100 training images per class
#      (launch/configs/transfer_finetune.yaml), train the same network
#        scratch        from a random initialization, every layer at the full rate
#        head           from the pretrained trunk, trunk frozen: only the new head learns
#        head_then_all  trunk frozen for 10 epochs, then trained at lr_mult 0.1 (the config as shipped)
#        all            from the pretrained trunk, every layer at the full rate from the start
#      each with SEEDS (initialization and sample order), and
#   3. tabulate test accuracy on all 5,000 test images of classes 5-9.
# Writes OUT/results.csv and OUT/results.md.
# Usage: bash launch/experiments/transfer.sh [OUT, default docs/transfer]
# Environment: SEEDS ("42 43 44"), BUILD (build), THREADS (cores).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-docs/transfer}
SEEDS=${SEEDS:-"42 43 44"}
BUILD=${BUILD:-build}
THREADS=${THREADS:-$(nproc)}
PRE=launch/configs/transfer_pretrain.yaml
FT=launch/configs/transfer_finetune.yaml
[ "${LARCH_KEEP_CORETYPE:-0}" = 1 ] || unset OPENBLAS_CORETYPE   # let larch pick AVX-512 kernels
[ -x "$BUILD/larch" ] || { echo "transfer.sh: $BUILD/larch not built (run launch/demo.sh or cmake first)" >&2; exit 1; }
mkdir -p "$OUT/runs"

# the last test accuracy of a run's metrics.jsonl
accuracy() { grep '"split": "test"' "$1/metrics.jsonl" | tail -1 | sed 's/.*"accuracy": \([0-9.e-]*\).*/\1/'; }

echo "== pretraining on classes 0-4" >&2
"$BUILD/larch" train "$PRE" --out "$OUT/runs/pretrain" --set train.threads="$THREADS" \
    --set checkpoint.keep=1 > "$OUT/runs/pretrain.log" 2>&1 || { tail "$OUT/runs/pretrain.log" >&2; exit 1; }
CKPT=$(ls "$OUT"/runs/pretrain/checkpoints/ckpt-*.h5 | tail -1)
PRE_ACC=$(accuracy "$OUT/runs/pretrain")
echo "pretrained: test accuracy $PRE_ACC on classes 0-4, $CKPT" >&2

CSV="$OUT/results.csv"
echo "method,seed,test_accuracy,train_images,epochs" > "$CSV"
for SEED in $SEEDS; do
  for M in scratch head head_then_all all; do
    case $M in
      scratch)       SETS=(--set model.init_from.file= --set "optim.groups=[]") ;;
      head)          SETS=(--set model.init_from.file="$CKPT" --set optim.groups.0.unfreeze_after_epochs=0) ;;
      head_then_all) SETS=(--set model.init_from.file="$CKPT") ;;
      all)           SETS=(--set model.init_from.file="$CKPT" --set "optim.groups=[]") ;;
    esac
    RUN="$OUT/runs/${M}_s$SEED"
    "$BUILD/larch" train "$FT" --out "$RUN" --set train.seed="$SEED" --set train.threads="$THREADS" \
        --set checkpoint.at_end=false "${SETS[@]}" > "$RUN.log" 2>&1 || { tail "$RUN.log" >&2; exit 1; }
    ACC=$(accuracy "$RUN")
    EPOCHS=$(sed -n 's/^  epochs: //p' "$RUN/config.yaml" | head -1)
    echo "$M,$SEED,$ACC,500,$EPOCHS" >> "$CSV"
    echo "$M seed $SEED: test accuracy $ACC" >&2
  done
done

{
  echo "# Transfer learning: Fashion-MNIST classes 0-4 -> 5-9 with 100 images per class"
  echo
  echo "Made by \`bash launch/experiments/transfer.sh\` (pretraining: $(basename "$PRE"), test accuracy $PRE_ACC on"
  echo "classes 0-4; fine-tuning: $(basename "$FT"), 500 training images, test accuracy on the 5,000 test images of"
  echo "classes 5-9, seeds $SEEDS). See docs/transfer.md for what each method does."
  echo
  echo "| method | mean test accuracy | std | min | max | runs |"
  echo "|---|---|---|---|---|---|"
  for M in scratch head head_then_all all; do
    awk -F, -v m="$M" '$1 == m { n++; s += $3; q += $3 * $3; if (n == 1 || $3 < lo) lo = $3; if (n == 1 || $3 > hi) hi = $3 }
      END { mu = s / n; v = q / n - mu * mu; if (v < 0) v = 0;
            printf "| %s | %.4f | %.4f | %.4f | %.4f | %d |\n", m, mu, sqrt(v), lo, hi, n }' "$CSV"
  done
} > "$OUT/results.md"
cat "$OUT/results.md"
