#!/usr/bin/env bash
# Adversarial robustness of fmnist_cnn (docs/adversarial.md), in one run:
#   1. trains launch/configs/fmnist_cnn.yaml for EPOCHS epochs three ways:
#      standard, fast FGSM with random start (adversarial.method=fgsm_rs) and
#      PGD-K adversarial training (adversarial.method=pgd), all at eps EPS
#      (pixel units 0..1), one after the other, and takes each run's time per
#      epoch from its "time: X s in N steps" line (the step window: batches,
#      attacks, passes, updates; evaluation and checkpoints are outside);
#   2. attacks every model with `larch attack` on the first SAMPLES test
#      samples: FGSM and PGD-20 (L-inf, random start, step 2.5 eps / 20)
#      at eps 0, 0.05, 0.1, 0.2 (--sanity adds PGD-40, 2 restarts and eps 1 for
#      the standard model), and the standard model under attacks crafted on
#      the fgsm_rs model (black-box transfer);
#   3. the cost, interleaved so that the machine's load hits every kind alike:
#      ROUNDS rounds of standard / fgsm_rs / pgd-K / trades-K runs of
#      TSTEPS steps each; the best step-window time per step of each kind,
#      scaled to an epoch (234 steps of 256), and its ratio to standard;
#   4. writes OUT/table.md (the tables of docs/adversarial.md) and keeps each
#      attack's output, JSON lines and plots in OUT.
# Usage: bash launch/experiments/adversarial.sh [--epochs E] [--eps EPS] [--pgd-steps K] [--samples N]
#        [--rounds R] [--timing-steps S] [--timing-only] [--out DIR]
# Environment: BUILD (build). Takes ~35 min at the defaults on 2 busy cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
EPOCHS=1 EPS=0.1 K=7 SAMPLES=1000 OUT=/tmp/larch_adversarial ROUNDS=2 TSTEPS=30 TIMING_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --epochs) EPOCHS=$2; shift 2 ;;
    --eps) EPS=$2; shift 2 ;;
    --pgd-steps) K=$2; shift 2 ;;
    --samples) SAMPLES=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --timing-steps) TSTEPS=$2; shift 2 ;;
    --timing-only) TIMING_ONLY=1; shift ;;
    -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "adversarial.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
BUILD=${BUILD:-build}
LARCH=$BUILD/larch
CFG=launch/configs/fmnist_cnn.yaml
[ -x "$LARCH" ] || { echo "adversarial.sh: $LARCH not built" >&2; exit 1; }
mkdir -p "$OUT"
kind_args() {  # the --set options of a kind of training
  case $1 in
    standard) ;;
    fgsm_rs) echo "--set adversarial.method=fgsm_rs --set adversarial.eps=$EPS" ;;
    pgd) echo "--set adversarial.method=pgd --set adversarial.eps=$EPS --set adversarial.steps=$K" ;;
    trades) echo "--set adversarial.method=trades --set adversarial.eps=$EPS --set adversarial.steps=$K" ;;
  esac
}
timing() {
  declare -A BEST
  for ((r = 1; r <= ROUNDS; r++)); do
    for kind in standard fgsm_rs pgd trades; do
      rm -rf "$OUT/time_$kind"
      # shellcheck disable=SC2046
      "$LARCH" train "$CFG" --out "$OUT/time_$kind" --set train.max_steps="$TSTEPS" --set checkpoint.at_end=false \
          --set train.eval_samples=1000 $(kind_args $kind) > "$OUT/time_$kind.log" 2>&1
      t=$(sed -n 's/^time: \([0-9.]*\) s in \([0-9]*\) steps.*/\1/p' "$OUT/time_$kind.log")
      echo "round $r $kind: $t s for $TSTEPS steps" >&2
      if [ -z "${BEST[$kind]:-}" ] || awk -v a="$t" -v b="${BEST[$kind]}" 'BEGIN{exit !(a < b)}'; then BEST[$kind]=$t; fi
    done
  done
  {
    echo "Cost of a training step, fmnist_cnn, batch 256, $(nproc) cores shared; best of $ROUNDS interleaved rounds of $TSTEPS steps"
    echo "(step window: batches, attacks, passes, updates), scaled to an epoch of 234 steps:"
    echo
    echo "| training | s / step | s / epoch | x standard |"
    echo "|---|---|---|---|"
    for kind in standard fgsm_rs pgd trades; do
      name=$kind; [ $kind = pgd ] && name="pgd-$K"; [ $kind = trades ] && name="trades-$K"
      python3 -c "
t, b = ${BEST[$kind]} / $TSTEPS, ${BEST[standard]} / $TSTEPS
print('| $name | %.3f | %.0f | %.2f |' % (t, t * 234, t / b))"
    done
  } > "$OUT/timing.md"
  cat "$OUT/timing.md"
}
if [ "$TIMING_ONLY" = 1 ]; then timing; exit 0; fi
declare -A SECS STEPS CKPT ACC
for kind in standard fgsm_rs pgd; do
  set -- --set train.epochs="$EPOCHS" --set checkpoint.at_end=true
  case $kind in
    fgsm_rs) set -- "$@" --set adversarial.method=fgsm_rs --set adversarial.eps="$EPS" ;;
    pgd) set -- "$@" --set adversarial.method=pgd --set adversarial.eps="$EPS" --set adversarial.steps="$K" ;;
  esac
  rm -rf "$OUT/$kind"
  echo "== training $kind: $LARCH train $CFG $*" >&2
  "$LARCH" train "$CFG" --out "$OUT/$kind" "$@" > "$OUT/$kind.log" 2>&1
  SECS[$kind]=$(sed -n 's/^time: \([0-9.]*\) s in \([0-9]*\) steps.*/\1/p' "$OUT/$kind.log")
  STEPS[$kind]=$(sed -n 's/^time: \([0-9.]*\) s in \([0-9]*\) steps.*/\2/p' "$OUT/$kind.log")
  ACC[$kind]=$(sed -n 's/.*test accuracy \([0-9.]*\);.*/\1/p' "$OUT/$kind.log" | tail -1)
  CKPT[$kind]=$(ls "$OUT/$kind"/checkpoints/ckpt-*.h5 | tail -1)
  grep -E '^(adversarial|time|done):' "$OUT/$kind.log" >&2 || true
