#!/usr/bin/env bash
# cli_comm_thread.sh LARCH SRC - the gradient communication thread
# (dist.comm_thread, docs/distributed.md "Overlap") through mpiexec:
# - on 2 and 4 ranks its per-step losses and final parameter norm equal, to
#   the last digit, those of blocking sums (dist.overlap=false) and of
#   MPI_Iallreduce overlap (dist.comm_thread=false), with SyncBatchNorm's
#   collectives running on the main thread at the same time; the log names
#   the mode;
# - a failure inside the thread (LARCH_FAULT=R:S:comm_thread) ends every rank
#   with status 1 and that rank's message;
# - a rank killed (SIGKILL) in the middle of training: every rank ends,
#   non-zero, within 20 s, and no process is left.
. "$(dirname "$0")/cli_helpers.bash"
command -v "$MPIEXEC" > /dev/null || { echo "cli_comm_thread: no mpiexec"; exit 1; }
CFG=$SRC/tests/configs/synth_cnn_sync.yaml
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
RUN_TIMEOUT=300                         # the sanitizer build on a busy machine starts slowly
NO_CKPT=(--set checkpoint.at_end=false)
losses() { grep '"samples_per_s"' "$1/metrics.jsonl" | sed 's/.*"loss": \([^,]*\),.*/\1/'; }
pnorm() { grep '"split": "test"' "$1/metrics.jsonl" | tail -1 | sed 's/.*"param_norm": \([0-9.e+-]*\).*/\1/'; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b - a}'; }

for np in 2 4; do
  run $np "$TMP/t$np" "${NO_CKPT[@]}" --set dist.comm_thread=true || fail "comm thread, $np ranks: $(tail -3 "$TMP/t$np.log")"
  run $np "$TMP/b$np" "${NO_CKPT[@]}" --set dist.overlap=false || fail "blocking, $np ranks: $(tail -3 "$TMP/b$np.log")"
  run $np "$TMP/i$np" "${NO_CKPT[@]}" --set dist.comm_thread=false || fail "iallreduce, $np ranks: $(tail -3 "$TMP/i$np.log")"
  n=$(losses "$TMP/t$np" | wc -l)
  if [ "$n" -ge 20 ] && cmp -s <(losses "$TMP/t$np") <(losses "$TMP/b$np") && [ -n "$(pnorm "$TMP/t$np")" ] \
     && [ "$(pnorm "$TMP/t$np")" = "$(pnorm "$TMP/b$np")" ]; then
    pass "$np ranks: comm thread = blocking sums ($n step losses, parameter norm $(pnorm "$TMP/t$np"))"
  else fail "$np ranks: comm thread and blocking sums differ ($n steps, norms $(pnorm "$TMP/t$np") vs $(pnorm "$TMP/b$np"))"; fi
  cmp -s <(losses "$TMP/t$np") <(losses "$TMP/i$np") && [ "$(pnorm "$TMP/t$np")" = "$(pnorm "$TMP/i$np")" ] \
    && pass "$np ranks: comm thread = MPI_Iallreduce overlap" || fail "$np ranks: comm thread and MPI_Iallreduce overlap differ"
  grep -q "overlapped (comm thread)" "$TMP/t$np.log" && grep -q "overlapped (MPI_Iallreduce)" "$TMP/i$np.log" \
    && pass "$np ranks: the log names the overlap mode" || fail "$np ranks: no overlap mode in the log: $(grep 'gradient sync' "$TMP/t$np.log")"
done
# the thread's buckets start during backward
ov=$(grep '"samples_per_s"' "$TMP/t2/metrics.jsonl" | tail -1 | sed 's/.*"sync_overlapped": \([0-9.e+-]*\).*/\1/')
awk -v o="$ov" 'BEGIN{exit !(o >= 1)}' && pass "comm thread: $ov buckets per step started during backward" \
  || fail "comm thread: sync_overlapped $ov (want >= 1)"

# ---- a failure inside the comm thread ----
for np in 2 4; do
  rank=$((np - 1)); out=$TMP/f$np; t0=$(now)
  LARCH_FAULT=$rank:5:comm_thread timeout 240 "$MPIEXEC" -n $np --oversubscribe -x LARCH_FAULT "$LARCH" train "$CFG" \
    --out "$out" --set train.max_steps=8 --set dist.comm_thread=true "${NO_CKPT[@]}" > "$out.log" 2>&1
  st=$?; t=$(since "$t0")
  if [ "$st" -eq 1 ] && grep -q "rank $rank: .*injected fault: comm_thread failed at step 5" "$out.log" \
     && ! pgrep -f -- "--out $out " > /dev/null; then
    pass "comm thread fails on rank $rank of $np: every rank exits with status 1 and the message in $t s"
  else fail "comm thread fault on rank $rank of $np: exit $st after $t s: $(tail -3 "$out.log")"; fi
done

# ---- a rank killed mid-step ----
cleanup() { local p; for p in $(pgrep -f -- "--out $TMP/"); do kill -KILL "$p"; done 2> /dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
timeout 300 "$MPIEXEC" -n 2 --oversubscribe "$LARCH" train "$CFG" --out "$TMP/k" --set train.epochs=100000 \
  --set train.eval_every=1000000 --set dist.comm_thread=true > "$TMP/k.log" 2>&1 &
job=$!
for _ in $(seq 2400); do [ "$(grep -c '"samples_per_s"' "$TMP/k/metrics.jsonl" 2> /dev/null)" -ge 3 ] 2> /dev/null && break; sleep 0.1; done
rank1=""
for pid in $(pgrep -f -- "--out $TMP/k "); do
  grep -qz '^OMPI_COMM_WORLD_RANK=1$' "/proc/$pid/environ" 2> /dev/null && rank1=$pid
done
if [ -z "$rank1" ]; then
  fail "kill: rank 1 not found: $(tail -3 "$TMP/k.log")"; kill "$job"
else
  kill -KILL "$rank1"; t0=$(now)
  wait "$job"; st=$?; t=$(since "$t0")
  if [ "$st" -eq 0 ] || [ "$st" -eq 124 ]; then fail "kill: exit status $st after $t s: $(tail -3 "$TMP/k.log")"
  elif pgrep -f -- "--out $TMP/k " > /dev/null; then fail "kill: processes left"
  else
    awk -v t="$t" 'BEGIN{exit !(t <= 20)}' && pass "rank 1 killed mid-step: the job ended (status $st) $t s later" \
      || fail "kill: the job ended $t s after the kill"
  fi
fi
finish cli_comm_thread
