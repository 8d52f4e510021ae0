#!/usr/bin/env bash
# Hard vs soft vs no parameter sharing between two tasks on Fashion-MNIST
# (docs/metric_learning.md, "Soft sharing"): the 10-class label (fine) and
# the 4-class coarse label derived from it, trained with one recipe:
#   hard      launch/configs/fmnist_hard_sharing.yaml: one trunk, two heads
#   soft      launch/configs/fmnist_soft_sharing.yaml: a tower per task, the
#             corresponding layers tied by coef * sum ||A - B||^2 (COEFS)
#   separate  the same towers with coef 0: two independent networks
# Each variant runs SEEDS seeds in each data regime of REGIMES (NAME:PER_CLASS:
# EPOCHS; default "full:0:1 few:100:40": all 60,000 training images for one
# epoch, and the first 100 of each class, 1,000 images, for 40 epochs, where
# sharing has more to give); writes OUT/results.jsonl (one JSON line per run)
# and OUT/results.md (mean and spread of both tasks' test accuracy).
# Usage: bash launch/experiments/sharing.sh [OUT]   (default docs/sharing)
# Environment: BUILD (build), THREADS (cores), SEEDS ("1 2 3"),
#   COEFS ("0.001 0.01 0.1"), REGIMES.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-docs/sharing}
BUILD=${BUILD:-build}
THREADS=${THREADS:-$(nproc)}
SEEDS=${SEEDS:-"1 2 3"}
COEFS=${COEFS:-"0.001 0.01 0.1"}
[ "${LARCH_KEEP_CORETYPE:-0}" = 1 ] || unset OPENBLAS_CORETYPE
[ -x "$BUILD/larch" ] || { echo "sharing.sh: $BUILD/larch not built (cmake first)" >&2; exit 1; }
mkdir -p "$OUT"
TMP=$(mktemp -d /tmp/larch_sharing_XXXXXX); trap 'rm -rf "$TMP"' EXIT
JSONL=$OUT/results.jsonl
: > "$JSONL"
C=launch/configs
REGIMES=${REGIMES:-"full:0:1 few:100:40"}
EXTRA=(--set train.threads="$THREADS" --set checkpoint.at_end=false)
acc() { grep "\"task\": \"$2\"" "$1/metrics.jsonl" | tail -1 | sed 's/.*"accuracy": \([0-9.]*\).*/\1/'; }
run() {  # run VARIANT SEED CONFIG [--set ...] (REGIME, PER_CLASS, EPOCHS set by the loop)
  local v=$1 seed=$2 cfg=$3; shift 3
  local dir=$TMP/${REGIME}_${v}_$seed t0 t1
  t0=$(date +%s.%N)
  "$BUILD/larch" train "$cfg" --out "$dir" --set train.seed="$seed" --set data.train_per_class="$PER_CLASS" \
    --set train.epochs="$EPOCHS" "${EXTRA[@]}" "$@" > "$dir.log" 2>&1 \
    || { tail -3 "$dir.log" >&2; exit 1; }
  t1=$(date +%s.%N)
  local params; params=$(grep -o '[0-9]* parameters' "$dir.log" | head -1 | cut -d' ' -f1)
  printf '{"regime": "%s", "variant": "%s", "seed": %s, "fine_accuracy": %s, "coarse_accuracy": %s, "parameters": %s, "wall_s": %.1f}\n' \
    "$REGIME" "$v" "$seed" "$(acc "$dir" fine)" "$(acc "$dir" coarse)" "${params:-null}" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" | tee -a "$JSONL"
}
for R in $REGIMES; do
  IFS=: read -r REGIME PER_CLASS EPOCHS <<<"$R"
  for seed in $SEEDS; do
    run hard "$seed" $C/fmnist_hard_sharing.yaml
    run separate "$seed" $C/fmnist_soft_sharing.yaml --set regularization.0.coef=0
    for c in $COEFS; do run "soft_$c" "$seed" $C/fmnist_soft_sharing.yaml --set regularization.0.coef="$c"; done
  done
done
{
  echo "# Hard, soft and no parameter sharing between two tasks"
  echo
  echo "Made by \`bash launch/experiments/sharing.sh\` ($(date -u +%Y-%m-%d), larch $("$BUILD/larch" --version | cut -d' ' -f2)),"
  echo "seeds $SEEDS; test accuracy of the fine (10 classes) and coarse (4 classes) task after the configs' recipe"
  echo "(Adam 0.002, cosine, batch 256) in each data regime (training images per class and epochs: $REGIMES;"
  echo "per class 0 = all 6,000). Mean over seeds, min-max in brackets."
  echo "How to read it: [docs/metric_learning.md](../metric_learning.md#soft-sharing)."
  echo
  echo "| regime | variant | parameters | fine accuracy | coarse accuracy |"
  echo "|---|---|---|---|---|"
  awk -F'[:,}]' '{ for (i = 1; i < NF; i++) { k = $i; gsub(/[ "{]/, "", k); v = $(i + 1); gsub(/[ "]/, "", v); r[k] = v }
    r["variant"] = r["regime"] " | " r["variant"]; n[r["variant"]]++; p[r["variant"]] = r["parameters"]
    f = r["fine_accuracy"] + 0; c = r["coarse_accuracy"] + 0; sf[r["variant"]] += f; sc[r["variant"]] += c
    if (!(r["variant"] in lf) || f < lf[r["variant"]]) lf[r["variant"]] = f; if (f > hf[r["variant"]]) hf[r["variant"]] = f
    if (!(r["variant"] in lc) || c < lc[r["variant"]]) lc[r["variant"]] = c; if (c > hc[r["variant"]]) hc[r["variant"]] = c
    if (!(r["variant"] in seen)) { seen[r["variant"]] = 1; order[++m] = r["variant"] } }
    END { for (j = 1; j <= m; j++) { v = order[j]
      printf "| %s | %s | %.4f [%.4f-%.4f] | %.4f [%.4f-%.4f] |\n", v, p[v], sf[v] / n[v], lf[v], hf[v], sc[v] / n[v], lc[v], hc[v] } }' "$JSONL"
} > "$OUT/results.md"
cat "$OUT/results.md"
