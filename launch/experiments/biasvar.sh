#!/usr/bin/env bash
# Bias-variance sweeps (docs/biasvar.md) through `larch biasvar`, each point
# K models trained by 2 groups x 1 rank (one mpiexec of 2 ranks per point):
#   width        Fashion-MNIST, 0-1 loss: model.fc1.units of
#                launch/configs/biasvar_fmnist.yaml (500 training images,
#                100 epochs), K bootstrap resamples
#   l2           the same at width 256 with an L2 penalty coef * sum w^2
#   width_noise  the width sweep with data.label_noise 0.2 (20% of the
#                training labels changed to another class, keyed by sample)
#   reg_width    squared error on launch/configs/biasvar_regression.yaml
#                (known function and noise), K fresh training sets
#   reg_l2       the same at width 64 with an L2 penalty
# Writes OUT/<sweep>/<value>/ (the runs), docs/biasvar/<sweep>.jsonl (one
# biasvar record per point, with the swept value, the models' mean final
# training loss and mean test loss), docs/biasvar/<sweep>.md (the table) and
# docs/biasvar/<sweep>.png (gnuplot).
# Usage: bash launch/experiments/biasvar.sh [OUT, default runs/biasvar]
# Environment: BUILD (build), K (6 models per point on Fashion-MNIST; the
# regression uses 2K), SWEEPS (default "width l2 width_noise reg_width reg_l2"),
# DOCS (docs/biasvar), PLOT_ONLY=1 (redraw the tables and plots from
# DOCS/<sweep>.jsonl without training). About 10 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/biasvar}
BUILD=${BUILD:-build}
K=${K:-6}
SWEEPS=${SWEEPS:-width l2 width_noise reg_width reg_l2}
DOCS=${DOCS:-docs/biasvar}
[ -x "$BUILD/larch" ] || { echo "biasvar.sh: $BUILD/larch not built" >&2; exit 1; }
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
mkdir -p "$OUT" "$DOCS"
FM=launch/configs/biasvar_fmnist.yaml
RG=launch/configs/biasvar_regression.yaml
WIDTHS="2 4 8 16 32 64 128 256 512 1024"
L2S="0 0.0001 0.0003 0.001 0.003 0.01 0.03 0.1"
REG_WIDTHS="1 2 4 8 16 24 32 48 64 128 256 512"      # 1024 diverges at lr 0.02
REG_L2S="0 0.0001 0.0003 0.001 0.003 0.01 0.03 0.1 0.3 1"

# point SWEEP VALUE CONFIG MODELS RESAMPLE [--set ...]: one biasvar run, its record appended
point() {
  local sweep=$1 value=$2 cfg=$3 models=$4 how=$5; shift 5
  local dir=$OUT/$sweep/$value
  rm -rf "$dir"; mkdir -p "$OUT/$sweep"
  local t0=$SECONDS
  mpiexec -n 2 --oversubscribe --bind-to none "$BUILD/larch" biasvar "$cfg" --models "$models" "$how" \
    --set dist.groups=2 --out "$dir" "$@" > "$dir.log" 2>&1 \
    || { echo "biasvar.sh: $sweep=$value failed (left out; see $dir.log): $(grep -m1 FAILED "$dir.log")" >&2; return 0; }
  /usr/bin/python3 - "$dir" "$sweep" "$value" $((SECONDS - t0)) >> "$DOCS/$sweep.jsonl" <<'EOF'
import json, sys
d, sweep, value, secs = sys.argv[1:5]
rec = json.loads(open(d + "/biasvar.jsonl").readline())
runs = [json.loads(l) for l in open(d + "/summary.jsonl")]
ok = [r for r in runs if r["status"] == "ok"]
rec.update(sweep=sweep, value=float(value), seconds=int(secs),
           mean_train_loss=sum(r["final_train_loss"] for r in ok) / len(ok))
print(json.dumps(rec))
EOF
  echo "$sweep=$value done in $((SECONDS - t0)) s"
}

for sweep in $SWEEPS; do
  [ "${PLOT_ONLY:-0}" = 1 ] && break
  : > "$DOCS/$sweep.jsonl"
  case $sweep in
    width) for w in $WIDTHS; do point width "$w" $FM "$K" --bootstrap --set model.fc1.units="$w"; done ;;
    l2) for c in $L2S; do point l2 "$c" $FM "$K" --bootstrap --set model.fc1.units=256 \
          --set "regularization=[{type: l2, coef: $c}]"; done ;;
    width_noise) for w in $WIDTHS; do point width_noise "$w" $FM "$K" --bootstrap --set model.fc1.units="$w" \
          --set data.label_noise=0.2; done ;;
    reg_width) for w in $REG_WIDTHS; do point reg_width "$w" $RG $((2 * K)) --fresh --set model.fc1.units="$w"; done ;;
    reg_l2) for c in $REG_L2S; do point reg_l2 "$c" $RG $((2 * K)) --fresh --set "regularization=[{type: l2, coef: $c}]"; done ;;
    *) echo "biasvar.sh: unknown sweep $sweep" >&2; exit 2 ;;
  esac
