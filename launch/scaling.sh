#!/usr/bin/env bash
# Weak and strong scaling of data-parallel training on this machine.
#   bash launch/scaling.sh CONFIG [OUT, default docs/scaling]
# For 1, 2, ... ranks up to the cores (RANKS="1 2" to choose), THREADS
# OpenBLAS threads per rank (default 1):
#   weak:   per-rank batch PER_RANK (default 256), global batch = ranks x PER_RANK
#   strong: global batch GLOBAL (default PER_RANK x the largest rank count)
# Each run trains STEPS steps (default 200) on the config's data; the first
# fifth is skipped as warm-up. Reported per run: global samples/s, scaling
# efficiency (weak: per-rank throughput / 1 rank's; strong: speedup / ranks),
# the step time, the time a step waited for gradient sums after backward
# (sync_wait_ms), the bare MPI_Allreduce time of the same gradient bytes
# measured in the same script (larch bench allreduce), and the fraction of
# that communication hidden behind backward (1 - wait / bare).
# Writes OUT/<config>.csv, OUT/<config>.md and OUT/<config>.png (gnuplot).
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:?usage: bash launch/scaling.sh CONFIG [OUT]}
OUT=${2:-docs/scaling}
NAME=$(basename "$CONFIG" .yaml)
LARCH=${LARCH:-build/larch}
CORES=$(nproc)
RANKS=${RANKS:-$(seq 1 "$CORES" | tr '\n' ' ')}
THREADS=${THREADS:-1}
PER_RANK=${PER_RANK:-256}
MAXR=$(echo $RANKS | tr ' ' '\n' | sort -n | tail -1)
GLOBAL=${GLOBAL:-$((PER_RANK * MAXR))}
STEPS=${STEPS:-200}
[ -x "$LARCH" ] || { echo "scaling.sh: $LARCH not built" >&2; exit 1; }
[ "${LARCH_KEEP_CORETYPE:-0}" = 1 ] || unset OPENBLAS_CORETYPE
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$OUT"
TMP=$(mktemp -d /tmp/larch_scaling_XXXXXX); trap 'rm -rf "$TMP"' EXIT
mpi() { local np=$1; shift; mpiexec -n "$np" --oversubscribe --bind-to none -x OPENBLAS_NUM_THREADS="$THREADS" "$@"; }

# bare MPI_Allreduce of the gradient bytes, per rank count
declare -A BARE
for R in $RANKS; do
  if [ "$R" -gt 1 ]; then
    BARE[$R]=$(mpi "$R" "$LARCH" bench allreduce "$CONFIG" --max-mib 0.001 --iters 50 2>/dev/null \
      | grep "\"config\":\"$CONFIG\"" | sed 's/.*"mpi_us":\([0-9.]*\).*/\1/')
  else
    BARE[$R]=0
  fi
done

CSV="$OUT/$NAME.csv"
echo "mode,ranks,threads,global_batch,samples_per_s,efficiency,step_ms,sync_wait_ms,bare_allreduce_ms,hidden_fraction" > "$CSV"
for MODE in weak strong; do
  base=""
  for R in $RANKS; do
    if [ $MODE = weak ]; then B=$((PER_RANK * R)); else B=$GLOBAL; fi
    run="$TMP/${MODE}_$R"
    mpi "$R" "$LARCH" train "$CONFIG" --out "$run" --set train.batch_size=$B --set train.max_steps=$STEPS \
      --set train.epochs=1000 --set train.log_every=10 --set train.eval_every=1000000 --set train.threads="$THREADS" \
      > "$run.log" 2>&1 || { echo "scaling.sh: $MODE $R ranks failed:" >&2; tail -5 "$run.log" >&2; exit 1; }
    # mean over the records after the first fifth of the run
    read -r SPS WAIT < <(awk -v skip=$((STEPS / 5)) '/"samples_per_s"/ {
        match($0, /"step": [0-9]+/); st = substr($0, RSTART + 8, RLENGTH - 8) + 0
        if (st <= skip) next
        match($0, /"samples_per_s": [0-9.]+/); s += substr($0, RSTART + 17, RLENGTH - 17); n++
        match($0, /"sync_wait_ms": [0-9.]+/); w += substr($0, RSTART + 16, RLENGTH - 16) }
        END { if (n) printf "%.1f %.3f\n", s / n, w / n; else print "0 0" }' "$run/metrics.jsonl")
    STEP_MS=$(awk -v s="$SPS" -v b="$B" 'BEGIN{printf "%.3f", 1000 * b / s}')
    [ -n "$base" ] || base=$SPS
    if [ $MODE = weak ]; then EFF=$(awk -v s="$SPS" -v b="$base" -v r="$R" 'BEGIN{printf "%.3f", s / (b * r)}')
    else EFF=$(awk -v s="$SPS" -v b="$base" -v r="$R" 'BEGIN{printf "%.3f", s / (b * r)}'); fi
    BMS=$(awk -v u="${BARE[$R]:-0}" 'BEGIN{printf "%.3f", u / 1000}')
    HID=$(awk -v w="$WAIT" -v b="$BMS" 'BEGIN{ if (b > 0) printf "%.2f", 1 - w / b; else printf "" }')
    echo "$MODE,$R,$THREADS,$B,$SPS,$EFF,$STEP_MS,$WAIT,$BMS,$HID" | tee -a "$CSV"
  done
done

{
  echo "| mode | ranks | threads/rank | global batch | samples/s | efficiency | step ms | sync wait ms | bare allreduce ms | hidden |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  tail -n +2 "$CSV" | awk -F, '{printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, ($10 == "" ? "-" : $10)}'
  echo
  echo "$CONFIG, $STEPS steps per run (the first $((STEPS / 5)) skipped), per-rank batch $PER_RANK (weak), global batch $GLOBAL (strong)."
  echo "Efficiency: weak = samples/s / (ranks x 1-rank samples/s); strong = the same ratio at fixed global batch."
  echo "Sync wait: time per step blocked on gradient sums after backward (rank 0); bare allreduce: one MPI_Allreduce"
  echo "of the same gradient bytes (\`larch bench allreduce\`); hidden = 1 - wait / bare."
} > "$OUT/$NAME.md"
cat "$OUT/$NAME.md"
if command -v gnuplot > /dev/null; then
  {
    echo "set terminal pngcairo size 800,480 noenhanced; set output '$OUT/$NAME.png'"
    echo "set title '$NAME: data-parallel throughput ($THREADS thread(s) per rank)' noenhanced"
    echo "set xlabel 'ranks'; set ylabel 'samples/s'; set grid; set key top left; set xtics 1"
    echo "plot '-' using 1:2 with linespoints lw 2 pt 7 title 'weak (per-rank batch $PER_RANK)', '-' using 1:2 with linespoints lw 2 pt 5 title 'strong (global batch $GLOBAL)'"
    awk -F, '$1 == "weak" {print $2, $5}' "$CSV"; echo e
    awk -F, '$1 == "strong" {print $2, $5}' "$CSV"; echo e
  } | gnuplot && echo "wrote $OUT/$NAME.png"
fi
