#!/usr/bin/env bash
# cli_prune.sh LARCH SRC - gradual magnitude pruning through the program:
# - metrics.jsonl records the sparsity, which follows the schedule to the
#   final sparsity; the checkpoint holds the masks and the pruned weights
#   are exactly zero in it (larch checks this on every load);
# - resume exactness: 2 ranks, 24 steps = 10 + resume + 14 (a pruning step
#   after the resume) bit-identical in parameters, optimizer state and masks;
# - 1, 2 and 4 ranks (and 2 ranks with dist.shard_optimizer) prune the same
#   weights (identical masks) with equal parameters up to summation order;
# - a bad prune key is an error naming it on every rank of 2, before step 1
#   (the other key errors and the warnings: tests/test_prune.c).
. "$(dirname "$0")/cli_helpers.bash"
command -v "$MPIEXEC" > /dev/null || { echo "cli_prune: no mpiexec"; exit 1; }
command -v h5diff > /dev/null || { echo "cli_prune: h5diff missing (hdf5-tools)"; exit 1; }
CFG=$SRC/tests/configs/synth_cnn_sync.yaml
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
same() {  # same A B GROUP DELTA WHAT
  local out; out=$(h5diff -d "$4" "$1" "$2" "$3" "$3" 2>&1)
  if [ $? -eq 0 ]; then pass "$5"; else fail "$5: $(tail -3 <<<"$out")"; fi
}
P=(--set prune.sparsity=0.75 --set prune.initial_sparsity=0.1 --set prune.start_step=2 --set prune.end_step=14
   --set prune.every=4 --set checkpoint.every_steps=10 --set checkpoint.keep=0 --set optim.name=adam)

run 2 "$TMP/a2" "${P[@]}" || fail "2-rank run: $(tail -3 "$TMP/a2.log")"
last=$(grep -c '"sparsity"' "$TMP/a2/metrics.jsonl")
[ "$last" -ge 3 ] && pass "metrics.jsonl records the sparsity ($last records)" || fail "no sparsity records"
final=$(grep '"sparsity"' "$TMP/a2/metrics.jsonl" | tail -1 | sed 's/.*"sparsity": \([0-9.]*\).*/\1/')
[ "$final" = "0.750000" ] && pass "final sparsity 0.75" || fail "final sparsity $final"
grep -q "prune step 14: sparsity 0.75" "$TMP/a2.log" && pass "the last pruning step reaches the final sparsity" \
  || fail "no pruning line for step 14: $(grep prune "$TMP/a2.log")"
h5ls -r "$(ck "$TMP/a2" 24)" | grep -q "^/masks/conv1/weight" && pass "masks in the checkpoint" || fail "no masks"
"$LARCH" ckpt verify "$(ck "$TMP/a2" 24)" > /dev/null && pass "ckpt verify reads the sparse checkpoint" || fail "verify"

# resume: step 10 -> 24 crosses the pruning step 14
run 2 "$TMP/b2" "${P[@]}" --set checkpoint.resume="$(ck "$TMP/a2" 10)" || fail "2-rank resume: $(tail -3 "$TMP/b2.log")"
for g in /params /optim /masks; do
  same "$(ck "$TMP/a2" 24)" "$(ck "$TMP/b2" 24)" $g 0 "2 ranks: 24 steps = 10 + resume + 14, $g bit-identical"
done

# the same masks on 1, 2 and 4 ranks, and with the optimizer state sharded
run 1 "$TMP/a1" "${P[@]}" || fail "1-rank run: $(tail -3 "$TMP/a1.log")"
run 4 "$TMP/a4" "${P[@]}" || fail "4-rank run: $(tail -3 "$TMP/a4.log")"
run 2 "$TMP/z2" "${P[@]}" --set dist.shard_optimizer=true || fail "sharded run: $(tail -3 "$TMP/z2.log")"
for r in a1 a4 z2; do
  same "$(ck "$TMP/a2" 24)" "$(ck "$TMP/$r" 24)" /masks 0 "$r: the same masks as 2 ranks"
  same "$(ck "$TMP/a2" 24)" "$(ck "$TMP/$r" 24)" /params 1e-4 "$r: the same parameters as 2 ranks (summation order)"
done

# an error on every rank before step 1, no rank left waiting (the keys' other errors: tests/test_prune.c)
expect 1 "prune.layers: 'nope*' matches no dense or conv2d layer" -- \
  timeout 120 "$MPIEXEC" -n 2 --oversubscribe "$LARCH" train "$CFG" --out "$TMP/e4" --set prune.sparsity=0.5 --set 'prune.layers=[nope*]'
finish cli_prune
