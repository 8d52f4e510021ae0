#!/usr/bin/env bash
# Two builds of larch against each other on fmnist_mlp's training throughput
# (docs/performance.md, "fmnist_mlp: where the rest of the gap went"): per
# pair, `larch bench step` (batch 256, 2 threads, 5 rounds; from NEW: the
# bench has no loader) and then a STEPS-step training run with each build
# (1 rank x 2 threads, order alternating between pairs). Prints one JSON
# line per run and the medians (with ranges) of train / bench and of
# new / old over the pairs.
# Usage: OLD=DIR NEW=DIR bash launch/experiments/e2e_pair.sh [PAIRS]
#   (DIR holds a built `larch`, e.g. a build of the older commit:
#    git worktree add /tmp/old COMMIT && cmake -S /tmp/old -B /tmp/old/build
#    -DCMAKE_BUILD_TYPE=Release && cmake --build /tmp/old/build -j2 --target larch)
# Environment: STEPS (400), OUT (/tmp/larch_e2e_pair.jsonl).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "${1:-}" = -h ] || [ "${1:-}" = --help ] && { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0; }
R=${1:-5} STEPS=${STEPS:-400} OUT=${OUT:-/tmp/larch_e2e_pair.jsonl}
: "${OLD:?set OLD to a directory holding the older larch}" "${NEW:?set NEW to a directory holding the newer larch}"
[ -x "$OLD/larch" ] && [ -x "$NEW/larch" ] || { echo "e2e_pair.sh: $OLD/larch or $NEW/larch missing" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
unset OPENBLAS_CORETYPE
CFG=launch/configs/fmnist_mlp.yaml
RUN=$(mktemp -d /tmp/larch_e2e_pair_XXXXXX); trap 'rm -rf "$RUN"' EXIT
: > "$OUT"
for ((i = 1; i <= R; i++)); do
  out=$(mpiexec --oversubscribe --bind-to none -n 1 "$NEW/larch" bench step $CFG --batch 256 --threads 2 --rounds 5 2> /dev/null | grep '"bench"')
  best=$(sed -n 's/.*"samples_per_s":\([0-9.]*\).*/\1/p' <<<"$out")
  med=$(sed -n 's/.*"samples_per_s_median":\([0-9.]*\).*/\1/p' <<<"$out")
  blas=$(sed -n 's/.*"blas":"\([^"]*\)".*/\1/p' <<<"$out")
  if [ $((i % 2)) -eq 1 ]; then order="old new"; else order="new old"; fi
  for b in $order; do
    if [ "$b" = old ]; then dir=$OLD; else dir=$NEW; fi
    rm -rf "$RUN/run"
    t=$(mpiexec --oversubscribe --bind-to none -n 1 "$dir/larch" train $CFG --out "$RUN/run" --set train.max_steps="$STEPS" \
          --set train.threads=2 --set train.log_every=20 --set checkpoint.at_end=false 2>&1 | grep '^time: ')
    sps=$(sed -n 's/.* steps (\([0-9.]*\) samples\/s; loader wait.*/\1/p' <<<"$t")
    w=$(sed -n 's/.*loader wait \([0-9.]*\) ms\/step.*/\1/p' <<<"$t")
    echo "{\"pair\":$i,\"build\":\"$b\",\"blas\":\"$blas\",\"bench\":$best,\"bench_median\":$med,\"train\":$sps,\"wait_ms\":$w,\"load\":$(cut -d' ' -f1 /proc/loadavg)}" | tee -a "$OUT"
  done
done
/usr/bin/python3 - "$OUT" <<'PY'
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1])]
for b in ("old", "new"):
    r = [x for x in rows if x["build"] == b]
    rb = [x["train"] / x["bench"] for x in r]; rm = [x["train"] / x["bench_median"] for x in r]
    print(f"{b}: train / bench (best round) median {st.median(rb):.3f} [{min(rb):.3f}-{max(rb):.3f}]; "
          f"train / bench median round {st.median(rm):.3f} [{min(rm):.3f}-{max(rm):.3f}]; loader wait ms median {st.median(x['wait_ms'] for x in r):.3f}")
by = {(x["pair"], x["build"]): x["train"] for x in rows}
nr = [by[p, "new"] / by[p, "old"] for p in sorted({x["pair"] for x in rows})]
print(f"new / old training samples/s, paired: median {st.median(nr):.3f} [{min(nr):.3f}-{max(nr):.3f}]")
PY
