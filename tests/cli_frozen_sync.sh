#!/usr/bin/env bash
# cli_frozen_sync.sh LARCH SRC - frozen tensors and the gradient buckets, on
# tests/configs/synth_transfer.yaml (trunk_* layers and a 4 x 16 head):
# - only trainable tensors are summed across ranks: a frozen trunk sends the
#   head's bytes, a frozen head the trunk's, a frozen tensor in the middle
#   splits the buckets; the start line and every training record report the
#   bytes per step (sync_bytes);
# - every bucket still starts during backward (sync_overlapped equals
#   sync_buckets) with a frozen trunk and with a frozen head;
# - results: 2 ranks overlapped = blocking bit for bit (frozen trunk) and
#   = 1 rank to 1e-5;
#   frozen tensors keep their initial values bit for bit;
# - a thaw (unfreeze_after_epochs) rebuilds the buckets: the log and the
#   records show the full bytes afterwards, and the thawed trunk's gradients
#   are summed (2 ranks match 1 rank after the thaw);
# - the sharded optimizer (ZeRO-1) still reduce-scatters the whole buffer
#   and matches the unsharded run.
. "$(dirname "$0")/cli_helpers.bash"
command -v "$MPIEXEC" > /dev/null || { echo "cli_frozen_sync: no mpiexec"; exit 1; }
command -v h5diff > /dev/null || { echo "cli_frozen_sync: h5diff missing (Debian's hdf5-tools)"; exit 1; }
CFG=$SRC/tests/configs/synth_transfer.yaml
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
RUN_TIMEOUT=120
# Gradient floats per tensor, padded to 16 (64 bytes): trunk_conv.weight 6x3x3x1 = 54 -> 64,
# trunk_bn.scale and .shift 6 -> 16 each, trunk_fc.weight 16x96 = 1536, trunk_fc.bias 16,
# head.weight 4x16 = 64, head.bias 4 -> 16. Bytes = 4 x floats.
HEAD=$(( (64 + 16) * 4 ))                       # 320
TRUNK=$(( (64 + 16 + 16 + 1536 + 16) * 4 ))     # 6592
BN=$(( (16 + 16) * 4 ))                         # 128
ALL=$(( HEAD + TRUNK ))                         # 6912
FREEZE_TRUNK='optim.groups=[{match: trunk_*, freeze: true}]'
FREEZE_HEAD='optim.groups=[{match: head.*, freeze: true}]'
FREEZE_BN='optim.groups=[{match: trunk_bn.*, freeze: true}]'
THAW='optim.groups=[{match: trunk_*, freeze: true, unfreeze_after_epochs: 1, lr_mult: 0.5}]'
COMMON=(--set checkpoint.every_steps=12 --set checkpoint.keep=0)
losses() { grep '"samples_per_s"' "$1/metrics.jsonl" | sed 's/.*"loss": \([^,]*\),.*/\1/'; }
field() { grep '"samples_per_s"' "$1/metrics.jsonl" | sed "s/.*\"$2\": \([0-9.e+-]*\).*/\1/"; }
run1() { local out=$1; shift; "$LARCH" train "$CFG" --out "$out" "$@" > "$out.log" 2>&1; }
close() {  # close A B WHAT: per-step losses within 1e-5 relative
  local worst; worst=$(paste <(losses "$1") <(losses "$2") | awk '{d = $1 - $2; if (d < 0) d = -d; r = d / ($1 > 0 ? $1 : 1); if (r > w) w = r} END {printf "%.3g", w + 0}')
  [ "$(losses "$1" | wc -l)" -eq 24 ] && [ "$(losses "$2" | wc -l)" -eq 24 ] && awk -v w="$worst" 'BEGIN{exit !(w <= 1e-5)}' \
    && pass "$3: 24 steps, worst relative loss difference $worst" || fail "$3: worst relative loss difference $worst"
}
bytes_each() {  # bytes_each RUN FROM TO BYTES: sync_bytes of records FROM..TO
  local got; got=$(field "$1" sync_bytes | sed -n "$2,$3p" | sort -u | tr '\n' ' ')
  [ "$got" = "$4 " ] && pass "$1 steps $2-$3: $4 bytes per step" || fail "$1 steps $2-$3: sync_bytes '$got' (want $4)"
}
all_overlapped() {  # every bucket of every step started during backward
  paste <(field "$1" sync_buckets) <(field "$1" sync_overlapped) | awk '$1 < 1 || $1 != $2 {bad++} END {exit bad > 0 || NR != 24}' \
    && pass "$2: every bucket starts during backward" \
    || fail "$2: buckets/overlapped per step: $(paste <(field "$1" sync_buckets) <(field "$1" sync_overlapped) | sort -u | tr '\t\n' '/ ')"
}
h5same() { h5diff -d 0 "$1" "$3" "$2" "$4" > /dev/null 2>&1; }

# ---- a frozen trunk: only the head's gradients are summed ----
run 2 "$TMP/ft" --set "$FREEZE_TRUNK" "${COMMON[@]}" || fail "frozen trunk, 2 ranks: $(tail -3 "$TMP/ft.log")"
grep -q "gradient sync: 1 bucket(s), $HEAD bytes per step, overlapped" "$TMP/ft.log" \
  && pass "frozen trunk: the start line reports 1 bucket of $HEAD bytes" || fail "start line: $(grep 'gradient sync' "$TMP/ft.log")"
