#!/usr/bin/env bash
# cli_metric.sh LARCH SRC - metric learning through mpiexec
# (docs/metric_learning.md):
# - the global-batch losses (triplet batch-hard, supcon, and the center
#   loss beside softmax_ce with its centers updated over the global batch)
#   give the same loss at each of their 24 steps on 1, 2 and 4 ranks (4
#   oversubscribed), to 1e-5 relative, and the same evaluation; the last
#   evaluation batch has 2 samples, so at 4 ranks two ranks score none
#   (they still join the gather: no hang);
# - `global: false` (each rank's part) does differ at 2 ranks: the gather is
#   what makes the rank count not matter;
# - a failed gather on one rank ends every rank with that rank's message;
# - train.accumulate > 1 with a global-batch loss is refused;
# - a loss option of another loss type is reported as ignored;
# - launch/configs/fmnist_triplet.yaml's loss falls (when Fashion-MNIST is
#   installed); `larch predict` of a center-loss model writes the logits.
. "$(dirname "$0")/cli_helpers.bash"
command -v "$MPIEXEC" > /dev/null || { echo "cli_metric: no mpiexec"; exit 1; }
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
RUN_TIMEOUT=120
losses() { grep '"samples_per_s"' "$1/metrics.jsonl" | sed 's/.*"loss": \([^,]*\),.*/\1/'; }
evals() { grep '"split": "test"' "$1/metrics.jsonl" | sed 's/.*"task": \("[^"]*"\), "loss": \([^,]*\),.*"param_norm": \([^,]*\),.*/\1 \2 \3/'; }
worst() {  # worst relative difference of two columns of numbers
  paste <(echo "$1") <(echo "$2") | awk '{d = $1 - $2; if (d < 0) d = -d; r = d / ($1 > 0 ? $1 : 1); if (r > w) w = r} END {printf "%.3g", w + 0}'
}
compare() {  # compare A B WHAT: per-step losses within 1e-5 relative
  local n; n=$(losses "$1" | wc -l)
  if [ "$n" -lt 20 ]; then fail "$3: only $n steps logged"; return; fi
  local w; w=$(worst "$(losses "$1")" "$(losses "$2")")
  awk -v w="$w" 'BEGIN{exit !(w <= 1e-5)}' && pass "$3: $n steps, worst relative difference $w" \
    || fail "$3: worst relative loss difference $w over $n steps"
  local e1 e2; e1=$(evals "$1" | awk '{print $2}'); e2=$(evals "$2" | awk '{print $2}')
  w=$(worst "$e1" "$e2")
  [ -n "$e1" ] && awk -v w="$w" 'BEGIN{exit !(w <= 1e-5)}' && pass "$3: evaluation losses agree ($w)" \
    || fail "$3: evaluation losses differ by $w: $(evals "$1" | tr '\n' ' ') vs $(evals "$2" | tr '\n' ' ')"
}
for c in triplet supcon center; do
  CFG=$SRC/tests/configs/metric_$c.yaml
  for np in 1 2 4; do
    run $np "$TMP/${c}$np" || fail "$c, $np ranks: $(tail -3 "$TMP/${c}$np.log")"
  done
  compare "$TMP/${c}1" "$TMP/${c}2" "$c: 1 vs 2 ranks"
  compare "$TMP/${c}1" "$TMP/${c}4" "$c: 1 vs 4 ranks"
done
# the centers are checkpointed, and the same on 1 and 4 ranks
if command -v h5dump > /dev/null; then
  centers() { h5dump -d /buffers/loss_centers/center -w 0 "$(ck "$1" 24)" 2>/dev/null | sed -n '/DATA {/,/}/p' | grep ':'; }
  a=$(centers "$TMP/center1"); b=$(centers "$TMP/center4")
  [ -n "$a" ] && ! grep -q ' 0, 0, 0, 0' <<<"$a" && pass "the centers are in the checkpoint (/buffers/loss_centers/center), updated" \
    || fail "no updated centers in the checkpoint: $a"
  nums() { sed 's/([0-9]*)://' <<<"$1" | tr ',' '\n' | awk 'NF'; }
  w=$(paste <(nums "$a") <(nums "$b") | awk '{d = $1 - $2; if (d < 0) d = -d; if (d > w) w = d; n++} END {printf "%d %.3g", n, w + 0}')
  [ -n "$a" ] && awk -v n="${w% *}" -v w="${w#* }" 'BEGIN{exit !(n == 64 && w <= 1e-5)}' \
    && pass "centers after 24 steps: 1 rank = 4 ranks (64 values, worst difference ${w#* })" || fail "centers differ ($w): $a vs $b"
fi

# each rank's own part (global: false) is another loss at 2 ranks
CFG=$SRC/tests/configs/metric_triplet.yaml
run 2 "$TMP/local2" --set loss.0.global=false || fail "global: false run: $(tail -3 "$TMP/local2.log")"
w=$(worst "$(losses "$TMP/triplet1")" "$(losses "$TMP/local2")")
awk -v w="$w" 'BEGIN{exit !(w > 1e-3)}' && pass "global: false at 2 ranks differs from the global batch ($w)" \
  || fail "global: false at 2 ranks gives the global loss ($w): the test cannot tell gathered from local"