done

EPS_LIST=0,0.05,0.1,0.2
for kind in standard fgsm_rs pgd; do
  extra=()
  [ "$kind" = standard ] && extra=(--sanity --transfer "$CFG:${CKPT[fgsm_rs]}")
  echo "== attacking $kind" >&2
  "$LARCH" attack "$CFG" --checkpoint "${CKPT[$kind]}" --eps $EPS_LIST --method fgsm,pgd --steps 20 \
      --samples "$SAMPLES" --json "$OUT/attack_$kind.jsonl" --png "$OUT/attack_$kind.png" \
      --grid "$OUT/grid_$kind.png" "${extra[@]}" > "$OUT/attack_$kind.txt" 2>&1
  cat "$OUT/attack_$kind.txt" >&2
done

acc() {  # acc KIND METHOD EPS: the accuracy of that row of the JSON lines
  python3 - "$OUT/attack_$1.jsonl" "$2" "$3" <<'EOF' 2>/dev/null || \
  grep "\"method\": \"$2\"" "$OUT/attack_$1.jsonl" | grep "\"eps\": $3," | sed -n 's/.*"accuracy": \([0-9.]*\).*/\1/p' | head -1
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["method"] == sys.argv[2] and abs(float(r["eps"]) - float(sys.argv[3])) < 1e-9:
        print("%.4f" % r["accuracy"]); break
EOF
}
{
  echo "fmnist_cnn, $EPOCHS epoch(s) of training each; attacks on the first $SAMPLES test samples; eps in pixel units (0..1)."
  echo "PGD-20: L-inf, random start, step 2.5 eps / 20; FGSM: one step of eps. Training attacks at eps $EPS."
  echo
  echo "| model | clean | FGSM 0.05 | FGSM 0.1 | FGSM 0.2 | PGD-20 0.05 | PGD-20 0.1 | PGD-20 0.2 |"
  echo "|---|---|---|---|---|---|---|---|"
  for kind in standard fgsm_rs pgd; do
    name=$kind; [ $kind = pgd ] && name="pgd-$K"
    printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n" "$name" "$(acc $kind clean 0)" \
      "$(acc $kind fgsm 0.05)" "$(acc $kind fgsm 0.1)" "$(acc $kind fgsm 0.2)" \
      "$(acc $kind pgd 0.05)" "$(acc $kind pgd 0.1)" "$(acc $kind pgd 0.2)"
  done
  echo
  echo "| training | steps | seconds | s / epoch | x standard | test accuracy (full test set) |"
  echo "|---|---|---|---|---|---|"
  for kind in standard fgsm_rs pgd; do
    name=$kind; [ $kind = pgd ] && name="pgd-$K"
    python3 -c "
s, n, base, nb = ${SECS[$kind]}, ${STEPS[$kind]}, ${SECS[standard]}, ${STEPS[standard]}
epe = s / n * $((60000 / 256)); ebase = base / nb * $((60000 / 256))
print('| $name | %d | %.1f | %.1f | %.2f | ${ACC[$kind]} |' % (n, s, epe, epe / ebase))"
  done
  echo
  echo "Black-box transfer (attacks crafted on the fgsm_rs model, scored on the standard model):"
  echo
  echo "| attack | eps 0.05 | eps 0.1 | eps 0.2 |"
  echo "|---|---|---|---|"
  for m in fgsm pgd; do
    echo "| transfer-$m | $(acc standard transfer-$m 0.05) | $(acc standard transfer-$m 0.1) | $(acc standard transfer-$m 0.2) |"
  done
} > "$OUT/table.md"
cat "$OUT/table.md"
timing
