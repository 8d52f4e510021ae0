#!/usr/bin/env bash
# The distillation measurement (docs/compression/distillation.md) on
# Fashion-MNIST with one recipe for all (3 epochs, SGD + Nesterov, cosine):
#   teacher    launch/configs/fmnist_cnn.yaml          (824k parameters)
#   alone      launch/configs/fmnist_cnn_student.yaml  (207k: a quarter)
#   distilled  the same student with distill.teacher = the trained teacher,
#              alpha ALPHA (0.9), temperature T (4)
# and prints the test accuracy of each (the last evaluation of its run), the
# parameter counts, and how close each student's test outputs are to the
# teacher's (top-1 agreement, mean KL; `larch predict`, h5dump, awk).
# Writes OUT/{teacher,alone,distilled}/ and appends to OUT/results.md.
# Usage: bash launch/experiments/distill.sh [OUT, default runs/distill]
# Environment: BUILD (build), THREADS (train.threads, 0 = cores), ALPHA, T,
# TEACHER_EPOCHS (3: the students' recipe; 10: a stronger teacher).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/distill}
BUILD=${BUILD:-build}
THREADS=${THREADS:-0}
ALPHA=${ALPHA:-0.9}
TEACHER_EPOCHS=${TEACHER_EPOCHS:-3}
T=${T:-4}
[ -x "$BUILD/larch" ] || { echo "distill.sh: $BUILD/larch not built" >&2; exit 1; }
mkdir -p "$OUT"
accuracy() { grep '"split": "test"' "$1/metrics.jsonl" | tail -1 | sed 's/.*"accuracy": \([0-9.e-]*\).*/\1/'; }
params() { grep -o '; [0-9]* parameters' "$1.log" | head -1 | tr -dc 0-9; }
train() {  # train NAME CONFIG [--set ...]
  local name=$1 cfg=$2; shift 2
  [ -f "$OUT/$name.log" ] && grep -q "^done:" "$OUT/$name.log" && return 0     # finished before
  rm -rf "${OUT:?}/$name"
  "$BUILD/larch" train "$cfg" --out "$OUT/$name" --set train.threads="$THREADS" "$@" > "$OUT/$name.log" 2>&1
}
train teacher launch/configs/fmnist_cnn.yaml --set train.epochs="$TEACHER_EPOCHS"
TCK=$(ls "$OUT"/teacher/checkpoints/ckpt-*.h5 | tail -1)
train alone launch/configs/fmnist_cnn_student.yaml
train distilled launch/configs/fmnist_cnn_student.yaml --set distill.teacher=launch/configs/fmnist_cnn.yaml \
  --set distill.checkpoint="$TCK" --set distill.alpha="$ALPHA" --set distill.temperature="$T"
# how close each student is to the teacher on the 10,000 test images: the
# fraction whose top-1 class is the teacher's, and the mean KL(teacher ||
# student) of the softmax outputs (T = 1), from `larch predict` outputs
[ -f "$OUT/fmnist.h5" ] || "$BUILD/larch" data convert idx /usr/share/datasets/fashion-mnist "$OUT/fmnist.h5" > /dev/null
predict() {  # predict NAME CONFIG
  "$BUILD/larch" predict "$2" --checkpoint "$(ls "$OUT/$1"/checkpoints/ckpt-*.h5 | tail -1)" --data "$OUT/fmnist.h5" \
    --out "$OUT/$1.pred.h5" > /dev/null
}
predict teacher launch/configs/fmnist_cnn.yaml
predict alone launch/configs/fmnist_cnn_student.yaml
predict distilled launch/configs/fmnist_cnn_student.yaml
rows() { h5dump -d /outputs -y -w 0 -O "$1" | tr -d ',' | awk 'NF'; }   # one sample's outputs per line
agree() {  # agree TEACHER.pred.h5 STUDENT.pred.h5 -> "agreement | KL"
  paste -d' ' <(rows "$1") <(rows "$2") |
  awk '{ C = NF / 2; at = 1; as = 1; mt = $1; ms = $(C + 1)
         for (j = 1; j <= C; j++) { if ($j > $at) at = j; if ($(C + j) > $(C + as)) as = j; if ($j > mt) mt = $j; if ($(C + j) > ms) ms = $(C + j) }
         zt = 0; zs = 0; for (j = 1; j <= C; j++) { zt += exp($j - mt); zs += exp($(C + j) - ms) }
         kl = 0; for (j = 1; j <= C; j++) { lt = $j - mt - log(zt); ls = $(C + j) - ms - log(zs); kl += exp(lt) * (lt - ls) }
         n++; same += at == as; KL += kl }
       END { printf "%.4f | %.4f", same / n, KL / n }'
}
{
  echo "| model | parameters | test accuracy | top-1 agreement with the teacher | KL(teacher \|\| model) |"
  echo "|---|---|---|---|---|"
  echo "| teacher (fmnist_cnn.yaml, $TEACHER_EPOCHS epochs) | $(params "$OUT/teacher") | $(accuracy "$OUT/teacher") | 1 | 0 |"
  echo "| student alone (fmnist_cnn_student.yaml) | $(params "$OUT/alone") | $(accuracy "$OUT/alone") | $(agree "$OUT/teacher.pred.h5" "$OUT/alone.pred.h5") |"
  echo "| student distilled (alpha $ALPHA, T $T) | $(params "$OUT/distilled") | $(accuracy "$OUT/distilled") | $(agree "$OUT/teacher.pred.h5" "$OUT/distilled.pred.h5") |"
} | tee -a "$OUT/results.md"
