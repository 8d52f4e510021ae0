#!/usr/bin/env bash
# Few-shot and zero-shot evaluation on Fashion-MNIST (docs/fewshot.md):
#   1. for each embedding config (default: launch/configs/fewshot_*.yaml:
#      softmax baselines, center loss + softmax, triplet batch-hard,
#      supervised contrastive, ArcFace; all trained on classes 0-4), train
#      it, then evaluate its embedding on the
#      held-out test classes 5-9: 5-way 1-shot and 5-way 5-shot, each with
#      the plain support images and with support augmentation (AUGMENT
#      copies), EPISODES episodes of 15 queries per class, prototype
#      classification (Euclidean unless the spec says cosine); recall@1/@5 over the 5,000
#      held-out test images;
#   2. train the attribute head (ZS_CONFIG, classes 0-6 seen) and classify
#      the unseen classes 7-9 by the nearest attribute row of
#      datasets/fmnist_attributes.csv (Euclidean and cosine), against chance.
# Writes OUT/results.jsonl (the JSON records) and OUT/results.md.
# Usage: bash launch/experiments/fewshot.sh [OUT [CONFIG[:NODE[:DISTANCE]] ...]]
#   OUT defaults to docs/fewshot; NODE (the embedding layer) to `embed`,
#   DISTANCE (euclidean or cosine) to euclidean. A config named by several
#   specs is trained once.
#   A metric-learning config (triplet, supcon, ...) is one more argument.
# Environment: BUILD (build), THREADS (cores), EPISODES (1000), AUGMENT (5),
#   ZS_CONFIG (launch/configs/zeroshot_attributes.yaml; "none" skips step 2),
#   EPOCHS (the configs' own when unset).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-docs/fewshot}
shift || true
CONFIGS=("$@")
C=launch/configs
[ ${#CONFIGS[@]} -gt 0 ] || CONFIGS=($C/fewshot_softmax.yaml $C/fewshot_softmax.yaml:embed:cosine
  $C/fewshot_softmax_balanced.yaml $C/fewshot_center.yaml $C/fewshot_center.yaml:embed:cosine
  $C/fewshot_triplet.yaml:embedding $C/fewshot_supcon.yaml:embedding $C/fewshot_arcface.yaml:embedding)
BUILD=${BUILD:-build}
THREADS=${THREADS:-$(nproc)}
EPISODES=${EPISODES:-1000}
AUGMENT=${AUGMENT:-5}
ZS_CONFIG=${ZS_CONFIG:-launch/configs/zeroshot_attributes.yaml}
ATTR=datasets/fmnist_attributes.csv
[ "${LARCH_KEEP_CORETYPE:-0}" = 1 ] || unset OPENBLAS_CORETYPE   # let larch pick AVX-512 kernels
[ -x "$BUILD/larch" ] || { echo "fewshot.sh: $BUILD/larch not built (cmake first)" >&2; exit 1; }
mkdir -p "$OUT/runs"
JSONL="$OUT/results.jsonl"
: > "$JSONL"
EXTRA=(--set train.threads="$THREADS" --set checkpoint.keep=1)
[ -n "${EPOCHS:-}" ] && EXTRA+=(--set train.epochs="$EPOCHS")

# train CONFIG RUN: trains into RUN (log RUN.log); prints the checkpoint and the last test record
train() {
  "$BUILD/larch" train "$1" --out "$2" "${EXTRA[@]}" > "$2.log" 2>&1 || { tail "$2.log" >&2; exit 1; }
  ls "$2"/checkpoints/ckpt-*.h5 | tail -1
}
field() { sed -n "s/.*\"$1\": \\([0-9.e-]*\\).*/\\1/p" <<<"$2"; }

ROWS=()
declare -A TRAINED=()
for SPEC in "${CONFIGS[@]}"; do
  IFS=: read -r CFG NODE DIST <<<"$SPEC"
  NODE=${NODE:-embed}; DIST=${DIST:-euclidean}
  NAME=$(basename "$CFG" .yaml)
  if [ -z "${TRAINED[$CFG]:-}" ]; then               # one training per config, however many specs name it
    echo "== $NAME: training on its seen classes" >&2
    TRAINED[$CFG]=$(train "$CFG" "$OUT/runs/$NAME")
  fi
  CKPT=${TRAINED[$CFG]}
  TEST=$(grep '"split": "test"' "$OUT/runs/$NAME/metrics.jsonl" | grep -v '"accuracy": null' | tail -1)   # the classifier's task
  SEEN_ACC=$(field accuracy "$TEST")
  for SHOT in 1 5; do
    for AUG in 1 "$AUGMENT"; do
      echo "== $NAME: 5-way $SHOT-shot, support augmentation x$AUG" >&2
      LINE=$("$BUILD/larch" eval "$CFG" --checkpoint "$CKPT" --embedding "$NODE" --classes 5-9 --fewshot 5,"$SHOT" \
             --episodes "$EPISODES" --queries 15 --augment "$AUG" --distance "$DIST" --set train.threads="$THREADS" 2>&1 | tail -1)
      grep -q '^{"eval"' <<<"$LINE" || { echo "fewshot.sh: eval failed: $LINE" >&2; exit 1; }
      echo "{\"config\": \"$NAME\", \"seen_test_accuracy\": ${SEEN_ACC:-null}, \"result\": $LINE}" >> "$JSONL"
      ROWS+=("| $NAME ($NODE, $DIST) | ${SEEN_ACC:-} | 5-way $SHOT-shot | x$AUG | $(printf '%.4f' "$(field accuracy "$LINE")") ± $(printf '%.4f' "$(field ci95 "$LINE")") | $(printf '%.4f' "$(field 'recall@1' "$LINE")") | $(printf '%.4f' "$(field 'recall@5' "$LINE")") |")
      echo "${ROWS[-1]}" >&2
    done
  done
done

ZROWS=()
if [ "$ZS_CONFIG" != none ]; then
  NAME=$(basename "$ZS_CONFIG" .yaml)
  echo "== $NAME: training the attribute head on classes 0-6" >&2
  CKPT=$(train "$ZS_CONFIG" "$OUT/runs/$NAME")
  for DIST in euclidean cosine; do
    for CLS in 7-9 0-6; do
      OUTTXT=$("$BUILD/larch" eval "$ZS_CONFIG" --checkpoint "$CKPT" --embedding attr --classes "$CLS" --zeroshot "$ATTR" \
               --distance "$DIST" --set train.threads="$THREADS" 2>&1)
      LINE=$(tail -1 <<<"$OUTTXT")
      grep -q '^{"eval"' <<<"$LINE" || { echo "fewshot.sh: zero-shot eval failed: $OUTTXT" >&2; exit 1; }
      echo "{\"config\": \"$NAME\", \"result\": $LINE}" >> "$JSONL"
      PER=$(grep '^zeroshot: accuracy' <<<"$OUTTXT" | sed 's/.*per class: //')
      KIND=$([ "$CLS" = 7-9 ] && echo "unseen" || echo "seen (check)")
      ZROWS+=("| $CLS ($KIND) | $DIST | $(printf '%.4f' "$(field accuracy "$LINE")") | $(printf '%.4f' "$(field chance "$LINE")") | $PER |")
      echo "${ZROWS[-1]}" >&2
    done
  done
fi

{
  echo "# Few-shot and zero-shot evaluation on Fashion-MNIST"
  echo
  echo "Made by \`bash launch/experiments/fewshot.sh\` ($(date -u +%Y-%m-%d), larch $("$BUILD/larch" --version | cut -d' ' -f2));"
  echo "how to read it: [docs/fewshot.md](../fewshot.md). The embeddings were trained on classes 0-4"
  echo "(T-shirt/top, Trouser, Pullover, Dress, Coat) and are evaluated on the 5,000 test images of the held-out"
  echo "classes 5-9 (Sandal, Shirt, Sneaker, Bag, Ankle boot): $EPISODES episodes of 5 classes with 15 queries each,"
  echo "prototype classification (nearest class mean) by the distance in the first column; ± is the 95% confidence interval of the"
  echo "mean episode accuracy (1.96 std / sqrt(episodes)). Support augmentation xT averages each support image's"
  echo "embedding over itself and T-1 copies flipped and shifted by up to 2 pixels. Recall@k: the fraction of the"
  echo "5,000 images that have an image of their own class among their k nearest (chance level for 5-way"
  echo "episodes: 0.20). \"seen acc.\" is the classifier's test accuracy on classes 0-4."
  echo
  echo "| embedding | seen acc. | episodes | support aug. | accuracy | recall@1 | recall@5 |"
  echo "|---|---|---|---|---|---|---|"
  for r in "${ROWS[@]}"; do echo "$r"; done
  if [ ${#ZROWS[@]} -gt 0 ]; then
    echo
    echo "## Zero-shot: attributes of unseen classes"
    echo
    echo "\`$(basename "$ZS_CONFIG")\`: an 11-output attribute head (mse on the rows of \`$ATTR\`) trained on"
    echo "classes 0-6; each test image of the listed classes is given the class whose attribute row is nearest to"
    echo "the head's output, among those classes only. Rows 0-6 check the head on the classes it was trained on."
    echo
    echo "| classes | distance | accuracy | chance | per class |"
    echo "|---|---|---|---|---|"
    for r in "${ZROWS[@]}"; do echo "$r"; done
  fi
} > "$OUT/results.md"
cat "$OUT/results.md"
