#!/usr/bin/env bash
# cli_predict.sh LARCH SRC - `larch predict`:
# - a small residual CNN trained for a few steps on an HDF5 file written here
#   (uint8 8x8x3 images from .npy files, `larch data convert npy`);
# - predict on 1 and 2 ranks with the same --batch writes identical /outputs
#   (N, classes) float32 (another --batch: equal to 1e-5) and the file's
#   /labels;
# - the argmax accuracy of the outputs equals `larch eval`'s test accuracy,
#   and is recomputed here from the written file;
# - --layer gives that layer's output shape; errors: data of another shape,
#   a layer that does not exist (1 and 2 ranks: both end), a missing
#   checkpoint, a checkpoint of another model, usage.
. "$(dirname "$0")/cli_helpers.bash"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
# images whose mean brightness of channel (label % 3) is raised: learnable in a few steps
mkdir -p "$TMP/np" "$TMP/np6"
LC_ALL=C awk 'BEGIN { srand(3); for (i = 0; i < 160; i++) for (p = 0; p < 64; p++) for (c = 0; c < 3; c++)
  printf "%c", int(rand() * 128) + (c == (i % 4) % 3 ? 100 : 0) }' > "$TMP/x.bin"
LC_ALL=C awk 'BEGIN { for (i = 0; i < 160; i++) printf "%c", i % 4 }' > "$TMP/y.bin"
head -c $((120 * 192)) "$TMP/x.bin" | npy "$TMP/np/x_train.npy" '|u1' '(120, 8, 8, 3)'
head -c 120 "$TMP/y.bin" | npy "$TMP/np/y_train.npy" '|u1' '(120,)'
tail -c $((40 * 192)) "$TMP/x.bin" | npy "$TMP/np/x_test.npy" '|u1' '(40, 8, 8, 3)'
tail -c 40 "$TMP/y.bin" | npy "$TMP/np/y_test.npy" '|u1' '(40,)'
"$LARCH" data convert npy "$TMP/np" "$TMP/d.h5" > /dev/null 2>&1 || fail "convert npy"
head -c $((120 * 108)) "$TMP/x.bin" | npy "$TMP/np6/x_train.npy" '|u1' '(120, 6, 6, 3)'
head -c $((40 * 108)) "$TMP/x.bin" | npy "$TMP/np6/x_test.npy" '|u1' '(40, 6, 6, 3)'
cp "$TMP/np/y_train.npy" "$TMP/np/y_test.npy" "$TMP/np6/"
"$LARCH" data convert npy "$TMP/np6" "$TMP/d6.h5" > /dev/null 2>&1 || fail "convert npy (6x6)"

cat > "$TMP/cfg.yaml" <<YAML
train: {batch_size: 24, epochs: 2, seed: 5, log_every: 1, threads: 1, eval_batch: 16}
optim: {name: sgd, lr: 0.1, momentum: 0.9}
data: {name: hdf5, path: $TMP/d.h5}
model:
  - {type: conv2d, name: conv1, filters: 8, kernel: 3, padding: 1, bias: false}
  - {type: batchnorm, name: bn1}
  - {type: relu, name: relu1}
  - {type: conv2d, name: conv2, filters: 8, kernel: 3, padding: 1}
  - {type: add, name: res, inputs: [relu1, conv2]}
  - {type: global_avgpool, name: gap}
  - {type: dense, name: fc, units: 4}
YAML
"$LARCH" train "$TMP/cfg.yaml" --out "$TMP/run" > "$TMP/train.log" 2>&1 || fail "train: $(tail -3 "$TMP/train.log")"
CK=$(ck "$TMP/run" 10)
[ -f "$CK" ] || fail "no checkpoint $CK: $(tail -2 "$TMP/train.log")"

out1=$("$LARCH" predict "$TMP/cfg.yaml" --checkpoint "$CK" --data "$TMP/d.h5" --out "$TMP/p1.h5" 2>&1) \
  && pass "predict, 1 rank: $out1" || fail "predict, 1 rank: $out1"
