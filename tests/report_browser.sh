#!/usr/bin/env bash
# report_browser.sh LARCH SRC - the HTML run report in a real browser: a
# short run's report.html rendered by headless Chromium (Debian's chromium,
# installed by launch/setup.sh --test) loads without console errors (no
# script error, nothing it fails to fetch), its script reports every curve
# laid out with a non-empty box, and its screenshot is far from blank (PNG
# size against a blank page's, measured in the same run). Skipped (77) where
# chromium is absent.
. "$(dirname "$0")/cli_helpers.bash"
CHROME=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROME" ]; then
  echo "report_browser: SKIPPED: no chromium on this machine (Debian: apt-get install chromium, or bash launch/setup.sh --test)"
  exit 77
fi
export HOME=$TMP OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
chrome() {  # chrome LOG ARGS...: headless, own profile, console to LOG
  local log=$1; shift
  timeout 90 "$CHROME" --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir="$TMP/profile" \
    --enable-logging=stderr --v=0 --window-size=1400,1600 "$@" 2> "$log"
}
"$LARCH" train "$SRC/tests/configs/synth_mlp.yaml" --set train.epochs=1 --out "$TMP/run" > "$TMP/train.log" 2>&1 \
  || { fail "train: $(tail -3 "$TMP/train.log")"; finish report_browser; exit; }
PAGE=file://$TMP/run/report.html
chrome "$TMP/dom.err" --dump-dom "$PAGE" > "$TMP/dom.html" || fail "chromium --dump-dom exited $?: $(tail -3 "$TMP/dom.err")"
if grep -q ':CONSOLE' "$TMP/dom.err"; then fail "console messages: $(grep ':CONSOLE' "$TMP/dom.err" | head -3)"
else pass "no console errors"; fi
curves=$(grep -o 'data-curves="[0-9]*"' "$TMP/dom.html" | tr -dc 0-9)
drawn=$(grep -o 'data-drawn="[0-9]*"' "$TMP/dom.html" | tr -dc 0-9)
[ -n "$curves" ] && [ "$curves" -ge 8 ] && [ "$drawn" = "$curves" ] && pass "the page's script ran: $drawn of $curves curves laid out" \
  || fail "curves laid out: '${drawn:-none}' of '${curves:-none}' (the script did not run or a curve is empty)"
grep -q 'class="final-acc"' "$TMP/dom.html" && pass "final metrics in the DOM" || fail "no final metrics in the DOM"
printf '<!DOCTYPE html><html><body></body></html>\n' > "$TMP/blank.html"
chrome "$TMP/shot.err" --screenshot="$TMP/report.png" "$PAGE" > /dev/null || fail "screenshot exited $?"
chrome "$TMP/blank.err" --screenshot="$TMP/blank.png" "file://$TMP/blank.html" > /dev/null || fail "blank screenshot exited $?"
a=$(stat -c %s "$TMP/report.png" 2>/dev/null || echo 0); b=$(stat -c %s "$TMP/blank.png" 2>/dev/null || echo 1)
[ "$a" -gt $((10 * b)) ] && pass "screenshot $a bytes vs a blank page's $b" || fail "screenshot $a bytes vs a blank page's $b: nearly blank"
finish report_browser
