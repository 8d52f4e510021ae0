#!/usr/bin/env bash
# cli_report.sh LARCH SRC - watching a run (docs/watching.md):
# - metrics.jsonl train records carry the per-phase times of rank 0 and of
#   the slowest rank (2 ranks through mpiexec), all six phases, non-negative,
#   compute time positive;
# - `larch train` writes RUN_DIR/run.json (status, ranks, command) and the
#   self-contained RUN_DIR/report.html (curves, final accuracy, checkpoints,
#   config; nothing fetched), a failed run's status, and a report it
#   cannot write only warns;
# - `larch report` rebuilds the page, `larch plot` draws one and two runs
#   (--x step|epoch|time) and a multi-task run; their usage and input errors.
. "$(dirname "$0")/cli_helpers.bash"
command -v "$MPIEXEC" > /dev/null || { echo "cli_report: no mpiexec"; exit 1; }
command -v gnuplot > /dev/null || { echo "cli_report: no gnuplot (apt-get install gnuplot-nox)"; exit 1; }
CFG=$SRC/tests/configs/synth_mlp.yaml
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
RUN_TIMEOUT=120
R=$TMP/r2
run 2 "$R" --set train.epochs=1 --set checkpoint.every_steps=8 || fail "2 ranks: $(tail -3 "$R.log")"

# the phase breakdown: every train record, both ranks' views
n=$(grep -c '"samples_per_s"' "$R/metrics.jsonl")
np=$(grep '"samples_per_s"' "$R/metrics.jsonl" | grep -c '"phases": {"rank0": {"data_s": [0-9.]*, "compute_s": [0-9.]*, "sync_s": [0-9.]*, "optim_s": [0-9.]*, "eval_s": [0-9.]*, "ckpt_s": [0-9.]*}, "slowest": {"rank": [01], "data_s": [0-9.]*, "compute_s": [0-9.]*, "sync_s": [0-9.]*, "optim_s": [0-9.]*, "eval_s": [0-9.]*, "ckpt_s": [0-9.]*}}}$')
[ "$n" -ge 3 ] && [ "$np" -eq "$n" ] && pass "phases in all $n train records" || fail "phases in $np of $n train records: $(head -1 "$R/metrics.jsonl")"
grep '"samples_per_s"' "$R/metrics.jsonl" | sed 's/.*"rank0": {[^}]*"compute_s": \([0-9.]*\).*/\1/' | awk '$1 <= 0 {bad++} END {exit bad > 0}' \
  && pass "compute time positive in every record" || fail "a record with no compute time"
# the phases account for the loop's time: their sum over the records against the last record's "time"
ratio=$(grep '"samples_per_s"' "$R/metrics.jsonl" | sed 's/.*"time": \([0-9.]*\).*"rank0": {"data_s": \([0-9.]*\), "compute_s": \([0-9.]*\), "sync_s": \([0-9.]*\), "optim_s": \([0-9.]*\), "eval_s": \([0-9.]*\), "ckpt_s": \([0-9.]*\)}.*/\1 \2 \3 \4 \5 \6 \7/' \
  | awk '{s += $2 + $3 + $4 + $5 + $6 + $7; t = $1} END {printf "%.3f %.6f %.3f", (t > 0 ? s / t : 0), s, t}')
# "time" is written to the millisecond and the whole run lasts tens of them: the sum may pass it by that rounding
read -r ratio psum ptime <<<"$ratio"
awk -v r="$ratio" -v s="$psum" -v t="$ptime" 'BEGIN {exit !(r >= 0.5 && s <= t + 0.0005)}' \
  && pass "phases cover $ratio of the loop's time ($psum s of $ptime s)" || fail "phases cover $ratio of the loop's time ($psum s of $ptime s)"
grep -q '"ckpt_s": 0\.0*[1-9]' "$R/metrics.jsonl" && pass "checkpoint time recorded" || fail "no checkpoint time in any record"

# run.json and the page written by larch train
grep -q '"status":"finished"' "$R/run.json" && grep -q '"ranks":2' "$R/run.json" && grep -q '"command":".*train .*synth_mlp.yaml' "$R/run.json" \
  && pass "run.json" || fail "run.json: $(cat "$R/run.json" 2>&1)"
H=$R/report.html
[ -s "$H" ] || fail "no report.html"
curves=$(grep -o '<polyline class="curve"' "$H" | wc -l)
[ "$curves" -ge 8 ] && pass "report: $curves curves" || fail "report: $curves curves"
acc=$(grep '"split": "test"' "$R/metrics.jsonl" | tail -1 | sed 's/.*"accuracy": \([0-9.]*\).*/\1/')
grep -q "class=\"final-acc\">$(printf %.4f "$acc")<" "$H" && pass "report: final accuracy $acc" || fail "report lacks the final accuracy $acc"
grep -q 'ckpt-00000008.h5' "$H" && grep -q 'ckpt-00000016.h5' "$H" && pass "report: checkpoints" || fail "report: checkpoints missing"
grep -q 'synthetic' "$H" && grep -q '2 x 1' "$H" && pass "report: config and ranks x threads" || fail "report: config or ranks missing"
grep -Eq '(src|href)=|@import|url\(' "$H" && fail "report fetches something: $(grep -Eo '(src|href)=[^ >]*' "$H" | head -3)" || pass "report: self-contained"
grep -q 'http-equiv="refresh"' "$H" && fail "a finished run's report still reloads itself" || pass "finished: no reload"

