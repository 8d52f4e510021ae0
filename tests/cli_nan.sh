#!/usr/bin/env bash
# cli_nan.sh LARCH SRC - a training run whose loss becomes NaN stops with
# train.stop_on_nan on every rank (2 ranks through mpiexec; each rank's exit
# status is printed by a wrapper, so a rank left waiting would show as a
# timeout or a missing line):
# - tests/configs/synth_dead_bn.yaml makes NaN inside the model (batch norm
#   with eps 0 over constant channels) that ReLU and max pooling used to
#   hide from the loss;
# - tests/configs/synth_mlp.yaml diverges at lr 100, at the same step on 1
#   and 2 ranks;
# - with train.stop_on_nan=false both ranks finish the run.
. "$(dirname "$0")/cli_helpers.bash"
command -v "$MPIEXEC" > /dev/null || { echo "cli_nan: no mpiexec"; exit 1; }
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
# ranks2 OUT ARGS...: `larch train ARGS` on 2 ranks, output in OUT, one "rank R exit S" line per rank
ranks2() {
  local out=$1; shift
  timeout 120 "$MPIEXEC" -n 2 --oversubscribe bash -c '"$0" "$@"; echo "rank ${OMPI_COMM_WORLD_RANK:-?} exit $?"' \
    "$LARCH" train "$@" > "$out" 2>&1
}
# both_exit OUT STATUS WHAT
both_exit() {
  if grep -q "^rank 0 exit $2\$" "$1" && grep -q "^rank 1 exit $2\$" "$1"; then pass "$3: both ranks exit $2"
  else fail "$3: want both ranks to exit $2: $(tail -5 "$1")"; fi
}
# stop_step OUT: the step the run stopped at
stop_step() { sed -n 's/.*the training loss is [-a-z]* at step \([0-9]*\) (train.stop_on_nan is set.*/\1/p' "$1" | head -1; }

ranks2 "$TMP/dead.log" "$SRC/tests/configs/synth_dead_bn.yaml" --out "$TMP/dead"
both_exit "$TMP/dead.log" 1 "NaN made inside the model"
[ "$(stop_step "$TMP/dead.log")" = 1 ] && pass "NaN made inside the model stops at step 1 (the first, numbered as in metrics.jsonl)" \
  || fail "NaN inside the model: no stop at step 1: $(tail -3 "$TMP/dead.log")"

ranks2 "$TMP/off.log" "$SRC/tests/configs/synth_dead_bn.yaml" --set train.stop_on_nan=false --out "$TMP/off"
both_exit "$TMP/off.log" 0 "train.stop_on_nan=false"
grep -q "test loss -*nan" "$TMP/off.log" && pass "train.stop_on_nan=false: the run ends with a NaN test loss" \
  || fail "train.stop_on_nan=false: $(tail -3 "$TMP/off.log")"

"$LARCH" train "$SRC/tests/configs/synth_mlp.yaml" --set optim.lr=100 --out "$TMP/div1" > "$TMP/div1.log" 2>&1
one=$(stop_step "$TMP/div1.log")
ranks2 "$TMP/div2.log" "$SRC/tests/configs/synth_mlp.yaml" --set optim.lr=100 --out "$TMP/div2"
both_exit "$TMP/div2.log" 1 "diverging lr"
two=$(stop_step "$TMP/div2.log")
[ -n "$one" ] && [ "$one" = "$two" ] && pass "diverging lr: 1 and 2 ranks stop at step $one" \
  || fail "diverging lr: 1 rank stops at step '$one', 2 ranks at '$two'"

finish cli_nan
