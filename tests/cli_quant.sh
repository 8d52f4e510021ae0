#!/usr/bin/env bash
# cli_quant.sh LARCH SRC - quantization from the command line
# (docs/compression/quantization.md), on tests/configs/synth_quant.yaml:
# - train 20 steps, quantize to int8 (calibrated min-max) and evaluate: the
#   int8 kernels ran on every quantized layer and the accuracy is within 5
#   points of the float model's; fp16 evaluates like the float model; the
#   int8 checkpoint is smaller and passes `larch ckpt verify` and `info`;
# - training an int8 config is refused (the methods' option errors, bf16 and
#   the checks of the tensors: test_quant.c);
# - quantization-aware training (quantize.qat) gives the same per-step
#   losses on 1 and 2 ranks, stores its learned input ranges, and int8 on its
#   checkpoint uses them; resuming it without QAT is refused.
# The methods run through build/tests/quant_tool until `larch compress` does.
. "$(dirname "$0")/cli_helpers.bash"
TOOL=$(dirname "$LARCH")/tests/quant_tool
[ -x "$TOOL" ] || { echo "cli_quant: no $TOOL"; exit 1; }
CFG=$SRC/tests/configs/synth_quant.yaml
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
acc() { sed -n 's/.*test accuracy \([0-9.]*\).*/\1/p' <<<"$1" | tail -1; }
close() {  # close A B POINTS: |A - B| <= POINTS/100
  awk -v a="$1" -v b="$2" -v p="$3" 'BEGIN{d = a - b; if (d < 0) d = -d; exit !(a != "" && b != "" && d <= p / 100 + 1e-9)}'; }

"$LARCH" train "$CFG" --out "$TMP/f" --set train.max_steps=20 > "$TMP/f.log" 2>&1 || fail "float training: $(tail -3 "$TMP/f.log")"
CK=$(ck "$TMP/f" 20)
fout=$("$LARCH" eval "$TMP/f/config.yaml" --checkpoint "$CK" 2>&1); facc=$(acc "$fout")

out=$("$TOOL" compress "$TMP/f/config.yaml" "$CK" int8 "$TMP/i8" 2>&1) && grep -q "conv1 s8\[" <<<"$out" \
  && pass "int8: $(head -1 <<<"$out")" || fail "int8 compress: $out"
grep -q "format: int8" "$TMP/i8.yaml" && pass "the int8 config has quantize.format: int8" || fail "no quantize section in $TMP/i8.yaml"
out=$("$LARCH" eval "$TMP/i8.yaml" --checkpoint "$TMP/i8.h5" 2>&1); iacc=$(acc "$out")
grep -q "int8: 3 of 3 quantized layer(s) ran onednn int8" <<<"$out" && pass "larch eval ran the int8 kernels" \
  || fail "larch eval of the int8 model: $out"
close "$iacc" "$facc" 5 && pass "int8 accuracy $iacc vs float $facc" || fail "int8 accuracy $iacc vs float $facc"
expect 0 "ok (format 2" -- "$LARCH" ckpt verify "$TMP/i8.h5"
out=$("$LARCH" ckpt info "$TMP/i8.h5" 2>&1)
grep -q "/quant/fc1/weight .* int8" <<<"$out" && grep -q "/quant/fc1/weight_scale" <<<"$out" && pass "ckpt info lists the int8 tensors" \
  || fail "ckpt info: $out"
"$TOOL" compress "$TMP/f/config.yaml" "$CK" fp16 "$TMP/fp16" > "$TMP/fp16.out" 2>&1 || fail "fp16 compress: $(cat "$TMP/fp16.out")"
out=$("$LARCH" eval "$TMP/fp16.yaml" --checkpoint "$TMP/fp16.h5" 2>&1); a=$(acc "$out")
close "$a" "$facc" 1 && pass "fp16 accuracy $a vs float $facc" || fail "fp16 accuracy '$a' vs float $facc: $out"
[ "$(stat -c %s "$TMP/i8.h5")" -lt "$(stat -c %s "$TMP/fp16.h5")" ] && pass "the int8 file is smaller than the fp16 one" \
  || fail "int8 $(stat -c %s "$TMP/i8.h5") bytes, fp16 $(stat -c %s "$TMP/fp16.h5")"
expect 1 "int8 model runs inference only" -- "$LARCH" train "$TMP/i8.yaml" --out "$TMP/no" --set train.max_steps=1

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
  expect 0 "from QAT's ranges" -- "$TOOL" compress "$TMP/q2/config.yaml" "$QCK" int8 "$TMP/qi8"
  out=$("$LARCH" eval "$TMP/qi8.yaml" --checkpoint "$TMP/qi8.h5" 2>&1)
  grep -q "int8: 3 of 3" <<<"$out" && pass "int8 from QAT evaluates: $(acc "$out")" || fail "int8 from QAT: $out"
  if cmp -s <(losses "$TMP/q1") <(losses "$TMP/f") ; then fail "QAT losses equal the float run's"; else pass "QAT changes the losses"; fi
else
  fail "no mpiexec"
fi
finish cli_quant
