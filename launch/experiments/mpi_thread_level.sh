#!/usr/bin/env bash
# What initializing MPI with MPI_THREAD_MULTIPLE costs (docs/distributed.md,
# "The MPI thread level"): `larch bench allreduce` on RANKS ranks under
# LARCH_MPI_THREAD_LEVEL=multiple (larch's default) and =funneled, the two
# levels interleaved ROUNDS times; sizes from 4 KiB to MAX_MIB MiB. Prints
# one JSON line per (round, ranks, level, size) and a markdown table of the
# medians over the rounds: the bare MPI_Allreduce and larch's bucketed
# MPI_Iallreduce path, and funneled / multiple.
# Usage: bash launch/experiments/mpi_thread_level.sh [--rounds R] [--ranks "2 4"] [--max-mib M] [--out DIR]
# Environment: BUILD (build).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=5 RANKS="2 4" MAX_MIB=16 OUT=/tmp/larch_mpi_thread_level
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --ranks) RANKS=$2; shift 2 ;;
    --max-mib) MAX_MIB=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "mpi_thread_level.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
BUILD=${BUILD:-build}
[ -x "$BUILD/larch" ] || { echo "mpi_thread_level.sh: $BUILD/larch not built" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
mkdir -p "$OUT"
JSONL="$OUT/results.jsonl"
: > "$JSONL"
for ((r = 1; r <= ROUNDS; r++)); do
  for np in $RANKS; do
    for level in multiple funneled; do
      LARCH_MPI_THREAD_LEVEL=$level mpiexec --oversubscribe --bind-to none -x LARCH_MPI_THREAD_LEVEL -n "$np" \
          "$BUILD/larch" bench allreduce --max-mib "$MAX_MIB" 2> /dev/null | grep '"bench":"allreduce"' |
        sed "s/^{/{\"round\":$r,\"level\":\"$level\",/" | tee -a "$JSONL"
    done
  done
done
echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); medians of $ROUNDS interleaved rounds"
echo
/usr/bin/python3 - "$JSONL" <<'PY'
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1])]
key = lambda r: (r["ranks"], r["bytes"])
print("| ranks | bytes | MPI_Allreduce us, multiple | funneled | funneled / multiple | larch path us, multiple | funneled | funneled / multiple |")
print("|---|---|---|---|---|---|---|---|")
for k in sorted({key(r) for r in rows}):
    m = [r for r in rows if key(r) == k and r["level"] == "multiple"]
    f = [r for r in rows if key(r) == k and r["level"] == "funneled"]
    if not m or not f: continue
    # paired ratios: round by round
    pr = lambda field: st.median(b[field] / a[field] for a in m for b in f if a["round"] == b["round"])
    mm, fm = st.median(r["mpi_us"] for r in m), st.median(r["mpi_us"] for r in f)
    ml, fl = st.median(r["larch_us"] for r in m), st.median(r["larch_us"] for r in f)
    print(f"| {k[0]} | {k[1]} | {mm:.1f} | {fm:.1f} | {pr('mpi_us'):.3f} | {ml:.1f} | {fl:.1f} | {pr('larch_us'):.3f} |")
PY
