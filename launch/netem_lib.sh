# netem_lib.sh - emulated nodes on one machine, sourced by
# launch/netem_allreduce.sh and tests/cli_netem.sh (bash, root, iproute2).
#
# netem_up N     N "nodes": network namespaces ${NETEM_PREFIX}1..N, each with
#                one interface lx0 (10.77.0.K/24) on a veth pair whose other
#                end is a port of a bridge in a namespace of its own
#                (${NETEM_PREFIX}sw). Nothing is added to the calling
#                namespace: traffic stays between the namespaces.
# netem_shape GBIT DELAY_US
#                every link (the node's side and the bridge's side, so both
#                directions) shaped to GBIT Gbit/s by a token bucket (tc tbf),
#                and with DELAY_US > 0 a one-way delay on the node's side
#                (tc netem, where the kernel has it: netem_has_delay).
#                GBIT 0 removes the shaping.
# netem_down     removes every namespace netem_up made (and with it its
#                interfaces), after ending the processes still inside them.
# netem_mpirun N ARGS...
#                mpirun of ARGS on nodes 1..N, one rank each, started from
#                node 1's namespace; Open MPI's TCP transport on lx0 only
#                (no shared memory between "nodes"), the other nodes' daemons
#                started by launch/netem_agent.sh (ip netns exec) instead of ssh;
#                NETEM_TIMEOUT seconds at most when set.
# The caller sets a trap that calls netem_down (EXIT, INT, TERM).

NETEM_PREFIX=${NETEM_PREFIX:-larch-nm$$-}
NETEM_NODES=0
NETEM_MADE=()
NETEM_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# Can this process make network namespaces? Prints the reason when not.
netem_can_run() {
  if [ "$(id -u)" != 0 ]; then echo "not root"; return 1; fi
  command -v ip >/dev/null || { echo "iproute2 (ip) is not installed"; return 1; }
  command -v tc >/dev/null || { echo "iproute2 (tc) is not installed"; return 1; }
  local probe="${NETEM_PREFIX}probe" err
  if ! err=$(ip netns add "$probe" 2>&1); then echo "ip netns add failed: $err"; return 1; fi
  NETEM_MADE+=("$probe")
  if ! err=$(ip -n "$probe" link add lxp0 type veth peer name lxp1 2>&1); then
    echo "no veth pairs in a namespace: $err"; netem_down; return 1
  fi
  netem_down
}

netem_has_delay() {   # is tc netem in this kernel? (probed on a scratch namespace)
  local probe="${NETEM_PREFIX}dprobe" ok=1
  ip netns add "$probe" 2>/dev/null || return 1
  NETEM_MADE+=("$probe")
  ip -n "$probe" link add lxp0 type veth peer name lxp1 2>/dev/null &&
    ip netns exec "$probe" tc qdisc add dev lxp0 root netem delay 10us 2>/dev/null && ok=0
  ip netns del "$probe" 2>/dev/null
  NETEM_MADE=("${NETEM_MADE[@]/$probe}")
  return $ok
}

netem_up() {
  local n=$1 k sw="${NETEM_PREFIX}sw"
  ip netns add "$sw" && NETEM_MADE+=("$sw") || return 1
  ip -n "$sw" link add br0 type bridge && ip -n "$sw" link set br0 up && ip -n "$sw" link set lo up || return 1
  for k in $(seq 1 "$n"); do
    local ns="${NETEM_PREFIX}$k"
    ip netns add "$ns" && NETEM_MADE+=("$ns") || return 1
    ip -n "$ns" link set lo up &&
      ip -n "$ns" link add lx0 type veth peer name p$k netns "$sw" &&
      ip -n "$ns" addr add "10.77.0.$k/24" dev lx0 &&
      ip -n "$ns" link set lx0 up &&
      ip -n "$sw" link set p$k master br0 &&
      ip -n "$sw" link set p$k up || return 1
  done
  NETEM_NODES=$n
  # the bridge forwards only after its ports are up: wait for node 1 to reach the last node
  for k in $(seq 1 50); do
    ip netns exec "${NETEM_PREFIX}1" bash -c "exec 3<>/dev/tcp/10.77.0.$n/9" 2>/dev/null || true
    ip -n "${NETEM_PREFIX}1" neigh show 10.77.0.$n 2>/dev/null | grep -q lladdr && return 0
    sleep 0.1
  done
  echo "netem_up: node 1 cannot reach 10.77.0.$n" >&2; return 1
}

netem_shape() {
  local gbit=$1 delay=$2 k dev ns side
  for k in $(seq 1 "$NETEM_NODES"); do
    for side in node sw; do
      if [ $side = node ]; then ns="${NETEM_PREFIX}$k"; dev=lx0; else ns="${NETEM_PREFIX}sw"; dev=p$k; fi
      ip netns exec "$ns" tc qdisc del dev $dev root 2>/dev/null || true
      [ "$gbit" = 0 ] && [ $side = sw -o "$delay" = 0 ] && continue
      # burst: 1 ms at the link rate, at least 64 KiB (one TSO/GSO packet); a smaller
      # bucket makes the shaper wait for timer wake-ups and lose throughput
      local burst rate_arg parent=root
      burst=$(awk -v g="$gbit" 'BEGIN { b = g * 1e9 / 8 * 1e-3; if (b < 65536) b = 65536; printf "%d", b }')
      if [ $side = node ] && [ "$delay" != 0 ]; then
        ip netns exec "$ns" tc qdisc add dev $dev root handle 1: netem delay "${delay}us" limit 100000 || return 1
        parent="parent 1:1"
      fi
      [ "$gbit" = 0 ] && continue
      rate_arg="${gbit}gbit"
      ip netns exec "$ns" tc qdisc add dev $dev $parent handle 10: tbf rate "$rate_arg" burst "$burst" latency 20ms || return 1
    done
  done
}

netem_down() {
  local ns pid
  for ns in "${NETEM_MADE[@]}"; do
    [ -n "$ns" ] || continue
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null || true; done
  done
  for ns in "${NETEM_MADE[@]}"; do
    [ -n "$ns" ] || continue
    local left
    for _ in 1 2 3 4 5 6 7 8 9 10; do left=$(ip netns pids "$ns" 2>/dev/null); [ -z "$left" ] && break; sleep 0.2; done
    for pid in $left; do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  NETEM_MADE=()
  NETEM_NODES=0
}

netem_mpirun() {
  local n=$1 k hostfile
  shift
  hostfile=$(mktemp /tmp/larch-netem-hosts.XXXXXX) || return 1
  for k in $(seq 1 "$n"); do echo "10.77.0.$k slots=1"; done > "$hostfile"
  local rc=0
  timeout "${NETEM_TIMEOUT:-0}" ip netns exec "${NETEM_PREFIX}1" env LARCH_NETEM_PREFIX="$NETEM_PREFIX" \
      OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
    mpirun -n "$n" --hostfile "$hostfile" --map-by node --bind-to none \
      --mca plm_rsh_agent "$NETEM_LIB_DIR/netem_agent.sh" --mca plm_rsh_no_tree_spawn 1 \
      --mca mpi_yield_when_idle 1 --mca pml ob1 --mca btl tcp,self --mca btl_tcp_if_include lx0 --mca oob_tcp_if_include lx0 \
      -x OPENBLAS_NUM_THREADS=1 -x LARCH_NETEM_PREFIX "$@" || rc=$?
  rm -f "$hostfile"
  return $rc
}