# 1 and 2 ranks with the same --batch run the same GEMM shapes: identical bits
"$LARCH" predict "$TMP/cfg.yaml" --checkpoint "$CK" --data "$TMP/d.h5" --out "$TMP/p1b.h5" --batch 4 > /dev/null 2>&1 || fail "predict --batch 4"
out2=$(timeout 120 "$MPIEXEC" -n 2 --oversubscribe "$LARCH" predict "$TMP/cfg.yaml" --checkpoint "$CK" --data "$TMP/d.h5:/test" \
  --out "$TMP/p2.h5" --batch 4 2>&1) && pass "predict, 2 ranks: $out2" || fail "predict, 2 ranks: $out2"
"$LARCH" predict "$TMP/cfg.yaml" --checkpoint "$CK" --data "$TMP/d.h5" --out "$TMP/p3.h5" --batch 7 > /dev/null 2>&1 || fail "predict --batch 7"
dump() { h5dump -d "$2" -b LE -o "$1.$(basename "$2").bin" "$1" > /dev/null 2>&1 && cat "$1.$(basename "$2").bin"; }
h5dump -H -d /outputs "$TMP/p1.h5" | grep -q 'H5T_IEEE_F32LE' && h5dump -H -d /outputs "$TMP/p1.h5" | grep -q '( 40, 4 )' \
  && pass "/outputs is float32 (40, 4)" || fail "/outputs type or shape: $(h5dump -H -d /outputs "$TMP/p1.h5" 2>&1 | head -8)"
n1=$(dump "$TMP/p1.h5" /outputs | wc -c)
[ "$n1" -eq 640 ] && cmp -s <(dump "$TMP/p1b.h5" /outputs) <(dump "$TMP/p2.h5" /outputs) \
  && pass "1 rank and 2 ranks (--batch 4): identical outputs ($n1 bytes)" || fail "1 vs 2 ranks: outputs differ ($n1 bytes)"
# another batch size changes the GEMM shapes, hence the rounding: equal to 1e-5
close() {
  paste <(dump "$1" /outputs | LC_ALL=C od -An -v -tf4 -w4) <(dump "$2" /outputs | LC_ALL=C od -An -v -tf4 -w4) |
    awk '{ d = $1 - $2; if (d < 0) d = -d; m = $1 < 0 ? -$1 : $1; r = d / (m > 1 ? m : 1); if (r > w) w = r; n++ } END { printf "%d %.3g", n, w + 0 }'
}
worst=$(close "$TMP/p1.h5" "$TMP/p2.h5")
[ "${worst% *}" -eq 160 ] && awk -v w="${worst#* }" 'BEGIN { exit !(w <= 1e-5) }' \
  && pass "2 ranks --batch 4 vs 1 rank --batch 16: the same outputs to 1e-5 (worst relative difference ${worst#* })" \
  || fail "2 ranks --batch 4 vs 1 rank: outputs differ: $worst"
worst=$(paste <(dump "$TMP/p1.h5" /outputs | LC_ALL=C od -An -v -tf4 -w4) <(dump "$TMP/p3.h5" /outputs | LC_ALL=C od -An -v -tf4 -w4) |
  awk '{ d = $1 - $2; if (d < 0) d = -d; m = $1 < 0 ? -$1 : $1; r = d / (m > 1 ? m : 1); if (r > w) w = r; n++ } END { printf "%d %.3g", n, w + 0 }')
[ "${worst% *}" -eq 160 ] && awk -v w="${worst#* }" 'BEGIN { exit !(w <= 1e-5) }' \
  && pass "--batch 7: the same outputs to 1e-5 (worst relative difference ${worst#* })" || fail "--batch 7: outputs differ: $worst"
cmp -s <(dump "$TMP/p1.h5" /labels) <(tail -c 40 "$TMP/y.bin" | LC_ALL=C od -An -v -tu1 | tr -s ' ' '\n' | grep . |
  awk '{ printf "%c%c%c%c", $1, 0, 0, 0 }') && pass "/labels: the split's labels in file order" || fail "/labels differ from the file's"
