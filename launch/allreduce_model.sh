#!/usr/bin/env bash
# Alpha-beta cost model of a ring allreduce: predicted data-parallel scaling
# efficiency at P nodes for a model's gradient bytes and a node's step time.
#   bash launch/allreduce_model.sh BYTES STEP_MS [HIDDEN]
# Ring allreduce of n bytes on p nodes: T = 2 (p - 1) alpha + 2 (p - 1) / p * n / beta
# (Rabenseifner / recursive halving replaces the first term by 2 log2(p) alpha).
# Efficiency = step / (step + (1 - HIDDEN) T), HIDDEN = the fraction of the
# communication overlapped with backward (0 = none).
# Networks: 25 and 100 Gbit/s with alpha 5 us (RDMA), 10 Gbit/s with 30 us (TCP).
set -euo pipefail
BYTES=${1:?usage: allreduce_model.sh BYTES STEP_MS [HIDDEN]}; STEP=${2:?}; HID=${3:-0}
awk -v n="$BYTES" -v step="$STEP" -v h="$HID" 'BEGIN {
  split("10 25 100", gbit, " "); split("30 5 5", alpha_us, " ")
  printf "| network | nodes | ring ms | ring efficiency | log-latency ms | log-latency efficiency |\n|---|---|---|---|---|---|\n"
  for (k = 1; k <= 3; k++) {
    beta = gbit[k] * 1e9 / 8; a = alpha_us[k] * 1e-6
    split("8 64 512", P, " ")
    for (j = 1; j <= 3; j++) { p = P[j]
      bw = 2 * (p - 1) / p * n / beta
      ring = 1e3 * (2 * (p - 1) * a + bw); lg = 1e3 * (2 * log(p) / log(2) * a + bw)
      printf "| %d Gbit/s, %g us | %d | %.2f | %.3f | %.2f | %.3f |\n", gbit[k], alpha_us[k], p, ring,
             step / (step + (1 - h) * ring), lg, step / (step + (1 - h) * lg) } }
}'
