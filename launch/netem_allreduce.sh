#!/usr/bin/env bash
# The alpha-beta model of docs/distributed.md against allreduces over an
# emulated network: 2-4 "nodes" on this machine (network namespaces joined by
# a bridge in a namespace of its own, launch/netem_lib.sh), links shaped by
# tc (tbf rate; tc netem delay where the kernel has it), Open MPI's TCP
# transport between them (no shared memory), `larch bench allreduce` on each.
#   bash launch/netem_allreduce.sh [--links "1:30 2.5:30 10:30 25:5"] [--nodes "2 3 4"]
#        [--min-kib 6.25] [--max-mib 100] [--iters I] [--out DIR] [--larch BIN] [--mca "K V ..."]
# --links   GBIT:ALPHA_US per setting: the shaped rate (0 = not shaped) and
#           the model's nominal per-message latency for it; with tc netem the
#           link also gets a one-way delay of ALPHA_US / 2 (--delay to change:
#           "none" adds no delay)
# --refit F only fit and tabulate F (JSON lines of an earlier run, as written
#           to DIR/netem_allreduce.jsonl)
# --mca     extra Open MPI settings, e.g. "coll_tuned_use_dynamic_rules 1
#           coll_tuned_allreduce_algorithm 4" (the ring)
# Prints, and writes to DIR (default runs/netem): raw TCP throughput of each
# link (python3 socket test, when /usr/bin/python3 exists), one JSON line per
# measurement (netem_allreduce.jsonl: bench allreduce's line plus
# link_gbit, alpha_nominal_us, model_us, fitted_us, ...), the fitted alpha and
# beta per link (weighted least squares of T = 2 (p-1) alpha + 2 (p-1)/p n / beta
# over every node count and size: relative residuals, as the sizes span five
# decades) and a markdown table (netem_allreduce.md).
# Needs root and iproute2; exits 77 with a message where network namespaces
# cannot be made. Everything it makes (namespaces, interfaces, qdiscs, the
# processes in them) it removes on exit, also on failure or a signal.
set -euo pipefail
cd "$(dirname "$0")/.."
LINKS="1:30 2.5:30 10:30 25:5"; NODES="2 3 4"; MIN_KIB=6.25; MAX_MIB=100; ITERS=""; OUT=runs/netem
LARCH=build/larch; MCA=""; DELAY=half; REFIT=""
while [ $# -gt 0 ]; do
  case $1 in
    --links) LINKS=$2; shift 2 ;;
    --nodes) NODES=$2; shift 2 ;;
    --min-kib) MIN_KIB=$2; shift 2 ;;
    --max-mib) MAX_MIB=$2; shift 2 ;;
    --iters) ITERS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --larch) LARCH=$2; shift 2 ;;
    --mca) MCA=$2; shift 2 ;;
    --delay) DELAY=$2; shift 2 ;;
    --refit) REFIT=$2; shift 2 ;;
    -h|--help) sed -n 2,27p "$0"; exit 0 ;;
    *) echo "netem_allreduce.sh: unexpected '$1'" >&2; sed -n 7,17p "$0" >&2; exit 2 ;;
  esac
done
if [ -z "$REFIT" ]; then
[ -x "$LARCH" ] || { echo "netem_allreduce.sh: $LARCH not built (cmake --build build)" >&2; exit 1; }
LARCH=$(cd "$(dirname "$LARCH")" && pwd)/$(basename "$LARCH")
source launch/netem_lib.sh
trap netem_down EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if ! why=$(netem_can_run); then echo "netem_allreduce.sh: skipped: cannot emulate nodes here: $why" >&2; exit 77; fi
HAS_DELAY=0
if netem_has_delay; then HAS_DELAY=1; fi
MAXN=0; for n in $NODES; do [ "$n" -gt "$MAXN" ] && MAXN=$n; done
[ "$MAXN" -ge 2 ] || { echo "netem_allreduce.sh: --nodes needs at least 2" >&2; exit 2; }
mkdir -p "$OUT"
JSONL=$OUT/netem_allreduce.jsonl; RAW=$OUT/netem_raw.jsonl
: > "$RAW"; : > "$JSONL.tmp"
MCA_ARGS=(); set -- $MCA; while [ $# -ge 2 ]; do MCA_ARGS+=(--mca "$1" "$2"); shift 2; done
BENCH=("$LARCH" bench allreduce --min-kib "$MIN_KIB" --max-mib "$MAX_MIB")
[ -n "$ITERS" ] && BENCH+=(--iters "$ITERS")
echo "netem_allreduce.sh: nodes $NODES; links $LINKS; tc netem delay: $([ $HAS_DELAY = 1 ] && echo available || echo 'not in this kernel (no added latency)'); $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
netem_up "$MAXN"

# raw TCP throughput node 1 -> node 2 (one stream, 1 GiB) and a 1-byte ping-pong
TCP_PY='
import socket, sys, time
mode, host = sys.argv[1], sys.argv[2]
if mode == "server":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((host, 5201)); s.listen(1)
    for _ in range(2):
        c, _ = s.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1); buf = bytearray(1 << 20)
        while True:
            k = c.recv_into(buf)
            if not k: break
            if k == 1 and buf[0] == 112: c.sendall(b"p")
        c.close()