# argmax accuracy from the written outputs, against larch eval
acc_file=$(paste <(dump "$TMP/p1.h5" /outputs | LC_ALL=C od -An -v -tf4 -w16) \
  <(dump "$TMP/p1.h5" /labels | LC_ALL=C od -An -v -td4 -w4) |
  awk '{ b = 1; for (j = 2; j <= 4; j++) if ($j > $b) b = j; c += (b - 1 == $5); n++ } END { printf "%.4f", c / n }')
ev=$("$LARCH" eval "$TMP/cfg.yaml" --checkpoint "$CK" 2>&1)
acc_eval=$(sed -n 's/^eval: .*test accuracy \([0-9.]*\).*/\1/p' <<<"$ev")
acc_pred=$(sed -n 's/.*argmax accuracy \([0-9.]*\).*/\1/p' <<<"$out1")
[ -n "$acc_eval" ] && [ "$acc_eval" = "$acc_pred" ] && [ "$acc_eval" = "$acc_file" ] \
  && pass "argmax accuracy $acc_file (from the file) = predict's $acc_pred = larch eval's $acc_eval" \
  || fail "accuracy: file $acc_file, predict $acc_pred, eval '$acc_eval' ($ev)"
"$LARCH" predict "$TMP/cfg.yaml" --checkpoint "$CK" --data "$TMP/d.h5:/train" --out "$TMP/pl.h5" --layer gap > /dev/null 2>&1 \
  && h5dump -H -d /outputs "$TMP/pl.h5" | grep -q '( 120, 8 )' && pass "--layer gap on /train: outputs (120, 8)" \
  || fail "--layer gap: $(h5dump -H -d /outputs "$TMP/pl.h5" 2>&1 | head -6)"
"$LARCH" predict "$TMP/cfg.yaml" --checkpoint "$CK" --data "$TMP/d.h5" --out "$TMP/pr.h5" --layer relu1 > /dev/null 2>&1 \
  && h5dump -H -d /outputs "$TMP/pr.h5" | grep -q '( 40, 8, 8, 8 )' && pass "--layer relu1: outputs (40, 8, 8, 8)" \
  || fail "--layer relu1: $(h5dump -H -d /outputs "$TMP/pr.h5" 2>&1 | head -6)"

# ---- bad input ----
P=("$LARCH" predict "$TMP/cfg.yaml" --checkpoint "$CK")
expect 1 "--data $TMP/d6.h5: samples are 6x6x3 (h x w x c) but the model input of $TMP/cfg.yaml is 8x8x3" -- "${P[@]}" --data "$TMP/d6.h5" --out "$TMP/o.h5"
expect 1 "--layer nope: $TMP/cfg.yaml has no layer of that name" -- "${P[@]}" --data "$TMP/d.h5" --out "$TMP/o.h5" --layer nope
expect 1 "--layer nope: $TMP/cfg.yaml has no layer of that name" -- timeout 60 "$MPIEXEC" -n 2 --oversubscribe "${P[@]}" --data "$TMP/d.h5" --out "$TMP/o.h5" --layer nope
expect 1 "$TMP/none.h5" -- "$LARCH" predict "$TMP/cfg.yaml" --checkpoint "$TMP/none.h5" --data "$TMP/d.h5" --out "$TMP/o.h5"
expect 1 "has no group /valid" -- "${P[@]}" --data "$TMP/d.h5:/valid" --out "$TMP/o.h5"
expect 1 "" -- "$LARCH" predict "$TMP/cfg.yaml" --checkpoint "$CK" --data "$TMP/d.h5" --out "$TMP/o.h5" --set model.6.units=5
expect 2 "usage: larch predict" -- "$LARCH" predict "$TMP/cfg.yaml" --checkpoint "$CK" --out "$TMP/o.h5"
expect 2 "--batch 0: expected 1 to 1048576" -- "${P[@]}" --data "$TMP/d.h5" --out "$TMP/o.h5" --batch 0
[ ! -e "$TMP/o.h5" ] && pass "no output file after a failure" || fail "a failed predict left $TMP/o.h5"
finish cli_predict
