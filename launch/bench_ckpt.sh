#!/usr/bin/env bash
# bench_ckpt.sh [ROUNDS] [CONFIG] [DIR] - checkpoint write and read speed
# against the disk, on 1, 2 and 4 ranks (docs/checkpoints.md, "Speed").
# ROUNDS (default 2) times over, the rank counts 1, 2, 4 take turns, so
# that the load of a shared machine falls on all of them alike; each run is
# `larch bench ckpt CONFIG --repeat 3` (default CONFIG
# launch/configs/synth_100m.yaml, the 100M-parameter model with Adam, a
# 1.15 GB file), which itself interleaves its save, load and the disk
# reference (the same bytes written with pwrite + fsync by the same number
# of processes, into DIR, default runs/bench_ckpt) and prints one JSON line:
# best-of-3 write_s, read_s, disk_write_s and write_vs_disk (disk time /
# checkpoint time). A first line says where and on what it ran.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}; CONFIG=${2:-launch/configs/synth_100m.yaml}; DIR=${3:-runs/bench_ckpt}
LARCH=${LARCH:-build/larch}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
[ -x "$LARCH" ] || { echo "build larch first (README)" >&2; exit 1; }
mkdir -p "$DIR"
fs=$(df -PT "$DIR" | awk 'NR == 2 { print $2 }')
echo "{\"dir\": \"$DIR\", \"fs\": \"$fs\", \"cores\": $(nproc), \"load_avg\": \"$(cut -d' ' -f1-3 /proc/loadavg)\", \"rounds\": $ROUNDS, \"config\": \"$CONFIG\"}"
for round in $(seq 1 "$ROUNDS"); do
  for np in 1 2 4; do
    if line=$(mpirun -n "$np" --oversubscribe "$LARCH" bench ckpt "$CONFIG" --dir "$DIR" --repeat 3 2>"$DIR.err"); then
      echo "${line%\}}, \"round\": $round}"
    else                                   # say so, and go on with the other runs
      echo "{\"ranks\": $np, \"round\": $round, \"error\": \"$(tail -n 1 "$DIR.err" | tr -d '"\\')\"}"
    fi
  done
done
rm -f "$DIR.err"; rmdir "$DIR" 2>/dev/null || true
