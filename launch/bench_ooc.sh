#!/usr/bin/env bash
# bench_ooc.sh [GB] [RANKS] - out-of-core training against in-memory on the
# same data. Writes a synthetic 32x32x3 image set of about GB gigabytes
# (default 4.3) to runs/ooc/synth.h5 with `larch data synth` (once), then
# prints JSON lines:
#   - the loader alone (`larch data bench`): in memory, out of core with the
#     file dropped from the page cache (cold) and cached (warm);
#   - training launch/configs/synth_ooc_cnn.yaml on RANKS ranks (default 2)
#     in memory and out of core (the file dropped from the page cache
#     before each out-of-core run), alternating, twice each: samples/s of
#     the steady state (the metrics after the first 40 steps) and each
#     rank's peak resident memory (/usr/bin/time).
# The OpenBLAS kernels in use are printed by `larch bench step`; here
# OPENBLAS_NUM_THREADS=1 per rank.
set -euo pipefail
cd "$(dirname "$0")/.."
GB=${1:-4.3}; NP=${2:-2}
LARCH=${LARCH:-build/larch}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
[ -x "$LARCH" ] || { echo "build larch first (README)" >&2; exit 1; }
mkdir -p runs/ooc
F=runs/ooc/synth.h5
N=$(awk -v g="$GB" 'BEGIN { printf "%d", g * 1e9 / 3072 }')
if [ ! -e "$F" ] || [ "$("$LARCH" data info "$F" | awk '/^train:/ {print $2}')" != "$N" ]; then
  "$LARCH" data synth "$F" --train "$N" --test 10000 --shape 32,32,3 --classes 10 --force >&2
fi
bytes=$(stat -c %s "$F")
drop() { dd if="$F" iflag=nocache count=0 status=none; }   # evict the file from the page cache
echo "{\"file\": \"$F\", \"openblas_coretype\": \"${OPENBLAS_CORETYPE:-unset (larch picks)}\", \"bytes\": $bytes, \"train_samples\": $N, \"ranks\": $NP, \"mem_available_kb\": $(awk '/MemAvailable/ {print $2}' /proc/meminfo)}"
"$LARCH" data bench "$F" --in-memory true --batch 256 --steps 400 --augment
drop; "$LARCH" data bench "$F" --in-memory false --batch 256 --steps 400 --augment --cold
"$LARCH" data bench "$F" --in-memory false --batch 256 --steps 400 --augment
train() {   # MODE RUN
  local mode=$1 out=runs/ooc/train_$1_$2
  [ "$mode" = false ] && drop
  rm -rf "$out" "$out.rss"
  mpirun -n "$NP" --oversubscribe /usr/bin/time -a -o "$out.rss" -f "peak_rss_kb %M" "$LARCH" train launch/configs/synth_ooc_cnn.yaml \
    --out "$out" --set data.path="$F" --set data.in_memory=$mode --set train.threads=1 > "$out.log" 2>&1
  local sps rss
  sps=$(awk -F'"samples_per_s": ' '/"samples_per_s"/ { split($2, a, ","); n++; if (n > 2) { s += a[1]; k++ } } END { printf "%.1f", s / k }' "$out/metrics.jsonl")
  rss=$(awk '/^peak_rss_kb/ { printf "%s%.0f", (n++ ? ", " : ""), $2 / 1024 }' "$out.rss")
  echo "{\"train\": \"synth_ooc_cnn\", \"in_memory\": $mode, \"run\": $2, \"samples_per_s\": $sps, \"peak_rss_mb_per_rank\": [$rss]}"
}
for run in 1 2; do train true $run; train false $run; done
