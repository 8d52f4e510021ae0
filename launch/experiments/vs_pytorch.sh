#!/usr/bin/env bash
# larch against PyTorch on the same models, recipe, data and threads
# (docs/vs_pytorch.md): fmnist_cnn and fmnist_mlp (launch/configs/), trained
# by `larch train` and by launch/experiments/vs_pytorch.py (the same model,
# SGD Nesterov, weight decay, lr, cosine schedule with warmup, epochs, batch,
# threads, the same idx .gz files normalized the same way), one after the
# other in the same run, ROUNDS times interleaved.
# Reported per run: wall time (process start to finish: MPI start, data
# loading, training, the evaluation of each epoch), training samples/s (the
# step window: evaluation and output excluded, both frameworks), and the
# final test accuracy; then the wall-time ratio torch / larch per model.
# Without a PyTorch for /usr/bin/python3 it says so and runs larch only.
#
# Usage: bash launch/experiments/vs_pytorch.sh [--epochs N] [--threads T] [--rounds R] [--two-ranks] [--out DIR]
#   --epochs N    epochs of every run (default 3, the configs' fmnist_cnn length)
#   --threads T   threads of each framework (default 2: 1 rank x 2 threads)
#   --rounds R    repetitions, interleaved (default 1); the table lists every run
#   --two-ranks   also larch with 2 MPI ranks x T/2 threads (mpiexec)
#   --out DIR     results.jsonl, results.md and the runs' logs (default docs/vs_pytorch)
# Environment: BUILD (build), DATA (/usr/share/datasets/fashion-mnist), MODELS ("fmnist_cnn fmnist_mlp").
set -euo pipefail
cd "$(dirname "$0")/../.."
EPOCHS=3 THREADS=2 ROUNDS=1 TWO=0 OUT=docs/vs_pytorch
while [ $# -gt 0 ]; do
  case "$1" in
    --epochs) EPOCHS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --two-ranks) TWO=1; shift ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "vs_pytorch.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
BUILD=${BUILD:-build}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
MODELS=${MODELS:-"fmnist_cnn fmnist_mlp"}
PY=/usr/bin/python3
[ "${LARCH_KEEP_CORETYPE:-0}" = 1 ] || unset OPENBLAS_CORETYPE   # let larch pick the kernels
[ -x "$BUILD/larch" ] || { echo "vs_pytorch.sh: $BUILD/larch not built (run launch/demo.sh or cmake first)" >&2; exit 1; }
for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
  [ -r "$DATA/$f" ] || { echo "vs_pytorch.sh: $DATA/$f missing (Debian package dataset-fashion-mnist)" >&2; exit 1; }
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMP_NUM_THREADS=$THREADS
HAVE_TORCH=0
if TORCH_VERSION=$("$PY" -c 'import torch; print(torch.__version__)' 2> /dev/null); then HAVE_TORCH=1
else echo "vs_pytorch.sh: $PY cannot import torch (apt-get install python3-torch): running larch only" >&2; TORCH_VERSION=none; fi
mkdir -p "$OUT/runs"
JSONL="$OUT/results.jsonl"
: > "$JSONL"
now() { date +%s.%N; }
CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
BLAS=unknown

# larch: one run; appends a JSON line
run_larch() {   # model ranks threads round
  local model=$1 ranks=$2 thr=$3 round=$4 log dir t0 t1
  dir="$OUT/runs/larch_${model}_${ranks}x${thr}_r$round"
  log="$dir.log"
  rm -rf "$dir"
  local cmd=("$BUILD/larch" train "launch/configs/$model.yaml" --out "$dir" --set train.epochs="$EPOCHS"
             --set train.threads="$thr" --set data.dir="$DATA" --set checkpoint.at_end=false)
  [ "$ranks" -gt 1 ] && cmd=(mpiexec --oversubscribe -n "$ranks" "${cmd[@]}")
  t0=$(now)
  "${cmd[@]}" > "$log" 2>&1 || { echo "vs_pytorch.sh: larch failed ($log):" >&2; tail -5 "$log" >&2; exit 1; }
  t1=$(now)
  local sps wall_sps acc core
  sps=$(sed -n 's/^done: .*(\([0-9.]*\) samples\/s in the steps, \([0-9.]*\) wall).*/\1/p' "$log")
  acc=$(grep '"split": "test"' "$dir/metrics.jsonl" | tail -1 | sed 's/.*"accuracy": \([0-9.e-]*\).*/\1/')
  core=$(sed -n 's/.*OpenBLAS thread(s) \[\([^]]*\)\].*/\1/p' "$log" | head -1)
  [ -n "$sps" ] && [ -n "$acc" ] || { echo "vs_pytorch.sh: no result in $log" >&2; exit 1; }
  BLAS=$core
  printf '{"framework":"larch","model":"%s","round":%d,"ranks":%d,"threads":%d,"epochs":%d,"blas":"%s","wall_s":%.2f,"train_samples_per_s":%s,"test_accuracy":%s}\n' \
    "$model" "$round" "$ranks" "$thr" "$EPOCHS" "$core" "$(echo "$t1 - $t0" | bc -l)" "$sps" "$acc" | tee -a "$JSONL" >&2
}

