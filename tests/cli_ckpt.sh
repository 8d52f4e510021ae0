#!/usr/bin/env bash
# cli_ckpt.sh LARCH SRC - checkpoints through the program and mpiexec:
# - exact resume: 2 ranks trained 24 steps equal, bit for bit (h5diff -d 0),
#   2 ranks resumed at step 10 from the first run's checkpoint;
# - cross world size: 2 -> 1 and 1 -> 2 ranks, and sharded (ZeRO-1) 2 -> 4
#   ranks, within summation-order tolerance; a resume after a freezing
#   schedule's thaw (each tensor's own step count) bit-identical;
# - larch ckpt info / verify and larch eval;
# - SIGTERM to one rank: every rank stops after the same step, a checkpoint
#   is written, exit status 75, and checkpoint.resume=auto continues;
# - kill -9 during saves leaves every checkpoint file valid; a full disk
#   (a file-size limit) fails the save and keeps the previous checkpoint;
# - bad checkpoints and resume mismatches are clear errors: a changed
#   schedule length or learning rate is refused (naming the keys and both
#   values, also on 2 ranks) unless checkpoint.allow_changes lists it;
# - resuming an older checkpoint into a directory with later ones (keep=1)
#   moves the later ones aside, keeps what it writes, and resume=auto then
#   continues that branch; a stale temporary file is removed at the start;
# - a second run on a directory in use fails at its start (the lock), as
#   does an unwritable checkpoint.dir, before any training step;
# - `ckpt info DIR`, and `eval --checkpoint` (its record carries the
#   checkpoint's step).
. "$(dirname "$0")/cli_helpers.bash"
command -v "$MPIEXEC" > /dev/null || { echo "cli_ckpt: no mpiexec"; exit 1; }
command -v h5diff > /dev/null || { echo "cli_ckpt: h5diff missing (Debian's hdf5-tools; launch/setup.sh installs it)"; exit 1; }
CFG=$SRC/tests/configs/synth_cnn_sync.yaml
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
same() {  # same A B GROUP DELTA WHAT
  local out; out=$(h5diff -d "$4" "$1" "$2" "$3" "$3" 2>&1)
  if [ $? -eq 0 ]; then pass "$5"; else fail "$5: $(tail -3 <<<"$out")"; fi
}

# ---- exact and cross-world-size resume ----
EVERY=(--set optim.name=adam --set checkpoint.every_steps=10 --set checkpoint.keep=0)
run 2 "$TMP/a2" "${EVERY[@]}" || fail "2-rank run: $(tail -3 "$TMP/a2.log")"
run 1 "$TMP/a1" "${EVERY[@]}" || fail "1-rank run: $(tail -3 "$TMP/a1.log")"
run 2 "$TMP/b2" --set optim.name=adam --set checkpoint.resume="$(ck "$TMP/a2" 10)" \
  || fail "2-rank resume: $(tail -3 "$TMP/b2.log")"
grep -q "resumed from .*ckpt-00000010.h5: step 10" "$TMP/b2.log" && pass "resume reports its step" || fail "no resume line"
same "$(ck "$TMP/a2" 24)" "$(ck "$TMP/b2" 24)" /params 0 "2 ranks: 24 steps = 10 + resume + 14, parameters bit-identical"
same "$(ck "$TMP/a2" 24)" "$(ck "$TMP/b2" 24)" /optim 0 "2 ranks: optimizer state bit-identical after resume"
run 1 "$TMP/c1" --set optim.name=adam --set checkpoint.resume="$(ck "$TMP/a2" 10)" || fail "2->1 resume failed"
same "$(ck "$TMP/a2" 24)" "$(ck "$TMP/c1" 24)" /params 1e-5 "resume 2 -> 1 ranks within 1e-5"
run 2 "$TMP/c2" --set optim.name=adam --set checkpoint.resume="$(ck "$TMP/a1" 10)" || fail "1->2 resume failed"
same "$(ck "$TMP/a1" 24)" "$(ck "$TMP/c2" 24)" /params 1e-5 "resume 1 -> 2 ranks within 1e-5"
SH=(--set optim.name=lamb --set dist.shard_optimizer=true)
run 2 "$TMP/s2" "${SH[@]}" --set checkpoint.every_steps=10 || fail "sharded run failed"
run 4 "$TMP/s4" "${SH[@]}" --set checkpoint.resume="$(ck "$TMP/s2" 20)" || fail "sharded 2->4 resume: $(tail -3 "$TMP/s4.log")"
same "$(ck "$TMP/s2" 24)" "$(ck "$TMP/s4" 24)" /params 1e-5 "sharded state 2 -> 4 ranks within 1e-5"
# conv1 frozen for the first epoch (12 steps): a checkpoint after its thaw
# holds each tensor's own step count, so the resume stays bit-identical
TH=(--set optim.name=nadam --set 'optim.groups=[{match: "conv1.*", freeze: true, unfreeze_after_epochs: 1}]'
    --set dist.shard_optimizer=true --set checkpoint.every_steps=8 --set checkpoint.keep=0)
