#!/usr/bin/env bash
# cli_ntk.sh LARCH SRC - `larch ntk` (docs/ntk.md) on the synthetic MLP:
# - the empirical kernel, its spectrum and the analytic one (--kernel both),
#   written to HDF5 with the documented datasets;
# - 2 ranks write the same kernel as 1, to the last bit (h5dump %.17g),
#   with the full (N K x N K) kernel and a block size that leaves a rank a
#   short block;
# - kernel regression and the linearized network (--regress, --gd-steps);
# - the errors: the analytic kernels of a CNN, --samples out of range, a
#   missing checkpoint, usage errors, a diverging --gd-lr.
. "$(dirname "$0")/cli_helpers.bash"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
MLP=$SRC/tests/configs/synth_mlp.yaml CNN=$SRC/tests/configs/synth_cnn_sync.yaml
cd "$TMP"
"$LARCH" ntk "$MLP" --samples 12 --kernel both --out k1.h5 --full --block 5 > k1.txt 2>&1 || fail "ntk: $(cat k1.txt)"
grep -q "relative Frobenius error ||empirical - analytic|| / ||analytic|| = " k1.txt && grep -q "empirical: trace" k1.txt \
  && grep -q "analytic: trace" k1.txt && pass "empirical and analytic kernels with their spectra" || fail "output: $(cat k1.txt)"
for d in ntk eigenvalues ntk_full eigenvalues_full analytic_ntk analytic_nngp analytic_eigenvalues labels; do
  h5dump -H -d /$d k1.h5 > /dev/null 2>&1 || fail "k1.h5 lacks /$d"
done
h5dump -H -d /ntk k1.h5 | grep -q "( 12, 12 )" && h5dump -H -d /ntk_full k1.h5 | grep -q "( 48, 48 )" \
  && pass "/ntk is 12 x 12, /ntk_full 48 x 48" || fail "shapes: $(h5dump -H k1.h5 | grep DATASPACE)"
if command -v "$MPIEXEC" > /dev/null; then
  timeout 120 "$MPIEXEC" -n 2 --oversubscribe "$LARCH" ntk "$MLP" --samples 12 --kernel both --out k2.h5 --full --block 5 \
    > k2.txt 2>&1 || fail "ntk on 2 ranks: $(cat k2.txt)"
  grep -q "2 rank(s)" k2.txt || fail "2 ranks: $(cat k2.txt)"
  for d in ntk_full ntk eigenvalues; do
    cmp -s <(h5dump -m %.17g -d /$d k1.h5 | sed 1d) <(h5dump -m %.17g -d /$d k2.h5 | sed 1d) && pass "/$d: 2 ranks = 1 rank, bit for bit" \
      || fail "/$d differs between 1 and 2 ranks"
  done
fi
"$LARCH" ntk "$MLP" --analytic --samples 256 --regress 128 --gd-steps 50 --gd-lr 1 --out r.h5 > r.txt 2>&1 || fail "regress: $(cat r.txt)"
acc=$(sed -n 's/.*NTK accuracy \([0-9.]*\),.*/\1/p' r.txt)
awk -v a="$acc" 'BEGIN{exit !(a > 0.5)}' && grep -q "linearized network after 50 gradient-descent steps" r.txt \
  && grep -q "agreement NTK/network" r.txt && pass "kernel regression (NTK accuracy $acc on 4 classes) and the linearized network" \
  || fail "regress: $(cat r.txt)"
for d in regress_ntk regress_nngp regress_network regress_ntk_gd test_labels; do
  h5dump -H -d /$d r.h5 > /dev/null 2>&1 || fail "r.h5 lacks /$d"
done
expect 1 "layer 'conv1' (conv2d): the analytic kernels cover ReLU MLPs only" -- "$LARCH" ntk "$CNN" --samples 4 --analytic
expect 1 "--samples 5000: the train split of" -- "$LARCH" ntk "$MLP" --samples 5000
expect 1 "--regress 999: the test split of" -- "$LARCH" ntk "$MLP" --samples 8 --analytic --regress 999
expect 1 "nonexistent.h5" -- "$LARCH" ntk "$MLP" --samples 4 --checkpoint nonexistent.h5
expect 1 "gradient descent diverges" -- "$LARCH" ntk "$MLP" --analytic --samples 64 --regress 8 --gd-steps 5 --gd-lr 1000
expect 2 "--samples 0: expected an integer" -- "$LARCH" ntk "$MLP" --samples 0
expect 2 "missing --samples N" -- "$LARCH" ntk "$MLP"
expect 2 "--kernel both compares with the analytic kernel" -- "$LARCH" ntk "$MLP" --samples 4 --kernel both --scale none
expect 2 "--regress needs --kernel analytic" -- "$LARCH" ntk "$MLP" --samples 4 --regress 4
expect 2 "--gd-steps and --gd-lr go together" -- "$LARCH" ntk "$MLP" --samples 4 --analytic --regress 4 --gd-steps 3
expect 2 "--split val: expected train or test" -- "$LARCH" ntk "$MLP" --samples 4 --split val
expect 1 "cannot create the file" -- "$LARCH" ntk "$MLP" --samples 4 --out /nonexistent/dir/k.h5
finish cli_ntk
