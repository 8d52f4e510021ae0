# cli_helpers.bash - sourced by the command-line tests (tests/cli_*.sh):
# LARCH and SRC from the arguments, a temporary directory TMP removed at
# exit, the pass/fail/expect checks (`finish NAME` reports and sets the exit
# status), and for MPI runs MPIEXEC, `run NP OUT [--set ...]` (trains $CFG
# on NP ranks into OUT, log in OUT.log; RUN_TIMEOUT seconds, default 300)
# and `ck RUN STEP` (the path of a run's checkpoint of that step).
set -u
LARCH=$1; SRC=$2
TMP=$(mktemp -d /tmp/larch_cli_XXXXXX); trap 'rm -rf "$TMP"' EXIT
fails=0
pass() { echo "ok: $1"; }
fail() { echo "FAIL: $1"; fails=$((fails + 1)); }
# expect STATUS NEEDLE -- command...: exit status and a substring of stderr+stdout
expect() {
  local want=$1 needle=$2; shift 3
  local out; out=$("$@" 2>&1); local st=$?
  if [ "$st" -ne "$want" ]; then fail "$* -> exit $st (want $want): $out"; return; fi
  if [ -n "$needle" ] && ! grep -qF -- "$needle" <<<"$out"; then fail "$* -> output lacks '$needle': $out"; return; fi
  pass "$*"
}
finish() { echo "$1: $fails failed"; [ "$fails" -eq 0 ]; }
MPIEXEC=${LARCH_MPIEXEC:-mpiexec}
run() {
  local np=$1 out=$2; shift 2
  timeout "${RUN_TIMEOUT:-300}" "$MPIEXEC" -n "$np" --oversubscribe "$LARCH" train "$CFG" --out "$out" "$@" > "$out.log" 2>&1
}
ck() { printf '%s/checkpoints/ckpt-%08d.h5' "$1" "$2"; }
npy() {  # npy FILE DESCR SHAPE < data: a .npy version 1.0 file, header padded to 64 bytes
  local dict="{'descr': '$2', 'fortran_order': False, 'shape': $3, }"
  local len=$(( ${#dict} + 1 )) pad
  pad=$(( (64 - (10 + len) % 64) % 64 )); len=$((len + pad))
  { printf '\x93NUMPY\x01\x00'; printf "\\x$(printf %02x $((len % 256)))\\x$(printf %02x $((len / 256)))"
    printf '%s%*s\n' "$dict" "$pad" ""; cat; } > "$1"
}