run 2 "$TMP/t2" "${TH[@]}" || fail "thaw run: $(tail -3 "$TMP/t2.log")"
grep -q "epoch 1: unfroze 1 tensor(s): conv1.weight" "$TMP/t2.log" && pass "conv1 thaws at epoch 1" || fail "no thaw line"
run 2 "$TMP/t2r" "${TH[@]}" --set checkpoint.resume="$(ck "$TMP/t2" 16)" || fail "thaw resume: $(tail -3 "$TMP/t2r.log")"
same "$(ck "$TMP/t2" 24)" "$(ck "$TMP/t2r" 24)" /params 0 "thawed at step 12, resumed at 16: parameters bit-identical"
same "$(ck "$TMP/t2" 24)" "$(ck "$TMP/t2r" 24)" /optim 0 "thawed at step 12, resumed at 16: optimizer state bit-identical"
run 1 "$TMP/t1r" "${TH[@]}" --set checkpoint.resume="$(ck "$TMP/t2" 16)" || fail "thaw resume 2 -> 1: $(tail -3 "$TMP/t1r.log")"
same "$(ck "$TMP/t2" 24)" "$(ck "$TMP/t1r" 24)" /params 1e-5 "thawed, sharded 2 -> 1 rank resume within 1e-5"
n=$(ls "$TMP/s2/checkpoints" | wc -l)
[ "$n" -eq 3 ] && pass "checkpoint.keep=3 keeps 3 (of 10, 20, 24... saved: $n)" || fail "keep: $n files in s2"

# ---- info, verify, eval ----
FINAL=$(ck "$TMP/a1" 24)
expect 0 "/params/conv1/weight                         (8, 3, 3, 2)" -- "$LARCH" ckpt info "$FINAL"
expect 0 "optimizer adam (t = 24)" -- "$LARCH" ckpt info "$FINAL"
expect 0 "ok (format 2, step 24" -- "$LARCH" ckpt verify "$FINAL"
expect 1 "$TMP/a1/checkpoints is a directory, not a checkpoint file (its newest checkpoint: $FINAL)" -- "$LARCH" ckpt info "$TMP/a1/checkpoints"
acc=$(grep '"split": "test"' "$TMP/a1/metrics.jsonl" | tail -1 | sed 's/.*"accuracy": \([0-9.e+-]*\).*/\1/')
expect 0 "$(printf 'test accuracy %.4f' "$acc")" -- "$LARCH" eval "$CFG" --checkpoint "$FINAL"
"$LARCH" eval "$CFG" --checkpoint "$FINAL" --out "$TMP/ev" > /dev/null 2>&1
grep -q '"step": 24, .*"split": "test"' "$TMP/ev/metrics.jsonl" && pass "eval records the checkpoint's step (24)" \
  || fail "eval record: $(cat "$TMP/ev/metrics.jsonl")"

# ---- bad checkpoints and mismatches ----
head -c 5000 "$FINAL" > "$TMP/trunc.h5"
expect 1 "truncated" -- "$LARCH" ckpt verify "$TMP/trunc.h5"
expect 1 "trunc.h5" -- "$LARCH" eval "$CFG" --checkpoint "$TMP/trunc.h5"
expect 1 "cannot read checkpoint $TMP/none.h5" -- "$LARCH" train "$CFG" --out "$TMP/x" --set checkpoint.resume="$TMP/none.h5"
expect 1 "train.batch_size: 32 in the checkpoint, 64 now (it cannot change" -- "$LARCH" train "$CFG" --out "$TMP/x" \
  --set optim.name=adam --set train.batch_size=64 --set checkpoint.resume="$FINAL"
