#!/usr/bin/env bash
# cli_optim.sh LARCH SRC - optimizers and schedules from the command line:
# every optimizer trains the synthetic MLP (the loss must fall below half of
# its first value), config errors of the optim/sched sections name the file,
# line and key, and `larch schedule` prints the per-step rates.
. "$(dirname "$0")/cli_helpers.bash"
CFG=$SRC/tests/configs/synth_mlp.yaml
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

# every optimizer, with a schedule, learns the synthetic task
for spec in "sgd 0.1 cosine" "adam 0.01 step" "adamw 0.01 multistep" "nadam 0.01 exponential" \
            "radam 0.01 sgdr" "adamod 0.03 onecycle" "lars 2 poly" "lamb 0.02 poly"; do
  set -- $spec
  W=0.5; [ "$3" = onecycle ] && W=0
  out="$TMP/run_$1"
  if "$LARCH" train "$CFG" --out "$out" --set optim.name=$1 --set optim.lr=$2 --set optim.momentum=0.9 \
       --set sched.name=$3 --set sched.warmup_epochs=$W --set train.log_every=1 --set train.epochs=4 \
       --set sched.gamma=0.5 --set sched.restart_epochs=2 > "$out.log" 2>&1; then
    first=$(grep -m1 '"samples_per_s"' "$out/metrics.jsonl" | sed 's/.*"loss": \([^,]*\),.*/\1/')
    last=$(grep '"samples_per_s"' "$out/metrics.jsonl" | tail -1 | sed 's/.*"loss": \([^,]*\),.*/\1/')
    if awk -v a="$first" -v b="$last" 'BEGIN{exit !(b < 0.5 * a)}'; then pass "$1 + $3: loss $first -> $last"
    else fail "$1 + $3: loss $first -> $last did not halve"; fi
  else
    fail "$1 + $3: training failed: $(tail -2 "$out.log")"
  fi
done
# one-cycle says once in the log what it does to the momentum (beta1 here); moms: off keeps the optimizer's
grep -q "^one-cycle: beta1 follows sched.moms 0.95 -> 0.85 -> 0.95, in place of optim.beta1 = 0.9" "$TMP/run_adamod.log" \
  && pass "one-cycle names the beta1 it applies" || fail "no one-cycle momentum line: $(head -3 "$TMP/run_adamod.log")"
"$LARCH" train "$CFG" --out "$TMP/moms_off" --set sched.name=onecycle --set sched.moms=off --set train.epochs=1 \
  > "$TMP/moms_off.log" 2>&1 || fail "moms: off run failed: $(tail -2 "$TMP/moms_off.log")"
grep -q "^one-cycle: momentum not cycled (sched.moms: off), it stays optim.momentum = 0.9" "$TMP/moms_off.log" \
  && pass "sched.moms: off keeps optim.momentum" || fail "moms off: $(head -3 "$TMP/moms_off.log")"
[ "$(grep -c '^one-cycle:' "$TMP/moms_off.log")" -eq 1 ] && pass "the one-cycle note is printed once" || fail "one-cycle note count"
# the lr of every step is recorded (log_every 1), and matches `larch schedule`
n_train=$(grep -c '"samples_per_s"' "$TMP/run_lamb/metrics.jsonl")
n_sched=$("$LARCH" schedule "$CFG" --set optim.name=lamb --set optim.lr=0.02 --set sched.name=poly --set sched.warmup_epochs=0.5 --set train.epochs=4 | tail -n +2 | wc -l)
[ "$n_train" -eq "$n_sched" ] && pass "metrics.jsonl has the lr of all $n_train steps" || fail "metrics $n_train vs schedule $n_sched steps"
lr_train=$(grep '"samples_per_s"' "$TMP/run_lamb/metrics.jsonl" | sed -n 7p | sed 's/.*"lr": \([^,]*\),.*/\1/')
lr_sched=$("$LARCH" schedule "$CFG" --set optim.name=lamb --set optim.lr=0.02 --set sched.name=poly --set sched.warmup_epochs=0.5 --set train.epochs=4 | sed -n 8p | cut -d, -f3)
awk -v a="$lr_train" -v b="$lr_sched" 'BEGIN{exit !((a - b) ^ 2 <= (1e-5 * b) ^ 2)}' && pass "step 7 lr $lr_train = schedule $lr_sched" \
  || fail "step 7 lr $lr_train != schedule $lr_sched"

# config errors
printf 'optim:\n  name: adam\n  beta3: 0.5\nmodel: [{type: dense, units: 4}]\n' > "$TMP/wrong_key.yaml"
expect 0 "warning: $TMP/wrong_key.yaml:3: optim.beta3 is ignored: it applies to adamod only, and optim.name is 'adam'" -- "$LARCH" config "$TMP/wrong_key.yaml"
expect 1 "matches no parameter" -- "$LARCH" config "$CFG" --set 'optim.groups=[{match: "conv*", lr_mult: 0.1}]'
expect 1 "own warm phase" -- "$LARCH" train "$CFG" --set sched.name=onecycle --set sched.warmup_epochs=1 --out "$TMP/o"
printf 'sched:\n  name: onecycle\n  moms: of\nmodel: [{type: dense, units: 4}]\n' > "$TMP/moms.yaml"
expect 1 "moms.yaml:3: sched.moms: expected a list (e.g. [1, 2]) or off, got 'of'" -- "$LARCH" config "$TMP/moms.yaml"
expect 1 "sched.name" -- "$LARCH" schedule "$CFG" --set sched.name=linear
expect 2 "usage: larch schedule" -- "$LARCH" schedule
expect 0 "step,epoch,lr,momentum" -- "$LARCH" schedule "$CFG" --every 5
expect 0 "0.95" -- "$LARCH" schedule "$CFG" --set sched.name=onecycle --set sched.warmup_epochs=0
# a frozen group: the rest of the model trains
expect 0 "done:" -- "$LARCH" train "$CFG" --out "$TMP/frozen" --set 'optim.groups=[{match: "fc1.*", freeze: true}]'

finish cli_optim
