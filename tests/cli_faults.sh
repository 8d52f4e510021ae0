#!/usr/bin/env bash
# cli_faults.sh LARCH SRC - a failure inside training ends every rank, soon,
# with the failing rank's message (docs/distributed.md, "Failures"):
# - the fault switch LARCH_FAULT=RANK:STEP:SITE (a testing aid) makes one
#   rank fail at one step in each place of a step and between steps
#   (gradient sums, SyncBatchNorm hook, sharded gather, the step's loss
#   reduction, evaluation, checkpoint save), with 2 ranks and, for two sites,
#   4: every rank exits with status 1 and the failing rank's message, within
#   10 s more than a fault-free run to the same step takes, no process left;
# - the watchdog: SIGSTOP one rank of a 2-rank job with dist.timeout_s=10:
#   every live rank exits non-zero within the timeout + 10 s with a message
#   naming the stopped rank, and the job leaves no process behind; a rank
#   stuck outside collectives (rank 0 opening metrics.jsonl, a FIFO nobody
#   reads) is named as not arrived;
# - train.stop_on_nan names the step whose loss is not finite as
#   metrics.jsonl numbers it (the first "loss": null of a run without it).
. "$(dirname "$0")/cli_helpers.bash"
command -v "$MPIEXEC" > /dev/null || { echo "cli_faults: no mpiexec"; exit 1; }
CFG=$SRC/tests/configs/synth_cnn_sync.yaml
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b - a}'; }

# ---- the fault switch: one rank fails at step 5 ----
STEP=5
AT=(--set train.max_steps=$((STEP + 3)) --set train.eval_every=$STEP --set checkpoint.every_steps=$STEP
    --set checkpoint.at_end=false)
declare -A base
for np in 2 4; do                               # fault-free runs past the fault step
  t0=$(now)
  run $np "$TMP/base$np" "${AT[@]}" || fail "fault-free $np-rank run: $(tail -3 "$TMP/base$np.log")"
  base[$np]=$(since "$t0")
done
fault() {  # fault NP RANK SITE [larch options]: rank RANK fails at SITE in step STEP
  local np=$1 rank=$2 site=$3; shift 3
  local out=$TMP/f_${site}_$np t0 t st
  t0=$(now)
  LARCH_FAULT=$rank:$STEP:$site timeout 60 "$MPIEXEC" -n "$np" --oversubscribe -x LARCH_FAULT \
    "$LARCH" train "$CFG" --out "$out" "${AT[@]}" "$@" > "$out.log" 2>&1
  st=$?; t=$(since "$t0")
  local what="$site on rank $rank of $np"
  if [ "$st" -ne 1 ]; then fail "$what: exit status $st after $t s (want 1): $(tail -3 "$out.log")"; return; fi
  local who="rank $rank: .*"; [ "$rank" -eq 0 ] && who=""     # rank 0 prints its own message as it is
  if ! grep -q "${who}injected fault: $site failed at step $STEP" "$out.log"; then
    fail "$what: no message from rank $rank: $(tail -3 "$out.log")"; return
  fi
  if pgrep -f -- "--out $out " > /dev/null; then fail "$what: processes left running"; kill -KILL $(pgrep -f -- "--out $out ") 2>/dev/null; return; fi
  awk -v t="$t" -v b="${base[$np]}" 'BEGIN{exit !(t <= b + 10)}' \
    && pass "$what: every rank exited with status 1 and the message in $t s (fault-free run: ${base[$np]} s)" \
    || fail "$what: took $t s, fault-free run ${base[$np]} s"
}
fault 2 1 grad_sum
fault 2 1 hook
fault 2 1 gather --set dist.shard_optimizer=true --set optim.clip_norm=1
fault 2 1 loss
fault 2 1 eval
fault 2 1 save
fault 2 0 grad_sum --set dist.overlap=false
fault 2 1 grad_sum --set dist.comm_thread=true           # the gradient comm thread (docs/distributed.md, "Overlap")
fault 4 3 hook
fault 4 2 loss
expect 1 "LARCH_FAULT=1:x:hook: expected RANK:STEP:SITE" -- env LARCH_FAULT=1:x:hook "$LARCH" train "$CFG" --out "$TMP/o"

