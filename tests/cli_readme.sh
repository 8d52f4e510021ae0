#!/usr/bin/env bash
# cli_readme.sh LARCH SRC - every command of README.md's usage blocks runs:
# the ```sh blocks of the "## Using larch" section (its subsections included,
# so the optimizer example too) are read from README.md itself, so a README
# edit that introduces a failing command breaks this test.
#
# The commands run as written from a scratch directory that has `build/larch`
# (this build) and `launch/` (the sources'), so their default outputs
# (runs/<config>) land in the temporary directory, with these changes:
#   - `larch train` gets `--set train.max_steps=N`: N = 2 for the first run
#     of a config, 4 for the second, ... (so that `checkpoint.resume=auto`
#     has steps left to run); `larch bench step` gets `--rounds 1`;
#   - placeholders: an optional `[--out DIR]` is left out (the default
#     runs/<config> is used), `info|verify` runs both, `FILE` is the newest
#     checkpoint written so far, and the README's example checkpoint
#     `ckpt-<step>.h5` (the end of a full run, checked against `larch
#     schedule`) becomes the newest checkpoint of the shortened runs;
#   - in the sanitizer build (LARCH_TEST_SANITIZED=ON) `train` and `eval`
#     also get `--set train.eval_samples=1000`;
#   - skipped, because they take minutes (the list is explicit and a skipped
#     command must still be in the README): SKIP below.
# A command with a placeholder this test does not know fails the test.
. "$(dirname "$0")/cli_helpers.bash"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
SKIP=("bash launch/experiments/transfer.sh" "bash launch/experiments/fewshot.sh" "bash launch/experiments/compress.sh"
      "bash launch/mpirun.sh -n 2 launch/configs/fmnist_sweep.yaml --out runs/sweep"
      "bash launch/experiments/biasvar.sh" "bash launch/experiments/ntk.sh")
README=$SRC/README.md
DATA=/usr/share/datasets/fashion-mnist

# the ```sh blocks of "## Using larch" up to the next "## " heading; a line
# ending in "\" continues on the next; trailing " # comments" dropped
extract() {
  awk '/^## /{ inside = ($0 ~ /^## Using larch/) } inside && /^```/{ fence = !fence; sh = fence && ($0 ~ /^```sh/); next }
       inside && fence && sh { print }' "$README" |
    sed -E 's/[[:space:]]+# .*$//' |
    awk '{ line = line $0 } /\\$/ { sub(/\\$/, "", line); next } { print line; line = "" }' |
    sed -E 's/[[:space:]]+/ /g; s/^ //; s/ $//' | grep -v '^$'
}
mapfile -t cmds < <(extract)
[ "${#cmds[@]}" -ge 10 ] && pass "README: ${#cmds[@]} commands in the usage blocks" \
  || fail "README: only ${#cmds[@]} commands found in the usage blocks (extraction broken?)"
for s in "${SKIP[@]}"; do
  printf '%s\n' "${cmds[@]}" | grep -qxF -- "$s" && pass "skip list: '$s' is a README command" \
    || fail "skip list: '$s' is no longer in README.md; update SKIP"
done
if [ ! -e "$DATA/train-images-idx3-ubyte.gz" ]; then
  echo "SKIP: $DATA is not installed (Debian package dataset-fashion-mnist); the README commands need it"
  finish cli_readme; exit
fi

[ -n "${TMP:-}" ] && [ -d "$TMP" ] || { echo "cli_readme: no temporary directory"; exit 1; }
W=$TMP/work
mkdir -p "$W/build"
ln -s "$LARCH" "$W/build/larch"
ln -s "$SRC/launch" "$W/launch"
cd "$W" || exit 1
declare -A runs=()                               # train commands so far, per config
newest() { ls -t runs/*/checkpoints/ckpt-*.h5 2>/dev/null | head -1; }

for cmd in "${cmds[@]}"; do
  skip=0
  for s in "${SKIP[@]}"; do [ "$cmd" = "$s" ] && skip=1; done
  if [ $skip -eq 1 ]; then echo "skipped (takes minutes): $cmd"; continue; fi
  run_cmd=${cmd//" [--out DIR]"/}
  variants=("$run_cmd")
  if [[ $run_cmd == *" info|verify "* ]]; then variants=("${run_cmd/info|verify/info}" "${run_cmd/info|verify/verify}"); fi
  for c in "${variants[@]}"; do
    if [[ $c =~ ckpt-([0-9]+)\.h5 ]]; then                  # the README's example checkpoint of a full run
      want=${BASH_REMATCH[1]}; want=$((10#$want))
      cfg=$(grep -oE 'launch/configs/[a-z_]+\.yaml' <<<"$c")
      full=$("$LARCH" schedule "$cfg" | tail -1 | cut -d, -f1)
      [ "$full" = "$want" ] && pass "README checkpoint ckpt-${BASH_REMATCH[1]}.h5 is the last step of $cfg" \
        || fail "README names ckpt-${BASH_REMATCH[1]}.h5, but a full run of $cfg ends at step $full"
      ck=$(newest)
      c=$(sed -E "s#[^ ]*ckpt-${BASH_REMATCH[1]}\.h5#$ck#" <<<"$c")
    fi
    if [[ $c == *" FILE"* ]]; then c=${c//" FILE"/" $(newest)"}; fi
    if [[ $c == *" train "* ]]; then
      cfg=$(grep -oE 'launch/configs/[a-z_]+\.yaml' <<<"$c")
      runs[$cfg]=$(( ${runs[$cfg]:-0} + 1 ))
      c="$c --set train.max_steps=$((2 * ${runs[$cfg]}))"
    fi
    if [[ $c == *" bench step "* ]]; then c="$c --rounds 1"; fi
    # under the sanitizers, scoring the whole test split is most of each
    # run's time and repeats the same code: the first 1000 samples only
    if [ "${LARCH_TEST_SANITIZED:-OFF}" = ON ] && [[ $c == *" train "* || $c == *" eval "* ]]; then
      c="$c --set train.eval_samples=1000"
    fi
    if grep -qE '\[|\]|\||\b[A-Z]{3,}\b' <<<"${c//OMPI_[A-Z_]*=1/}"; then
      fail "README command has a placeholder this test does not know: $cmd"; continue
    fi
    out=$(timeout 300 bash -c "$c" 2>&1); st=$?
    if [ $st -eq 0 ]; then pass "$c"; else fail "$c -> exit $st: $(tail -5 <<<"$out")"; fi
    if [[ $c == *"--png "* ]]; then
      png=$(grep -oE -- '--png [^ ]+' <<<"$c" | cut -d' ' -f2)
      [ -s "$png" ] && pass "$png written" || fail "$png not written"
    fi
  done
done
finish cli_readme
