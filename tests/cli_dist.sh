#!/usr/bin/env bash
# cli_dist.sh LARCH SRC - data-parallel behaviour through mpiexec:
# - determinism: tests/configs/synth_cnn_sync.yaml (shuffling, augmentation,
#   dropout, SyncBatchNorm, several gradient buckets) gives the same loss at
#   each of its 24 steps with 1, 2 and 4 ranks (4 oversubscribed), to 1e-5
#   relative; with 1 rank SyncBatchNorm is plain batch norm over the whole
#   batch, so this also checks 2 ranks x b against 1 rank x 2b;
# - overlapped and blocking gradient sums agree exactly;
# - sharded (ZeRO-1) and unsharded optimizer state give the same parameters;
# - fp16/bf16 gradient compression stays close to the float run;
# - errors on one rank end every rank with the rank named.
. "$(dirname "$0")/cli_helpers.bash"
command -v "$MPIEXEC" > /dev/null || { echo "cli_dist: no mpiexec"; exit 1; }
CFG=$SRC/tests/configs/synth_cnn_sync.yaml
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
losses() { grep '"samples_per_s"' "$1/metrics.jsonl" | sed 's/.*"loss": \([^,]*\),.*/\1/'; }
RUN_TIMEOUT=120
compare() {  # compare A B WHAT: per-step losses within 1e-5 relative
  local n; n=$(losses "$1" | wc -l)
  if [ "$n" -lt 20 ]; then fail "$3: only $n steps logged"; return; fi
  local worst; worst=$(paste <(losses "$1") <(losses "$2") | awk '{d = $1 - $2; if (d < 0) d = -d; r = d / ($1 > 0 ? $1 : 1); if (r > w) w = r} END {printf "%.3g", w + 0}')
  awk -v w="$worst" 'BEGIN{exit !(w <= 1e-5)}' && pass "$3: $n steps, worst relative difference $worst" \
    || fail "$3: worst relative loss difference $worst over $n steps"
}
for np in 1 2 4; do
  run $np "$TMP/r$np" || fail "$np ranks: $(tail -3 "$TMP/r$np.log")"
done
compare "$TMP/r1" "$TMP/r2" "1 vs 2 ranks"
compare "$TMP/r1" "$TMP/r4" "1 vs 4 ranks"
pn1=$(grep '"split": "test"' "$TMP/r1/metrics.jsonl" | tail -1 | sed 's/.*"param_norm": \([0-9.e+-]*\).*/\1/')
pn4=$(grep '"split": "test"' "$TMP/r4/metrics.jsonl" | tail -1 | sed 's/.*"param_norm": \([0-9.e+-]*\).*/\1/')
awk -v a="$pn1" -v b="$pn4" 'BEGIN{d = a - b; if (d < 0) d = -d; exit !(a > 0 && d <= 1e-5 * a)}' \
  && pass "1 vs 4 ranks: final parameter norm $pn1 = $pn4" || fail "final parameter norm 1 rank $pn1 vs 4 ranks $pn4"
run 2 "$TMP/block" --set dist.overlap=false || fail "blocking run failed"
if cmp -s <(losses "$TMP/r2") <(losses "$TMP/block"); then pass "overlapped = blocking gradient sums (2 ranks)"
else fail "overlapped and blocking sums differ"; fi
grep -q '"sync_wait_ms"' "$TMP/r2/metrics.jsonl" && pass "metrics carry sync_wait_ms" || fail "no sync_wait_ms in metrics"

# ZeRO-1: sharded optimizer state gives the same parameters (LAMB's per-tensor
# trust ratios and a global clipping norm exercise the cross-slice parts)
pnorm() { grep '"split": "test"' "$1/metrics.jsonl" | tail -1 | sed 's/.*"param_norm": \([0-9.e+-]*\).*/\1/'; }
for np in 2 4; do
  Z=(--set optim.name=lamb --set optim.lr=0.01 --set optim.clip_norm=0.5)
  run $np "$TMP/full$np" "${Z[@]}" || fail "unsharded $np ranks failed"
  run $np "$TMP/zero$np" "${Z[@]}" --set dist.shard_optimizer=true || fail "sharded $np ranks failed: $(tail -3 "$TMP/zero$np.log")"
  compare "$TMP/full$np" "$TMP/zero$np" "sharded vs unsharded optimizer, $np ranks (losses)"
  a=$(pnorm "$TMP/full$np"); b=$(pnorm "$TMP/zero$np")
  awk -v a="$a" -v b="$b" 'BEGIN{d = a - b; if (d < 0) d = -d; exit !(a > 0 && d <= 1e-6 * a)}' \
    && pass "sharded vs unsharded, $np ranks: parameter norm $a = $b" || fail "parameter norm $a (unsharded) vs $b (sharded)"
  grep -q "(sharded)" "$TMP/zero$np.log" && pass "sharded run reports its per-rank state" || fail "no sharded state line"
done

# 16-bit gradients on the wire: close to the float run, not equal
for c in fp16 bf16; do
  run 2 "$TMP/c_$c" --set dist.compress=$c || fail "$c run failed: $(tail -3 "$TMP/c_$c.log")"
  worst=$(paste <(losses "$TMP/r2") <(losses "$TMP/c_$c") | awk '{d = $1 - $2; if (d < 0) d = -d; r = d / $1; if (r > w) w = r} END {printf "%.3g", w + 0}')
  awk -v w="$worst" 'BEGIN{exit !(w > 0 && w < 0.02)}' && pass "dist.compress=$c: per-step losses within $worst of float" \
    || fail "dist.compress=$c: worst relative loss difference $worst (want (0, 0.02))"
done
expect 1 "dist.compress" -- timeout 60 "$MPIEXEC" -n 2 --oversubscribe "$LARCH" train "$CFG" --set dist.compress=bf16 --set dist.shard_optimizer=true --out "$TMP/o"

# errors on all ranks end the job with a message, no hang
expect 1 "not divisible by 4 ranks" -- timeout 60 "$MPIEXEC" -n 4 --oversubscribe "$LARCH" train "$CFG" --set train.batch_size=30 --out "$TMP/o"
expect 1 "Fashion-MNIST directory /nonexistent" -- timeout 60 "$MPIEXEC" -n 2 --oversubscribe "$LARCH" train "$CFG" --set data.name=fashion-mnist --set data.dir=/nonexistent --out "$TMP/o"
finish cli_dist
