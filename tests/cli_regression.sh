#!/usr/bin/env bash
# cli_regression.sh LARCH SRC - float regression targets through the program:
# - tests/configs/synth_regression.yaml (data.synthetic.regression: 3, loss
#   mse on: targets) learns the targets;
# - gradient accumulation slices the float targets with their samples:
#   train.accumulate 4 gives the same per-step losses and parameters as 1
#   (to float rounding; 1 rank, and 2 ranks x 4 micro-batches);
# - evaluation reports the loss and no accuracy (null in metrics.jsonl);
# - `larch bench step` runs the config (random float targets);
# - errors: targets the data lacks, softmax_ce on targets, a head of the
#   wrong width.
. "$(dirname "$0")/cli_helpers.bash"
command -v "$MPIEXEC" > /dev/null || { echo "cli_regression: no mpiexec"; exit 1; }
command -v h5diff > /dev/null || { echo "cli_regression: h5diff missing (Debian's hdf5-tools)"; exit 1; }
CFG=$SRC/tests/configs/synth_regression.yaml
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
losses() { grep '"samples_per_s"' "$1/metrics.jsonl" | sed 's/.*"loss": \([^,]*\),.*/\1/'; }
compare() {  # compare A B WHAT: per-step losses within 1e-5 relative, parameters within 1e-5
  local n; n=$(losses "$1" | wc -l)
  if [ "$n" -ne 32 ]; then fail "$3: $n steps logged (want 32)"; return; fi
  local worst; worst=$(paste <(losses "$1") <(losses "$2") | awk '{d = $1 - $2; if (d < 0) d = -d; r = d / ($1 > 0 ? $1 : 1); if (r > w) w = r} END {printf "%.3g", w + 0}')
  awk -v w="$worst" 'BEGIN{exit !(w <= 1e-5)}' && pass "$3: $n steps, worst relative loss difference $worst" \
    || fail "$3: worst relative loss difference $worst over $n steps"
  h5diff -d 1e-5 "$(ck "$1" 32)" "$(ck "$2" 32)" /params /params > /dev/null 2>&1 \
    && pass "$3: final parameters equal to 1e-5" || fail "$3: final parameters differ"
}

"$LARCH" train "$CFG" --out "$TMP/a1" > "$TMP/a1.log" 2>&1 || fail "accumulate 1: $(tail -3 "$TMP/a1.log")"
"$LARCH" train "$CFG" --out "$TMP/a4" --set train.accumulate=4 > "$TMP/a4.log" 2>&1 || fail "accumulate 4: $(tail -3 "$TMP/a4.log")"
grep -q "4 micro-batches of 16" "$TMP/a4.log" && pass "the run takes 4 micro-batches of 16" || fail "no micro-batch line"
compare "$TMP/a1" "$TMP/a4" "accumulate 4 vs 1 (1 rank)"
run 2 "$TMP/m2" --set train.accumulate=4 || fail "2 ranks x 4 micro-batches: $(tail -3 "$TMP/m2.log")"
compare "$TMP/a1" "$TMP/m2" "2 ranks x 4 micro-batches of 8 vs 1 rank, accumulate 1"

first=$(losses "$TMP/a1" | head -1)
test_loss=$(grep '"split": "test"' "$TMP/a1/metrics.jsonl" | tail -1 | sed 's/.*"loss": \([^,]*\),.*/\1/')
awk -v f="$first" -v t="$test_loss" 'BEGIN { exit !(t > 0 && t < 0.1 * f) }' \
  && pass "the targets are learned: test mse $test_loss after a first training loss of $first" \
  || fail "test mse $test_loss against a first training loss of $first"
grep '"split": "test"' "$TMP/a1/metrics.jsonl" | grep -q '"task": "reg", "loss": [0-9.e-]*, "accuracy": null' \
  && ! grep '"split": "test"' "$TMP/a1/metrics.jsonl" | grep -vq '"accuracy": null' \
  && pass "evaluation records carry the loss and \"accuracy\": null" || fail "evaluation records: $(grep test "$TMP/a1/metrics.jsonl")"
grep -q "^eval .*task reg  test loss [0-9.]*  weight" "$TMP/a1.log" && ! grep -q "accuracy" "$TMP/a1.log" \
  && pass "the log reports the test loss and no accuracy" || fail "log: $(grep -E '^(eval|done)' "$TMP/a1.log")"

out=$("$LARCH" bench step "$CFG" --batch 32 --threads 1 --rounds 2 2>&1)
grep -q '"samples_per_s":' <<<"$out" && pass "bench step feeds random float targets to the mse on targets" \
  || fail "bench step on the regression config: $out"

# ---- errors ----
expect 1 "loss 'reg': on: targets, but the data has no float targets" -- "$LARCH" train "$CFG" --out "$TMP/e1" \
  --set data.synthetic.regression=0
expect 1 "loss.on: float targets are scored by type: mse only" -- "$LARCH" train "$CFG" --out "$TMP/e2" --set loss.type=softmax_ce
expect 1 "with 4 outputs, but the data has 3 float targets per sample" -- "$LARCH" train "$CFG" --out "$TMP/e3" \
  --set model.2.units=4
expect 1 "loss.on: 'values' is not one of: labels|targets" -- "$LARCH" config "$CFG" --set loss.on=values
finish cli_regression
