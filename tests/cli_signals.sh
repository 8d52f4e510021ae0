#!/usr/bin/env bash
# cli_signals.sh LARCH SRC - a stop signal keeps larch's contract (every
# rank finishes its step, a checkpoint is written, exit status 75) however
# it arrives (docs/distributed.md, "Stopping a run"):
# - SIGINT to larch (Ctrl-C) as SIGTERM;
# - a signal during start-up (MPI, data): status 75 and a message, before
#   the first step, no checkpoint; with 2 ranks a signal to rank 1 alone
#   stops both;
# - SIGTERM (kill, timeout) and SIGINT to the process group (a terminal's
#   Ctrl-C) through launch/mpirun.sh with 2 ranks;
# - a file-size limit (SIGXFSZ) is a write error with a message, status 1,
#   not a silent kill.
. "$(dirname "$0")/cli_helpers.bash"
command -v "$MPIEXEC" > /dev/null || { echo "cli_signals: no mpiexec"; exit 1; }
CFG=$SRC/tests/configs/synth_cnn_sync.yaml
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
LONG=(--set train.epochs=100000 --set train.log_every=10 --set sched.name=constant --set checkpoint.resume=auto)
cleanup() {  # whatever a failed check left running
  local p; for p in $(pgrep -f -- "--out $TMP/"); do kill -KILL "$p"; done 2> /dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
started() {  # started OUT: OUT/metrics.jsonl has 3 training records (60 s at most)
  for _ in $(seq 600); do
    [ "$(cat "$1/metrics.jsonl" 2> /dev/null | grep -c '"samples_per_s"')" -ge 3 ] && return 0; sleep 0.1
  done
  return 1
}
await() {  # await PID SECONDS: PID's exit status, or 124 once it is killed after SECONDS
  local i
  for ((i = 0; i < $2 * 10; i++)); do kill -0 "$1" 2> /dev/null || break; sleep 0.1; done
  if kill -0 "$1" 2> /dev/null; then kill -KILL "$1"; wait "$1" 2> /dev/null; return 124; fi
  wait "$1"
}
catches() {  # catches PID SIGNAL: PID has a handler for SIGNAL (a number)
  local mask; mask=$(awk '/^SigCgt:/ {print $2}' "/proc/$1/status" 2> /dev/null)
  [ -n "$mask" ] && (( (0x$mask >> ($2 - 1)) & 1 ))
}
stopped() {  # stopped WHAT STATUS LOG OUT: status 75, the message, the checkpoint of that step valid
  local step
  step=$(grep -o 'stopped by a signal after step [0-9]*' "$3" | grep -o '[0-9]*$')
  if [ "$2" -ne 75 ]; then fail "$1: exit status $2 (want 75): $(tail -3 "$3")"
  elif [ -z "$step" ]; then fail "$1: no 'stopped by a signal' message: $(tail -3 "$3")"
  elif ! "$LARCH" ckpt verify "$(ck "$4" "$step")" > /dev/null 2>&1; then fail "$1: no valid checkpoint of step $step"
  else pass "$1: status 75, checkpoint of step $step valid"; fi
}

# ---- SIGINT to larch, as SIGTERM ----
"$LARCH" train "$CFG" --out "$TMP/i" "${LONG[@]}" > "$TMP/i.log" 2>&1 &
job=$!
started "$TMP/i" || fail "SIGINT: the run did not start: $(tail -3 "$TMP/i.log")"
kill -INT "$job"
await "$job" 60; stopped "SIGINT to larch" $? "$TMP/i.log" "$TMP/i"

# ---- a signal during start-up ----
"$LARCH" train "$CFG" --out "$TMP/e" "${LONG[@]}" > "$TMP/e.log" 2>&1 &
job=$!
for _ in $(seq 30); do catches "$job" 15 && break; sleep 0.01; done    # at most 0.3 s after the start
kill -TERM "$job"
await "$job" 60; st=$?
if [ "$st" -eq 75 ] && grep -q "stopped by SIGTERM during start-up, before the first step" "$TMP/e.log" \
   && ! ls "$TMP/e/checkpoints"/ckpt-* > /dev/null 2>&1; then
  pass "SIGTERM during start-up: status 75, stopped before the first step, no checkpoint"
else fail "SIGTERM during start-up: exit $st: $(tail -3 "$TMP/e.log")"; fi

timeout 120 "$MPIEXEC" -n 2 --oversubscribe "$LARCH" train "$CFG" --out "$TMP/e2" "${LONG[@]}" > "$TMP/e2.log" 2>&1 &
job=$!
rank1=""
for _ in $(seq 300); do
  for pid in $(pgrep -f -- "--out $TMP/e2 "); do
    grep -qz '^OMPI_COMM_WORLD_RANK=1$' "/proc/$pid/environ" 2> /dev/null && catches "$pid" 10 && rank1=$pid
  done
  [ -n "$rank1" ] && break; sleep 0.01
done
[ -n "$rank1" ] && kill -USR1 "$rank1"
await "$job" 120; st=$?
if [ "$st" -eq 75 ] && grep -q "rank 1: stopped by SIGUSR1 during start-up, before the first step" "$TMP/e2.log" \
   && ! grep -q '"samples_per_s"' "$TMP/e2/metrics.jsonl" 2> /dev/null; then
  pass "SIGUSR1 to rank 1 of 2 during start-up: both ranks stop before the first step, status 75"
else fail "SIGUSR1 to rank 1 during start-up: exit $st: $(tail -3 "$TMP/e2.log")"; fi

# ---- SIGTERM and SIGINT through launch/mpirun.sh, 2 ranks ----
for sig in TERM INT; do
  out=$TMP/m_$sig
  set -m                               # job control: the script leads a process group, SIGINT not ignored
  LARCH=$LARCH bash "$SRC/launch/mpirun.sh" -n 2 "$CFG" --out "$out" "${LONG[@]}" > "$out.log" 2>&1 &
  job=$!
  set +m
  started "$out" || fail "mpirun.sh SIG$sig: the run did not start: $(tail -3 "$out.log")"
  kill -"$sig" -- -"$job"              # the whole group, as kill, timeout or a terminal send it
  await "$job" 120; stopped "SIG$sig to launch/mpirun.sh (2 ranks)" $? "$out.log" "$out"
done

# ---- SIGXFSZ: a file-size limit is a write error ----
BIG=(--set data.synthetic.shape=[1,1,512] --set 'model=[{type: dense, units: 2048}, {type: relu}, {type: dense, units: 4}]'
     --set optim.name=adam --set train.max_steps=2)   # a 13 MiB checkpoint; MPI itself needs 2-4 MiB of files
out=$( (ulimit -f 6144; "$LARCH" train "$CFG" --out "$TMP/x" "${BIG[@]}") 2>&1 ); st=$?
if [ "$st" -eq 1 ] && grep -q "saving the checkpoint of step 2: .*File too large" <<<"$out"; then
  pass "a file-size limit fails the save with a message (status 1)"
else fail "file-size limit: exit $st: $(tail -3 <<<"$out")"; fi

finish cli_signals
