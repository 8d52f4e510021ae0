#!/usr/bin/env bash
# cli_compress.sh LARCH SRC - `larch compress`: the measurement table and
# its JSON lines, --add, and the usage and input errors (the methods have
# tests of their own: cli_quant.sh, cli_prune.sh, cli_shrink.sh).
source "$(dirname "$0")/cli_helpers.bash"
CFG=$SRC/tests/configs/synth_mlp.yaml
"$LARCH" train "$CFG" --out "$TMP/a" > "$TMP/a.log" 2>&1 || fail "training the model to compress"
CK=$(ls "$TMP"/a/checkpoints/ckpt-*.h5 | tail -1)

out=$("$LARCH" compress "$CFG" --checkpoint "$CK" --add "again=$CFG:$CK" --batch 32 --reps 3 --rounds 2 \
      --json "$TMP/t.jsonl" 2>&1)
if [ $? -eq 0 ] && grep -q '^| original | ' <<<"$out" && grep -q '^| again | ' <<<"$out"; then pass "table of the original and an --add model"
else fail "table: $out"; fi
acc=$(grep -o '"accuracy": [0-9.]*' "$TMP/a/metrics.jsonl" | tail -1 | awk '{print $2}')
got=$(head -1 "$TMP/t.jsonl" | grep -o '"accuracy": [0-9.]*' | awk '{print $2}')
# the training run's last evaluation scored the same parameters on the same test split
if [ -n "$acc" ] && awk -v a="$acc" -v b="$got" 'BEGIN{exit !((a-b)^2 < 1e-12)}'; then pass "accuracy $got = the run's $acc"
else fail "accuracy $got vs the run's $acc"; fi
[ "$(wc -l < "$TMP/t.jsonl")" -eq 2 ] && grep -q '"params": 676, ' "$TMP/t.jsonl" \
  && pass "JSON lines: 2 models, 676 parameters" || fail "JSON: $(cat "$TMP/t.jsonl")"

expect 1 "unknown compression method 'nope'" -- "$LARCH" compress "$CFG" --checkpoint "$CK" --method nope
expect 1 "expected LABEL=CONFIG:CHECKPOINT" -- "$LARCH" compress "$CFG" --checkpoint "$CK" --add "x$CK"
expect 1 "cannot read $TMP/missing.h5" -- "$LARCH" compress "$CFG" --checkpoint "$CK" --add "x=$CFG:$TMP/missing.h5"
expect 1 "$TMP/missing.h5" -- "$LARCH" compress "$CFG" --checkpoint "$TMP/missing.h5"
expect 2 "--batch 0: expected an integer" -- "$LARCH" compress "$CFG" --checkpoint "$CK" --batch 0
expect 2 "usage: larch compress" -- "$LARCH" compress "$CFG"
expect 2 "unknown option '--frobnicate'" -- "$LARCH" compress "$CFG" --checkpoint "$CK" --frobnicate 1
expect 1 "runs in one process" -- timeout 120 "$MPIEXEC" -n 2 --oversubscribe "$LARCH" compress "$CFG" --checkpoint "$CK"
finish cli_compress
