#!/usr/bin/env bash
# netem_tcp.sh LARCH SRC - gradient sums over Open MPI's TCP transport between
# two emulated nodes (launch/netem_lib.sh: network namespaces, a bridge,
# links shaped to 1 Gbit/s by tc tbf): 2 ranks in two namespaces train
# tests/configs/synth_mlp.yaml with the same per-step losses as 1 rank (to
# 5e-5 relative: the summation order differs), the gradient bytes crossed node 1's link, and no namespace
# is left behind. Exits 77 (skipped) with a message where network namespaces
# cannot be made (not root, no iproute2, a container without the permission).
set -u
LARCH=$1; SRC=$2
LARCH=$(cd "$(dirname "$LARCH")" && pwd)/$(basename "$LARCH")
TMP=$(mktemp -d /tmp/larch_netem_XXXXXX)
NETEM_PREFIX=larch-nmt$$-
. "$SRC/launch/netem_lib.sh"
trap 'netem_down; rm -rf "$TMP"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if ! why=$(netem_can_run); then echo "netem_tcp: skipped: cannot emulate nodes here: $why"; exit 77; fi
command -v mpirun > /dev/null || { echo "netem_tcp: skipped: no mpirun"; exit 77; }
fails=0
pass() { echo "ok: $1"; }
fail() { echo "FAIL: $1"; fails=$((fails + 1)); }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
CFG=$SRC/tests/configs/synth_mlp.yaml
SET=(--set train.log_every=1 --set train.epochs=1)
losses() { grep '"samples_per_s"' "$1/metrics.jsonl" | sed 's/.*"loss": \([^,]*\),.*/\1/'; }

timeout 120 "$LARCH" train "$CFG" "${SET[@]}" --out "$TMP/r1" > "$TMP/r1.log" 2>&1 || fail "1 rank: $(tail -3 "$TMP/r1.log")"
netem_up 2 || fail "could not make the emulated nodes"
netem_shape 1 0 || fail "could not shape the links (tc tbf)"
tx0=$(ip netns exec "${NETEM_PREFIX}1" cat /sys/class/net/lx0/statistics/tx_bytes)
NETEM_TIMEOUT=120 netem_mpirun 2 "$LARCH" train "$CFG" "${SET[@]}" --out "$TMP/r2" > "$TMP/r2.log" 2>&1 || fail "2 ranks over TCP: $(tail -5 "$TMP/r2.log")"
tx1=$(ip netns exec "${NETEM_PREFIX}1" cat /sys/class/net/lx0/statistics/tx_bytes)

n=$(losses "$TMP/r2" 2>/dev/null | wc -l)
if [ "$n" -ge 10 ] && [ "$(losses "$TMP/r1" | wc -l)" -eq "$n" ]; then
  worst=$(paste <(losses "$TMP/r1") <(losses "$TMP/r2") | awk '{d = $1 - $2; if (d < 0) d = -d; r = d / ($1 > 0 ? $1 : 1); if (r > w) w = r} END {printf "%.3g", w + 0}')
  awk -v w="$worst" 'BEGIN{exit !(w <= 5e-5)}' && pass "2 ranks over TCP = 1 rank: $n steps, worst relative loss difference $worst" \
    || fail "2 ranks over TCP vs 1 rank: worst relative loss difference $worst over $n steps"
else
  fail "steps logged: 1 rank $(losses "$TMP/r1" 2>/dev/null | wc -l), 2 ranks $n"
fi
# every step sums the gradients (sync_bytes per rank); a ring or halving
# allreduce of 2 ranks sends at least half of them from each rank
sync=$(grep -m1 -o '"sync_bytes": [0-9]*' "$TMP/r2/metrics.jsonl" 2>/dev/null | grep -o '[0-9]*$')
sent=$((tx1 - tx0))
if [ -n "$sync" ] && [ "$sync" -gt 0 ] && [ "$sent" -ge $((sync / 2 * n)) ]; then
  pass "node 1 sent $sent bytes on its link (>= $n steps x $sync / 2 gradient bytes)"
else
  fail "node 1 sent $sent bytes on its link; sync_bytes ${sync:-?} x $n steps / 2 expected"
fi
netem_down
left=$(ip netns list | grep -c "^$NETEM_PREFIX" || true)
[ "$left" -eq 0 ] && pass "no namespace left behind" || fail "$left namespace(s) left: $(ip netns list | grep "^$NETEM_PREFIX")"
echo "netem_tcp: $fails failed"
[ "$fails" -eq 0 ]
