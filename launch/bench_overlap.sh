#!/usr/bin/env bash
# Gradient-sum overlap, measured (docs/distributed.md, "Overlap"):
#   bash launch/bench_overlap.sh [CONFIG...]   (default: fmnist_mlp and synth_100m)
# For each config and rank count (RANKS, default "1 2 4"; past the cores
# with --oversubscribe) it trains with each way of summing gradients,
# interleaved round by round (ROUNDS, default 3) so every mode sees the same
# machine load:
#   blocking    dist.overlap=false: blocking allreduces after backward
#   iallreduce  dist.comm_thread=false: MPI_Iallreduce started during backward
#   thread      dist.comm_thread=true: the communication thread
#   thread_yield  the same with OMPI_MCA_mpi_yield_when_idle=1 (MPI's polling
#               waits yield the core)
# Weak scaling: PER_RANK samples per rank (default 256; 64 for synth_100m),
# one OpenBLAS thread per rank (THREADS), STEPS steps (the first fifth not
# counted). Per run one JSON line: samples/s (global and per rank) and
# sync_wait_ms, the time a step waits for gradient sums after backward.
# Before the runs, per rank count, the bare sums of the model's gradient
# bytes (larch bench allreduce): one MPI_Allreduce, and the bucketed
# MPI_Iallreduce path with nothing to overlap.
# Then one summary line per config, ranks and mode (best round): the
# gradient-sum time when not overlapped (blocking's wait), the exposed wait,
# and the hidden fraction 1 - wait / blocking wait.
# Open MPI as root: the OMPI_ALLOW_RUN_AS_ROOT variables are set here.
set -euo pipefail
cd "$(dirname "$0")/.."
LARCH=${LARCH:-build/larch}
[ -x "$LARCH" ] || { echo "bench_overlap.sh: $LARCH not built" >&2; exit 1; }
CONFIGS=("$@")
[ ${#CONFIGS[@]} -gt 0 ] || CONFIGS=(launch/configs/fmnist_mlp.yaml launch/configs/synth_100m.yaml)
RANKS=${RANKS:-"1 2 4"}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-1}
MODES=${MODES:-"blocking iallreduce thread thread_yield"}
[ "${LARCH_KEEP_CORETYPE:-0}" = 1 ] || unset OPENBLAS_CORETYPE
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
TMP=$(mktemp -d /tmp/larch_overlap_XXXXXX); trap 'rm -rf "$TMP"' EXIT
blas=$("$LARCH" bench step "${CONFIGS[0]}" --batch 8 --rounds 1 2>/dev/null | grep -o '"blas":"[^"]*"' | head -1 || true)
echo "{\"bench\":\"overlap\",\"host\":\"$(hostname)\",\"cores\":$(nproc),${blas:-\"blas\":\"unknown\"},\"OPENBLAS_CORETYPE\":\"${OPENBLAS_CORETYPE:-}\",\"mpi\":\"$(mpiexec --version 2>&1 | head -1)\",\"loadavg_1min\":$(cut -d' ' -f1 /proc/loadavg)}"

declare -A SPS WAIT
for CONFIG in "${CONFIGS[@]}"; do
  NAME=$(basename "$CONFIG" .yaml)
  case $NAME in synth_100m) PR=${PER_RANK:-64}; ST=${STEPS:-15}; LOG=1; IT=5;; *) PR=${PER_RANK:-256}; ST=${STEPS:-150}; LOG=10; IT=20;; esac
  for R in $RANKS; do       # the bare sums of this model's gradient bytes, before the runs
    [ "$R" -gt 1 ] || continue
    line=$(mpiexec -n "$R" --oversubscribe --bind-to none "$LARCH" bench allreduce "$CONFIG" --max-mib 0.001 --iters "$IT" \
      2>/dev/null | grep "\"config\":\"$CONFIG\"" || true)
    [ -n "$line" ] && awk -v c="$NAME" -v r="$R" -v l="$line" 'BEGIN{
      match(l, /"bytes":[0-9]+/); b = substr(l, RSTART + 8, RLENGTH - 8)
      match(l, /"mpi_us":[0-9.]+/); m = substr(l, RSTART + 9, RLENGTH - 9)
      match(l, /"larch_us":[0-9.]+/); i = substr(l, RSTART + 11, RLENGTH - 11)
      printf "{\"bare\":\"allreduce\",\"config\":\"%s\",\"ranks\":%d,\"bytes\":%d,\"allreduce_ms\":%.3f,\"iallreduce_buckets_ms\":%.3f,\"ratio\":%.2f}\n", c, r, b, m / 1e3, i / 1e3, i / m }'
  done
  for ROUND in $(seq "$ROUNDS"); do
    for R in $RANKS; do
      for MODE in $MODES; do
        [ "$R" -eq 1 ] && [ "$MODE" != blocking ] && continue   # one rank: nothing to sum
        env=(); set=(--set dist.overlap=true --set dist.comm_thread=true)
        case $MODE in
          blocking) set=(--set dist.overlap=false);;
          iallreduce) set=(--set dist.overlap=true --set dist.comm_thread=false);;
          thread_yield) env=(-x OMPI_MCA_mpi_yield_when_idle=1);;
        esac
        run=$TMP/${NAME}_${R}_${MODE}_$ROUND
        mpiexec -n "$R" --oversubscribe --bind-to none -x OPENBLAS_NUM_THREADS="$THREADS" "${env[@]}" \
          "$LARCH" train "$CONFIG" --out "$run" --set train.batch_size=$((PR * R)) --set train.max_steps="$ST" \
          --set train.epochs=100000 --set train.log_every=$LOG --set train.eval_every=100000000 \
          --set train.threads="$THREADS" --set checkpoint.at_end=false "${set[@]}" > "$run.log" 2>&1 \
          || { echo "bench_overlap.sh: $NAME $R ranks $MODE failed:" >&2; tail -5 "$run.log" >&2; exit 1; }
        read -r sps wait < <(awk -v skip=$((ST / 5)) '/"samples_per_s"/ {
            match($0, /"step": [0-9]+/); st = substr($0, RSTART + 8, RLENGTH - 8) + 0
            if (st <= skip) next
            match($0, /"samples_per_s": [0-9.]+/); s += substr($0, RSTART + 17, RLENGTH - 17)
            match($0, /"sync_wait_ms": [0-9.]+/); w += substr($0, RSTART + 16, RLENGTH - 16); n++ }
            END { if (n) printf "%.1f %.3f\n", s / n, w / n; else print "0 0" }' "$run/metrics.jsonl")
        echo "{\"config\":\"$NAME\",\"ranks\":$R,\"mode\":\"$MODE\",\"round\":$ROUND,\"per_rank_batch\":$PR,\"steps\":$ST,\"samples_per_s\":$sps,\"samples_per_s_per_rank\":$(awk -v s="$sps" -v r="$R" 'BEGIN{printf "%.1f", s / r}'),\"sync_wait_ms\":$wait}"
        k="$NAME $R $MODE"
        if [ -z "${SPS[$k]:-}" ] || awk -v a="$sps" -v b="${SPS[$k]}" 'BEGIN{exit !(a > b)}'; then SPS[$k]=$sps; fi
        if [ -z "${WAIT[$k]:-}" ] || awk -v a="$wait" -v b="${WAIT[$k]}" 'BEGIN{exit !(a < b)}'; then WAIT[$k]=$wait; fi
      done
    done
  done
  for R in $RANKS; do
    base=${SPS[$NAME 1 blocking]:-0}
    for MODE in $MODES; do
      k="$NAME $R $MODE"; [ -n "${SPS[$k]:-}" ] || continue
      full=${WAIT[$NAME $R blocking]:-0}
      awk -v c="$NAME" -v r="$R" -v m="$MODE" -v s="${SPS[$k]}" -v w="${WAIT[$k]}" -v f="$full" -v b="$base" 'BEGIN{
        printf "{\"summary\":\"overlap\",\"config\":\"%s\",\"ranks\":%d,\"mode\":\"%s\",\"samples_per_s_per_rank\":%.1f,", c, r, m, s / r
        printf "\"weak_efficiency\":%.3f,\"grad_sum_blocking_ms\":%.3f,\"exposed_wait_ms\":%.3f,\"hidden_fraction\":%s}\n",
          (b > 0 ? s / r / b : 0), f, w, (f > 0 ? sprintf("%.3f", 1 - w / f) : "null") }'
    done
  done
done
