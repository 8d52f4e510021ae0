#!/usr/bin/env bash
# cli_distill.sh LARCH SRC - knowledge distillation through the program:
# - a teacher trained briefly; a smaller student distilled from it on 1 and
#   2 ranks gives the same losses (summation-order tolerance) and a
#   different trajectory from the student trained alone; with alpha 0 the
#   losses of the student alone;
# - errors before step 1 (on 2 ranks: every rank, no hang): the teacher config or
#   checkpoint missing, a checkpoint of another model, a teacher scoring a
#   different number of classes.
. "$(dirname "$0")/cli_helpers.bash"
command -v "$MPIEXEC" > /dev/null || { echo "cli_distill: no mpiexec"; exit 1; }
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
CFG=$SRC/tests/configs/synth_mlp.yaml
T=(--set train.max_steps=12 --set train.log_every=1)
"$LARCH" train "$CFG" --out "$TMP/teacher" "${T[@]}" > "$TMP/teacher.log" 2>&1 || fail "teacher: $(tail -3 "$TMP/teacher.log")"
TCK=$(ck "$TMP/teacher" 12)
STUDENT=$TMP/student.yaml
sed 's/units: 32/units: 8/' "$CFG" > "$STUDENT"
D=(--set distill.teacher="$CFG" --set distill.checkpoint="$TCK" --set distill.alpha=0.8 --set distill.temperature=3 "${T[@]}")
CFG=$STUDENT
run 1 "$TMP/d1" "${D[@]}" || fail "1-rank distillation: $(tail -3 "$TMP/d1.log")"
run 2 "$TMP/d2" "${D[@]}" || fail "2-rank distillation: $(tail -3 "$TMP/d2.log")"
run 1 "$TMP/alone" "${T[@]}" || fail "student alone: $(tail -3 "$TMP/alone.log")"
losses() { grep '"loss"' "$1/metrics.jsonl" | grep -v split | sed 's/.*"loss": \([-0-9.e]*\).*/\1/'; }
paste <(losses "$TMP/d1") <(losses "$TMP/d2") | awk '{d = $1 - $2; if (d < 0) d = -d; if (d > 1e-5 * ($1 < 0 ? -$1 : $1) + 1e-6) bad++; n++}
  END {exit !(n == 12 && bad == 0)}' && pass "1 and 2 ranks: the same 12 distillation losses" \
  || fail "1 vs 2 ranks: $(paste <(losses "$TMP/d1") <(losses "$TMP/d2") | head -5)"
[ "$(losses "$TMP/d1" | tail -1)" != "$(losses "$TMP/alone" | tail -1)" ] && pass "distillation changes the loss" \
  || fail "the distilled loss equals the student's alone"
# alpha 0: the distillation loss is the cross-entropy, the run the student's alone (up to rounding: the
# teacher's forward pass on every micro-batch leaves the student's computation alone)
run 1 "$TMP/a0" "${D[@]}" --set distill.alpha=0 || fail "alpha 0: $(tail -3 "$TMP/a0.log")"
paste <(losses "$TMP/a0") <(losses "$TMP/alone") | awk '{d = $1 - $2; if (d < 0) d = -d; if (d > 1e-5 * ($1 < 0 ? -$1 : $1) + 1e-6) bad++; n++}
  END {exit !(n == 12 && bad == 0)}' && pass "alpha 0: the losses of the student alone" \
  || fail "alpha 0 vs alone: $(paste <(losses "$TMP/a0") <(losses "$TMP/alone") | head -5)"

# errors: on 2 ranks, every rank, before any step
bad() {  # bad NEEDLE --set ...: one process
  local needle=$1; shift
  expect 1 "$needle" -- "$LARCH" train "$STUDENT" --out "$TMP/err" "$@"
}
bad2() {  # the same on 2 ranks: every rank stops, none hangs
  local needle=$1; shift
  expect 1 "$needle" -- timeout 120 "$MPIEXEC" -n 2 --oversubscribe "$LARCH" train "$STUDENT" --out "$TMP/err" "$@"
}
bad "distill.teacher" --set distill.teacher="$TMP/none.yaml" --set distill.checkpoint="$TCK"
bad2 "distill.checkpoint: cannot read the teacher's checkpoint" --set distill.teacher="$SRC/tests/configs/synth_mlp.yaml" --set distill.checkpoint="$TMP/none.h5"
bad "distill.checkpoint: the teacher" --set distill.teacher="$SRC/tests/configs/synth_mlp.yaml"
sed 's/units: 32/units: 24/' "$SRC/tests/configs/synth_mlp.yaml" > "$TMP/other.yaml"
bad "has shape (32, 16) but the model's fc1.weight has shape (24, 16)" --set distill.teacher="$TMP/other.yaml" --set distill.checkpoint="$TCK"
sed 's/classes: 4/classes: 5/; s/units: 4}/units: 5}/' "$SRC/tests/configs/synth_mlp.yaml" > "$TMP/five.yaml"
"$LARCH" train "$TMP/five.yaml" --out "$TMP/five" --set train.max_steps=2 > "$TMP/five.log" 2>&1 || fail "5-class teacher: $(tail -3 "$TMP/five.log")"
bad2 "the teacher scores 5 classes" --set distill.teacher="$TMP/five.yaml" --set distill.checkpoint="$(ck "$TMP/five" 2)"
finish cli_distill