# launch/configs/fmnist_triplet.yaml learns: its loss falls in 30 steps
if [ -d /usr/share/datasets/fashion-mnist ]; then
  "$LARCH" train "$SRC/launch/configs/fmnist_triplet.yaml" --set train.max_steps=30 --set train.log_every=1 \
    --set train.threads=1 --set train.eval_batch=100 --out "$TMP/fmnist" > "$TMP/fmnist.log" 2>&1 \
    || fail "fmnist_triplet: $(tail -3 "$TMP/fmnist.log")"
  fl=$(losses "$TMP/fmnist" | head -3 | awk '{s += $1} END {print s / NR}')
  ll=$(losses "$TMP/fmnist" | tail -3 | awk '{s += $1} END {print s / NR}')
  awk -v a="$fl" -v b="$ll" 'BEGIN{exit !(b < 0.8 * a)}' && pass "fmnist_triplet: loss $fl (steps 1-3) -> $ll (steps 28-30)" \
    || fail "fmnist_triplet: the loss does not fall: $fl -> $ll"
fi

# a failed gather on one rank ends every rank with its message (the gather
# is the only hook of this model: LARCH_FAULT's site `hook`)
out=$(LARCH_FAULT=1:5:hook timeout 60 "$MPIEXEC" -n 2 --oversubscribe -x LARCH_FAULT "$LARCH" train "$CFG" \
      --out "$TMP/fault" 2>&1); st=$?
[ "$st" -eq 1 ] && grep -q "rank 1: .*injected fault: hook failed at step 5" <<<"$out" \
  && pass "a failed gather on rank 1 ends both ranks with its message" || fail "gather fault: exit $st: $(tail -3 <<<"$out")"

# a rank that fails as evaluation starts (before the evaluation's gathers)
# ends every rank too, instead of leaving the others in a gather
out=$(LARCH_FAULT=1:6:eval timeout 60 "$MPIEXEC" -n 2 --oversubscribe -x LARCH_FAULT "$LARCH" train "$CFG" \
      --out "$TMP/efault" --set train.max_steps=6 --set train.eval_every=6 2>&1); st=$?
[ "$st" -eq 1 ] && grep -q "injected fault: eval failed at step 6" <<<"$out" \
  && pass "a failure on rank 1 as evaluation starts ends both ranks with its message" \
  || fail "eval fault with a global-batch loss: exit $st (124: hung): $(tail -3 <<<"$out")"

# errors and warnings
expect 1 "eps" -- "$LARCH" config "$CFG" --set model.7.eps=0          # 1 / sqrt(0) on a zero row
expect 1 "train.accumulate = 2: a global-batch loss" -- timeout 60 "$MPIEXEC" -n 2 --oversubscribe "$LARCH" train "$CFG" --set train.accumulate=2 --out "$TMP/o"
expect 0 "" -- timeout 60 "$LARCH" train "$CFG" --set train.accumulate=2 --set loss.0.global=false --set train.max_steps=2 --out "$TMP/o2"
expect 0 "loss.0.temperature is ignored: it applies to type supcon only" -- timeout 60 "$LARCH" train "$CFG" --set loss.0.temperature=0.5 --set train.max_steps=1 --out "$TMP/o3"
expect 1 "center loss needs the number of classes" -- "$LARCH" train "$SRC/tests/configs/metric_center.yaml" --set loss.1.classes=0 --out "$TMP/o4"
expect 1 "classes = 3, but label set 0 has 4 classes" -- "$LARCH" train "$SRC/tests/configs/metric_center.yaml" --set loss.1.classes=3 --out "$TMP/o5"

# larch predict on a model with a center loss writes the logits (the last
# model layer), not the appended loss_centers layer
mkdir -p "$TMP/np"
LC_ALL=C awk 'BEGIN { srand(3); for (i = 0; i < 48; i++) for (p = 0; p < 128; p++) printf "%c", int(rand() * 255) }' > "$TMP/x.bin"
LC_ALL=C awk 'BEGIN { for (i = 0; i < 48; i++) printf "%c", i % 4 }' > "$TMP/y.bin"
head -c $((32 * 128)) "$TMP/x.bin" | npy "$TMP/np/x_train.npy" '|u1' '(32, 8, 8, 2)'
head -c 32 "$TMP/y.bin" | npy "$TMP/np/y_train.npy" '|u1' '(32,)'
tail -c $((16 * 128)) "$TMP/x.bin" | npy "$TMP/np/x_test.npy" '|u1' '(16, 8, 8, 2)'
tail -c 16 "$TMP/y.bin" | npy "$TMP/np/y_test.npy" '|u1' '(16,)'
"$LARCH" data convert npy "$TMP/np" "$TMP/d.h5" > /dev/null 2>&1 || fail "convert npy"
sed -e "s|^  name: synthetic|  name: hdf5\n  path: $TMP/d.h5|" -e '/synthetic:/d' -e '/augment:/d' \
  "$SRC/tests/configs/metric_center.yaml" > "$TMP/center_h5.yaml"
"$LARCH" train "$TMP/center_h5.yaml" --set train.max_steps=2 --set train.batch_size=16 --set train.eval_batch=16 \
  --out "$TMP/ch5" > "$TMP/ch5.log" 2>&1 || fail "center on hdf5 data: $(tail -3 "$TMP/ch5.log")"
out=$("$LARCH" predict "$TMP/center_h5.yaml" --checkpoint "$(ck "$TMP/ch5" 2)" --data "$TMP/d.h5" --out "$TMP/p.h5" 2>&1)
grep -q "(16, 4)\|16 x 4\|(1, 1, 4)" <<<"$out" && pass "predict with a center loss writes the logits: $out" \
  || fail "predict with a center loss: $out"
finish cli_metric