else:
    for _ in range(50):
        try: c = socket.create_connection((host, 5201)); break
        except OSError: time.sleep(0.1)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    data = bytes(1 << 20); n = 1 << 30; t = time.time(); sent = 0
    while sent < n: c.sendall(data); sent += len(data)
    c.shutdown(socket.SHUT_WR); c.recv(1); c.close(); dt = time.time() - t
    c = socket.create_connection((host, 5201)); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rt = []
    for _ in range(2000):
        t0 = time.perf_counter(); c.sendall(b"p"); c.recv(1); rt.append(time.perf_counter() - t0)
    c.shutdown(socket.SHUT_WR); c.close(); rt.sort()
    print("\"tcp_gbit\":%.3f,\"rtt_median_us\":%.1f" % (sent * 8 / dt / 1e9, rt[len(rt) // 2] * 1e6))
'
raw_tcp() {   # $1 = label fields; prints one JSON line
  [ -x /usr/bin/python3 ] || return 0
  ip netns exec "${NETEM_PREFIX}2" /usr/bin/python3 -c "$TCP_PY" server 10.77.0.2 & local sp=$!
  local r
  r=$(ip netns exec "${NETEM_PREFIX}1" /usr/bin/python3 -c "$TCP_PY" client 10.77.0.2) || r=""
  wait $sp || true
  [ -n "$r" ] && echo "{$1,$r}" | tee -a "$RAW"
}

for link in $LINKS; do
  GBIT=${link%%:*}; ALPHA=${link#*:}
  D=0
  if [ $HAS_DELAY = 1 ] && [ "$DELAY" != none ]; then
    D=$([ "$DELAY" = half ] && awk -v a="$ALPHA" 'BEGIN { printf "%g", a / 2 }' || echo "$DELAY")
  fi
  netem_shape "$GBIT" "$D"
  LABEL="\"link_gbit\":$GBIT,\"alpha_nominal_us\":$ALPHA,\"delay_us\":$D"
  raw_tcp "\"bench\":\"raw_tcp\",$LABEL"
  for n in $NODES; do
    echo "netem_allreduce.sh: link $GBIT Gbit/s (delay $D us), $n nodes" >&2
    netem_mpirun "$n" "${MCA_ARGS[@]}" "${BENCH[@]}" 2>"$OUT/bench_stderr.txt" |
      sed -n "s/^{\"bench\":\"allreduce\",/{\"bench\":\"allreduce\",$LABEL,/p" >> "$JSONL.tmp" ||
      { cat "$OUT/bench_stderr.txt" >&2; echo "netem_allreduce.sh: bench failed (link $GBIT, $n nodes)" >&2; exit 1; }
  done
done
REFIT=$JSONL.tmp
fi

# fit and compare: T = a x1 + c x2 with x1 = 2(p-1), x2 = 2(p-1)/p n (the ring
# model, alpha = a, beta = 1/c), minimizing sum ((a x1 + c x2 - T) / T)^2 (the
# sizes span five decades: plain residuals would fit the largest size only);
# alpha is kept >= 0. One fit per link over every node count (the parameters
# a user would plug into the model) and one per link and node count.
mkdir -p "$OUT"; JSONL=$OUT/netem_allreduce.jsonl
awk -F'[,:{}]' -v md="$OUT/netem_allreduce.md" '
function val(key,   i) { for (i = 1; i < NF; i++) if ($i == "\"" key "\"") return $(i + 1) + 0; return "" }
function acc(k, x1, x2) { s11[k] += x1 * x1; s12[k] += x1 * x2; s22[k] += x2 * x2; s1y[k] += x1; s2y[k] += x2; npt[k]++ }
function fit(k,   det) {
  det = s11[k] * s22[k] - s12[k] * s12[k]
  fa[k] = det > 0 ? (s1y[k] * s22[k] - s2y[k] * s12[k]) / det : -1
  fc[k] = det > 0 ? (s11[k] * s2y[k] - s12[k] * s1y[k]) / det : 0
  if (fa[k] < 0 || fc[k] <= 0) { fa[k] = 0; fc[k] = s2y[k] / s22[k] } }
function lname(g) { return g > 0 ? g " Gbit/s" : "not shaped" }
function median(arr, m,   i, j, t) {
  for (i = 2; i <= m; i++) { t = arr[i]; for (j = i - 1; j >= 1 && arr[j] > t; j--) arr[j + 1] = arr[j]; arr[j + 1] = t }
  return m % 2 ? arr[(m + 1) / 2] : (arr[m / 2] + arr[m / 2 + 1]) / 2 }
{ g = val("link_gbit"); p = val("ranks"); nb = val("bytes"); t = val("mpi_us") * 1e-6; tl = val("larch_us") * 1e-6
  k = ++cnt; L[k] = $0; G[k] = g; P[k] = p; B[k] = nb; T[k] = t; TL[k] = tl; an[g] = val("alpha_nominal_us") * 1e-6
  x1 = 2 * (p - 1) / t; x2 = 2 * (p - 1) / p * nb / t
  acc(g, x1, x2); acc(g SUBSEP p, x1, x2)
  if (!(g in seen)) { seen[g] = 1; order[++ng] = g }
  if (!((g, p) in seen)) { seen[g, p] = 1; porder[g] = porder[g] " " p } }
END {
  printf("| link (shaped) | nodes | points | nominal alpha us | nominal beta GB/s | fitted alpha us | fitted beta GB/s | fitted beta / nominal |\n|---|---|---|---|---|---|---|---|\n") > md
  for (j = 1; j <= ng; j++) { g = order[j]; bn = g > 0 ? g * 1e9 / 8 : 0
    fit(g); np = split(substr(porder[g], 2), ps, " ")
    for (i = 0; i <= np; i++) { k = i ? g SUBSEP ps[i] : g; if (i) fit(k)
      printf("| %s | %s | %d | %g | %s | %.1f | %.4f | %s |\n", lname(g), i ? ps[i] : "all", npt[k], an[g] * 1e6,
        (bn > 0) ? sprintf("%.3f", bn / 1e9) : "-", fa[k] * 1e6, 1 / fc[k] / 1e9, (bn > 0) ? sprintf("%.2f", 1 / fc[k] / bn) : "-") > md } }
  printf("\n| link | nodes | bytes | measured ms | model (nominal) ms | rel. error | model (fitted, all nodes) ms | rel. error | larch buckets ms |\n|---|---|---|---|---|---|---|---|---|\n") > md
  for (k = 1; k <= cnt; k++) { g = G[k]; p = P[k]; nb = B[k]
    x1 = 2 * (p - 1); x2 = 2 * (p - 1) / p * nb
    tn = (g > 0) ? an[g] * x1 + x2 / (g * 1e9 / 8) : -1; tf = fa[g] * x1 + fc[g] * x2
    if (tn > 0) { en[g, p, ++mn[g, p]] = (tn - T[k]) / T[k]; if (en[g, p, mn[g, p]] < 0) en[g, p, mn[g, p]] *= -1 }
    ef[g, p, ++mf[g, p]] = (tf - T[k]) / T[k]; if (ef[g, p, mf[g, p]] < 0) ef[g, p, mf[g, p]] *= -1
    printf("| %s | %d | %d | %.3f | %s | %s | %.3f | %+.2f | %.3f |\n", lname(g), p, nb, T[k] * 1e3,
      (tn > 0) ? sprintf("%.3f", tn * 1e3) : "-", (tn > 0) ? sprintf("%+.2f", (tn - T[k]) / T[k]) : "-", tf * 1e3, (tf - T[k]) / T[k], TL[k] * 1e3) > md
    line = L[k]; sub(/}$/, "", line)
    printf "%s,\"model_nominal_us\":%s,\"model_fitted_us\":%.2f,\"fitted_alpha_us\":%.3f,\"fitted_beta_gbs\":%.4f}\n", line,
      (tn > 0) ? sprintf("%.2f", tn * 1e6) : "null", tf * 1e6, fa[g] * 1e6, 1 / fc[g] / 1e9 }
  printf("\n| link | nodes | median abs. rel. error, nominal model | median abs. rel. error, fitted model |\n|---|---|---|---|\n") > md
  for (j = 1; j <= ng; j++) { g = order[j]; np = split(substr(porder[g], 2), ps, " ")
    for (i = 1; i <= np; i++) { p = ps[i]; delete a1; delete a2
      for (q = 1; q <= mn[g, p]; q++) a1[q] = en[g, p, q]
      for (q = 1; q <= mf[g, p]; q++) a2[q] = ef[g, p, q]
      printf("| %s | %d | %s | %.2f |\n", lname(g), p, mn[g, p] ? sprintf("%.2f", median(a1, mn[g, p])) : "-", median(a2, mf[g, p])) > md } }
}' "$REFIT" > "$JSONL.fit"
mv "$JSONL.fit" "$JSONL"
[ "$REFIT" = "$JSONL.tmp" ] && rm -f "$JSONL.tmp"
cat "$JSONL"
echo
cat "$OUT/netem_allreduce.md"
