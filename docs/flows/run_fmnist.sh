#!/usr/bin/env bash
# docs/flows/run_fmnist.sh [LARCH] [STEPS] [KS] - the Fashion-MNIST numbers of
# docs/flows.md in one run: the per-pixel categorical baseline fitted on the
# training set, then launch/configs/fmnist_glow.yaml's recipe with K steps
# per level for each K in KS (default "1 2 3 4"; K = 3 is the config itself),
# and K = 3 without the dequantization's logit transform (the recipe before
# the fix), each trained for STEPS steps (default 1500), test bits/dim on the
# whole test set (10,000 images), wall times, and a sample grid of each.
# Run from the repository root; outputs in ${OUT:-runs/flows}.
set -euo pipefail
LARCH=${1:-build/larch}
STEPS=${2:-1500}
KS=${3:-1 2 3 4}
OUT=${OUT:-runs/flows}
CFG=launch/configs/fmnist_glow.yaml
mkdir -p "$OUT"

# gen K OUT [nologit]: the config with K (actnorm, invconv, coupling) steps per level
gen() {
  local K=$1 out=$2 hid l i s
  hid=$(grep -m1 -o 'hidden: [0-9]*' "$CFG" | grep -o '[0-9]*')
  sed '/^model:/,$d' "$CFG" > "$out"
  echo "model:" >> "$out"
  if [ "${3:-}" = nologit ]; then grep -E 'name: deq\b' "$CFG" | sed -E 's/, logit: [0-9.e+-]*\}.*$/}/' >> "$out"
  else grep -E 'name: deq\b' "$CFG" >> "$out"; fi
  for l in 1 2; do
    if [ $l = 1 ]; then grep -E 'name: sq1\b' "$CFG" >> "$out"; else grep -E 'name: (split1|sq2)\b' "$CFG" >> "$out"; fi
    for ((i = 0; i < K; i++)); do
      s=$(printf "\\x$(printf %x $((97 + i)))")
      printf '  - {type: actnorm, name: an%s%s}\n  - {type: invconv, name: ic%s%s}\n  - {type: coupling, name: cp%s%s, hidden: %s}\n' \
        $l "$s" $l "$s" $l "$s" "$hid" >> "$out"
    done
  done
  sed -n '/^loss:/,$p' "$CFG" >> "$out"
}
# the generator must reproduce the config itself for K = 3
gen 3 "$OUT/check_k3.yaml"
if ! diff <("$LARCH" config "$CFG") <("$LARCH" config "$OUT/check_k3.yaml") > /dev/null; then
  echo "run_fmnist.sh: the generated K = 3 config differs from $CFG" >&2; exit 1
fi

echo "== baseline"
"$LARCH" sample "$CFG" --baseline | tee "$OUT/baseline.txt"
run() {   # run LABEL CONFIG
  local label=$1 cfg=$2 start end ck
  echo "== $label: $cfg, $STEPS steps"
  start=$(date +%s.%N)
  # epochs: enough for STEPS (937 steps of 64 per epoch); the cosine schedule spans max_steps
  "$LARCH" train "$cfg" --set train.max_steps="$STEPS" --set train.epochs=$(( (STEPS + 936) / 937 )) \
    --set train.log_every=250 --out "$OUT/$label" > "$OUT/$label.log" 2>&1
  end=$(date +%s.%N)
  printf 'train loss (one batch) at steps'
  grep '"samples_per_s"' "$OUT/$label/metrics.jsonl" | sed 's/{"step": \([0-9]*\),.*"loss": \([^,]*\),.*/ \1: \2/' | tr -d '\n'
  echo
  grep -E '^eval|^time:' "$OUT/$label.log"
  printf '%s: %s steps in %.0f s wall\n' "$label" "$STEPS" "$(echo "$end - $start" | bc)"
  ck=$(printf '%s/%s/checkpoints/ckpt-%08d.h5' "$OUT" "$label" "$STEPS")
  "$LARCH" sample "$cfg" --checkpoint "$ck" --n 64 --temperature 0.7 --png "$OUT/samples_$label.png"
}
for K in $KS; do
  cfg=$CFG
  [ "$K" != 3 ] && { cfg=$OUT/fmnist_glow_k$K.yaml; gen "$K" "$cfg"; }
  run "k$K" "$cfg"
done
gen 3 "$OUT/fmnist_glow_k3_nologit.yaml" nologit
run k3_nologit "$OUT/fmnist_glow_k3_nologit.yaml"
