#!/usr/bin/env bash
# cli_shrink.sh LARCH SRC - models written by the compression methods
# `structured` and `svd` (both written by one `larch compress --method
# structured:... --method svd:...`, with a tiny table: --reps 1 --rounds 1
# --batch 16) work with the program like any other, on a synthetic CNN with
# a flatten before its dense layers:
# - `larch eval OUT.yaml --checkpoint OUT.h5` evaluates them;
# - `larch train OUT.yaml --set model.init_from=OUT.h5` fine-tunes them
#   (structured on 2 ranks, svd on 1);
# - errors exit 1 with the message: an unprunable layer, a missing checkpoint.
. "$(dirname "$0")/cli_helpers.bash"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
CFG=$TMP/c.yaml
cat > "$CFG" <<'EOF'
train: {batch_size: 32, epochs: 1, max_steps: 4, seed: 5, log_every: 1, threads: 1}
optim: {name: sgd, lr: 0.05, momentum: 0.9}
data:
  name: synthetic
  synthetic: {n_train: 256, n_test: 64, classes: 4, shape: [8, 8, 1], noise: 0.7}
model:
  - {type: conv2d, name: conv, filters: 6, kernel: 3, padding: 1, bias: false}
  - {type: batchnorm, name: bn}
  - {type: relu, name: relu}
  - {type: maxpool, name: pool, size: 2}
  - {type: flatten, name: flat}
  - {type: dense, name: fc, units: 16}
  - {type: relu, name: relu2}
  - {type: dense, name: head, units: 4}
EOF
"$LARCH" train "$CFG" --out "$TMP/base" > "$TMP/base.log" 2>&1 || fail "base training: $(tail -3 "$TMP/base.log")"
BASE=$(ck "$TMP/base" 4)

# both methods in one run; structured fine-tunes on 2 ranks, svd on 1
C=$TMP/c
TABLE=(--reps 1 --rounds 1 --batch 16)
out=$("$LARCH" compress "$CFG" --checkpoint "$BASE" --method structured:keep=0.5 --method svd:rank=2,layers=[conv,fc] \
  --out "$C" "${TABLE[@]}" 2>&1)
grep -q "^compress: structured:keep=0.5: " <<<"$out" && grep -q "^compress: svd:rank=2,layers=\[conv,fc\]: " <<<"$out" \
  && grep -q "^| structured | " <<<"$out" && grep -q "^| svd | " <<<"$out" \
  && pass "larch compress wrote and measured structured and svd" || fail "larch compress structured svd: $out"
for name in structured svd; do
  expect 0 "test accuracy" -- "$LARCH" eval "$C/$name.yaml" --checkpoint "$C/$name.h5"
  if [ $name = svd ]; then
    expect 0 "loaded" -- "$LARCH" train "$C/$name.yaml" --set model.init_from="$C/$name.h5" --set train.max_steps=2 \
      --out "$TMP/$name.ft"
  else
    timeout 300 "$MPIEXEC" -n 2 --oversubscribe "$LARCH" train "$C/$name.yaml" --set model.init_from="$C/$name.h5" \
      --set train.max_steps=2 --out "$TMP/$name.ft2" > "$TMP/$name.ft2.log" 2>&1 && grep -q "loaded" "$TMP/$name.ft2.log" \
      && pass "$name: fine-tunes on 2 ranks from model.init_from" || fail "$name on 2 ranks: $(tail -3 "$TMP/$name.ft2.log")"
  fi
done
grep -q "filters: 3" "$C/structured.yaml" && grep -q "units: 8" "$C/structured.yaml" \
  && pass "structured.yaml: conv 6 -> 3 filters, fc 16 -> 8 units" || fail "structured.yaml: $(cat "$C/structured.yaml")"
grep -q "name: fc_svd" "$C/svd.yaml" && grep -q "name: conv_svd" "$C/svd.yaml" \
  && pass "svd.yaml has fc_svd and conv_svd" || fail "svd.yaml: $(cat "$C/svd.yaml")"

# a repeated method gets DIR/<method>-2.*
expect 0 "| svd-2 | " -- "$LARCH" compress "$CFG" --checkpoint "$BASE" --method svd:rank=2 --method svd:rank=3 --out "$TMP/r" "${TABLE[@]}"
grep -q "units: 2" "$TMP/r/svd.yaml" && grep -q "units: 3" "$TMP/r/svd-2.yaml" && [ -s "$TMP/r/svd-2.h5" ] \
  && pass "svd:rank=2 -> svd.*, svd:rank=3 -> svd-2.*" || fail "repeated svd: $(ls "$TMP/r")"

# (every error message is checked in test_shrink; here the exit status)
expect 1 "'head' feeds a loss" -- "$LARCH" compress "$CFG" --checkpoint "$BASE" --method structured:layers=[head] --out "$TMP/x"
expect 1 "$TMP/missing.h5" -- "$LARCH" compress "$CFG" --checkpoint "$TMP/missing.h5" --method svd --out "$TMP/x"
[ ! -e "$TMP/x/structured.h5" ] && [ ! -e "$TMP/x/svd.h5" ] && pass "no output after an error" || fail "output in $TMP/x after an error: $(ls "$TMP/x")"
finish cli_shrink
