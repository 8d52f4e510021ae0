#!/usr/bin/env bash
# cli_datasets.sh LARCH SRC - HDF5 datasets from the command line:
# - `larch data convert idx` of Fashion-MNIST, and training fmnist_mlp.yaml
#   from the HDF5 file gives the same per-step losses as from the IDX files
#   (also with the splits named separately, file.h5:/group);
# - `larch data info` prints shapes, classes and counts;
# - determinism on the HDF5 path: 3-channel uint8 images (per-channel
#   normalization) from .npy files written here, with shuffling,
#   augmentation, dropout and SyncBatchNorm, give the same loss at every step
#   on 1, 2 and 4 ranks (to 1e-5 relative);
# - out of core (data.in_memory: false): the same per-step losses as in
#   memory; a chunked file is refused with the fix; a file truncated during
#   training stops every rank with the file and sample named;
# - `larch data synth` and `larch data bench`;
# - bad input: no file named, a missing file (on 2 ranks: both stop), a
#   missing split, a mean/std of the wrong length, a test label that is not
#   a training class, converter usage errors.
. "$(dirname "$0")/cli_helpers.bash"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
FM=/usr/share/datasets/fashion-mnist
losses() { grep '"samples_per_s"' "$1/metrics.jsonl" | sed 's/.*"loss": \([^,]*\),.*/\1/'; }

# ---- Fashion-MNIST: IDX and HDF5 train identically ----
# (70,000 images: the optimized build runs this; under the sanitizers the
# same converter and loader code runs on the small files below)
if [ "${LARCH_TEST_SANITIZED:-OFF}" = ON ]; then
  pass "Fashion-MNIST checks: run in the optimized build only"
elif [ -e "$FM/train-images-idx3-ubyte.gz" ]; then
  out=$("$LARCH" data convert idx "$FM" "$TMP/fm.h5" 2>&1) && grep -q "train 60000, test 10000 samples of (28, 28, 1) uint8, 10 classes; mean 0.2860, std 0.3530" <<<"$out" \
    && pass "convert idx: $out" || fail "convert idx: $out"
  out=$("$LARCH" data info "$TMP/fm.h5" 2>&1)
  grep -q "train: 60000 samples of (28, 28, 1) uint8 images, 10 classes" <<<"$out" && grep -q "per class: 6000, 6000" <<<"$out" \
    && pass "data info: shapes and counts per class" || fail "data info: $out"
  # the MLP keeps this quick under the sanitizers; the README's closing
  # check runs fmnist_cnn.yaml the same way
  FAST=(--set train.batch_size=64 --set train.max_steps=12 --set train.log_every=1 --set checkpoint.at_end=false --set train.threads=1)
  CNN=$SRC/launch/configs/fmnist_mlp.yaml
  "$LARCH" train "$CNN" --out "$TMP/idx" "${FAST[@]}" > "$TMP/idx.log" 2>&1 || fail "IDX run: $(tail -3 "$TMP/idx.log")"
  "$LARCH" train "$CNN" --out "$TMP/h5" "${FAST[@]}" --set data.name=hdf5 --set data.path="$TMP/fm.h5" > "$TMP/h5.log" 2>&1 \
    || fail "HDF5 run: $(tail -3 "$TMP/h5.log")"
  "$LARCH" train "$CNN" --out "$TMP/h5s" "${FAST[@]}" --set data.name=hdf5 --set data.train="$TMP/fm.h5:/train" \
    --set data.test="$TMP/fm.h5:/test" > "$TMP/h5s.log" 2>&1 || fail "HDF5 split run: $(tail -3 "$TMP/h5s.log")"
  n=$(losses "$TMP/idx" | wc -l)
  [ "$n" -eq 12 ] && cmp -s <(losses "$TMP/idx") <(losses "$TMP/h5") \
    && pass "fmnist_mlp: the same $n per-step losses from IDX and from HDF5" || fail "IDX vs HDF5 losses differ ($n steps)"
  cmp -s <(losses "$TMP/h5") <(losses "$TMP/h5s") && pass "data.train/data.test as file.h5:/group: the same losses" \
    || fail "data.path vs data.train/test losses differ"
  expect 1 "has no group /valid (the split is missing)" -- "$LARCH" train "$CNN" --out "$TMP/o" --set data.name=hdf5 \
    --set data.path="$TMP/fm.h5" --set data.test="$TMP/fm.h5:/valid"
