#!/usr/bin/env bash
# Training throughput against the step benchmark, in one run
# (docs/performance.md, "End-to-end throughput"): for each config and each layout (1 rank x 2 threads,
# 2 ranks x 1 thread), interleaved ROUNDS times,
#   bench   `larch bench step` on the per-rank batch (2 ranks: both ranks
#           benchmark at once under mpiexec, their samples/s summed; no
#           gradient sum, so an upper bound for the 2-rank step): its best
#           round and its median round;
#   train   `larch train --set train.max_steps=STEPS` (real data, the
#           prefetching loader, the gradient sums, logging, the evaluation
#           of the test set at the end): the step-window samples/s (what
#           metrics.jsonl's samples_per_s means) and the wall samples/s of
#           the loop (evaluation and output included), the loader wait per
#           step, and the evaluation's samples/s.
# Prints one JSON line per measurement, a markdown table of the best
# round of each (train / bench ratios), and the medians of the paired
# ratios (each round's train / that round's bench) with their range.
# Usage: bash launch/experiments/e2e_throughput.sh [--steps N] [--rounds R] [--out DIR]
# Environment: BUILD (build), CONFIGS ("fmnist_cnn fmnist_mlp"), LAYOUTS ("1x2 2x1").
set -euo pipefail
cd "$(dirname "$0")/../.."
STEPS=120 ROUNDS=2 OUT=/tmp/larch_e2e_throughput
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) STEPS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "e2e_throughput.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
BUILD=${BUILD:-build}
CONFIGS=${CONFIGS:-"fmnist_cnn fmnist_mlp"}
LAYOUTS=${LAYOUTS:-"1x2 2x1"}
[ "${LARCH_KEEP_CORETYPE:-0}" = 1 ] || unset OPENBLAS_CORETYPE
[ -x "$BUILD/larch" ] || { echo "e2e_throughput.sh: $BUILD/larch not built" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$OUT"
JSONL="$OUT/results.jsonl"
: > "$JSONL"
field() { sed -n "s/.*\"$2\": *\([0-9.e+-]*\).*/\1/p" <<<"$1" | head -1; }

for ((r = 1; r <= ROUNDS; r++)); do
  for C in $CONFIGS; do
    CFG=launch/configs/$C.yaml
    BATCH=$("$BUILD/larch" config "$CFG" 2> /dev/null | sed -n 's/^  batch_size: //p' | head -1)
    for L in $LAYOUTS; do
      RANKS=${L%x*} THR=${L#*x}
      # the benchmark of one step on the per-rank batch
      out=$(mpiexec --oversubscribe --bind-to none -n "$RANKS" "$BUILD/larch" bench step "$CFG" --batch $((BATCH / RANKS)) \
              --threads "$THR" --rounds 5 2> /dev/null | grep '"bench"')
      bench=$(awk -F'"samples_per_s":' '{ split($2, a, ","); s += a[1] } END { printf "%.1f", s }' <<<"$out")
      bench_med=$(awk -F'"samples_per_s_median":' '{ split($2, a, ","); s += a[1] } END { printf "%.1f", s }' <<<"$out")
      blas=$(sed -n 's/.*"blas":"\([^"]*\)".*/\1/p' <<<"$out" | head -1)
      # real training: STEPS steps, then the evaluation of the test set
      dir="$OUT/${C}_${L}_r$r"
      rm -rf "$dir"
      log=$(mpiexec --oversubscribe --bind-to none -n "$RANKS" "$BUILD/larch" train "$CFG" --out "$dir" --set train.max_steps="$STEPS" \
              --set train.threads="$THR" --set train.log_every=20 --set checkpoint.at_end=false 2>&1) \
        || { echo "e2e_throughput.sh: training failed: $log" >&2; exit 1; }
      t=$(grep '^time: ' <<<"$log")
      step_sps=$(sed -n 's/.* steps (\([0-9.]*\) samples\/s; loader wait \([0-9.]*\) ms\/step).*/\1/p' <<<"$t")
      wait_ms=$(sed -n 's/.*loader wait \([0-9.]*\) ms\/step.*/\1/p' <<<"$t")
      wall_sps=$(sed -n 's/.* s wall (\([0-9.]*\) samples\/s).*/\1/p' <<<"$t")
      ev=$(grep '"split": "test"' "$dir/metrics.jsonl" | tail -1)
      printf '{"config":"%s","layout":"%s","round":%d,"blas":"%s","bench_samples_per_s":%s,"bench_median_samples_per_s":%s,"train_step_samples_per_s":%s,"train_wall_samples_per_s":%s,"loader_wait_ms":%s,"eval_samples_per_s":%s,"ratio_step":%.3f,"ratio_wall":%.3f,"ratio_step_median":%.3f}\n' \
        "$C" "$L" "$r" "$blas" "$bench" "$bench_med" "$step_sps" "$wall_sps" "$wait_ms" "$(field "$ev" eval_samples_per_s)" \
        "$(echo "$step_sps / $bench" | bc -l)" "$(echo "$wall_sps / $bench" | bc -l)" "$(echo "$step_sps / $bench_med" | bc -l)" | tee -a "$JSONL"
    done
  done
done

echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); $STEPS steps per training run, best of $ROUNDS round(s)"
echo
echo "| config | ranks x threads | bench step samples/s | train samples/s (steps) | train / bench | train samples/s (wall) | wall / bench | loader wait ms/step | eval samples/s |"
echo "|---|---|---|---|---|---|---|---|---|"
awk -F'[:,]' '{ for (i = 1; i < NF; i++) { k = $i; gsub(/[{}" ]/, "", k); v = $(i + 1); gsub(/[{}"]/, "", v); f[k] = v }
       key = f["config"] " | " f["layout"]
       if (!(key in seen)) { seen[key] = 1; order[++n] = key }
       if (f["bench_samples_per_s"] + 0 > b[key]) b[key] = f["bench_samples_per_s"] + 0
       if (f["train_step_samples_per_s"] + 0 > s[key]) s[key] = f["train_step_samples_per_s"] + 0
       if (f["train_wall_samples_per_s"] + 0 > w[key]) w[key] = f["train_wall_samples_per_s"] + 0
       if (!(key in lw) || f["loader_wait_ms"] + 0 < lw[key]) lw[key] = f["loader_wait_ms"] + 0
       if (f["eval_samples_per_s"] + 0 > e[key]) e[key] = f["eval_samples_per_s"] + 0 }
     END { for (i = 1; i <= n; i++) { k = order[i]
             printf "| %s | %.0f | %.0f | %.3f | %.0f | %.3f | %.3f | %.0f |\n", k, b[order[i]], s[order[i]],
                    s[order[i]] / b[order[i]], w[order[i]], w[order[i]] / b[order[i]], lw[order[i]], e[order[i]] } }' "$JSONL"
