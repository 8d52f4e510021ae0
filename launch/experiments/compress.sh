#!/usr/bin/env bash
# compress.sh - the compression tables of docs/compression.md: for
# fmnist_cnn and fmnist_mlp, one trained model compressed every way larch
# can, fine-tuned where a method needs it, and measured in ONE `larch
# compress` run per model family (parameters, nonzero, bytes on disk, test
# accuracy, samples/s at batch 256, latency at batch 1, kernels).
#
#   stage train: the base model (cnn: the 10-epoch teacher of distill.sh,
#     with the student trained alone and distilled); the methods' raw
#     outputs (larch compress --method ...); fine-tuning (1 epoch at lr
#     0.01) of the pruned, structured and factorized models and of the
#     original itself (the control); gradual pruning to 90% over the base's
#     recipe; QAT (1 epoch) and int8 from its ranges.
#   stage table: one `larch compress` of the base with fp16/bf16/int8 and
#     every trained model as --add: OUT/<fam>.md (table) and OUT/<fam>.jsonl.
#
# Usage: bash launch/experiments/compress.sh [OUT (runs/compress)]
# Environment: BUILD (build), STAGE (all | train | table), THREADS (threads of
# the table, 1), FAMILIES ("cnn mlp"), CNN_EPOCHS (10: the teacher's epochs).
# Takes about 15 minutes on 2 cores (most of it the 10-epoch CNN runs).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/compress}
BUILD=${BUILD:-build}
STAGE=${STAGE:-all}
THREADS=${THREADS:-1}
FAMILIES=${FAMILIES:-cnn mlp}
CNN_EPOCHS=${CNN_EPOCHS:-10}
LARCH=$BUILD/larch
# fp32 gets OpenBLAS's best kernels: larch picks the AVX-512 ones itself
# when OPENBLAS_CORETYPE is unset (the table's kernels column says which ran)
unset OPENBLAS_CORETYPE
[ -x "$LARCH" ] || { echo "compress.sh: $LARCH not built" >&2; exit 1; }
mkdir -p "$OUT"

last_ck() { ls "$1"/checkpoints/ckpt-*.h5 | tail -1; }
train() {  # train DIR CONFIG [--set ...]: skipped when DIR finished before
  local dir=$1 cfg=$2; shift 2
  [ -f "$dir.log" ] && grep -q "^done:" "$dir.log" && return 0
  rm -rf "$dir"
  echo "compress.sh: training $dir"
  "$LARCH" train "$cfg" --out "$dir" "$@" > "$dir.log" 2>&1 || { tail -5 "$dir.log" >&2; return 1; }
}
finetune() {  # finetune DIR CONFIG CHECKPOINT: one epoch at lr 0.01 from the checkpoint
  train "$1" "$2" --set model.init_from="$3" --set train.epochs=1 --set optim.lr=0.01
}

for fam in $FAMILIES; do
  D=$OUT/$fam
  mkdir -p "$D"
  if [ "$fam" = cnn ]; then
    if [ "$STAGE" != table ]; then
      # the base: distill.sh's teacher (its students are the distillation rows)
      TEACHER_EPOCHS=$CNN_EPOCHS ALPHA=0.5 T=2 BUILD=$BUILD bash launch/experiments/distill.sh "$D/distill" > "$D/distill.log"
    fi
    BASE=$D/distill/teacher
  else
    [ "$STAGE" != table ] && train "$D/base" launch/configs/fmnist_$fam.yaml
    BASE=$D/base
  fi
  CFG=$BASE/config.yaml
  CK=$(last_ck "$BASE")
  C=$D/methods
  if [ "$STAGE" != table ]; then
    # the methods' raw results (before any fine-tuning), and a first table
    "$LARCH" compress "$CFG" --checkpoint "$CK" --out "$C" --reps 5 --rounds 1 \
      --method int8 --method prune:sparsity=0.9,scope=global --method structured:flops=0.5 --method svd \
      > "$D/methods.txt"
    finetune "$D/ft_original" "$C/original.yaml" "$C/original.h5"          # the control
    train "$D/ft_prune" "$C/prune.yaml" --set train.epochs=1 --set optim.lr=0.01   # its init_from and masks
    finetune "$D/ft_structured" "$C/structured.yaml" "$C/structured.h5"
    finetune "$D/ft_svd" "$C/svd.yaml" "$C/svd.h5"
    train "$D/gradual" "$CFG" --set prune.sparsity=0.9 --set prune.scope=global
    train "$D/qat" "$C/original.yaml" --set model.init_from="$C/original.h5" --set quantize.qat=true \
      --set train.epochs=1 --set optim.lr=0.01
    "$LARCH" compress "$D/qat/config.yaml" --checkpoint "$(last_ck "$D/qat")" --method int8 --out "$D/qat_int8" \
      --reps 1 --rounds 1 > "$D/qat_int8.txt"
  fi
  [ "$STAGE" = train ] && continue
  ADD=(--add "ft-original=$D/ft_original/config.yaml:$(last_ck "$D/ft_original")"
       --add "int8-qat=$D/qat_int8/int8.yaml:$D/qat_int8/int8.h5"
       --add "prune90-raw=$C/prune.yaml:$C/prune.h5"
       --add "prune90-ft=$D/ft_prune/config.yaml:$(last_ck "$D/ft_prune")"
       --add "gradual90=$D/gradual/config.yaml:$(last_ck "$D/gradual")"
       --add "structured-raw=$C/structured.yaml:$C/structured.h5"
       --add "structured-ft=$D/ft_structured/config.yaml:$(last_ck "$D/ft_structured")"
       --add "svd-raw=$C/svd.yaml:$C/svd.h5"
       --add "svd-ft=$D/ft_svd/config.yaml:$(last_ck "$D/ft_svd")")
  if [ "$fam" = cnn ]; then
    ADD+=(--add "student-alone=$D/distill/alone/config.yaml:$(last_ck "$D/distill/alone")"
          --add "student-distilled=$D/distill/distilled/config.yaml:$(last_ck "$D/distill/distilled")")
  fi
  "$LARCH" compress "$CFG" --checkpoint "$CK" --out "$D/table" --threads "$THREADS" --reps 20 --rounds 3 \
    --method fp16 --method bf16 --method int8 "${ADD[@]}" --json "$OUT/$fam.jsonl" | tee "$OUT/$fam.md"
done
