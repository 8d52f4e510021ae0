#!/usr/bin/env bash
# Open MPI launch agent for emulated nodes (launch/netem_allreduce.sh): used
# as `--mca plm_rsh_agent launch/netem_agent.sh` in place of ssh. mpirun calls
#   netem_agent.sh HOST COMMAND...
# where HOST is a hostfile entry, an IPv4 address A.B.C.K of an emulated
# node; the agent runs COMMAND (Open MPI's orted start line, a shell command
# like ssh's) inside the network namespace ${LARCH_NETEM_PREFIX}K, which
# holds that address. LARCH_NETEM_PREFIX comes from mpirun's environment
# (the agent is mpirun's child). Needs root (ip netns exec).
set -euo pipefail
[ $# -ge 2 ] || { echo "netem_agent.sh: usage: netem_agent.sh HOST COMMAND..." >&2; exit 2; }
HOST=$1; shift
PREFIX=${LARCH_NETEM_PREFIX:?netem_agent.sh: LARCH_NETEM_PREFIX is not set (run through launch/netem_allreduce.sh)}
case $HOST in
  *.*.*.*) K=${HOST##*.} ;;
  *) echo "netem_agent.sh: host '$HOST' is not an IPv4 address of an emulated node" >&2; exit 2 ;;
esac
NS=$PREFIX$K
ip netns exec "$NS" true 2>/dev/null || { echo "netem_agent.sh: no network namespace '$NS' for host $HOST" >&2; exit 1; }
if ! ip -n "$NS" -o -4 addr show | grep -q " inet $HOST/"; then
  echo "netem_agent.sh: namespace '$NS' does not hold address $HOST" >&2; exit 1
fi
exec ip netns exec "$NS" /bin/sh -c "$*"
