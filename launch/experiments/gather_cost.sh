#!/usr/bin/env bash
# What the global view of a pairwise loss costs (docs/metric_learning.md,
# "What the gather costs"): launch/configs/fmnist_triplet.yaml on RANKS
# ranks (default 2, one thread each), the batch-hard triplet loss over the
# gathered global batch (`global: true`) against each rank's own part
# (`global: false`), runs alternated round by round (ROUNDS, default 3) so
# both see the same machine load, for each global batch in BATCHES (default
# "128 512"), STEPS steps each (default 60). One JSON line per run (training
# samples/s of the step window, from the run's `time:` line), then one
# summary line per batch: the median ratio true/false over the rounds.
# Usage: bash launch/experiments/gather_cost.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
LARCH=${LARCH:-build/larch}
RANKS=${RANKS:-2}; ROUNDS=${ROUNDS:-3}; BATCHES=${BATCHES:-"128 512"}; STEPS=${STEPS:-60}
[ "${LARCH_KEEP_CORETYPE:-0}" = 1 ] || unset OPENBLAS_CORETYPE
[ -x "$LARCH" ] || { echo "gather_cost.sh: $LARCH not built" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
TMP=$(mktemp -d /tmp/larch_gather_XXXXXX); trap 'rm -rf "$TMP"' EXIT
echo "{\"bench\":\"gather_cost\",\"ranks\":$RANKS,\"cores\":$(nproc),\"loadavg_1min\":$(cut -d' ' -f1 /proc/loadavg)}"
for B in $BATCHES; do
  ratios=()
  for R in $(seq "$ROUNDS"); do
    declare -A sps=()
    for G in true false; do
      mpiexec -n "$RANKS" --oversubscribe --bind-to none "$LARCH" train launch/configs/fmnist_triplet.yaml \
        --out "$TMP/r" --set loss.0.global=$G --set train.batch_size="$B" --set train.max_steps="$STEPS" \
        --set train.threads=1 --set checkpoint.at_end=false --set train.eval_samples=1000 > "$TMP/log" 2>&1 \
        || { tail -3 "$TMP/log" >&2; exit 1; }
      s=$(grep '^time:' "$TMP/log" | sed 's/.* in [0-9]* steps (\([0-9.]*\) samples\/s.*/\1/')
      sps[$G]=$s
      echo "{\"batch\":$B,\"round\":$R,\"global\":$G,\"samples_per_s\":$s}"
      rm -rf "$TMP/r"
    done
    ratios+=("$(awk -v a="${sps[true]}" -v b="${sps[false]}" 'BEGIN{printf "%.3f", a / b}')")
  done
  med=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{v[NR] = $1} END{print v[int((NR + 1) / 2)]}')
  echo "{\"summary\":\"gather_cost\",\"batch\":$B,\"ratio_global_over_local\":[$(IFS=,; echo "${ratios[*]}")],\"median\":$med}"
done
