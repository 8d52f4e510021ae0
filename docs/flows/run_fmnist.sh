#!/usr/bin/env bash
# docs/flows/run_fmnist.sh [LARCH] [STEPS] - the Fashion-MNIST numbers of
# docs/flows.md in one run: the per-pixel categorical baseline fitted on the
# training set, then launch/configs/fmnist_glow.yaml (2 levels of K = 3 steps)
# and its K = 1 variant trained for STEPS steps (default 400) each, test
# bits/dim on the whole test set, wall times, and a sample grid of each.
# Run from the repository root; outputs in ${OUT:-runs/flows}.
set -euo pipefail
LARCH=${1:-build/larch}
STEPS=${2:-400}
OUT=${OUT:-runs/flows}
CFG=launch/configs/fmnist_glow.yaml
mkdir -p "$OUT"
echo "== baseline"
"$LARCH" sample "$CFG" --baseline | tee "$OUT/baseline.txt"
# K = 1: the same config without the second and third step of each level
grep -v -E 'name: (an|ic|cp)[12][bc]\b' "$CFG" > "$OUT/fmnist_glow_k1.yaml"
for K in 1 3; do
  cfg=$CFG; [ "$K" = 1 ] && cfg=$OUT/fmnist_glow_k1.yaml
  echo "== K = $K steps per level: $cfg"
  start=$(date +%s.%N)
  "$LARCH" train "$cfg" --set train.max_steps="$STEPS" --set train.log_every=100 --out "$OUT/k$K" > "$OUT/k$K.log" 2>&1
  end=$(date +%s.%N)
  grep -E '^eval|^time:|^done:' "$OUT/k$K.log"
  printf 'K = %s: %s steps in %.0f s wall\n' "$K" "$STEPS" "$(echo "$end - $start" | bc)"
  ck=$(printf '%s/k%s/checkpoints/ckpt-%08d.h5' "$OUT" "$K" "$STEPS")
  "$LARCH" sample "$cfg" --checkpoint "$ck" --n 64 --temperature 0.7 --png "$OUT/samples_k$K.png"
done
