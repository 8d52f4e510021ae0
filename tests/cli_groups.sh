#!/usr/bin/env bash
# cli_groups.sh LARCH SRC - many trainings in one MPI job (dist.groups and the
# sweep section, docs/groups.md) on tests/configs/synth_groups.yaml:
# - a 2 x 2 grid on 2 groups x 1 rank: one run directory per variant and
#   OUT/summary.jsonl with every variant ok;
# - a variant's per-step losses do not depend on the groups or the ranks per
#   group: 2 groups x 1 rank = 1 group x 2 ranks = 2 groups x 2 ranks = a
#   plain `larch train` of the variant's recorded config.yaml on 1 rank
#   (1e-5 relative), with a bootstrap resample and dropout in the run;
# - seeds x bootstrap expand to their product, and different resamples train
#   differently;
# - failures: a bad grid value, a NaN and an unwritable run directory are
#   reported per variant in the summary, the other variants finish, the exit
#   status is 1; an injected fault on one rank of a 2-rank group fails only
#   that group's variants; dist.groups not dividing the ranks and a malformed
#   grid are config errors.
# The sanitizer build (LARCH_TEST_SANITIZED=ON) leaves out the 4-rank run:
# the fault goes to a 1-rank group of a 2-rank job instead.
. "$(dirname "$0")/cli_helpers.bash"
command -v "$MPIEXEC" > /dev/null || { echo "cli_groups: no mpiexec"; exit 1; }
CFG=$SRC/tests/configs/synth_groups.yaml
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
RUN_TIMEOUT=120
V='lr=0.05,units=16'
losses() { grep '"samples_per_s"' "$1/metrics.jsonl" | sed 's/.*"loss": \([^,]*\),.*/\1/'; }
compare() {  # compare A B WHAT: per-step losses within 1e-5 relative
  local n; n=$(losses "$1" | wc -l)
  if [ "$n" -lt 12 ]; then fail "$3: only $n steps logged in $1"; return; fi
  local worst; worst=$(paste <(losses "$1") <(losses "$2") | awk '{d = $1 - $2; if (d < 0) d = -d; r = d / ($1 > 0 ? $1 : 1); if (r > w) w = r} END {printf "%.3g", w + 0}')
  awk -v w="$worst" 'BEGIN{exit !(w <= 1e-5)}' && pass "$3: $n steps, worst relative difference $worst" \
    || fail "$3: worst relative loss difference $worst over $n steps"
}

# 2 groups x 1 rank: the 2 x 2 grid, plus failing variants (a bad value, a
# NaN, an unwritable run directory) that are reported while the others finish
mkdir -p "$TMP/g2x1" && touch "$TMP/g2x1/lr=0.2,units=16" "$TMP/g2x1/lr=0.2,units=64"
BAD=(--set 'sweep.grid={optim.lr: [0.1, 0.05, -1, 9000, 0.2], model.fc1.units: [16, 64]}')
expect 1 "6 of 10 variant(s) failed" -- timeout 120 "$MPIEXEC" -n 2 --oversubscribe "$LARCH" train "$CFG" --out "$TMP/g2x1" "${BAD[@]}"
n=$(ls -d "$TMP/g2x1"/lr=0.*/ 2>/dev/null | wc -l)
[ "$n" -eq 4 ] && pass "4 run directories of trained variants" || fail "$n run directories: $(ls "$TMP/g2x1")"
st=$(sed 's/.*"status":"\([a-z ]*\)".*/\1/' "$TMP/g2x1/summary.jsonl" | tr '\n' ' ')
[ "$st" = "ok ok ok ok failed failed failed failed failed failed " ] && pass "summary statuses: $st" || fail "statuses: $st"
grep -q '"settings":{"optim.lr":0.05,"model.fc1.units":64}' "$TMP/g2x1/summary.jsonl" && pass "summary records the settings" \
  || fail "settings missing: $(head -2 "$TMP/g2x1/summary.jsonl")"
