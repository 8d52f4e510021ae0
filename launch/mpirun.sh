#!/usr/bin/env bash
# Data-parallel training with Open MPI's mpirun, on this machine or on the
# hosts of a hostfile.
#   bash launch/mpirun.sh -n 2 launch/configs/fmnist_mlp.yaml [larch train options]
#   bash launch/mpirun.sh -n 16 --hostfile hosts launch/configs/fmnist_cnn.yaml --out runs/cnn16
# A hostfile lists one host per line with its slots (ranks), e.g. "node1 slots=4".
# Stopping: SIGTERM or SIGINT (kill, timeout, Ctrl-C) to this script makes
# every rank finish its step, write a checkpoint and exit with status 75,
# which the script returns: it sends SIGUSR1 to mpirun, which forwards it to
# every rank (mpirun itself would answer SIGTERM/SIGINT by killing the ranks
# and exiting 1). mpirun runs in a session of its own, so Ctrl-C reaches only
# this script. A second SIGTERM/SIGINT aborts the job at once.
# Ranks x threads = cores: each rank gets THREADS OpenBLAS threads (default:
# the cores of this machine / ranks per node, at least 1) and is bound to that
# many cores (--map-by slot:PE=THREADS) so ranks do not share cores.
set -euo pipefail
cd "$(dirname "$0")/.."
NP=2; HOSTFILE=""; PER_NODE=""
while [ $# -gt 0 ]; do
  case $1 in
    -n|-np) NP=$2; shift 2 ;;
    --hostfile) HOSTFILE=$2; shift 2 ;;
    --per-node) PER_NODE=$2; shift 2 ;;   # ranks per node (default: NP on one machine, slots of the hostfile)
    *) break ;;
  esac
done
[ $# -ge 1 ] || { sed -n 2,15p "$0" >&2; exit 2; }
CONFIG=$1; shift
LARCH=${LARCH:-build/larch}
[ -x "$LARCH" ] || { echo "mpirun.sh: $LARCH not built (cmake -S . -B build && cmake --build build)" >&2; exit 1; }
CORES=$(nproc)
if [ -z "$PER_NODE" ]; then
  if [ -n "$HOSTFILE" ]; then PER_NODE=$(awk '/slots=/ {sub(/.*slots=/, ""); print $1 + 0; exit}' "$HOSTFILE"); fi
  PER_NODE=${PER_NODE:-$NP}
fi
THREADS=${THREADS:-$(( CORES / PER_NODE > 0 ? CORES / PER_NODE : 1 ))}
ARGS=(-n "$NP" -x OPENBLAS_NUM_THREADS="$THREADS" -x OPENBLAS_CORETYPE)
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
if [ $(( PER_NODE * THREADS )) -le "$CORES" ]; then
  ARGS+=(--map-by "slot:PE=$THREADS" --bind-to core)
else
  ARGS+=(--oversubscribe --bind-to none)         # more ranks than cores: let the OS schedule
fi
[ -n "$HOSTFILE" ] && ARGS+=(--hostfile "$HOSTFILE")
echo "mpirun.sh: $NP ranks ($PER_NODE per node) x $THREADS OpenBLAS threads" >&2
SETSID=$(command -v setsid || true)
$SETSID mpirun "${ARGS[@]}" "$LARCH" train "$CONFIG" --set train.threads="$THREADS" "$@" &
pid=$!
stopping=0
stop() {
  if [ "$stopping" -eq 0 ]; then
    echo "mpirun.sh: SIG$1: every rank finishes its step, checkpoints and stops (again to abort at once)" >&2
    kill -USR1 "$pid" 2> /dev/null || true
  else
    kill -TERM "$pid" 2> /dev/null || true
  fi
  stopping=1
}
trap 'stop TERM' TERM
trap 'stop INT' INT
trap 'stop USR1' USR1
while :; do                          # a trapped signal interrupts wait: wait again
  status=0; wait "$pid" || status=$?
  kill -0 "$pid" 2> /dev/null || break
done
exit "$status"
