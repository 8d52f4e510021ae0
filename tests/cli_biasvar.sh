#!/usr/bin/env bash
# cli_biasvar.sh LARCH SRC - `larch biasvar` (docs/biasvar.md):
# - squared error on tests/configs/synth_biasvar.yaml, 4 bootstrap models on
#   2 groups x 1 rank: bias^2 + variance + noise + the cross term equals the
#   expected error, the expected error from the collected predictions equals
#   the models' mean test loss from training's own evaluation, the measured
#   noise is near the configured sigma^2, and the numbers are the same on 1
#   rank (1 group) as on 2 groups;
# - 0-1 loss on tests/configs/synth_biasvar_cls.yaml with fresh training
#   sets: Domingos' identity bias + Vu - Vb_w = loss, and the loss equals
#   1 - the models' mean test accuracy;
# - errors: --fresh on data that is not generated, an mse loss without known
#   targets, bad --models, a missing config.
. "$(dirname "$0")/cli_helpers.bash"
command -v "$MPIEXEC" > /dev/null || { echo "cli_biasvar: no mpiexec"; exit 1; }
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
field() { sed "s/.*\"$2\":\([-0-9.e+]*\).*/\1/" "$1/biasvar.jsonl"; }
close() {  # close A B TOL WHAT
  awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN{d = a - b; if (d < 0) d = -d; exit !(a != "" && b != "" && d <= t)}' \
    && pass "$4: $1 ~ $2" || fail "$4: $1 vs $2 (tolerance $3)"
}
R=$SRC/tests/configs/synth_biasvar.yaml
timeout 120 "$MPIEXEC" -n 2 --oversubscribe "$LARCH" biasvar "$R" --models 4 --set dist.groups=2 --out "$TMP/sq" > "$TMP/sq.log" 2>&1 \
  || fail "squared, 2 groups: $(tail -5 "$TMP/sq.log")"
E=$(field "$TMP/sq" expected_error); B=$(field "$TMP/sq" bias2); V=$(field "$TMP/sq" variance); N=$(field "$TMP/sq" noise)
C=$(field "$TMP/sq" cross); M=$(field "$TMP/sq" mean_test_loss)
close "$(awk -v b="$B" -v v="$V" -v n="$N" -v c="$C" 'BEGIN{print b + v + n + c}')" "$E" 1e-5 "bias^2 + variance + noise + cross = expected error"
close "$M" "$E" 1e-4 "expected error = the models' mean test loss"
close "$N" 0.25 0.05 "measured noise near sigma^2 = 0.25"
awk -v b="$B" -v v="$V" 'BEGIN{exit !(b > 0 && v > 0)}' && pass "bias^2 $B and variance $V positive" || fail "bias^2 $B variance $V"
grep -q "bias^2 + variance + noise = " "$TMP/sq.log" && pass "the table" || fail "no table: $(tail -10 "$TMP/sq.log")"
[ "$(ls -d "$TMP/sq"/model-*/ | wc -l)" -eq 4 ] && pass "4 model runs" || fail "model runs: $(ls "$TMP/sq")"
timeout 120 "$LARCH" biasvar "$R" --models 4 --out "$TMP/sq1" > "$TMP/sq1.log" 2>&1 || fail "squared, 1 rank: $(tail -5 "$TMP/sq1.log")"
for k in expected_error bias2 variance; do close "$(field "$TMP/sq1" $k)" "$(field "$TMP/sq" $k)" 1e-5 "1 rank = 2 groups: $k"; done

timeout 120 "$MPIEXEC" -n 2 --oversubscribe "$LARCH" biasvar "$SRC/tests/configs/synth_biasvar_cls.yaml" --models 5 --fresh \
  --out "$TMP/zo" > "$TMP/zo.log" 2>&1 || fail "0-1 loss: $(tail -5 "$TMP/zo.log")"
L=$(field "$TMP/zo" expected_loss); B=$(field "$TMP/zo" bias); Vu=$(field "$TMP/zo" var_unbiased); Vw=$(field "$TMP/zo" var_biased_weighted)
A=$(field "$TMP/zo" mean_test_accuracy)
close "$(awk -v b="$B" -v u="$Vu" -v w="$Vw" 'BEGIN{print b + u - w}')" "$L" 1e-5 "bias + Vu - Vb_w = 0-1 loss"
close "$(awk -v a="$A" 'BEGIN{print 1 - a}')" "$L" 1e-4 "0-1 loss = 1 - mean test accuracy"
grep -q '"resample":"fresh"' "$TMP/zo/biasvar.jsonl" && grep -q "net variance Vu - Vb" "$TMP/zo.log" && pass "0-1 table and record" \
  || fail "0-1 output: $(tail -10 "$TMP/zo.log")"

expect 1 "--fresh draws new training sets of generated data" -- "$LARCH" biasvar "$SRC/tests/configs/synth_biasvar_cls.yaml" --models 2 --fresh \
  --set data.name=fashion-mnist --out "$TMP/x"
expect 1 "needs the noise-free targets" -- "$LARCH" biasvar "$R" --models 2 --set data.synthetic.regression=0 --out "$TMP/x"
expect 2 "--models 1: expected 2 to 4096" -- "$LARCH" biasvar "$R" --models 1
expect 2 "usage: larch biasvar" -- "$LARCH" biasvar "$R"
expect 1 "no-such.yaml" -- "$LARCH" biasvar "$TMP/no-such.yaml" --models 2 --out "$TMP/x"
finish cli_biasvar
