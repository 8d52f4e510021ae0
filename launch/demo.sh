#!/usr/bin/env bash
# The main job: install what is missing, build larch, and train the
# Fashion-MNIST MLP on 2 MPI ranks (1 OpenBLAS thread each) for one epoch.
# Usage: bash launch/demo.sh [extra larch train options, e.g. --set train.epochs=2]
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target larch_cli
# Open MPI refuses root without these; --oversubscribe allows more ranks than cores.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
RANKS=${RANKS:-2}
exec mpiexec -n "$RANKS" --oversubscribe --bind-to none -x OPENBLAS_NUM_THREADS=1 \
  build/larch train launch/configs/fmnist_mlp.yaml --set train.epochs=1 --out runs/demo "$@"
