#!/usr/bin/env bash
# cli_config.sh LARCH SRC - `larch config` / `train` / `schedule` on configs
# that are valid but set keys without effect (warned once, naming the key),
# and on input that is not a config at all: /dev/zero, bad UTF-8, empty
# --set path parts, duplicate layer names, huge values; `config` rejects what
# `train` would; `schedule --png` to an unwritable path names the path.
. "$(dirname "$0")/cli_helpers.bash"
CFG=$SRC/tests/configs/synth_mlp.yaml
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

# keys of another optimizer or schedule: a warning naming the key, its place and why
out=$("$LARCH" config "$SRC/launch/configs/fmnist_mlp.yaml" --set optim.name=lamb --set optim.lr=0.01 2>&1 >/dev/null); st=$?
[ $st -eq 0 ] && pass "fmnist_mlp.yaml with optim.name=lamb validates" || fail "optim.name=lamb -> exit $st: $out"
grep -qF "larch: warning: $SRC/launch/configs/fmnist_mlp.yaml:17: optim.nesterov is ignored: it applies to sgd only, and optim.name is 'lamb'" <<<"$out" \
  && pass "nesterov reported as ignored" || fail "no nesterov warning: $out"
expect 0 "warning: --set sched.gamma=0.5: sched.gamma is ignored: it applies to step, multistep, exponential only, and sched.name is 'cosine'" \
  -- "$LARCH" config "$CFG" --set sched.name=cosine --set sched.gamma=0.5
expect 0 "loss.label_smoothing is ignored: it applies to softmax_ce only" \
  -- "$LARCH" config "$CFG" --set 'loss={type: mse, label_smoothing: 0.1}'
expect 1 "unknown key 'optim.nesterof'" -- "$LARCH" config "$CFG" --set optim.nesterof=true
# printed once by a 2-rank run, which trains
if command -v "$MPIEXEC" >/dev/null; then
  out=$("$MPIEXEC" -n 2 --oversubscribe "$LARCH" train "$CFG" --out "$TMP/two" --set optim.name=adam --set optim.momentum=0.5 \
        --set train.max_steps=2 2>&1); st=$?
  n=$(grep -c "warning: --set optim.momentum=0.5: optim.momentum is ignored" <<<"$out")
  [ $st -eq 0 ] && [ "$n" -eq 1 ] && pass "2 ranks: trained, the warning printed once" || fail "2 ranks: exit $st, $n warnings: $out"
fi

# not a config: /dev/zero is refused at its first byte (not read until memory
# runs out; the memory cap turns a regression into a quick failure)
if grep -q __asan_init "$LARCH"; then cap="export ASAN_OPTIONS=\${ASAN_OPTIONS:-}:hard_rss_limit_mb=2000"; else cap="ulimit -v 4000000"; fi
expect 1 "/dev/zero: not a text file (a NUL byte at byte 1)" -- timeout 20 bash -c "$cap; exec \"\$0\" config /dev/zero" "$LARCH"
printf 'train:\n  batch_size: 64\n  seed: 3 # caf\xe9\nmodel: [{type: dense, units: 4}]\n' > "$TMP/latin1.yaml"
expect 1 "latin1.yaml:3: not valid UTF-8 text" -- "$LARCH" config "$TMP/latin1.yaml"
expect 1 "--set optim..lr=1: the key 'optim..lr' has an empty part" -- "$LARCH" config "$CFG" --set optim..lr=1
printf 'model:\n  - {type: dense, name: a, units: 4}\n  - {type: relu}\n  - {type: dense, name: a, units: 4}\n' > "$TMP/dup.yaml"
expect 1 "dup.yaml:4: model.2.name: layer name 'a' is used twice: by model.0 and by model.2" -- "$LARCH" config "$TMP/dup.yaml"
# a 10 MB value is quoted cut short
{ printf 'optim:\n  lr: '; head -c 10000000 /dev/zero | tr '\0' 'x'; printf '\nmodel: [{type: dense, units: 4}]\n'; } > "$TMP/huge.yaml"
out=$("$LARCH" config "$TMP/huge.yaml" 2>&1)
[ ${#out} -lt 300 ] && grep -qF "huge.yaml:2: optim.lr: expected a number, got 'xxxxxxxx" <<<"$out" && grep -qF "...'" <<<"$out" \
  && pass "a 10 MB value: a ${#out}-byte message" || fail "a 10 MB value: ${#out}-byte message: ${out:0:400}"

# `larch config` rejects what `larch train` would
expect 1 "sched.milestones: must be ascending" -- "$LARCH" config "$CFG" --set 'sched.milestones=[3, 1]'
expect 1 "data.classes: expected [lo, hi] with 0 <= lo <= hi < 4" -- "$LARCH" config "$CFG" --set 'data.classes=[3, 2]'
expect 1 "train.accumulate: the batch of 64 is not divisible into 5 micro-batches" -- "$LARCH" config "$CFG" --set train.accumulate=5
expect 1 "own warm phase" -- "$LARCH" config "$CFG" --set sched.name=onecycle --set sched.warmup_epochs=1

# schedule --png: an unwritable path is named, gnuplot is not blamed
expect 1 "--png $TMP/nowhere/lr.png: cannot write: No such file or directory" -- "$LARCH" schedule "$CFG" --png "$TMP/nowhere/lr.png"
out=$("$LARCH" schedule "$CFG" --png "$TMP/nowhere/lr.png" 2>&1)
grep -q gnuplot <<<"$out" && fail "schedule --png still blames gnuplot: $out" || pass "gnuplot not blamed"

finish cli_config
