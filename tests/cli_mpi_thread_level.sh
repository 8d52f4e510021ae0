#!/usr/bin/env bash
# cli_mpi_thread_level.sh LARCH SRC - LARCH_MPI_THREAD_LEVEL (docs/distributed.md,
# "The MPI thread level"):
# - an unknown level is an error naming the variable, before anything runs;
# - funneled on 2 ranks with dist.comm_thread: the start line says the sums
#   overlap through MPI_Iallreduce instead and why, and that the watchdog
#   cannot ask the other ranks; training runs, its per-step losses equal
#   those of the default level (MPI_THREAD_MULTIPLE) to the last digit;
# - funneled, a rank stuck outside collectives (rank 0 blocks opening its
#   metrics.jsonl, a FIFO): rank 1's watchdog ends the job with the message
#   that it could not ask the other ranks.
. "$(dirname "$0")/cli_helpers.bash"
command -v "$MPIEXEC" > /dev/null || { echo "cli_mpi_thread_level: no mpiexec"; exit 1; }
CFG=$SRC/tests/configs/synth_cnn_sync.yaml
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
RUN_TIMEOUT=300
SHORT=(--set train.max_steps=6 --set checkpoint.at_end=false --set train.eval_samples=32 --set dist.comm_thread=true)
losses() { grep '"samples_per_s"' "$1/metrics.jsonl" | sed 's/.*"loss": \([^,]*\),.*/\1/'; }

LARCH_MPI_THREAD_LEVEL=single expect 1 "LARCH_MPI_THREAD_LEVEL=single: expected multiple (the default), serialized or funneled" \
  -- "$LARCH" train "$CFG" --out "$TMP/bad"
[ ! -e "$TMP/bad" ] && pass "unknown level: nothing written" || fail "unknown level: $TMP/bad exists"

export LARCH_MPI_THREAD_LEVEL=funneled
run 2 "$TMP/f" "${SHORT[@]}"
st=$?
unset LARCH_MPI_THREAD_LEVEL
run 2 "$TMP/m" "${SHORT[@]}" || fail "default level: $(tail -3 "$TMP/m.log")"
if [ "$st" -ne 0 ]; then fail "funneled, 2 ranks: exit $st: $(tail -3 "$TMP/f.log")"
else
  grep -q "overlapped (MPI_Iallreduce: dist.comm_thread needs MPI_THREAD_MULTIPLE, and MPI runs without it (LARCH_MPI_THREAD_LEVEL" "$TMP/f.log" \
    && pass "funneled: the start line says the comm thread falls back to MPI_Iallreduce" \
    || fail "funneled: no fallback in the start line: $(grep 'gradient sync' "$TMP/f.log")"
  grep -q "^dist.timeout_s: the watchdog asks the other ranks where they are only with MPI_THREAD_MULTIPLE" "$TMP/f.log" \
    && pass "funneled: the log says what the watchdog cannot do" || fail "funneled: no watchdog line: $(head -5 "$TMP/f.log")"
  grep -q "overlapped (comm thread)" "$TMP/m.log" && ! grep -q "^dist.timeout_s:" "$TMP/m.log" \
    && pass "default level: the comm thread runs, no watchdog note" || fail "default level: $(grep 'gradient sync' "$TMP/m.log")"
  n=$(losses "$TMP/f" | wc -l)
  [ "$n" -eq 6 ] && cmp -s <(losses "$TMP/f") <(losses "$TMP/m") \
    && pass "funneled: the $n step losses equal the default level's" || fail "funneled: $n losses, or they differ from the default level's"
fi

# ---- the watchdog without MPI_THREAD_MULTIPLE ----
cleanup() { local p; for p in $(pgrep -f -- "--out $TMP/"); do kill -KILL "$p"; done 2> /dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
mkdir -p "$TMP/s" && mkfifo "$TMP/s/metrics.jsonl"        # rank 0 blocks opening it
t0=$(date +%s.%N)
LARCH_MPI_THREAD_LEVEL=funneled timeout 120 "$MPIEXEC" -n 2 --oversubscribe -x LARCH_MPI_THREAD_LEVEL "$LARCH" train "$CFG" \
  --out "$TMP/s" --set dist.timeout_s=1 > "$TMP/s.log" 2>&1
st=$?; t=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b - a}')
if [ "$st" -eq 0 ] || [ "$st" -eq 124 ]; then fail "funneled watchdog: exit status $st after $t s: $(tail -3 "$TMP/s.log")"
elif ! grep -q "rank 1: watchdog: waited .* MPI runs without MPI_THREAD_MULTIPLE (LARCH_MPI_THREAD_LEVEL.*ending this rank" "$TMP/s.log"; then
  fail "funneled watchdog: no message: $(head -5 "$TMP/s.log")"
elif pgrep -f -- "--out $TMP/s " > /dev/null; then fail "funneled watchdog: processes left"
else pass "funneled watchdog: rank 1 ends the job (status $st) $t s after its start, saying it could not ask rank 0"; fi

finish cli_mpi_thread_level