expect 1 "optim.name: adam in the checkpoint, sgd now" -- "$LARCH" train "$CFG" --out "$TMP/x" --set checkpoint.resume="$FINAL"

# ---- resume compares the config: schedule length and hyperparameters, unless allowed ----
R10=$(ck "$TMP/a1" 10)
out=$(timeout 120 "$MPIEXEC" -n 2 --oversubscribe "$LARCH" train "$CFG" --out "$TMP/r1" --set optim.name=adam \
      --set train.epochs=3 --set optim.lr=0.1 --set checkpoint.resume="$R10" 2>&1); st=$?
if [ "$st" -ne 0 ] && grep -qF "train.epochs: 2 in the checkpoint, 3 now (the cosine schedule spans 24 steps in the checkpoint, 36 now" <<<"$out" \
   && grep -qF "optim.lr: 0.05 in the checkpoint, 0.1 now" <<<"$out" && grep -qF "checkpoint.allow_changes" <<<"$out" \
   && ! grep -q "train step" <<<"$out"; then pass "2 ranks: a changed schedule length and lr are refused, naming both values"
else fail "changed config on resume: exit $st: $(grep -m3 'error\|train step' <<<"$out")"; fi

# ---- lineage, allowed changes and stale temporaries: resume a1's step 10 in a copy of its
#      directory (10, 20, 24) with keep=1 and a shorter run (20 steps) ----
mkdir -p "$TMP/l/checkpoints" && cp "$TMP/a1/checkpoints/"ckpt-*.h5 "$TMP/l/checkpoints/"
truncate -s 64M "$TMP/l/checkpoints/.ckpt-00000099.h5.tmp"        # left by an interrupted save
LIN=(--set optim.name=adam --set train.max_steps=20)
run 1 "$TMP/l" "${LIN[@]}" --set checkpoint.keep=1 --set checkpoint.resume="$(ck "$TMP/l" 10)" \
  --set 'checkpoint.allow_changes=[train.max_steps]' || fail "lineage run: $(tail -3 "$TMP/l.log")"
grep -qF "resume: allowed change (checkpoint.allow_changes): train.max_steps: 0 in the checkpoint, 20 now (the cosine schedule spans 24 steps in the checkpoint, 20 now" "$TMP/l.log" \
  && grep -q "train step 20/20" "$TMP/l.log" && pass "checkpoint.allow_changes=[train.max_steps]: the run is shortened to 20 steps" \
  || fail "allowed change: $(grep -m3 'resum\|error' "$TMP/l.log")"
[ ! -e "$TMP/l/checkpoints/.ckpt-00000099.h5.tmp" ] && grep -q "removed 1 temporary file(s) of interrupted saves (64.0 MiB)" "$TMP/l.log" \
  && pass "a stale 64 MiB temporary file is removed at the start" || fail "stale temporary: $(ls -a "$TMP/l/checkpoints")"
kept=$(cd "$TMP/l/checkpoints" && ls ckpt-* 2>/dev/null | tr '\n' ' ')
aside=$(cd "$TMP/l/checkpoints" && ls abandoned-*/ 2>/dev/null | grep ckpt- | tr '\n' ' ')
[ "$kept" = "ckpt-00000020.h5 " ] && [ "$aside" = "ckpt-00000020.h5 ckpt-00000024.h5 " ] \
  && grep -q "moved 2 checkpoint(s) that are not on this run's lineage" "$TMP/l.log" \
  && pass "resumed at 10 with keep=1: its own step 20 is kept, the abandoned 20 and 24 are moved aside" \
  || fail "lineage: kept '$kept', aside '$aside': $(grep -m2 'checkpoint' "$TMP/l.log")"