# larch report rebuilds it; errors
expect 0 "wrote $TMP/again.html" -- "$LARCH" report "$R" --out "$TMP/again.html"
cmp -s <(sed 's/Written by.*//' "$H") <(sed 's/Written by.*//' "$TMP/again.html") && pass "larch report = larch train's page" \
  || fail "larch report differs from the page larch train wrote"
expect 1 "$TMP/none/metrics.jsonl: No such file or directory" -- "$LARCH" report "$TMP/none"
expect 2 "usage: larch report" -- "$LARCH" report
expect 2 "unexpected argument '--bogus'" -- "$LARCH" report "$R" --bogus
expect 1 "cannot write $TMP/nowhere/r.html" -- "$LARCH" report "$R" --out "$TMP/nowhere/r.html"
printf 'not json\n' > "$TMP/empty.jsonl"; mkdir -p "$TMP/empty"; mv "$TMP/empty.jsonl" "$TMP/empty/metrics.jsonl"
expect 1 "no records" -- "$LARCH" report "$TMP/empty"

# a report that cannot be written warns; training goes on and succeeds
mkdir -p "$TMP/w/report.html"
"$LARCH" train "$CFG" --set train.epochs=1 --out "$TMP/w" > "$TMP/w.log" 2>&1; st=$?
[ "$st" -eq 0 ] && grep -q 'warning: the run report is not written' "$TMP/w.log" && [ "$(grep -c 'run report' "$TMP/w.log")" -eq 1 ] \
  && pass "unwritable report: one warning, exit 0" || fail "unwritable report: exit $st: $(tail -3 "$TMP/w.log")"

# a running run's page reloads itself (run.json as larch train writes it at the start)
mkdir -p "$TMP/live"; cp "$R/metrics.jsonl" "$R/config.yaml" "$TMP/live/"
sed 's/"status":"finished"/"status":"running"/' "$R/run.json" > "$TMP/live/run.json"
"$LARCH" report "$TMP/live" 2> /dev/null && grep -q '<meta http-equiv="refresh" content="30">' "$TMP/live/report.html" \
  && grep -q 'class="status">running<' "$TMP/live/report.html" && pass "running: the page reloads itself" || fail "running run: no reload"

# a failed run: its own error and exit status; run.json and the page say so
"$LARCH" train "$CFG" --set optim.lr=100 --out "$TMP/nan" > "$TMP/nan.log" 2>&1; st=$?
[ "$st" -eq 1 ] && grep -q 'error: the training loss is' "$TMP/nan.log" && grep -q '"status":"failed: the training loss is' "$TMP/nan/run.json" \
  && grep -q 'class="status">failed: the training loss is' "$TMP/nan/report.html" && pass "failed run: status in run.json and the page" \
  || fail "failed run: exit $st, $(tail -1 "$TMP/nan.log"), $(grep status "$TMP/nan/run.json" 2>&1)"

# larch plot
png_ok() { [ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = "211PNG" ] && [ "$(stat -c %s "$1")" -gt 20000 ]; }
"$LARCH" train "$CFG" --set train.epochs=1 --set optim.lr=0.01 --out "$TMP/lr01" > /dev/null 2>&1 || fail "second run"
for x in step epoch time; do
  "$LARCH" plot "$R" "$TMP/lr01" --png "$TMP/p_$x.png" --x "$x" > "$TMP/p.log" 2>&1 && png_ok "$TMP/p_$x.png" \
    && pass "plot two runs --x $x" || fail "plot --x $x: $(cat "$TMP/p.log")"
done
"$LARCH" train "$SRC/tests/configs/synth_multitask.yaml" --set train.epochs=1 --out "$TMP/mt" > /dev/null 2>&1 || fail "multi-task run"
expect 0 "wrote $TMP/mt.png" -- "$LARCH" plot "$TMP/mt" --png "$TMP/mt.png"
grep -q 'data-label="coarse"' "$TMP/mt/report.html" && pass "multi-task report: per-task curves" || fail "multi-task report lacks task curves"
expect 2 "usage: larch plot" -- "$LARCH" plot "$R"
expect 0 "usage: larch plot" -- "$LARCH" plot --help
expect 0 "usage: larch report" -- "$LARCH" report --help
expect 2 "--x bogus: expected step, epoch or time" -- "$LARCH" plot "$R" --png "$TMP/b.png" --x bogus
expect 2 "--size 5: expected W,H" -- "$LARCH" plot "$R" --png "$TMP/b.png" --size 5
expect 1 "$TMP/none/metrics.jsonl: No such file or directory" -- "$LARCH" plot "$R" "$TMP/none" --png "$TMP/b.png"
[ -e "$TMP/b.png" ] && fail "a failed plot left $TMP/b.png" || pass "no PNG left by a failed plot"
expect 1 "--png $TMP/nowhere/p.png: cannot write" -- "$LARCH" plot "$R" --png "$TMP/nowhere/p.png"
{ head -2 "$R/metrics.jsonl"; printf '{"step": 9, "lo\n'; } > "$TMP/cut.jsonl"; mkdir -p "$TMP/cut"; mv "$TMP/cut.jsonl" "$TMP/cut/metrics.jsonl"
expect 0 "1 line(s) of metrics.jsonl skipped" -- "$LARCH" plot "$TMP/cut" --png "$TMP/cut.png"
finish cli_report