else
  pass "Fashion-MNIST checks: not run (apt-get install dataset-fashion-mnist)"
fi

# ---- determinism over rank counts on the HDF5 path ----
mkdir -p "$TMP/np"
LC_ALL=C awk 'BEGIN { srand(7); for (i = 0; i < 384 * 192; i++) printf "%c", int(rand() * 256) }' > "$TMP/x.bin"
LC_ALL=C awk 'BEGIN { for (i = 0; i < 384; i++) printf "%c", i % 4 }' > "$TMP/y.bin"
npy "$TMP/np/x_train.npy" '|u1' '(384, 8, 8, 3)' < "$TMP/x.bin"
npy "$TMP/np/y_train.npy" '|u1' '(384,)' < "$TMP/y.bin"
head -c $((128 * 192)) "$TMP/x.bin" | npy "$TMP/np/x_test.npy" '|u1' '(128, 8, 8, 3)'
head -c 128 "$TMP/y.bin" | npy "$TMP/np/y_test.npy" '|u1' '(128,)'
out=$("$LARCH" data convert npy "$TMP/np" "$TMP/syn.h5" 2>&1) && grep -q "train 384, test 128 samples of (8, 8, 3) uint8, 4 classes" <<<"$out" \
  && pass "convert npy: $out" || fail "convert npy: $out"
CFG=$SRC/tests/configs/synth_cnn_sync.yaml
H5=(--set data.name=hdf5 --set data.path="$TMP/syn.h5")
RUN_TIMEOUT=120
for np in 1 2 4; do run $np "$TMP/d$np" "${H5[@]}" || fail "$np ranks: $(tail -3 "$TMP/d$np.log")"; done
for np in 2 4; do
  n=$(losses "$TMP/d1" | wc -l)
  worst=$(paste <(losses "$TMP/d1") <(losses "$TMP/d$np") | awk '{d = $1 - $2; if (d < 0) d = -d; r = d / ($1 > 0 ? $1 : 1); if (r > w) w = r} END {printf "%.3g", w + 0}')
  [ "$n" -ge 20 ] && awk -v w="$worst" 'BEGIN{exit !(w <= 1e-5)}' && pass "HDF5 data, 1 vs $np ranks: $n steps, worst relative difference $worst" \
    || fail "HDF5 data, 1 vs $np ranks: $n steps, worst relative loss difference $worst"
done

# ---- out of core: the same batches as in memory, bounded memory, errors ----
for m in true false; do
  run 2 "$TMP/m_$m" "${H5[@]}" --set data.in_memory=$m --set data.train_per_class=60 || fail "in_memory=$m: $(tail -3 "$TMP/m_$m.log")"
done
n=$(losses "$TMP/m_true" | wc -l)
[ "$n" -ge 10 ] && cmp -s <(losses "$TMP/m_true") <(losses "$TMP/m_false") \
  && pass "out of core = in memory: the same $n per-step losses (2 ranks, augmentation, a data.train_per_class subset)" \
  || fail "out of core vs in memory: losses differ ($n steps)"
out=$("$LARCH" data synth "$TMP/big.h5" --train 3000 --test 500 --shape 16,16,3 --classes 4 2>&1) \
  && grep -q "train 3000, test 500 samples of (16, 16, 3) uint8" <<<"$out" && pass "data synth: $out" || fail "data synth: $out"
out=$("$LARCH" data bench "$TMP/big.h5" --in-memory false --batch 64 --steps 20 --cold 2>&1)
grep -q '"bench": "data", .*"in_memory": false.*"samples_per_s": [0-9]' <<<"$out" && pass "data bench: one JSON line" || fail "data bench: $out"
if command -v h5repack > /dev/null; then
  h5repack -l /train/images:CHUNK=16x16x16x3 "$TMP/big.h5" "$TMP/chunked.h5"
  expect 1 "/train/images: is chunked or compressed: reading out of core needs it contiguous" -- "$LARCH" train "$CFG" --out "$TMP/o" \
    --set data.name=hdf5 --set data.path="$TMP/chunked.h5" --set data.in_memory=false