# ---- train.stop_on_nan names the step that diverged ----
NAN=(--set optim.lr=1000 --set train.log_every=1 --set checkpoint.at_end=false)
"$LARCH" train "$SRC/tests/configs/synth_mlp.yaml" --out "$TMP/n1" "${NAN[@]}" --set train.stop_on_nan=false > "$TMP/n1.log" 2>&1
first=$(grep -m1 '"loss": null' "$TMP/n1/metrics.jsonl" 2> /dev/null | sed 's/^{"step": \([0-9]*\),.*/\1/')
out=$("$LARCH" train "$SRC/tests/configs/synth_mlp.yaml" --out "$TMP/n2" "${NAN[@]}" 2>&1); st=$?
said=$(grep -o 'training loss is [^ ]* at step [0-9]*' <<<"$out" | grep -o '[0-9]*$')
[ "$st" -eq 1 ] && [ -n "$first" ] && [ "$said" = "$first" ] \
  && pass "train.stop_on_nan: stops at step $said, the first step metrics.jsonl records as null" \
  || fail "train.stop_on_nan: exit $st, message names step '$said', metrics.jsonl's first null is step '$first'"

# ---- the watchdog: a stopped rank ----
WD_S=10
expect 1 "dist.timeout_s" -- "$LARCH" config "$CFG" --set dist.timeout_s=-1
cleanup() {  # every process of the watchdog run, even a stopped one
  local p; for p in $(pgrep -f -- "--out $TMP/"); do kill -CONT "$p"; kill -KILL "$p"; done 2> /dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
timeout 120 "$MPIEXEC" -n 2 --oversubscribe "$LARCH" train "$CFG" --out "$TMP/w" --set train.epochs=100000 \
  --set train.eval_every=1000000 --set dist.timeout_s=$WD_S > "$TMP/w.log" 2>&1 &
job=$!
for _ in $(seq 600); do [ "$(cat "$TMP/w/metrics.jsonl" 2> /dev/null | grep -c '"samples_per_s"')" -ge 3 ] && break; sleep 0.1; done
rank1=""
for pid in $(pgrep -f -- "--out $TMP/w "); do
  grep -qz '^OMPI_COMM_WORLD_RANK=1$' "/proc/$pid/environ" 2> /dev/null && rank1=$pid
done
if [ -z "$rank1" ]; then
  fail "watchdog: rank 1 not found: $(tail -3 "$TMP/w.log")"; kill "$job"
else
  kill -STOP "$rank1"; t0=$(now)
  wait "$job"; st=$?; t=$(since "$t0")
  if [ "$st" -eq 0 ] || [ "$st" -eq 124 ]; then fail "watchdog: exit status $st after $t s: $(tail -3 "$TMP/w.log")"
  elif ! grep -q "rank 0: watchdog: .*dist.timeout_s = $WD_S).* Not answering (stopped, hung or unreachable): rank 1\." "$TMP/w.log"; then
    fail "watchdog: no message naming rank 1: $(grep -v '^train\|^eval' "$TMP/w.log" | head -5)"
  elif pgrep -f -- "--out $TMP/w " > /dev/null; then fail "watchdog: processes left"
  else
    awk -v t="$t" -v w=$WD_S 'BEGIN{exit !(t <= w + 10)}' \
      && pass "watchdog: rank 1 stopped, every rank ended (status $st) $t s later naming it (dist.timeout_s = $WD_S)" \
      || fail "watchdog: the job ended $t s after the stop (timeout $WD_S s)"
  fi
fi

# ---- the watchdog: a rank stuck outside collectives ----
mkdir -p "$TMP/s" && mkfifo "$TMP/s/metrics.jsonl"        # rank 0 blocks opening it
t0=$(now)
timeout 120 "$MPIEXEC" -n 2 --oversubscribe "$LARCH" train "$CFG" --out "$TMP/s" --set dist.timeout_s=$WD_S > "$TMP/s.log" 2>&1
st=$?; t=$(since "$t0")
if [ "$st" -eq 0 ] || [ "$st" -eq 124 ]; then fail "watchdog, stuck rank: exit status $st after $t s: $(tail -3 "$TMP/s.log")"
elif ! grep -q "rank 1: watchdog: .* Not arrived: rank 0 (at step 0, collective #[0-9]*, not in a collective" "$TMP/s.log"; then
  fail "watchdog, stuck rank: no message naming rank 0: $(head -3 "$TMP/s.log")"
else
  awk -v t="$t" -v w=$WD_S 'BEGIN{exit !(t <= w + 30)}' \
    && pass "watchdog: rank 0 stuck opening a file, rank 1 names it as not arrived; the job ended $t s after its start" \
    || fail "watchdog, stuck rank: the job took $t s (timeout $WD_S s)"
fi

finish cli_faults