done

# tables (python3, json) and plots (gnuplot; Debian: gnuplot-nox)
for sweep in $SWEEPS; do
  [ -s "$DOCS/$sweep.jsonl" ] || continue
  /usr/bin/python3 - "$DOCS" "$sweep" <<'EOF'
import json, sys
docs, sweep = sys.argv[1], sys.argv[2]
recs = [json.loads(l) for l in open(f"{docs}/{sweep}.jsonl")]
sq = recs[0]["loss"] == "squared"
pos = [r["value"] for r in recs if r["value"] > 0]
with open(f"{docs}/{sweep}.md", "w") as f, open(f"{docs}/{sweep}.dat", "w") as dat:
    r0 = recs[0]
    f.write(f"`{sweep}`: {r0['models']} models per point ({r0['resample']}), {r0['test_samples']} test samples, "
            f"config `{r0['config']}`; train loss: the models' mean loss of their last step; test cross-entropy: the "
            f"models' mean test loss in training's own evaluation; s: seconds per point "
            f"(2 groups x 1 rank, a shared 2-core machine)\n\n")
    if sq:
        f.write("| value | train loss | expected error | bias^2 | variance | noise | sum | cross term | s |\n")
        f.write("|---|---|---|---|---|---|---|---|---|\n")
    else:
        f.write("| value | train loss | test cross-entropy | 0-1 loss | bias | variance | Vu | Vb | net variance | Vb_w | s |\n")
        f.write("|---|---|---|---|---|---|---|---|---|---|---|\n")
    for r in recs:
        x = r["value"] if r["value"] > 0 else min(pos) / 3      # L2 = 0 drawn left of the others
        if sq:
            f.write(f"| {r['value']:g} | {r['mean_train_loss']:.4f} | {r['expected_error']:.4f} | {r['bias2']:.4f} | "
                    f"{r['variance']:.4f} | {r['noise']:.4f} | {r['sum']:.4f} | {r['cross']:+.4f} | {r['seconds']} |\n")
            dat.write(f"{x} {r['expected_error']} {r['bias2']} {r['variance']} {r['noise']} {r['mean_train_loss']}\n")
        else:
            f.write(f"| {r['value']:g} | {r['mean_train_loss']:.4f} | {r['mean_test_loss']:.4f} | {r['expected_loss']:.4f} | {r['bias']:.4f} | "
                    f"{r['variance']:.4f} | {r['var_unbiased']:.4f} | {r['var_biased']:.4f} | {r['net_variance']:+.4f} | "
                    f"{r['var_biased_weighted']:.4f} | {r['seconds']} |\n")
            dat.write(f"{x} {r['expected_loss']} {r['bias']} {r['variance']} {r['net_variance']} {r['mean_train_loss']} {r['mean_test_loss']}\n")
EOF
  case $sweep in
    *l2) XL="L2 coefficient (0 drawn at the left)" ;;
    *) XL="hidden units" ;;
  esac
  if grep -q '"loss": *"squared"' "$DOCS/$sweep.jsonl"; then
    T=("expected test error" "bias^2" "variance" "noise" "train loss (last step)")
  else
    T=("expected 0-1 test loss" "bias" "variance" "net variance (Vu - Vb)" "train loss (last step)")
  fi
  Y2=""     # 0-1 sweeps: the models' mean test cross-entropy on the right axis
  grep -q '"loss": *"squared"' "$DOCS/$sweep.jsonl" || Y2=", '' using 1:7 axes x1y2 with linespoints dt 3 lc rgb 'red' title 'test cross-entropy (right axis)'"
  M=$(head -1 "$DOCS/$sweep.jsonl" | sed 's/.*"models": *\([0-9]*\).*/\1/')
  gnuplot <<EOF
set terminal pngcairo size 640,420 font ',9'
set output '$DOCS/$sweep.png'
set termoption noenhanced
set logscale x
set grid
set key top right
set xlabel '$XL'
set title '$sweep: $M models per point'
$([ -n "$Y2" ] && printf 'set ytics nomirror\nset y2tics\n')
plot '$DOCS/$sweep.dat' using 1:2 with linespoints lw 2 lc rgb 'black' title '${T[0]}', \
     '' using 1:3 with linespoints title '${T[1]}', \
     '' using 1:4 with linespoints title '${T[2]}', \
     '' using 1:5 with linespoints title '${T[3]}', \
     '' using 1:6 with lines dt 2 lc rgb 'gray' title '${T[4]}'$Y2
EOF
  rm -f "$DOCS/$sweep.dat"
  echo "$DOCS/$sweep.md, $DOCS/$sweep.png"
done
