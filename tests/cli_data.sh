#!/usr/bin/env bash
# cli_data.sh LARCH SRC - data splits whose images do not have the model's
# input shape (Fashion-MNIST: 28x28) are errors naming the file and both
# shapes, in `larch train` and `larch eval` (smaller test images used to be
# read past their end: SIGSEGV in the evaluation; others at the wrong
# strides). The IDX files are written here, uncompressed.
. "$(dirname "$0")/cli_helpers.bash"
CFG=$SRC/launch/configs/fmnist_mlp.yaml

be32() { local v=$1; printf "\\x$(printf %02x $((v >> 24 & 255)))\\x$(printf %02x $((v >> 16 & 255)))\\x$(printf %02x $((v >> 8 & 255)))\\x$(printf %02x $((v & 255)))"; }
# split DIR train|t10k N H W: N images of H x W (pixels i % 256) and labels i % 10
split() {
  local dir=$1 which=$2 n=$3 h=$4 w=$5
  mkdir -p "$dir"
  { printf '\x00\x00\x08\x03'; be32 "$n"; be32 "$h"; be32 "$w"
    LC_ALL=C awk -v n=$((n * h * w)) 'BEGIN { for (i = 0; i < n; i++) printf "%c", 1 + i % 200 }'; } > "$dir/$which-images-idx3-ubyte"
  { printf '\x00\x00\x08\x01'; be32 "$n"
    for ((i = 0; i < n; i++)); do printf "\\x0$((i % 10))"; done; } > "$dir/$which-labels-idx1-ubyte"
}
SETS=(--set train.batch_size=32 --set train.epochs=1 --set train.threads=1 --set train.eval_batch=64 --set model.0.units=16 --set model.2.units=16)

split "$TMP/good" train 128 28 28
split "$TMP/good" t10k 64 28 28
expect 0 "test accuracy" -- "$LARCH" train "$CFG" --set data.dir="$TMP/good" "${SETS[@]}" --out "$TMP/run"
CK=$(ck "$TMP/run" 4)
[ -s "$CK" ] && pass "checkpoint of the good run" || fail "no checkpoint $CK"

# smaller test images: an error naming the test file and both shapes, in train and in eval
mkdir -p "$TMP/small"; cp "$TMP/good"/train-* "$TMP/small/"
split "$TMP/small" t10k 64 27 29
expect 1 "t10k-images-idx3-ubyte: fashion-mnist-test samples are 27x29x1 (h x w x c) but the model input is 28x28x1" -- \
  "$LARCH" train "$CFG" --set data.dir="$TMP/small" "${SETS[@]}" --out "$TMP/o1"
expect 1 "t10k-images-idx3-ubyte: fashion-mnist-test samples are 27x29x1" -- \
  "$LARCH" eval "$CFG" --checkpoint "$CK" --set data.dir="$TMP/small" "${SETS[@]}" --out "$TMP/o2"
# the same number of pixels in another shape
split "$TMP/small" t10k 64 14 56
expect 1 "fashion-mnist-test samples are 14x56x1" -- \
  "$LARCH" eval "$CFG" --checkpoint "$CK" --set data.dir="$TMP/small" "${SETS[@]}" --out "$TMP/o3"
# the training split
mkdir -p "$TMP/wide"; cp "$TMP/good"/t10k-* "$TMP/wide/"
split "$TMP/wide" train 128 28 30
expect 1 "train-images-idx3-ubyte: fashion-mnist-train samples are 28x30x1" -- \
  "$LARCH" train "$CFG" --set data.dir="$TMP/wide" "${SETS[@]}" --out "$TMP/o4"
# two ranks: both stop with the error, neither waits for the other
if command -v "$MPIEXEC" >/dev/null; then
  expect 1 "fashion-mnist-test samples are 14x56x1" -- timeout 120 "$MPIEXEC" -n 2 --oversubscribe \
    "$LARCH" train "$CFG" --set data.dir="$TMP/small" "${SETS[@]}" --out "$TMP/o5"
fi

finish cli_data
