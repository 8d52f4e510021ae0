# cli_helpers.bash - sourced by the command-line tests (tests/cli_*.sh):
# LARCH and SRC from the arguments, a temporary directory TMP removed at
# exit, and the pass/fail/expect checks; `finish NAME` reports and sets the
# exit status.
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