bytes_each "$TMP/ft" 1 24 $HEAD
all_overlapped "$TMP/ft" "frozen trunk"
run 2 "$TMP/ft_block" --set "$FREEZE_TRUNK" "${COMMON[@]}" --set dist.overlap=false || fail "frozen trunk, blocking"
cmp -s <(losses "$TMP/ft") <(losses "$TMP/ft_block") && h5diff -d 0 "$(ck "$TMP/ft" 24)" "$(ck "$TMP/ft_block" 24)" /params /params > /dev/null 2>&1 \
  && pass "frozen trunk: overlapped = blocking, bit for bit" || fail "frozen trunk: overlapped and blocking differ"
run1 "$TMP/ft1" --set "$FREEZE_TRUNK" "${COMMON[@]}" || fail "frozen trunk, 1 rank"
close "$TMP/ft1" "$TMP/ft" "frozen trunk: 2 ranks vs 1"
h5same "$(ck "$TMP/ft" 12)" /params/trunk_fc/weight "$(ck "$TMP/ft" 24)" /params/trunk_fc/weight \
  && h5same "$(ck "$TMP/ft" 12)" /params/trunk_conv/weight "$(ck "$TMP/ft" 24)" /params/trunk_conv/weight \
  && h5same "$(ck "$TMP/ft1" 24)" /params/trunk_fc/weight "$(ck "$TMP/ft" 24)" /params/trunk_fc/weight \
  && pass "the frozen trunk keeps its initial values bit for bit" || fail "the frozen trunk moved"
h5same "$(ck "$TMP/ft" 12)" /params/head/weight "$(ck "$TMP/ft" 24)" /params/head/weight && fail "the head did not train" \
  || pass "the head trains"

# ---- a frozen head: the trunk's gradients, still overlapped ----
run 2 "$TMP/fh" --set "$FREEZE_HEAD" "${COMMON[@]}" || fail "frozen head, 2 ranks: $(tail -3 "$TMP/fh.log")"
bytes_each "$TMP/fh" 1 24 $TRUNK
all_overlapped "$TMP/fh" "frozen head"
run1 "$TMP/fh1" --set "$FREEZE_HEAD" "${COMMON[@]}" || fail "frozen head, 1 rank"
close "$TMP/fh1" "$TMP/fh" "frozen head: 2 ranks vs 1"
h5same "$(ck "$TMP/fh" 12)" /params/head/weight "$(ck "$TMP/fh" 24)" /params/head/weight \
  && pass "the frozen head keeps its values" || fail "the frozen head moved"

# ---- a frozen tensor between trainable ones splits the buckets ----
GAP=(--set "$FREEZE_BN" "${COMMON[@]}")      # default bucket sizes: one bucket unless split
run 2 "$TMP/gap" "${GAP[@]}" || fail "frozen batch norm, 2 ranks: $(tail -3 "$TMP/gap.log")"
bytes_each "$TMP/gap" 1 24 $(( ALL - BN ))
[ "$(field "$TMP/gap" sync_buckets | sort -u)" = 2 ] \
  && pass "frozen batch norm: 2 buckets (trunk_fc and the head; trunk_conv)" \
  || fail "frozen batch norm: $(field "$TMP/gap" sync_buckets | sort -u | tr '\n' ' ') buckets (want 2)"
all_overlapped "$TMP/gap" "frozen batch norm"
run1 "$TMP/gap1" "${GAP[@]}" || fail "frozen batch norm, 1 rank"
close "$TMP/gap1" "$TMP/gap" "frozen batch norm: 2 ranks vs 1"

# ---- a thaw rebuilds the buckets ----
run 2 "$TMP/th" --set "$THAW" "${COMMON[@]}" || fail "thaw, 2 ranks: $(tail -3 "$TMP/th.log")"
grep -q "gradient sync: 1 bucket(s), $HEAD bytes per step" "$TMP/th.log" \
  && grep -q "^epoch 1: gradient sync: 1 bucket(s), $ALL bytes per step, overlapped" "$TMP/th.log" \
  && pass "the log reports $HEAD bytes per step at the start and $ALL after the thaw" \
  || fail "thaw log: $(grep 'gradient sync' "$TMP/th.log")"
bytes_each "$TMP/th" 1 12 $HEAD
bytes_each "$TMP/th" 13 24 $ALL
all_overlapped "$TMP/th" "freeze then thaw"
run1 "$TMP/th1" --set "$THAW" "${COMMON[@]}" || fail "thaw, 1 rank"
close "$TMP/th1" "$TMP/th" "freeze then thaw: 2 ranks vs 1 (the thawed trunk's gradients are summed)"
h5diff -d 1e-5 "$(ck "$TMP/th1" 24)" "$(ck "$TMP/th" 24)" /params /params > /dev/null 2>&1 \
  && pass "freeze then thaw: 2 ranks' parameters = 1 rank's to 1e-5" || fail "freeze then thaw: parameters differ"

# ---- ZeRO-1 keeps the full layout ----
run 2 "$TMP/sh" --set "$THAW" "${COMMON[@]}" --set dist.shard_optimizer=true || fail "sharded thaw: $(tail -3 "$TMP/sh.log")"
grep -q "gradient sync: one reduce-scatter of $ALL bytes per step (sharded" "$TMP/sh.log" \
  && pass "sharded: one reduce-scatter of the whole buffer ($ALL bytes)" || fail "sharded log: $(grep 'gradient sync' "$TMP/sh.log")"
close "$TMP/th" "$TMP/sh" "freeze then thaw: sharded vs unsharded optimizer"
finish cli_frozen_sync
