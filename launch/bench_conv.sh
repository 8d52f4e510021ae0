#!/usr/bin/env bash
# The convolution benchmarks of docs/performance.md: `larch bench step` on
# both convolution backends (im2col + OpenBLAS, oneDNN) and PyTorch's step on
# the same models (launch/bench_torch_step.py, when /usr/bin/python3 imports
# torch), interleaved round by round so that all see the same machine load:
#   fmnist_cnn      batch 256, 2 threads (with per-layer times)
#   cifar_resnet20  batch 128, 1 and 2 threads
# Every run prints JSON lines; each line gets "round" and "case" fields. At
# the end one "summary" line per case gives the best samples/s of each
# side over the rounds and the ratios (larch / PyTorch, oneDNN / OpenBLAS).
#
# Usage: bash launch/bench_conv.sh [build dir (build)] [rounds (3)]
# Threads: larch's --threads sets OpenBLAS's; OMP_NUM_THREADS sets oneDNN's
# and PyTorch's (with torch.set_num_threads), all to the case's count.
# An inherited OPENBLAS_CORETYPE is removed (LARCH_KEEP_CORETYPE=1 keeps it);
# larch's JSON says which OpenBLAS kernels ran ("blas").
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
ROUNDS=${2:-3}
[ "${LARCH_KEEP_CORETYPE:-0}" = 1 ] || unset OPENBLAS_CORETYPE
[ -x "$B/larch" ] || { echo "bench_conv: $B/larch not found (build first)" >&2; exit 1; }
PY=/usr/bin/python3
TORCH=0
if [ -x "$PY" ] && "$PY" -c "import torch" 2>/dev/null; then TORCH=1; else echo "bench_conv: no PyTorch, larch only" >&2; fi
BACKENDS=(openblas)
# oneDNN only when this larch has it (the setting is rejected otherwise)
if LARCH_CONV_BACKEND=onednn "$B/larch" config launch/configs/fmnist_cnn.yaml --set train.conv_backend=onednn >/dev/null 2>&1; then
  BACKENDS+=(onednn)
fi
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT

CASES=("fmnist_cnn 256 2" "cifar_resnet20 128 1" "cifar_resnet20 128 2")
for ((r = 1; r <= ROUNDS; r++)); do
  for c in "${CASES[@]}"; do
    read -r model batch threads <<<"$c"
    tag="$model/b$batch/t$threads"
    layers=()
    if [ "$model" = fmnist_cnn ]; then layers=(--layers); fi
    for be in "${BACKENDS[@]}"; do
      OMP_NUM_THREADS=$threads LARCH_CONV_BACKEND=$be "$B/larch" bench step "launch/configs/$model.yaml" \
        --batch "$batch" --threads "$threads" --rounds 5 "${layers[@]}" 2>/dev/null |
        sed "s|^{|{\"round\":$r,\"case\":\"$tag\",\"side\":\"larch_$be\",|" | tee -a "$OUT"
    done
    if ((TORCH)); then
      OMP_NUM_THREADS=$threads "$PY" launch/bench_torch_step.py "$model" "$threads" --batch "$batch" --rounds 5 |
        sed "s|^{|{\"round\":$r,\"case\":\"$tag\",\"side\":\"torch\",|" | tee -a "$OUT"
    fi
  done
done

# summary: best samples/s per case and side over the rounds
"${PY}" - "$OUT" <<'EOF' 2>/dev/null || awk 'BEGIN{print "bench_conv: no python3 for the summary" > "/dev/stderr"}'
import json, sys
best = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("bench") == "step":
        side = r["side"]
    elif r.get("bench") == "torch_step" and r.get("format") == "best":
        side = "torch"
    else:
        continue
    k = (r["case"], side)
    if r["samples_per_s"] > best.get(k, {}).get("samples_per_s", 0):
        best[k] = r
for case in dict.fromkeys(c for c, _ in best):
    s = {side: r for (c, side), r in best.items() if c == case}
    out = {"bench": "summary", "case": case}
    for side, r in s.items():
        out[side + "_samples_per_s"] = r["samples_per_s"]
        if "ratio_square" in r:
            out[side + "_ratio_square"] = r["ratio_square"]
        if side == "torch":
            out["torch_format"] = r.get("best_of")
    if "torch" in s:
        for side in s:
            if side != "torch":
                out[side + "_vs_torch"] = round(s[side]["samples_per_s"] / s["torch"]["samples_per_s"], 3)
    if "larch_onednn" in s and "larch_openblas" in s:
        out["onednn_vs_openblas"] = round(s["larch_onednn"]["samples_per_s"] / s["larch_openblas"]["samples_per_s"], 3)
    print(json.dumps(out))
EOF
