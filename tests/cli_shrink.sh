#!/usr/bin/env bash
# cli_shrink.sh LARCH SRC - models written by the compression methods
# `structured` and `svd` (run through tests/shrink_tool until `larch
# compress` drives them) work with the program like any other, on a
# synthetic CNN with a flatten before its dense layers:
# - `larch eval OUT.yaml --checkpoint OUT.h5` evaluates them;
# - `larch train OUT.yaml --set model.init_from=OUT.h5` fine-tunes them
#   (structured on 2 ranks, svd on 1);
# - errors exit 1 with the message: an unprunable layer, a missing checkpoint.
. "$(dirname "$0")/cli_helpers.bash"
TOOL=$(dirname "$LARCH")/tests/shrink_tool
[ -x "$TOOL" ] || { echo "cli_shrink: no $TOOL"; exit 1; }
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

# structured fine-tunes on 2 ranks, svd on 1
for spec in structured:keep=0.5 svd:rank=2,layers=[conv,fc]; do
  name=${spec%%:*}
  expect 0 "$name" -- "$TOOL" compress "$spec" "$CFG" "$BASE" "$TMP/$name"
  expect 0 "test accuracy" -- "$LARCH" eval "$TMP/$name.yaml" --checkpoint "$TMP/$name.h5"
  if [ $name = svd ]; then
    expect 0 "loaded" -- "$LARCH" train "$TMP/$name.yaml" --set model.init_from="$TMP/$name.h5" --set train.max_steps=2 \
      --out "$TMP/$name.ft"
  else
    timeout 300 "$MPIEXEC" -n 2 --oversubscribe "$LARCH" train "$TMP/$name.yaml" --set model.init_from="$TMP/$name.h5" \
      --set train.max_steps=2 --out "$TMP/$name.ft2" > "$TMP/$name.ft2.log" 2>&1 && grep -q "loaded" "$TMP/$name.ft2.log" \
      && pass "$name: fine-tunes on 2 ranks from model.init_from" || fail "$name on 2 ranks: $(tail -3 "$TMP/$name.ft2.log")"
  fi
done
grep -q "filters: 3" "$TMP/structured.yaml" && grep -q "units: 8" "$TMP/structured.yaml" \
  && pass "structured.yaml: conv 6 -> 3 filters, fc 16 -> 8 units" || fail "structured.yaml: $(cat "$TMP/structured.yaml")"
grep -q "name: fc_svd" "$TMP/svd.yaml" && grep -q "name: conv_svd" "$TMP/svd.yaml" \
  && pass "svd.yaml has fc_svd and conv_svd" || fail "svd.yaml: $(cat "$TMP/svd.yaml")"

# (every error message is checked in test_shrink; here the exit status)
expect 1 "'head' feeds a loss" -- "$TOOL" compress structured:layers=[head] "$CFG" "$BASE" "$TMP/x"
expect 1 "$TMP/missing.h5" -- "$TOOL" compress svd "$CFG" "$TMP/missing.h5" "$TMP/x"
[ ! -e "$TMP/x.h5" ] && pass "no output after an error" || fail "$TMP/x.h5 written after an error"
finish cli_shrink
