#!/usr/bin/env bash
# cli_quant.sh LARCH SRC - quantization from the command line
# (docs/compression/quantization.md), on tests/configs/synth_quant.yaml:
# - train 20 steps, then one `larch compress --method int8 --method fp16`
#   (int8 calibrated min-max; a tiny table: --reps 1 --rounds 1 --batch 16):
#   `larch eval` of the int8 model ran the int8 kernels on every quantized
#   layer and its accuracy is within 5 points of the float model's and equals
#   the table's; fp16 evaluates like the float model; the int8 checkpoint is
#   smaller than the fp16 one and passes `larch ckpt verify` and `info`;
# - training an int8 config is refused (the methods' option errors, bf16 and
#   the checks of the tensors: test_quant.c);
# - quantization-aware training (quantize.qat) gives the same per-step
#   losses on 1 and 2 ranks, stores its learned input ranges, and int8 on its
#   checkpoint uses them (and runs the int8 kernels in the table); resuming it
#   without QAT is refused.
. "$(dirname "$0")/cli_helpers.bash"
CFG=$SRC/tests/configs/synth_quant.yaml
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
acc() { sed -n 's/.*test accuracy \([0-9.]*\).*/\1/p' <<<"$1" | tail -1; }
close() {  # close A B POINTS: |A - B| <= POINTS/100
  awk -v a="$1" -v b="$2" -v p="$3" 'BEGIN{d = a - b; if (d < 0) d = -d; exit !(a != "" && b != "" && d <= p / 100 + 1e-9)}'; }
row() {  # row JSON MODEL: the --json line of that model
  grep "^{\"model\": \"$2\"," "$1"; }
jacc() { row "$1" "$2" | sed -n 's/.*"accuracy": \([0-9.]*\),.*/\1/p'; }
TABLE=(--reps 1 --rounds 1 --batch 16)

"$LARCH" train "$CFG" --out "$TMP/f" --set train.max_steps=20 > "$TMP/f.log" 2>&1 || fail "float training: $(tail -3 "$TMP/f.log")"
CK=$(ck "$TMP/f" 20)
C=$TMP/c
out=$("$LARCH" compress "$TMP/f/config.yaml" --checkpoint "$CK" --method int8 --method fp16 --out "$C" "${TABLE[@]}" \
  --json "$C.json" 2>&1) && grep -q "conv1 s8\[" <<<"$out" \
  && pass "int8: $(grep '^compress: int8:' <<<"$out")" || fail "larch compress int8 fp16: $out"
facc=$(jacc "$C.json" original)
grep -q "format: int8" "$C/int8.yaml" && pass "the int8 config has quantize.format: int8" || fail "no quantize section in $C/int8.yaml"
out=$("$LARCH" eval "$C/int8.yaml" --checkpoint "$C/int8.h5" 2>&1); iacc=$(acc "$out")
grep -q "int8: 3 of 3 quantized layer(s) ran onednn int8" <<<"$out" && pass "larch eval ran the int8 kernels" \
  || fail "larch eval of the int8 model: $out"
close "$iacc" "$facc" 5 && pass "int8 accuracy $iacc vs float $facc" || fail "int8 accuracy '$iacc' vs float '$facc'"
close "$iacc" "$(jacc "$C.json" int8)" 0 && row "$C.json" int8 | grep -q '"kernels": "3 layer(s) onednn int8' \
  && pass "the table's int8 row: larch eval's accuracy, the int8 kernels" || fail "table int8 row vs eval $iacc: $(row "$C.json" int8)"
expect 0 "ok (format 2" -- "$LARCH" ckpt verify "$C/int8.h5"
out=$("$LARCH" ckpt info "$C/int8.h5" 2>&1)
grep -q "/quant/fc1/weight .* int8" <<<"$out" && grep -q "/quant/fc1/weight_scale" <<<"$out" && pass "ckpt info lists the int8 tensors" \
  || fail "ckpt info: $out"
a=$(jacc "$C.json" fp16)
close "$a" "$facc" 1 && pass "fp16 accuracy $a vs float $facc" || fail "fp16 accuracy '$a' vs float '$facc': $(cat "$C.json")"
[ "$(stat -c %s "$C/int8.h5")" -lt "$(stat -c %s "$C/fp16.h5")" ] && pass "the int8 file is smaller than the fp16 one" \
  || fail "int8 $(stat -c %s "$C/int8.h5") bytes, fp16 $(stat -c %s "$C/fp16.h5")"
expect 1 "int8 model runs inference only" -- "$LARCH" train "$C/int8.yaml" --out "$TMP/no" --set train.max_steps=1

# QAT, data-parallel: the same losses on 1 and 2 ranks
losses() { grep '"samples_per_s"' "$1/metrics.jsonl" | sed 's/.*"loss": \([^,]*\),.*/\1/'; }
if command -v "$MPIEXEC" > /dev/null; then
  RUN_TIMEOUT=120
  for np in 1 2; do run $np "$TMP/q$np" --set quantize.qat=true --set train.max_steps=8 || fail "QAT on $np ranks: $(tail -3 "$TMP/q$np.log")"; done
  worst=$(paste <(losses "$TMP/q1") <(losses "$TMP/q2") | awk '{d = $1 - $2; if (d < 0) d = -d; r = d / $1; if (r > w) w = r} END {printf "%.3g", w + 0}')
  n=$(losses "$TMP/q2" | wc -l)
  [ "$n" -eq 8 ] && awk -v w="$worst" 'BEGIN{exit !(w <= 1e-4)}' && pass "QAT: 1 vs 2 ranks, $n steps, worst relative loss difference $worst" \
    || fail "QAT 1 vs 2 ranks: $n steps, worst relative loss difference $worst"
  QCK=$(ck "$TMP/q2" 8)
  expect 1 "quantize.qat" -- "$LARCH" train "$CFG" --out "$TMP/q2" --set train.max_steps=10 --set checkpoint.resume=auto
  expect 0 "/quant/conv1/input_range" -- "$LARCH" ckpt info "$QCK"
  expect 0 "from QAT's ranges" -- "$LARCH" compress "$TMP/q2/config.yaml" --checkpoint "$QCK" --method int8 --out "$TMP/qc" \
    "${TABLE[@]}" --json "$TMP/qc.json"
  row "$TMP/qc.json" int8 | grep -q '"kernels": "3 layer(s) onednn int8' && [ -n "$(jacc "$TMP/qc.json" int8)" ] \
    && pass "int8 from QAT evaluates: $(jacc "$TMP/qc.json" int8)" || fail "int8 from QAT: $(cat "$TMP/qc.json")"
  if cmp -s <(losses "$TMP/q1") <(losses "$TMP/f") ; then fail "QAT losses equal the float run's"; else pass "QAT changes the losses"; fi
else
  fail "no mpiexec"
fi
finish cli_quant
