#!/usr/bin/env bash
# cli_dist.sh LARCH SRC - data-parallel behaviour through mpiexec:
# - determinism: tests/configs/synth_cnn_sync.yaml (shuffling, augmentation,
#   dropout, SyncBatchNorm, several gradient buckets) gives the same loss at
#   each of its 24 steps with 1, 2 and 4 ranks (4 oversubscribed), to 1e-5
#   relative; with 1 rank SyncBatchNorm is plain batch norm over the whole
#   batch, so this also checks 2 ranks x b against 1 rank x 2b;
# - overlapped and blocking gradient sums agree exactly;
# - errors on one rank end every rank with the rank named.
. "$(dirname "$0")/cli_helpers.bash"
MPIEXEC=${LARCH_MPIEXEC:-mpiexec}
command -v "$MPIEXEC" > /dev/null || { echo "cli_dist: no mpiexec"; exit 1; }
CFG=$SRC/tests/configs/synth_cnn_sync.yaml
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
losses() { grep '"samples_per_s"' "$1/metrics.jsonl" | sed 's/.*"loss": \([^,]*\),.*/\1/'; }
run() {  # run NP OUT [--set ...]
  local np=$1 out=$2; shift 2
  timeout 120 "$MPIEXEC" -n "$np" --oversubscribe "$LARCH" train "$CFG" --out "$out" "$@" > "$out.log" 2>&1
}
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
run 2 "$TMP/block" --set dist.overlap=false || fail "blocking run failed"
if cmp -s <(losses "$TMP/r2") <(losses "$TMP/block"); then pass "overlapped = blocking gradient sums (2 ranks)"
else fail "overlapped and blocking sums differ"; fi
grep -q '"sync_wait_ms"' "$TMP/r2/metrics.jsonl" && pass "metrics carry sync_wait_ms" || fail "no sync_wait_ms in metrics"

# errors on all ranks end the job with a message, no hang
expect 1 "not divisible by 4 ranks" -- timeout 60 "$MPIEXEC" -n 4 --oversubscribe "$LARCH" train "$CFG" --set train.batch_size=30 --out "$TMP/o"
expect 1 "Fashion-MNIST directory /nonexistent" -- timeout 60 "$MPIEXEC" -n 2 --oversubscribe "$LARCH" train "$CFG" --set data.name=fashion-mnist --set data.dir=/nonexistent --out "$TMP/o"
finish cli_dist
