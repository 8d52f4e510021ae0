#!/usr/bin/env bash
# cli_transfer.sh LARCH SRC - transfer learning and multi-task heads through
# the program and mpiexec:
# - model.init_from with a prefix rename and an excluded head loads the
#   trunk (init_from.txt lists loaded / fresh / unused tensors);
# - a trunk frozen for one epoch (optim.groups unfreeze_after_epochs) is
#   bit-identical to the pretrained one after epoch 1 on 2 ranks, and moves
#   after it; resuming inside the frozen epoch continues the schedule;
# - a two-task model (derived coarse labels, uncertainty weighting) trains on
#   2 ranks, reports both tasks and learns the weights, and matches 1 rank;
# - launch/configs/fmnist_multitask.yaml trains (when Fashion-MNIST is installed);
# - every error: missing file, shape mismatch, bad label map, bad target,
#   unfreeze without freeze.
. "$(dirname "$0")/cli_helpers.bash"
command -v "$MPIEXEC" > /dev/null || { echo "cli_transfer: no mpiexec"; exit 1; }
command -v h5diff > /dev/null || { echo "cli_transfer: h5diff missing (Debian's hdf5-tools)"; exit 1; }
CFG=$SRC/tests/configs/synth_transfer.yaml
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
h5same() {  # h5same A OBJ_A B OBJ_B
  h5diff -d 0 "$1" "$3" "$2" "$4" > /dev/null 2>&1
}

# ---- pretrain (classes 0-3, layers renamed to pre_*), then fine-tune on 4-7 ----
PRE=(--set "model.layers.0.name=pre_conv" --set "model.layers.1.name=pre_bn" --set "model.layers.5.name=pre_fc")
run 1 "$TMP/pre" "${PRE[@]}" || fail "pretraining: $(tail -3 "$TMP/pre.log")"
P=$(ck "$TMP/pre" 24)       # 4 x 96 samples, batch 32: 12 steps per epoch
[ -f "$P" ] && pass "pretraining checkpoint" || fail "no $P: $(tail -3 "$TMP/pre.log")"
FT=(--set "data.classes=[4, 7]" --set model.init_from.file="$P" --set 'model.init_from.rename={pre_: trunk_}'
    --set 'model.init_from.exclude=[head.*]' --set checkpoint.every_steps=6 --set checkpoint.keep=0
    --set 'optim.groups=[{match: trunk_*, freeze: true, unfreeze_after_epochs: 1, lr_mult: 0.5}]')
run 2 "$TMP/ft" "${FT[@]}" || fail "2-rank fine-tune: $(tail -3 "$TMP/ft.log")"
grep -q "init_from .*: loaded 7 tensor(s)" "$TMP/ft.log" && pass "init_from reports 7 loaded tensors (5 parameters, 2 buffers)" \
  || fail "init_from summary: $(grep init_from "$TMP/ft.log")"
grep -q "loaded   trunk_fc.weight <- /params/pre_fc/weight" "$TMP/ft/init_from.txt" \
  && grep -q "fresh    head.weight (excluded)" "$TMP/ft/init_from.txt" \
  && grep -q "unused   /params/head/weight" "$TMP/ft/init_from.txt" \
  && pass "init_from.txt lists loaded, fresh and unused tensors" || fail "init_from.txt: $(cat "$TMP/ft/init_from.txt")"
grep -q "epoch 1: unfroze 5 tensor(s): trunk_conv.weight trunk_bn.scale trunk_bn.shift trunk_fc.weight trunk_fc.bias" "$TMP/ft.log" \
  && pass "the trunk thaws at epoch 1" || fail "no thaw line: $(grep unfroze "$TMP/ft.log")"
E1=$(ck "$TMP/ft" 12); E2=$(ck "$TMP/ft" 24)
h5same "$P" /params/pre_conv/weight "$E1" /params/trunk_conv/weight && h5same "$P" /params/pre_fc/weight "$E1" /params/trunk_fc/weight \
  && pass "frozen epoch: the trunk equals the pretrained one bit for bit" || fail "the frozen trunk moved in epoch 1"
h5same "$P" /params/pre_fc/weight "$E2" /params/trunk_fc/weight && fail "the trunk did not move after thawing" \
  || pass "after thawing the trunk trains"
h5same "$E1" /params/head/weight "$E2" /params/head/weight && fail "the head did not train" || pass "the head trains"
# resume inside the frozen epoch: the schedule continues (the trunk thaws at epoch 1 again)
run 1 "$TMP/ft_r" "${FT[@]}" --set checkpoint.resume="$(ck "$TMP/ft" 6)" --set checkpoint.every_steps=0 \
  || fail "resume of the fine-tune: $(tail -3 "$TMP/ft_r.log")"
h5diff -d 1e-5 "$E2" "$(ck "$TMP/ft_r" 24)" /params /params > /dev/null 2>&1 \
  && pass "fine-tune resumed at step 6 (frozen) on 1 rank matches the 2-rank run" || fail "resumed fine-tune differs"