run_torch() {   # model threads round
  local model=$1 thr=$2 round=$3 log t0 t1 line
  log="$OUT/runs/torch_${model}_1x${thr}_r$round.log"
  t0=$(now)
  line=$(OMP_NUM_THREADS=$thr "$PY" launch/experiments/vs_pytorch.py --model "$model" --epochs "$EPOCHS" \
           --threads "$thr" --data "$DATA" 2> "$log") || { echo "vs_pytorch.sh: PyTorch failed ($log):" >&2; tail -5 "$log" >&2; exit 1; }
  t1=$(now)
  "$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); print(json.dumps({"framework":"pytorch","model":d["model"],
"round":int(sys.argv[2]),"ranks":1,"threads":d["threads"],"epochs":d["epochs"],"blas":"torch "+d["version"],
"wall_s":round(float(sys.argv[3]),2),"train_samples_per_s":d["train_samples_per_s"],"test_accuracy":d["test_accuracy"]},
separators=(",",":")))' "$line" "$round" "$(echo "$t1 - $t0" | bc -l)" | tee -a "$JSONL" >&2
}

for ((r = 1; r <= ROUNDS; r++)); do
  for M in $MODELS; do
    echo "== round $r: $M, $EPOCHS epoch(s)" >&2
    run_larch "$M" 1 "$THREADS" "$r"
    [ "$HAVE_TORCH" = 1 ] && run_torch "$M" "$THREADS" "$r"
    [ "$TWO" = 1 ] && run_larch "$M" 2 $(( THREADS > 1 ? THREADS / 2 : 1 )) "$r"
  done
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

# the table: every run, then the wall-time ratio per model (best of the rounds)
{
  echo "Command: \`bash launch/experiments/vs_pytorch.sh --epochs $EPOCHS --threads $THREADS --rounds $ROUNDS$([ "$TWO" = 1 ] && echo " --two-ranks")\`"
  echo
  echo "Machine: $CPU, $(nproc) cores; larch's OpenBLAS kernels: $BLAS; PyTorch $TORCH_VERSION; $THREADS thread(s)" \
       "per process (torch.set_num_threads, OMP_NUM_THREADS); load average $LOAD0 at the start, $LOAD1 at the end; $(date -u +%Y-%m-%d)"
  echo
  echo "| model | framework | ranks x threads | round | wall time (s) | train samples/s | test accuracy |"
  echo "|---|---|---|---|---|---|---|"
  awk -F'[:,]' '{ for (i = 1; i < NF; i++) { k = $i; gsub(/[{}" ]/, "", k); v = $(i + 1); gsub(/[{}"]/, "", v); f[k] = v }
         printf "| %s | %s | %s x %s | %s | %.1f | %.0f | %.4f |\n", f["model"], f["framework"], f["ranks"], f["threads"],
                f["round"], f["wall_s"], f["train_samples_per_s"], f["test_accuracy"] }' "$JSONL"
  if [ "$HAVE_TORCH" = 1 ]; then
    echo
    echo "| model | larch wall (s, best, 1 x $THREADS) | PyTorch wall (s, best) | PyTorch / larch wall | larch / PyTorch train samples/s | accuracy larch - PyTorch |"
    echo "|---|---|---|---|---|---|"
    for M in $MODELS; do
      awk -F'[:,]' -v m="$M" -v t="$THREADS" '{ for (i = 1; i < NF; i++) { k = $i; gsub(/[{}" ]/, "", k); v = $(i + 1); gsub(/[{}"]/, "", v); f[k] = v }
             if (f["model"] != m || f["ranks"] != 1) next
             fw = f["framework"]
             if (!(fw in w) || f["wall_s"] + 0 < w[fw]) { w[fw] = f["wall_s"] + 0; a[fw] = f["test_accuracy"] + 0 }
             if (f["train_samples_per_s"] + 0 > s[fw]) s[fw] = f["train_samples_per_s"] + 0 }
           END { printf "| %s | %.1f | %.1f | %.2f | %.2f | %+.4f |\n", m, w["larch"], w["pytorch"], w["pytorch"] / w["larch"],
                        s["larch"] / s["pytorch"], a["larch"] - a["pytorch"] }' "$JSONL"
    done
  fi
} | tee "$OUT/results.md"
