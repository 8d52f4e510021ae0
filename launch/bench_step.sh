#!/usr/bin/env bash
# The four training-step figures of the foundation issue, each one JSON line
# from `larch bench step` (samples/s, GFLOP/s, and sgemm on the model's own
# GEMM shapes and on a square matrix, measured in the same run).
# Usage: bash launch/bench_step.sh [build dir, default build]
# An inherited OPENBLAS_CORETYPE (some environments pin Haswell) is removed,
# so that larch can select OpenBLAS's AVX-512 kernels where the CPU has them;
# set LARCH_KEEP_CORETYPE=1 to keep it.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
[ "${LARCH_KEEP_CORETYPE:-0}" = 1 ] || unset OPENBLAS_CORETYPE
"$B/larch" bench step launch/configs/fmnist_mlp.yaml --batch 256 --threads 1
"$B/larch" bench step launch/configs/fmnist_mlp.yaml --batch 256 --threads 2
"$B/larch" bench step launch/configs/fmnist_mlp.yaml --batch 4096 --threads 2
"$B/larch" bench step launch/configs/fmnist_cnn.yaml --batch 256 --threads 2 --layers
