#!/usr/bin/env bash
# docs/report_example/make.sh - the example of docs/watching.md: fmnist_cnn
# and fmnist_mlp trained for 2 epochs on 2 MPI ranks (evaluating every 78
# steps, logging every 10), the CNN's HTML report and both runs' plots.
# Writes runs/fmnist_{cnn,mlp}_example and copies the small files here.
# Run from the repository root after building (build/larch).
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
D=docs/report_example
for m in cnn mlp; do
  rm -rf "runs/fmnist_${m}_example"
  mpiexec -n 2 --oversubscribe build/larch train "launch/configs/fmnist_$m.yaml" --set train.epochs=2 \
    --set train.eval_every=78 --set train.log_every=10 --out "runs/fmnist_${m}_example"
done
build/larch report runs/fmnist_cnn_example --out "$D/report.html"
build/larch plot runs/fmnist_cnn_example --png "$D/fmnist_cnn.png"
build/larch plot runs/fmnist_cnn_example runs/fmnist_mlp_example --png "$D/cnn_vs_mlp_time.png" --x time
for f in metrics.jsonl run.json config.yaml; do cp "runs/fmnist_cnn_example/$f" "$D/$f"; done
