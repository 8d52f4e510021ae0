#!/usr/bin/env bash
# cli_train.sh LARCH SRC - the command-line program as a user meets it:
# help and version, config validation errors (file, line and key named,
# non-zero exit), data errors, a training run's outputs, a 2-rank run, and
# `larch bench step` printing one JSON line.
. "$(dirname "$0")/cli_helpers.bash"
CFG=$SRC/tests/configs/synth_mlp.yaml

expect 0 "usage: larch" -- "$LARCH" --help
expect 0 "larch " -- "$LARCH" --version
expect 2 "unknown command" -- "$LARCH" frobnicate
expect 0 "batch_size: 256" -- "$LARCH" config --help
expect 0 "batch_size: 64" -- "$LARCH" config "$CFG"
expect 0 "batch_size: 256" -- "$LARCH" config "$SRC/launch/configs/fmnist_cnn.yaml"

# config errors name the file, the line and the key
printf 'train:\n  batch_size: 64\n  epoch: 2\nmodel: [{type: dense, units: 4}]\n' > "$TMP/bad_key.yaml"
expect 1 "bad_key.yaml:3" -- "$LARCH" config "$TMP/bad_key.yaml"
expect 1 "train.epoch" -- "$LARCH" config "$TMP/bad_key.yaml"
expect 1 "epochs" -- "$LARCH" config "$TMP/bad_key.yaml"
printf 'optim:\n  name: sgdd\nmodel: [{type: dense, units: 4}]\n' > "$TMP/bad_enum.yaml"
expect 1 "bad_enum.yaml:2" -- "$LARCH" train "$TMP/bad_enum.yaml" --out "$TMP/o"
printf 'model:\n  - {type: dense, units: -3}\n' > "$TMP/bad_range.yaml"
expect 1 "bad_range.yaml:2" -- "$LARCH" config "$TMP/bad_range.yaml"
expect 1 "train.batch_sise" -- "$LARCH" train "$CFG" --set train.batch_sise=3 --out "$TMP/o"
expect 1 "train.batch_size" -- "$LARCH" train "$CFG" --set train.batch_size=abc --out "$TMP/o"
expect 1 "No such file" -- "$LARCH" train "$TMP/missing.yaml"
expect 2 "usage" -- "$LARCH" train

# data errors
expect 1 "dataset-fashion-mnist" -- "$LARCH" train "$SRC/launch/configs/fmnist_mlp.yaml" --set data.dir="$TMP/nowhere" --out "$TMP/o"
mkdir -p "$TMP/trunc"
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  if [ -e "/usr/share/datasets/fashion-mnist/$f.gz" ]; then
    head -c 4000 "/usr/share/datasets/fashion-mnist/$f.gz" > "$TMP/trunc/$f.gz"
  fi
done
if [ -e "$TMP/trunc/train-images-idx3-ubyte.gz" ]; then
  expect 1 "train-images-idx3-ubyte.gz" -- "$LARCH" train "$SRC/launch/configs/fmnist_mlp.yaml" --set data.dir="$TMP/trunc" --out "$TMP/o"
fi
# a head whose size does not match the classes
expect 1 "classes" -- "$LARCH" train "$CFG" --set model.2.units=5 --out "$TMP/o"

# a real (tiny) run and its outputs
expect 0 "test accuracy" -- "$LARCH" train "$CFG" --out "$TMP/run"
[ -s "$TMP/run/config.yaml" ] && pass "config.yaml written" || fail "config.yaml missing"
grep -q '"split": "test"' "$TMP/run/metrics.jsonl" && grep -q '"samples_per_s"' "$TMP/run/metrics.jsonl" \
  && pass "metrics.jsonl has training and evaluation records" || fail "metrics.jsonl: $(cat "$TMP/run/metrics.jsonl")"
"$LARCH" config "$TMP/run/config.yaml" >/dev/null 2>&1 && pass "resolved config is a valid config" || fail "resolved config does not validate"

# train.eval_samples scores the test split's first N samples
n_test=$(grep '"split": "test"' "$TMP/run/metrics.jsonl" | tail -1 | sed 's/.*"samples": \([0-9]*\).*/\1/')
"$LARCH" train "$CFG" --out "$TMP/head" --set train.eval_samples=100 --set train.max_steps=2 > /dev/null 2>&1
got=$(grep '"split": "test"' "$TMP/head/metrics.jsonl" 2> /dev/null | tail -1 | sed 's/.*"samples": \([0-9]*\).*/\1/')
[ "$got" = 100 ] && [ "$n_test" -gt 100 ] && pass "train.eval_samples=100: 100 of $n_test test samples scored" \
  || fail "train.eval_samples=100: scored '$got' (whole split: '$n_test')"
expect 1 "train.eval_samples" -- "$LARCH" train "$CFG" --set train.eval_samples=-1 --out "$TMP/o"

# two ranks agree with one rank on the final loss (summation-order tolerance)
if command -v mpiexec >/dev/null; then
  one=$("$LARCH" train "$CFG" --out "$TMP/r1" | grep -o 'step 32/32.*loss [0-9.]*' | grep -o 'loss [0-9.]*')
  two=$(mpiexec -n 2 --oversubscribe "$LARCH" train "$CFG" --out "$TMP/r2" 2>&1 | grep -o 'step 32/32.*loss [0-9.]*' | grep -o 'loss [0-9.]*')
  [ -n "$one" ] && [ "$one" = "$two" ] && pass "1 and 2 ranks: same final loss ($one)" || fail "1 rank '$one' vs 2 ranks '$two'"
  expect 1 "not divisible" -- mpiexec -n 2 --oversubscribe "$LARCH" train "$CFG" --set train.batch_size=63 --out "$TMP/o"
fi

# the step benchmark prints one JSON object with the figures
out=$("$LARCH" bench step "$CFG" --batch 32 --threads 1 --rounds 2 2>/dev/null)
for k in samples_per_s gflops sgemm_gflops_model_shapes ratio sgemm_gflops_square ratio_square; do
  grep -q "\"$k\":" <<<"$out" || fail "bench step output lacks $k: $out"
done
pass "bench step JSON"
expect 2 "positive integer" -- "$LARCH" bench step "$CFG" --batch 0

finish cli_train