# ---- two tasks: fine label and a derived coarse label, learned weights ----
MCFG=$SRC/tests/configs/synth_multitask.yaml
MT=(--set checkpoint.dir=)
CFG=$MCFG run 2 "$TMP/mt2" "${MT[@]}" || fail "2-rank two-task run: $(tail -3 "$TMP/mt2.log")"
CFG=$MCFG run 1 "$TMP/mt1" "${MT[@]}" || fail "1-rank two-task run: $(tail -3 "$TMP/mt1.log")"
L=$(grep '"split": "test"' "$TMP/mt2/metrics.jsonl" | tail -2)
FA=$(grep '"task": "fine"' <<<"$L" | sed 's/.*"accuracy": \([0-9.]*\).*/\1/')
CA=$(grep '"task": "coarse"' <<<"$L" | sed 's/.*"accuracy": \([0-9.]*\).*/\1/')
awk -v f="$FA" -v c="$CA" 'BEGIN { exit !(f > 0.5 && c > 0.6) }' \
  && pass "two tasks learn: fine accuracy $FA (chance 0.125), coarse $CA (chance 0.25)" || fail "two-task accuracies $FA / $CA"
grep -q '"tasks": {"fine": {"loss": [0-9.e-]*, "weight": [0-9.e-]*}, "coarse"' "$TMP/mt2/metrics.jsonl" \
  && pass "training records carry each task's loss and weight" || fail "no per-task training records"
W=$(grep '"task": "coarse"' <<<"$L" | sed 's/.*"weight": \([0-9.e-]*\).*/\1/')
awk -v w="$W" 'BEGIN { exit !(w != "" && w != 1) }' && pass "the coarse weight was learned ($W)" || fail "coarse weight stayed $W"
h5diff -d 1e-4 "$(ck "$TMP/mt1" 96)" "$(ck "$TMP/mt2" 96)" /params /params > /dev/null 2>&1 \
  && pass "two tasks: 2 ranks match 1 rank (log_var included)" || fail "two-task 1 vs 2 ranks differ"
h5dump -d /params/loss_weights/log_var "$(ck "$TMP/mt2" 96)" > /dev/null 2>&1 \
  && pass "the learned log-variances are in the checkpoint" || fail "no /params/loss_weights/log_var"

# ---- the shipped two-task Fashion-MNIST config ----
if [ -f /usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz ] || [ -f /usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte ]; then
  QUICK=()   # under the sanitizers the whole test split would be most of the time: its first 2000
  [ "${LARCH_TEST_SANITIZED:-OFF}" = ON ] && QUICK=(--set train.eval_samples=2000)
  if timeout 600 "$LARCH" train "$SRC/launch/configs/fmnist_multitask.yaml" --out "$TMP/fm" --set train.max_steps=40 \
       --set train.threads=2 --set checkpoint.at_end=false "${QUICK[@]}" > "$TMP/fm.log" 2>&1; then
    FA=$(grep '"task": "fine"' "$TMP/fm/metrics.jsonl" | tail -1 | sed 's/.*"accuracy": \([0-9.]*\).*/\1/')
    CA=$(grep '"task": "coarse"' "$TMP/fm/metrics.jsonl" | tail -1 | sed 's/.*"accuracy": \([0-9.]*\).*/\1/')
    awk -v f="$FA" -v c="$CA" 'BEGIN { exit !(f > 0.6 && c > 0.85) }' \
      && pass "fmnist_multitask.yaml, 40 steps: fine $FA, coarse $CA" || fail "fmnist_multitask accuracies $FA / $CA"
  else
    fail "fmnist_multitask.yaml: $(tail -3 "$TMP/fm.log")"
  fi
else
  echo "skip: Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)"
fi

# ---- errors ----
expect 1 "model.init_from: cannot read checkpoint $TMP/none.h5" -- "$LARCH" train "$CFG" --out "$TMP/e1" --set model.init_from="$TMP/none.h5"
expect 1 "has shape (4, 16) but the model's head.weight has shape (3, 16)" -- "$LARCH" train "$CFG" --out "$TMP/e2" \
  --set "model.layers.7.units=3" --set "data.classes=[0, 2]" --set model.init_from.file="$(ck "$TMP/ft" 24)"
expect 0 "skipped 2 on a shape mismatch" -- "$LARCH" train "$CFG" --out "$TMP/e2b" --set train.max_steps=2 \
  --set "model.layers.7.units=3" --set "data.classes=[0, 2]" --set model.init_from.file="$(ck "$TMP/ft" 24)" \
  --set model.init_from.skip_mismatch=true
expect 1 "data.derived_labels.0" -- "$LARCH" train "$CFG" --out "$TMP/e3" --set "data.derived_labels=[[0, 1]]"
expect 1 "target 1: the data has label sets 0..0" -- "$LARCH" train "$CFG" --out "$TMP/e4" --set 'loss={target: 1}'
expect 1 "label set 1 has 2 classes" -- "$LARCH" train "$CFG" --out "$TMP/e5" --set "data.derived_labels=[[0, 1, 1, 0]]" \
  --set 'loss=[{name: a}, {name: b, target: 1}]'
expect 1 "unfreeze_after_epochs: needs freeze: true" -- "$LARCH" config "$CFG" \
  --set 'optim.groups=[{match: trunk_*, unfreeze_after_epochs: 1}]'
expect 1 "unknown key 'model.init_from.renames'" -- "$LARCH" config "$CFG" --set 'model.init_from.renames={a: b}'
expect 1 "data.classes: expected [lo, hi]" -- "$LARCH" train "$CFG" --out "$TMP/e6" --set "data.classes=[3, 9]"
finish cli_transfer