fi
# the file shrinks under a running out-of-core job: every rank stops with the reason
cp "$TMP/big.h5" "$TMP/shrink.h5"
S=(--set data.name=hdf5 --set data.path="$TMP/shrink.h5" --set data.in_memory=false --set train.epochs=1000 --set train.log_every=1)
timeout 120 "$MPIEXEC" -n 2 --oversubscribe "$LARCH" train "$CFG" --out "$TMP/sh" "${S[@]}" > "$TMP/sh.log" 2>&1 &
job=$!
for _ in $(seq 300); do [ -f "$TMP/sh/metrics.jsonl" ] && [ "$(wc -l < "$TMP/sh/metrics.jsonl")" -ge 3 ] && break; sleep 0.1; done
truncate -s 200000 "$TMP/shrink.h5"
wait $job; st=$?
[ "$st" -eq 1 ] && grep -q "shrink.h5:/train: reading sample [0-9]*: the file ended" "$TMP/sh.log" \
  && pass "a dataset file truncated during training: exit 1 on every rank, the file and sample named" \
  || fail "truncated during training: exit $st: $(tail -3 "$TMP/sh.log")"

# ---- bad input ----
expect 1 "data.name is hdf5 but neither data.path nor data.train names a file" -- "$LARCH" train "$CFG" --out "$TMP/o" --set data.name=hdf5
expect 1 "dataset file $TMP/none.h5: cannot open it" -- "$LARCH" train "$CFG" --out "$TMP/o" --set data.name=hdf5 --set data.path="$TMP/none.h5"
expect 1 "dataset file $TMP/none.h5: cannot open it" -- timeout 60 "$MPIEXEC" -n 2 --oversubscribe "$LARCH" train "$CFG" --out "$TMP/o2" \
  --set data.name=hdf5 --set data.path="$TMP/none.h5"
head -c 3000 "$TMP/syn.h5" > "$TMP/cut.h5"
expect 1 "cut.h5" -- "$LARCH" train "$CFG" --out "$TMP/o" --set data.name=hdf5 --set data.path="$TMP/cut.h5"
expect 1 "data.mean has 2 values and data.std 1" -- "$LARCH" train "$CFG" --out "$TMP/o" "${H5[@]}" --set 'data.mean=[0.5, 0.5]' --set 'data.std=[0.2]'
expect 1 "2 normalization values for 3 channels" -- "$LARCH" train "$CFG" --out "$TMP/o" "${H5[@]}" --set 'data.mean=[0.5, 0.5]' --set 'data.std=[0.2, 0.2]'
LC_ALL=C awk 'BEGIN { for (i = 0; i < 128; i++) printf "%c", i == 5 ? 7 : i % 4 }' | npy "$TMP/np/y_test.npy" '|u1' '(128,)'
"$LARCH" data convert npy "$TMP/np" "$TMP/syn7.h5" > /dev/null 2>&1 || fail "convert with a label 7 in the test split"
expect 1 "label 7 of sample 5 is not a class of the training split" -- "$LARCH" train "$CFG" --out "$TMP/o" --set data.name=hdf5 --set data.path="$TMP/syn7.h5"
expect 2 "unknown format 'tiff'" -- "$LARCH" data convert tiff "$TMP/np" "$TMP/t.h5"
expect 1 "$TMP/syn.h5 exists (--force replaces it)" -- "$LARCH" data convert npy "$TMP/np" "$TMP/syn.h5"
expect 0 "wrote $TMP/syn7.h5" -- "$LARCH" data convert npy "$TMP/np" "$TMP/syn7.h5" --force
expect 1 "x_train.npy" -- "$LARCH" data convert npy "$TMP/nowhere" "$TMP/t.h5"
[ ! -e "$TMP/t.h5" ] && ! ls "$TMP"/t.h5.tmp* > /dev/null 2>&1 && pass "a failed conversion leaves no output file" || fail "a failed conversion left a file"
expect 1 "is not an HDF5 file" -- "$LARCH" data info "$TMP/x.bin"
finish cli_datasets
