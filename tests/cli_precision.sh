#!/usr/bin/env bash
# cli_precision.sh LARCH SRC - train.precision through the program:
# - bf16 trains tests/configs/synth_cnn_sync.yaml with per-step losses close
#   to fp32 (within 5% relative) but not equal (the rounding happens);
# - bf16 on 1 and 2 ranks agree per step to 1e-5 relative (the rank-count
#   invariant holds in bf16: rounding is per element, only float summation
#   order differs);
# - a wrong value is a config error naming the key.
# Where this build or CPU has no bf16 kernels, the run must fail saying why.
. "$(dirname "$0")/cli_helpers.bash"
command -v "$MPIEXEC" > /dev/null || { echo "cli_precision: no mpiexec"; exit 1; }
CFG=$SRC/tests/configs/synth_cnn_sync.yaml
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
RUN_TIMEOUT=120
losses() { grep '"samples_per_s"' "$1/metrics.jsonl" | sed 's/.*"loss": \([^,]*\),.*/\1/'; }
# worst A B: worst relative per-step loss difference
worst() { paste <(losses "$1") <(losses "$2") | awk '{d = $1 - $2; if (d < 0) d = -d; r = d / ($1 > 0 ? $1 : 1); if (r > w) w = r} END {printf "%.3g", w + 0}'; }

expect 1 "train.precision" -- "$LARCH" config "$CFG" --set train.precision=fp8
run 1 "$TMP/f32" || fail "fp32 run: $(tail -3 "$TMP/f32.log")"
if ! run 1 "$TMP/b1" --set train.precision=bf16; then
  grep -q "bf16 compute is not available" "$TMP/b1.log" && pass "bf16 unavailable here, and the run says why: $(grep -m1 'not available' "$TMP/b1.log")" \
    || fail "bf16 run failed: $(tail -3 "$TMP/b1.log")"
  finish cli_precision; exit
fi
n=$(losses "$TMP/b1" | wc -l)
[ "$n" -ge 20 ] && pass "bf16: $n steps logged" || fail "bf16: only $n steps logged"
w=$(worst "$TMP/f32" "$TMP/b1")
awk -v w="$w" 'BEGIN{exit !(w > 0 && w < 0.05)}' && pass "bf16 vs fp32: worst relative per-step loss difference $w" \
  || fail "bf16 vs fp32: worst relative per-step loss difference $w (want (0, 0.05))"
run 2 "$TMP/b2" --set train.precision=bf16 || fail "bf16 on 2 ranks: $(tail -3 "$TMP/b2.log")"
w=$(worst "$TMP/b1" "$TMP/b2")
awk -v w="$w" 'BEGIN{exit !(w <= 1e-5)}' && pass "bf16, 1 vs 2 ranks: worst relative difference $w" \
  || fail "bf16, 1 vs 2 ranks: worst relative per-step loss difference $w (want <= 1e-5)"
grep -q 'precision: bf16' "$TMP/b2/config.yaml" && pass "the run's config records precision: bf16" || fail "config.yaml lacks precision: bf16"
finish cli_precision
