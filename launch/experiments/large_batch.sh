#!/usr/bin/env bash
# The large-batch study: fmnist_mlp.yaml at global batch 256, 1024, 4096 and
# 16384 for the same number of epochs with
#   sgd         SGD + Nesterov momentum, linear scaling lr = 0.05 B/256, no warmup, cosine
#   sgd_warmup  the same with 5 epochs of linear warmup (Goyal et al. 2017)
#   lars        LARS, lr = LARS_LR (B/4096)^LR_POW, 5 warmup epochs, poly decay (power 2)
#   lamb        LAMB, lr = LAMB_LR (B/4096)^LR_POW, 5 warmup epochs, poly decay (power 2)
# (LR_POW 0: the layer-wise rates are not rescaled with the batch; 0.5 = square-root scaling)
# Writes OUT/results.csv, OUT/results.md and OUT/accuracy.png (gnuplot).
# Usage: bash launch/experiments/large_batch.sh [OUT, default docs/large_batch]
# Environment: EPOCHS (30), BATCHES ("256 1024 4096 16384"), METHODS,
# LARS_LR (2), LAMB_LR (0.01), LR_POW (0), WARMUP (5), BUILD (build), THREADS (cores).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-docs/large_batch}
EPOCHS=${EPOCHS:-30}
BATCHES=${BATCHES:-"256 1024 4096 16384"}
METHODS=${METHODS:-"sgd sgd_warmup lars lamb"}
LARS_LR=${LARS_LR:-2}
LAMB_LR=${LAMB_LR:-0.01}
LR_POW=${LR_POW:-0}
WARMUP=${WARMUP:-5}
BUILD=${BUILD:-build}
THREADS=${THREADS:-$(nproc)}
CONFIG=launch/configs/fmnist_mlp.yaml
[ "${LARCH_KEEP_CORETYPE:-0}" = 1 ] || unset OPENBLAS_CORETYPE   # let larch pick AVX-512 kernels
[ -x "$BUILD/larch" ] || { echo "large_batch.sh: $BUILD/larch not built (run launch/demo.sh or cmake first)" >&2; exit 1; }
mkdir -p "$OUT/runs"
CSV="$OUT/results.csv"
# REPORT_ONLY=1: remake results.md and accuracy.png from an existing results.csv
if [ "${REPORT_ONLY:-0}" != 1 ]; then
echo "method,batch,lr,warmup_epochs,schedule,epochs,steps,test_accuracy,best_test_accuracy,final_train_loss,wall_s" > "$CSV"

