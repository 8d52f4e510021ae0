#!/usr/bin/env bash
# Portable against native: `larch bench step` of fmnist_mlp and fmnist_cnn
# from a portable build (LARCH_NATIVE=OFF: baseline x86-64 with run-time
# AVX2/AVX-512 clones of the hot loops) and a native build (-march=native),
# alternated A/B (then B/A) in one run so that both builds see the same
# machine load, once with OPENBLAS_CORETYPE unset (OpenBLAS, or larch,
# picks the CPU's kernels) and once forced to an older kernel (Haswell by
# default). Prints one JSON line per run (build, model, coretype, the BLAS
# core OpenBLAS reports it ran, samples_per_s) and then, per model and
# coretype, the medians and the portable/native ratios: the median of the
# paired ratios of each repetition and the ratio of the medians.
#
# Usage: bash launch/bench_portable.sh [--portable DIR] [--native DIR]
#          [--reps N] [--batch N] [--threads T] [--rounds R] [--coretypes "auto Haswell"]
#        bash launch/bench_portable.sh --summary FILE   # the summary of saved run lines
#   DIR without a built larch is configured and built there (Release);
#   defaults: build-portable, build-native, 5 repetitions, batch 256,
#   1 thread (keep the measurement away from other work on the machine),
#   7 rounds per run (larch takes the best). "auto" in --coretypes means
#   OPENBLAS_CORETYPE unset. --summary reads the run lines (the script's
#   own output, e.g. of an interrupted run) and prints only the summary.
set -euo pipefail
cd "$(dirname "$0")/.."
PORTABLE=build-portable NATIVE=build-native REPS=5 BATCH=256 THREADS=1 ROUNDS=7 CORETYPES="auto Haswell"
MODELS="fmnist_mlp fmnist_cnn" SUMMARY=
while [ $# -gt 0 ]; do
  case "$1" in
    --portable) PORTABLE=$2; shift 2 ;;
    --native) NATIVE=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --batch) BATCH=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --coretypes) CORETYPES=$2; shift 2 ;;
    --summary) SUMMARY=$2; shift 2 ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench_portable.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$REPS" in ''|*[!0-9]*|0) echo "bench_portable.sh: --reps must be a positive integer" >&2; exit 2 ;; esac
# larch initializes MPI even without mpirun; Open MPI refuses root without these.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

build() {   # build DIR ON|OFF: configure and build larch there unless it is built
  local dir=$1 native=$2
  if [ ! -x "$dir/larch" ]; then
    echo "bench_portable.sh: building $dir (LARCH_NATIVE=$native)" >&2
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DLARCH_NATIVE="$native" -DLARCH_TESTS=OFF >&2
    cmake --build "$dir" -j2 --target larch_cli >&2
  fi
  local got
  got=$(sed -n 's/^LARCH_NATIVE:BOOL=//p' "$dir/CMakeCache.txt" 2>/dev/null || true)
  if [ -n "$got" ] && [ "$got" != "$native" ]; then
    echo "bench_portable.sh: $dir is built with LARCH_NATIVE=$got, expected $native" >&2; exit 1
  fi
}
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
run() {   # run BUILD_NAME DIR MODEL CORETYPE REP: one JSON line
  local name=$1 dir=$2 model=$3 core=$4 rep=$5 line sps blas
  if [ "$core" = auto ]; then
    line=$(env -u OPENBLAS_CORETYPE "$dir/larch" bench step "launch/configs/$model.yaml" --batch "$BATCH" \
             --threads "$THREADS" --rounds "$ROUNDS" 2>"$err" | grep '"bench":"step"' || true)
  else
    line=$(OPENBLAS_CORETYPE=$core "$dir/larch" bench step "launch/configs/$model.yaml" --batch "$BATCH" \
             --threads "$THREADS" --rounds "$ROUNDS" 2>"$err" | grep '"bench":"step"' || true)
  fi
  sps=$(sed -n 's/.*"samples_per_s":\([0-9.]*\).*/\1/p' <<<"$line")
  blas=$(sed -n 's/.*"blas":"\([^"]*\)".*/\1/p' <<<"$line")
  [ -n "$sps" ] || { echo "bench_portable.sh: no samples_per_s from $dir/larch ($model, $core):" >&2; cat "$err" >&2; exit 1; }
  if [ "$core" != auto ] && [ "${blas,,}" != "${core,,}" ]; then
    echo "bench_portable.sh: OPENBLAS_CORETYPE=$core but OpenBLAS ran $blas" >&2
  fi
  printf '{"build":"%s","model":"%s","coretype":"%s","blas":"%s","batch":%s,"threads":%s,"rep":%d,"samples_per_s":%s}\n' \
    "$name" "$model" "$core" "$blas" "$BATCH" "$THREADS" "$rep" "$sps" | tee -a "$out"
}