grep -q '"error":"--set optim.lr=-1: optim.lr: -1 is out of range' "$TMP/g2x1/summary.jsonl" && pass "bad value: its message" || fail "no bad-value message"
grep -q '"error":"the training loss is -\?nan' "$TMP/g2x1/summary.jsonl" && pass "NaN: its message" || fail "no NaN message: $(cat "$TMP/g2x1/summary.jsonl")"
grep -q 'lr=0.2,units=16/train.log: cannot write' "$TMP/g2x1/summary.jsonl" && pass "I/O error: its message" || fail "no I/O message"
[ -f "$TMP/g2x1/$V/checkpoints/ckpt-00000012.h5" ] && [ -s "$TMP/g2x1/$V/train.log" ] && pass "the variant's checkpoint and log" \
  || fail "variant files: $(ls -R "$TMP/g2x1/$V")"

# the same variant on 1 group x 2 ranks, on 2 groups x 2 ranks (with a
# fault injected on world rank 3: group 1's rank 1, at step 5, failing group
# 1's variants only) and as a plain run of its recorded config.yaml
run 2 "$TMP/g1x2" --set dist.groups=1 || fail "1 group x 2 ranks: $(tail -5 "$TMP/g1x2.log")"
# (the sanitizer build injects the fault on 2 groups x 1 rank instead: world rank 1, group 1)
if [ "${LARCH_TEST_SANITIZED:-OFF}" = ON ]; then NP=2 FAULT=1:5:grad_sum; else NP=4 FAULT=3:5:grad_sum; fi
LARCH_FAULT=$FAULT expect 1 "2 of 4 variant(s) failed" -- timeout 120 "$MPIEXEC" -n $NP --oversubscribe "$LARCH" train "$CFG" --out "$TMP/g2x2"
st=$(sed 's/.*"status":"\([a-z ]*\)".*/\1/' "$TMP/g2x2/summary.jsonl" | tr '\n' ' ')
[ "$st" = "ok failed ok failed " ] && pass "fault in group 1: $st" || fail "fault statuses: $st"
grep -q 'injected fault: grad_sum failed at step 5' "$TMP/g2x2/summary.jsonl" && pass "fault: its message" || fail "no fault message"
timeout 60 "$LARCH" train "$TMP/g2x1/$V/config.yaml" --out "$TMP/lone" > "$TMP/lone.log" 2>&1 || fail "lone run: $(tail -3 "$TMP/lone.log")"
compare "$TMP/g2x1/$V" "$TMP/g1x2/$V" "2 groups x 1 rank vs 1 group x 2 ranks"
compare "$TMP/g2x1/$V" "$TMP/g2x2/$V" "2 groups x 1 rank vs 2 groups x $((NP / 2)) rank(s)"
compare "$TMP/g2x1/$V" "$TMP/lone" "group run vs a plain run of its config.yaml"

# seeds x bootstrap (1 rank, 1 group): 2 x 2 variants; other resamples train differently
SB=(--set dist.groups=1 --set 'sweep={seeds: [1, 2], bootstrap: 2}')
timeout 60 "$LARCH" train "$CFG" --out "$TMP/sb" "${SB[@]}" > "$TMP/sb.log" 2>&1 || fail "seeds x bootstrap: $(tail -5 "$TMP/sb.log")"
names=$(ls "$TMP/sb" | grep -v summary | tr '\n' ' ')
[ "$names" = "boot=0,seed=1 boot=0,seed=2 boot=1,seed=1 boot=1,seed=2 " ] && pass "seeds x bootstrap: $names" || fail "variants: $names"
grep -q "^$V *ok" "$TMP/g1x2.log" && grep -q "^boot=1,seed=2 *ok" "$TMP/sb.log" && pass "summary tables printed" || fail "no table rows"
if cmp -s <(losses "$TMP/sb/boot=0,seed=1") <(losses "$TMP/sb/boot=1,seed=1"); then fail "bootstrap 0 and 1 trained alike"
else pass "bootstrap resamples 0 and 1 train differently"; fi

expect 1 "dist.groups: 2 groups do not divide the 1 ranks" -- "$LARCH" train "$CFG" --out "$TMP/x"
expect 1 "sweep.grid.optim.lr: expected a non-empty list" -- "$LARCH" config "$CFG" --set 'sweep.grid={optim.lr: []}'
expect 1 "sweep.grid: expected a mapping" -- "$LARCH" config "$CFG" --set 'sweep.grid=[1, 2]'
expect 1 "sweep: 4000000 variants, more than 100000" -- "$LARCH" config "$CFG" --set 'sweep.seeds=[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]' --set sweep.bootstrap=100000
finish cli_groups