echo
echo "| config | ranks x threads | rounds | train / bench, median of the paired rounds | range | train / bench's median round, median | range | wall / bench, median | loader wait ms/step, median |"
echo "|---|---|---|---|---|---|---|---|---|"
awk -F'[:,]' '{ for (i = 1; i < NF; i++) { k = $i; gsub(/[{}" ]/, "", k); v = $(i + 1); gsub(/[{}"]/, "", v); f[k] = v }
       key = f["config"] " | " f["layout"]
       if (!(key in n)) order[++m] = key
       j = ++n[key]; rs[key, j] = f["ratio_step"] + 0; rw[key, j] = f["ratio_wall"] + 0; lw[key, j] = f["loader_wait_ms"] + 0
       rm[key, j] = f["ratio_step_median"] + 0 }
     function median(a, key, c,   i, j, t, v) {
       for (i = 1; i <= c; i++) v[i] = a[key, i]
       for (i = 2; i <= c; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
       lo = v[1]; hi = v[c]
       return c % 2 ? v[(c + 1) / 2] : (v[c / 2] + v[c / 2 + 1]) / 2 }
     END { for (i = 1; i <= m; i++) { k = order[i]; c = n[k]
             ms = median(rs, k, c); l = lo; h = hi; mm = median(rm, k, c); l2 = lo; h2 = hi
             mw = median(rw, k, c); ml = median(lw, k, c)
             printf "| %s | %d | %.3f | %.3f-%.3f | %.3f | %.3f-%.3f | %.3f | %.3f |\n", k, c, ms, l, h, mm, l2, h2, mw, ml } }' "$JSONL"