run 1 "$TMP/l" "${LIN[@]}" --set checkpoint.resume=auto || fail "lineage auto: $(tail -3 "$TMP/l.log")"
grep -q "resumed from .*ckpt-00000020.h5: step 20" "$TMP/l.log" && grep -q "nothing to train" "$TMP/l.log" \
  && pass "checkpoint.resume=auto continues the resumed branch" || fail "lineage auto: $(grep -m2 'resum\|error' "$TMP/l.log")"
"$LARCH" ckpt info "$(ck "$TMP/l" 20)" | grep -Eq "lineage \(run:first step\) [0-9a-f]{16}:0 [0-9a-f]{16}:10;" \
  && pass "ckpt info shows the lineage (run a1 from 0, the resumed run from 10)" \
  || fail "lineage in ckpt info: $("$LARCH" ckpt info "$(ck "$TMP/l" 20)" | grep lineage)"

# ---- an unusable checkpoint.dir fails at the start, with its reason ----
out=$("$LARCH" train "$CFG" --out "$TMP/u" --set checkpoint.dir="$CFG/ck" 2>&1); st=$?
[ "$st" -eq 1 ] && grep -qF "checkpoint.dir: cannot create directory $CFG/ck: Not a directory" <<<"$out" && ! grep -q "train step" <<<"$out" \
  && pass "checkpoint.dir under a file: refused before training" || fail "checkpoint.dir under a file: exit $st: $(tail -2 <<<"$out")"
if [ "$(id -u)" = 0 ] && command -v setpriv > /dev/null; then      # root ignores permissions: run as nobody
  mkdir -p "$TMP/ro" "$TMP/nb" && chmod 755 "$TMP" "$TMP/ro" && chmod 777 "$TMP/nb"
  out=$(setpriv --reuid=nobody --regid=nogroup --clear-groups "$LARCH" train "$CFG" --out "$TMP/nb" --set checkpoint.dir="$TMP/ro" 2>&1); st=$?
  [ "$st" -eq 1 ] && grep -qF "checkpoint.dir $TMP/ro is not writable: cannot create $TMP/ro/.larch.lock: Permission denied" <<<"$out" \
    && ! grep -q "train step" <<<"$out" && pass "an unwritable checkpoint.dir: refused before training, with the reason" \
    || fail "unwritable checkpoint.dir: exit $st: $(tail -2 <<<"$out")"
  chmod 700 "$TMP"
else pass "unwritable checkpoint.dir: not run (needs root and setpriv to test permissions)"; fi

# ---- preemption: SIGTERM to rank 1 only ----
LONG=(--set train.epochs=100000 --set train.log_every=50 --set checkpoint.resume=auto --set sched.name=constant)
timeout 300 "$MPIEXEC" -n 2 --oversubscribe "$LARCH" train "$CFG" --out "$TMP/p" "${LONG[@]}" > "$TMP/p.log" 2>&1 &
job=$!
for _ in $(seq 300); do [ -f "$TMP/p/metrics.jsonl" ] && [ "$(wc -l < "$TMP/p/metrics.jsonl")" -ge 3 ] && break; sleep 0.1; done
rank1="" ranks=()
for pid in $(pgrep -f -- "--out $TMP/p "); do
  grep -qz '^OMPI_COMM_WORLD_RANK=' "/proc/$pid/environ" 2>/dev/null && ranks+=("$pid")
  grep -qz '^OMPI_COMM_WORLD_RANK=1$' "/proc/$pid/environ" 2>/dev/null && rank1=$pid
done
if [ -z "$rank1" ]; then fail "preemption: rank 1 not found"; kill $job; fi
# The directories are locked while the run lives: a second run fails at its
# start. The run's ranks are stopped meanwhile (they stay alive, so the lock
# is held): two busy ranks on two cores can starve the second program's MPI
# start-up for minutes.
kill -STOP "${ranks[@]}" 2>/dev/null
expect 1 "the output directory $TMP/p is in use by another larch run (pid " -- "$LARCH" train "$CFG" --out "$TMP/p" --set train.max_steps=1
expect 1 "checkpoint.dir $TMP/p/checkpoints is in use by another larch run" -- "$LARCH" train "$CFG" --out "$TMP/p_other" \
  --set checkpoint.dir="$TMP/p/checkpoints" --set train.max_steps=1