if [ -n "$SUMMARY" ]; then
  grep '"build":' "$SUMMARY" >"$out" || { echo "bench_portable.sh: no run lines in $SUMMARY" >&2; exit 1; }
  CORETYPES=$(sed -n 's/.*"coretype":"\([^"]*\)".*/\1/p' "$out" | awk '!seen[$0]++' | paste -sd' ')
  BATCH=$(sed -n 's/.*"batch":\([0-9]*\).*/\1/p' "$out" | head -1)
  THREADS=$(sed -n 's/.*"threads":\([0-9]*\).*/\1/p' "$out" | head -1)
  ROUNDS="?"
else
  build "$PORTABLE" OFF
  build "$NATIVE" ON
fi
for rep in $( [ -n "$SUMMARY" ] || seq 1 "$REPS"); do
  for core in $CORETYPES; do
    for model in $MODELS; do
      if [ $((rep % 2)) = 1 ]; then            # A/B, then B/A: neither build always runs first
        run native "$NATIVE" "$model" "$core" "$rep"; run portable "$PORTABLE" "$model" "$core" "$rep"
      else
        run portable "$PORTABLE" "$model" "$core" "$rep"; run native "$NATIVE" "$model" "$core" "$rep"
      fi
    done
  done
done

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.4f", v[(NR + 1) / 2]; else printf "%.4f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# "REP NATIVE PORTABLE" for each repetition that has both builds of MODEL and CORE
pairs() {
  grep "\"model\":\"$1\",\"coretype\":\"$2\"" "$out" |
    sed -n 's/.*"build":"\([a-z]*\)".*"rep":\([0-9]*\),"samples_per_s":\([0-9.]*\).*/\2 \1 \3/p' |
    awk '{ v[$1, $2] = $3; r[$1] = 1 } END { for (k in r) if ((k, "native") in v && (k, "portable") in v) print k, v[k, "native"], v[k, "portable"] }' |
    sort -n
}
echo "# portable / native, median over the repetitions (batch $BATCH, $THREADS thread(s), best of $ROUNDS rounds each)"
for core in $CORETYPES; do
  for model in $MODELS; do
    pairs "$model" "$core" >"$err"
    n=$(wc -l <"$err")
    [ "$n" -gt 0 ] || continue
    nat=$(awk '{ print $2 }' "$err" | median)
    por=$(awk '{ print $3 }' "$err" | median)
    paired=$(awk '{ printf "%.6f\n", $3 / $2 }' "$err" | median)
    lo_hi=$(awk '{ r = $3 / $2; if (NR == 1 || r < lo) lo = r; if (NR == 1 || r > hi) hi = r } END { printf "%.4f,%.4f", lo, hi }' "$err")
    blas=$(grep "\"model\":\"$model\",\"coretype\":\"$core\"" "$out" | sed -n 's/.*"blas":"\([^"]*\)".*/\1/p' | sort -u | paste -sd/)
    printf '{"summary":"portable/native","model":"%s","coretype":"%s","blas":"%s","native_samples_per_s":%s,"portable_samples_per_s":%s,"ratio_of_medians":%.4f,"ratio_paired_median":%s,"ratio_paired_range":[%s],"reps":%d}\n' \
      "$model" "$core" "$blas" "$nat" "$por" "$(awk -v a="$por" -v b="$nat" 'BEGIN { print a / b }')" "$paired" "$lo_hi" "$n"
  done
done