for B in $BATCHES; do
  for M in $METHODS; do
    case $M in
      sgd)        LR=$(awk -v b="$B" 'BEGIN{printf "%.6g", 0.05*b/256}'); W=0; S=cosine
                  SETS=(--set optim.name=sgd --set optim.nesterov=true) ;;
      sgd_warmup) LR=$(awk -v b="$B" 'BEGIN{printf "%.6g", 0.05*b/256}'); W=$WARMUP; S=cosine
                  SETS=(--set optim.name=sgd --set optim.nesterov=true) ;;
      lars)       LR=$(awk -v b="$B" -v l="$LARS_LR" -v p="$LR_POW" 'BEGIN{printf "%.6g", l*(b/4096)^p}'); W=$WARMUP; S=poly
                  SETS=(--set optim.name=lars --set optim.nesterov=false) ;;
      lamb)       LR=$(awk -v b="$B" -v l="$LAMB_LR" -v p="$LR_POW" 'BEGIN{printf "%.6g", l*(b/4096)^p}'); W=$WARMUP; S=poly
                  SETS=(--set optim.name=lamb --set optim.nesterov=false) ;;
      *) echo "large_batch.sh: unknown method $M" >&2; exit 2 ;;
    esac
    RUN="$OUT/runs/${M}_b$B"
    t0=$(date +%s.%N)
    if ! "$BUILD/larch" train "$CONFIG" --out "$RUN" --set train.epochs="$EPOCHS" --set train.batch_size="$B" \
        --set train.threads="$THREADS" --set train.stop_on_nan=false --set optim.lr="$LR" \
        --set optim.weight_decay=0.0001 --set sched.name="$S" --set sched.warmup_epochs="$W" \
        "${SETS[@]}" > "$RUN.log" 2>&1; then
      echo "large_batch.sh: $M batch $B failed, see $RUN.log" >&2; tail -3 "$RUN.log" >&2; exit 1
    fi
    t1=$(date +%s.%N)
    # last and best test accuracy, last training loss, from metrics.jsonl
    ROW=$(awk -F'[,:}]' '
      /"split": "test"/ { for (i = 1; i < NF; i++) if ($i ~ /"accuracy"/) { a = $(i+1) + 0; if (a > best) best = a; last = a } }
      /"samples_per_s"/ { for (i = 1; i < NF; i++) {
          if ($i ~ /"loss"/) { l = $(i+1); gsub(/ /, "", l); loss = l == "null" ? "nan" : sprintf("%.4f", l) }
          if ($i ~ /"step"/) steps = $(i+1) + 0 } }
      END { printf "%d,%.4f,%.4f,%s", steps, last, best, loss }' "$RUN/metrics.jsonl")
    WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
    echo "$M,$B,$LR,$W,$S,$EPOCHS,$ROW,$WALL" | tee -a "$CSV"
  done
done
fi

# markdown table: accuracy (and the gap to the batch-256 SGD baseline)
awk -F, 'NR == 1 { next }
  { key[NR] = $1 "," $2; acc[$1 "," $2] = $8; loss[$1 "," $2] = $10; lr[$1 "," $2] = $3; wall[$1 "," $2] = $11; steps[$1 "," $2] = $7
    if (!($1 in seenm)) { seenm[$1] = 1; ms[++nm] = $1 }
    if (!($2 in seenb)) { seenb[$2] = 1; bs[++nb] = $2 } }
  END {
    base = acc["sgd,256"]
    printf "| method | "; for (j = 1; j <= nb; j++) printf "batch %s | ", bs[j]; printf "\n|---|"
    for (j = 1; j <= nb; j++) printf "---|"; printf "\n"
    for (i = 1; i <= nm; i++) {
      printf "| %s | ", ms[i]
      for (j = 1; j <= nb; j++) { k = ms[i] "," bs[j]
        if (k in acc) printf "%.4f (%+.1f)%s<br>lr %s, %s steps, %s s | ", acc[k], 100 * (acc[k] - base), loss[k] == "nan" ? " diverged" : "", lr[k], steps[k], wall[k]
        else printf "- | " }
      printf "\n" }
    printf "\nTest accuracy after the last epoch (in brackets: points against sgd at batch 256 = %.4f; diverged: the training loss became NaN/inf and accuracy fell to chance), the learning rate, optimizer steps and wall time of each run.\n", base
  }' "$CSV" > "$OUT/results.md"
cat "$OUT/results.md"

METHODS=$(awk -F, 'NR > 1 && !seen[$1]++ {printf "%s ", $1}' "$CSV")
EPOCHS=$(awk -F, 'NR == 2 {print $6}' "$CSV")
if command -v gnuplot > /dev/null; then
  {
    echo "set terminal pngcairo size 900,560 noenhanced"
    echo "set output '$OUT/accuracy.png'"
    echo "set title 'Fashion-MNIST MLP, $EPOCHS epochs: final test accuracy against global batch' noenhanced"
    echo "set logscale x 2; set xlabel 'global batch size'; set ylabel 'test accuracy'; set grid; set key bottom left"
    printf "plot "
    first=1
    for M in $METHODS; do
      [ $first = 1 ] || printf ", "
      printf "'-' using 1:2 with linespoints lw 2 pt 7 title '%s'" "$M"
      first=0
    done
    echo
    for M in $METHODS; do
      awk -F, -v m="$M" '$1 == m { print $2, $8 }' "$CSV"
      echo e
    done
  } | gnuplot && echo "wrote $OUT/accuracy.png"
else
  echo "large_batch.sh: gnuplot not found (apt-get install gnuplot-nox); no plot" >&2
fi