kill -CONT "${ranks[@]}" 2>/dev/null
kill -TERM "$rank1" 2>/dev/null
wait $job; st=$?
[ "$st" -eq 75 ] && pass "SIGTERM to rank 1: exit status 75" || fail "SIGTERM: exit $st: $(tail -5 "$TMP/p.log")"
saved=$(ls "$TMP/p/checkpoints" 2>/dev/null | grep -c '^ckpt-')
step=$(grep -o 'stopped by a signal after step [0-9]*' "$TMP/p.log" | grep -o '[0-9]*$')
if [ "$saved" -eq 1 ] && [ -n "$step" ] && "$LARCH" ckpt verify "$(ck "$TMP/p" "$step")" > /dev/null 2>&1; then
  pass "preemption checkpoint of step $step is valid"
else fail "preemption: $saved checkpoints, step '$step': $(tail -5 "$TMP/p.log")"; fi
if [ -n "$step" ]; then
  timeout 300 "$MPIEXEC" -n 2 --oversubscribe "$LARCH" train "$CFG" --out "$TMP/p" "${LONG[@]}" \
    --set train.max_steps=$((step + 5)) > "$TMP/p2.log" 2>&1 || fail "resume after preemption: $(tail -3 "$TMP/p2.log")"
  grep -q "resumed from .*ckpt-$(printf %08d "$step").h5: step $step" "$TMP/p2.log" \
    && pass "checkpoint.resume=auto continues from step $step" || fail "auto resume: $(grep -m2 'resum\|error' "$TMP/p2.log")"
fi

# ---- kill -9 while saving: every checkpoint file stays valid ----
BIG=(--set data.synthetic.shape=[1,1,512] --set 'model=[{type: dense, units: 1024}, {type: relu}, {type: dense, units: 1024}, {type: relu}, {type: dense, units: 4}]'
     --set optim.name=adam --set checkpoint.every_steps=1 --set checkpoint.keep=2 --set train.epochs=1000)
"$LARCH" train "$CFG" --out "$TMP/k" "${BIG[@]}" > "$TMP/k.log" 2>&1 &
job=$!
for _ in $(seq 600); do [ "$(ls "$TMP/k/checkpoints" 2>/dev/null | grep -c '^ckpt-')" -ge 2 ] && break; sleep 0.05; done
sleep 0.$((RANDOM % 9 + 1))
kill -KILL $job; wait $job 2>/dev/null
files=$(ls "$TMP/k/checkpoints"/ckpt-*.h5 2>/dev/null)
if [ -z "$files" ]; then fail "kill -9: no checkpoint was written"
elif "$LARCH" ckpt verify $files > "$TMP/k.verify" 2>&1; then pass "kill -9 during saves: $(echo $files | wc -w) checkpoint(s) all valid"
else fail "kill -9 left a damaged checkpoint: $(cat "$TMP/k.verify")"; fi

# ---- a full disk (a file-size limit below the checkpoint's size) during a save ----
newest=$(ls "$TMP/k/checkpoints"/ckpt-*.h5 2>/dev/null | tail -1)
mkdir -p "$TMP/f/checkpoints" && cp "$newest" "$TMP/f/checkpoints/" && cp "$newest" "$TMP/prev.h5"
PREV=$TMP/f/checkpoints/$(basename "$newest")
out=$( (trap '' XFSZ; ulimit -f 8192; "$LARCH" train "$CFG" --out "$TMP/f" "${BIG[@]}" --set checkpoint.resume=auto) 2>&1 ); st=$?
[ "$st" -eq 1 ] && grep -q "saving the checkpoint of step" <<<"$out" && pass "full disk: the save fails with a clear error" \
  || fail "full disk: exit $st: $(tail -3 <<<"$out")"
cmp -s "$PREV" "$TMP/prev.h5" && "$LARCH" ckpt verify "$PREV" > /dev/null 2>&1 && pass "full disk: the previous checkpoint is intact" \
  || fail "full disk damaged the previous checkpoint"
ls -a "$TMP/f/checkpoints" | grep -q '\.tmp$' && fail "full disk left a temporary file" || pass "full disk: no temporary file left"

finish cli_ckpt
