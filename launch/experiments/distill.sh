#!/usr/bin/env bash
# The distillation measurement (docs/compression/distillation.md) on
# Fashion-MNIST with one recipe for all (3 epochs, SGD + Nesterov, cosine):
#   teacher    launch/configs/fmnist_cnn.yaml          (824k parameters)
#   alone      launch/configs/fmnist_cnn_student.yaml  (207k: a quarter)
#   distilled  the same student with distill.teacher = the trained teacher,
#              alpha ALPHA (0.9), temperature T (4)
# and prints the test accuracy of each (the last evaluation of its run) and
# the student's parameter count. Writes OUT/{teacher,alone,distilled}/ and
# OUT/results.md.
# Usage: bash launch/experiments/distill.sh [OUT, default runs/distill]
# Environment: BUILD (build), THREADS (train.threads, 0 = cores), ALPHA, T.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/distill}
BUILD=${BUILD:-build}
THREADS=${THREADS:-0}
ALPHA=${ALPHA:-0.9}
T=${T:-4}
[ -x "$BUILD/larch" ] || { echo "distill.sh: $BUILD/larch not built" >&2; exit 1; }
mkdir -p "$OUT"
accuracy() { grep '"split": "test"' "$1/metrics.jsonl" | tail -1 | sed 's/.*"accuracy": \([0-9.e-]*\).*/\1/'; }
params() { grep -o '; [0-9]* parameters' "$1.log" | head -1 | tr -dc 0-9; }
train() {  # train NAME CONFIG [--set ...]
  local name=$1 cfg=$2; shift 2
  [ -f "$OUT/$name/metrics.jsonl" ] && grep -q '"epoch": 3.0000, "split"' "$OUT/$name/metrics.jsonl" && return 0
  rm -rf "${OUT:?}/$name"
  "$BUILD/larch" train "$cfg" --out "$OUT/$name" --set train.threads="$THREADS" "$@" > "$OUT/$name.log" 2>&1
}
train teacher launch/configs/fmnist_cnn.yaml
TCK=$(ls "$OUT"/teacher/checkpoints/ckpt-*.h5 | tail -1)
train alone launch/configs/fmnist_cnn_student.yaml
train distilled launch/configs/fmnist_cnn_student.yaml --set distill.teacher=launch/configs/fmnist_cnn.yaml \
  --set distill.checkpoint="$TCK" --set distill.alpha="$ALPHA" --set distill.temperature="$T"
{
  echo "| model | parameters | test accuracy |"
  echo "|---|---|---|"
  echo "| teacher (fmnist_cnn.yaml) | $(params "$OUT/teacher") | $(accuracy "$OUT/teacher") |"
  echo "| student alone (fmnist_cnn_student.yaml) | $(params "$OUT/alone") | $(accuracy "$OUT/alone") |"
  echo "| student distilled (alpha $ALPHA, T $T) | $(params "$OUT/distilled") | $(accuracy "$OUT/distilled") |"
} | tee "$OUT/results.md"
