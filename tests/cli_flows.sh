#!/usr/bin/env bash
# cli_flows.sh LARCH SRC - normalizing flows through the program (docs/flows.md):
# - tests/configs/flow_synth.yaml (actnorm, invconv, coupling, squeeze, split;
#   loss flow_nll) gives the same bits/dim at each step with 1, 2 and 4 ranks
#   to 1e-5 relative (actnorm's init over the global first batch included);
# - the checkpoint holds the actnorm init flag and the invconv permutation, and
#   larch eval reports the same test bits/dim as the end of training;
# - larch sample writes a PNG (1-channel configs) and refuses bad input;
# - flow_nll on a model that is not a flow is refused before training;
# - the generated 2-D toy (data.synthetic.toy2d: moons) trains and
#   larch sample draws its density; toy2d with another shape is refused.
. "$(dirname "$0")/cli_helpers.bash"
command -v "$MPIEXEC" > /dev/null || { echo "cli_flows: no mpiexec"; exit 1; }
CFG=$SRC/tests/configs/flow_synth.yaml
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
RUN_TIMEOUT=120
losses() { grep '"samples_per_s"' "$1/metrics.jsonl" | sed 's/.*"loss": \([^,]*\),.*/\1/'; }
# the sanitizer build leaves out 4 ranks: the 2-rank run covers the same collectives
NPS="2 4"; [ "${LARCH_TEST_SANITIZED:-OFF}" = ON ] && NPS=2
for np in 1 $NPS; do
  run $np "$TMP/r$np" || fail "$np ranks: $(tail -3 "$TMP/r$np.log")"
done
for np in $NPS; do
  n=$(losses "$TMP/r1" | wc -l)
  worst=$(paste <(losses "$TMP/r1") <(losses "$TMP/r$np") | awk '{d = $1 - $2; if (d < 0) d = -d; r = d / ($1 > 0 ? $1 : 1); if (r > w) w = r} END {printf "%.3g", w + 0}')
  [ "$n" -eq 8 ] && awk -v w="$worst" 'BEGIN{exit !(w <= 1e-5)}' && pass "1 vs $np ranks: $n steps of bits/dim, worst relative difference $worst" \
    || fail "1 vs $np ranks: $n steps, worst relative difference $worst"
done
first=$(losses "$TMP/r1" | head -1); last=$(losses "$TMP/r1" | tail -1)
awk -v a="$first" -v b="$last" 'BEGIN{exit !(b < a)}' && pass "bits/dim falls: $first -> $last" || fail "bits/dim $first -> $last"

CK=$(ck "$TMP/r1" 8)
info=$("$LARCH" ckpt info "$CK" 2>&1)
grep -q "an1.initialized" <<<"$info" && grep -q "ic1.perm" <<<"$info" && grep -q "split1.weight" <<<"$info" \
  && pass "checkpoint holds actnorm/invconv buffers and the split prior" || fail "checkpoint tensors: $info"
test_loss=$(grep 'test loss' "$TMP/r1.log" | tail -1 | sed 's/.*test loss \([0-9.]*\).*/\1/')
ev=$("$LARCH" eval "$CFG" --checkpoint "$CK" --out "$TMP/ev" 2>&1)
ev_loss=$(grep 'test loss' <<<"$ev" | tail -1 | sed 's/.*test loss \([0-9.]*\).*/\1/')
[ -n "$test_loss" ] && [ "$test_loss" = "$ev_loss" ] && pass "larch eval: test bits/dim $ev_loss as at the end of training" \
  || fail "eval test loss '$ev_loss' vs training '$test_loss': $ev"

# sampling: the synthetic data has 2 channels (no PNG grid); a 1-channel variant
expect 1 "1 or 3 channels" -- "$LARCH" sample "$CFG" --checkpoint "$CK" --png "$TMP/g.png"
expect 2 "--temperature 11" -- "$LARCH" sample "$CFG" --checkpoint "$CK" --png "$TMP/g.png" --temperature 11
expect 2 "usage" -- "$LARCH" sample "$CFG" --png "$TMP/g.png"
expect 1 "not a normalizing flow" -- "$LARCH" sample "$SRC/tests/configs/synth_mlp.yaml" --checkpoint "$CK" --png "$TMP/g.png"
G1=(--set 'data.synthetic.shape=[8, 8, 1]' --set train.max_steps=2)
timeout 60 "$LARCH" train "$CFG" "${G1[@]}" --out "$TMP/g1" > "$TMP/g1.log" 2>&1 || fail "1-channel run: $(tail -3 "$TMP/g1.log")"
expect 0 "sample: 9 samples at temperature 0.5" -- "$LARCH" sample "$CFG" "${G1[@]}" --checkpoint "$(ck "$TMP/g1" 2)" --png "$TMP/g.png" --n 9 --temperature 0.5
head -c 8 "$TMP/g.png" | od -An -c | grep -q "P   N   G" && pass "PNG written" || fail "no PNG"
expect 1 "8-bit pixels" -- "$LARCH" sample "$CFG" --baseline

# the 2-D toy: 300 steps of launch/configs/toy2d_flow.yaml (moons), the density PNG holds most of the mass
TOY=(--set train.max_steps=300)
timeout 60 "$LARCH" train "$SRC/launch/configs/toy2d_flow.yaml" "${TOY[@]}" --out "$TMP/toy" > "$TMP/toy.log" 2>&1 \
  || fail "toy2d run: $(tail -3 "$TMP/toy.log")"
out=$("$LARCH" sample "$SRC/launch/configs/toy2d_flow.yaml" "${TOY[@]}" --checkpoint "$(ck "$TMP/toy" 300)" --n 256 --range 2 \
      --temperature 1 --png "$TMP/toy.png" 2>&1)
mass=$(sed -n 's/.*probability mass in the square \([0-9.]*\).*/\1/p' <<<"$out")
awk -v m="$mass" 'BEGIN{exit !(m > 0.9 && m < 1.02)}' && pass "toy2d moons: density PNG, mass in the square $mass" \
  || fail "toy2d moons: $out"
expect 1 "shape must be [1, 1, 2]" -- "$LARCH" train "$SRC/launch/configs/toy2d_flow.yaml" --set 'data.synthetic.shape=[1, 1, 3]' \
  --set train.max_steps=1 --out "$TMP/bad3"
expect 1 "toy2d" -- "$LARCH" train "$SRC/launch/configs/toy2d_flow.yaml" --set data.synthetic.toy2d=spiral --out "$TMP/bad4"

# flow_nll needs a flow
expect 1 "the model is not a flow" -- "$LARCH" train "$SRC/tests/configs/synth_mlp.yaml" --set loss.type=flow_nll --out "$TMP/bad"
expect 1 "set data.mean: [0] and data.std: [1]" -- "$LARCH" train "$SRC/launch/configs/fmnist_glow.yaml" --set 'data.mean=[]' --set 'data.std=[]' --set train.max_steps=1 --out "$TMP/bad2"
finish cli_flows
