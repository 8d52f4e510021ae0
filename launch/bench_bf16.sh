#!/usr/bin/env bash
# The bf16 measurements of docs/performance.md ("bf16"): `larch bench step`
# in fp32 and in bf16 (--set train.precision=bf16) on the convolution
# configs, interleaved round by round so that both precisions (and every
# binary given) see the same machine load:
#   fmnist_cnn      batch 256, 1 and 2 threads
#   cifar_resnet20  batch 128, 1 and 2 threads
# Every run prints a JSON line with "round", "case", "bin" and "precision"
# fields added; at the end one "summary" line per case and binary gives the
# best samples/s of each precision over the rounds and bf16 / fp32.
#
# Usage: bash launch/bench_bf16.sh [rounds (3)] [larch binary ...]
#   (default binary: build/larch; give two to compare builds, e.g. before
#   and after a change, in the same run)
# OMP_NUM_THREADS is set to the case's thread count (oneDNN's pool), an
# inherited OPENBLAS_CORETYPE is removed (LARCH_KEEP_CORETYPE=1 keeps it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
shift || true
BINS=("$@")
[ ${#BINS[@]} -gt 0 ] || BINS=(build/larch)
[ "${LARCH_KEEP_CORETYPE:-0}" = 1 ] || unset OPENBLAS_CORETYPE
for b in "${BINS[@]}"; do [ -x "$b" ] || { echo "bench_bf16: $b not found (build first)" >&2; exit 1; }; done
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
CASES=("fmnist_cnn 256 1" "fmnist_cnn 256 2" "cifar_resnet20 128 1" "cifar_resnet20 128 2")
for ((r = 1; r <= ROUNDS; r++)); do
  for c in "${CASES[@]}"; do
    read -r model batch threads <<<"$c"
    for b in "${BINS[@]}"; do
      for prec in fp32 bf16; do
        OMP_NUM_THREADS=$threads "$b" bench step "launch/configs/$model.yaml" --batch "$batch" --threads "$threads" \
          --rounds 3 --set train.precision=$prec 2>/dev/null |
          sed "s|^{|{\"round\":$r,\"case\":\"$model/b$batch/t$threads\",\"bin\":\"$b\",|" | tee -a "$OUT"
      done
    done
  done
done
# summary: best samples/s per case, binary and precision over the rounds
awk 'function field(name,   m) { if (!match($0, "\"" name "\":\"?[^\",}]*")) return ""; m = substr($0, RSTART, RLENGTH);
                                 sub("\"" name "\":\"?", "", m); return m }
  /"bench":"step"/ { k = field("case") " " field("bin"); if (!(k in seen)) { seen[k] = 1; order[++n] = k }
                     p = field("precision"); s = field("samples_per_s") + 0; if (s > best[k, p]) best[k, p] = s }
  END { for (i = 1; i <= n; i++) { split(order[i], kb, " "); f = best[order[i], "fp32"]; h = best[order[i], "bf16"];
          printf "{\"bench\":\"summary\",\"case\":\"%s\",\"bin\":\"%s\",\"fp32_samples_per_s\":%.1f,\"bf16_samples_per_s\":%.1f,\"bf16_vs_fp32\":%.3f}\n",
                 kb[1], kb[2], f, h, (f > 0 ? h / f : 0) } }' "$OUT"
