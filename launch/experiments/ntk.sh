#!/usr/bin/env bash
# Neural tangent kernels of the bias-free ReLU MLP 784-W-W-10 of
# launch/configs/ntk_mlp.yaml on Fashion-MNIST (docs/ntk.md), in one run:
#   a. at initialization, the empirical NTK (--scale init: the NTK
#      parameterization) of the first SAMPLES training samples against the
#      analytic infinite-width one, for widths WIDTHS_A and SEEDS seeds each:
#      relative Frobenius error against width (log-log, fitted slope);
#   b. training: every width of WIDTHS_B is trained from the same seed for
#      STEPS full-batch gradient-descent steps (batch 1000 = the 1000
#      training samples, mse on one-hot labels) at the same learning rate
#      ETA of the NTK parameterization (lr_mult = 1000 x init variance per
#      layer, optim.lr = ETA / 1000); the relative change of the empirical NTK
#      from initialization to the end, against width;
#   c. the same checkpoints against kernel methods on the first 1000 test
#      samples: the analytic NTK and NNGP kernel regression on the 1000
#      training samples, and the linearized network (the analytic NTK after
#      STEPS gradient-descent steps from the network's own initial outputs):
#      test accuracies and their agreement with each trained network;
#   d. closer to convergence: widths WIDTHS_C trained STEPS_C full-batch steps
#      with heavy-ball momentum 0.9 (same ETA) against the NTK and NNGP
#      kernel regression (the infinite-training limit).
# Writes docs/ntk/{convergence,lazy,regression}.md, the CSV files and the PNG
# plots (gnuplot; the tables by python3 with numpy and h5py), keeps the logs and HDF5 files in OUT.
# Usage: bash launch/experiments/ntk.sh [--quick] [--out DIR]
#   --quick: widths up to 512, 2 seeds, 40 steps (a check of the script, ~2 min)
# Environment: BUILD (build). ~15 min at the defaults on 2 busy cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=/tmp/larch_ntk DOCS=docs/ntk QUICK=0
WIDTHS_A="64 128 256 512 1024 2048" SEEDS="1 2 3" WIDTHS_B="128 256 512 1024 2048" STEPS=300 ETA=2 SAMPLES=16
WIDTHS_C="128 512 2048" STEPS_C=500
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) WIDTHS_A="64 128 256 512"; SEEDS="1 2"; WIDTHS_B="128 256 512"; STEPS=40; WIDTHS_C="128 256"; STEPS_C=40; QUICK=1; shift ;;
    --out) OUT=$2; shift 2 ;;
    *) echo "usage: $0 [--quick] [--out DIR]" >&2; exit 2 ;;
  esac
done
[ $QUICK = 1 ] && DOCS=$OUT/docs    # a check of the script: leave docs/ntk alone
LARCH=${BUILD:-build}/larch
CFG=launch/configs/ntk_mlp.yaml
mkdir -p "$OUT" "$DOCS"
cp "$LARCH" "$OUT/larch"      # a rebuild during the run does not change the program
LARCH=$OUT/larch
T0=$(date +%s)
width() { echo "--set model.0.units=$1 --set model.2.units=$1"; }
# lr_mult = 1000 x the He variance 2/fan_in: fc1 2000/784, fc2 and out 2000/W
lrs() { echo "--set optim.groups.0.lr_mult=$(awk 'BEGIN{printf "%.6f", 2000/784}') \
  --set optim.groups.1.lr_mult=$(awk -v w=$1 'BEGIN{printf "%.6f", 2000/w}') \
  --set optim.groups.2.lr_mult=$(awk -v w=$1 'BEGIN{printf "%.6f", 2000/w}')"; }

echo "== a. empirical vs analytic NTK at initialization (N=$SAMPLES)"
echo "width,seed,rel_error,params" > "$DOCS/convergence.csv"
for w in $WIDTHS_A; do
  for s in $SEEDS; do
    $LARCH ntk $CFG --samples $SAMPLES --kernel both $(width $w) --set train.seed=$s > "$OUT/a_w${w}_s$s.txt"
    e=$(sed -n 's/.*relative Frobenius error .* = \([0-9.e+-]*\)$/\1/p' "$OUT/a_w${w}_s$s.txt")
    p=$(sed -n 's/.*output(s), \([0-9]*\) parameter floats.*/\1/p' "$OUT/a_w${w}_s$s.txt")
    echo "$w,$s,$e,$p" >> "$DOCS/convergence.csv"
    echo "  width $w seed $s: relative error $e"
  done
done

echo "== b/c. training every width ($STEPS full-batch steps at eta $ETA) and its kernels"
echo "width,steps,eta,train_loss,test_acc,ntk_change,ntk_change_trace" > "$DOCS/lazy.csv"
echo "width,network,linearized,agree_linearized,ntk_regression,agree_ntk,nngp_regression,agree_nngp,linearized_train_loss" \
  > "$DOCS/regression.csv"
LR=$(awk -v e=$ETA 'BEGIN{printf "%.6g", e / 1000}')
for w in $WIDTHS_B; do
  run=$OUT/train_w$w
  rm -rf "$run"
  $LARCH train $CFG --out "$run" $(width $w) $(lrs $w) --set optim.lr=$LR --set train.batch_size=1000 \
    --set train.epochs=$STEPS --set train.eval_every=$STEPS --set train.log_every=$STEPS > "$run.log" 2>&1
  ck=$(printf '%s/checkpoints/ckpt-%08d.h5' "$run" "$STEPS")
  $LARCH ntk $CFG --samples $SAMPLES --scale init $(width $w) --out "$OUT/b_w${w}_init.h5" > "$OUT/b_w${w}_init.txt"
  $LARCH ntk $CFG --samples $SAMPLES --scale init $(width $w) --checkpoint "$ck" --out "$OUT/b_w${w}_end.h5" > "$OUT/b_w${w}_end.txt"
  $LARCH ntk $CFG --analytic --samples 1000 --regress 1000 --gd-steps $STEPS --gd-lr $ETA $(width $w) --checkpoint "$ck" \
    > "$OUT/c_w$w.txt"
  loss=$(grep '"step": '$STEPS', "epoch"' "$run/metrics.jsonl" | grep -v '"split"' | sed -n 's/.*"loss": \([0-9.e+-]*\).*/\1/p')
  acc=$(sed -n 's/.*test accuracy \([0-9.]*\);.*/\1/p' "$run.log" | tail -1)
  /usr/bin/python3 - "$OUT/b_w${w}_init.h5" "$OUT/b_w${w}_end.h5" "$w" "$STEPS" "$ETA" "$loss" "$acc" >> "$DOCS/lazy.csv" <<'EOF'
import sys, h5py, numpy as np
a, b = (h5py.File(p, "r")["ntk"][()] for p in sys.argv[1:3])
ch = np.linalg.norm(b - a) / np.linalg.norm(a)
tr = abs(np.trace(b) - np.trace(a)) / np.trace(a)
print(f"{sys.argv[3]},{sys.argv[4]},{sys.argv[5]},{sys.argv[6]},{sys.argv[7]},{ch:.6g},{tr:.6g}")
EOF
  c=$OUT/c_w$w.txt
  r=$(sed -n 's/.*NTK accuracy \([0-9.]*\), NNGP accuracy \([0-9.]*\); network accuracy \([0-9.]*\), agreement NTK\/network \([0-9.]*\), NNGP\/network \([0-9.]*\)$/\3 \1 \4 \2 \5/p' $c)
  l=$(sed -n 's/.*train loss \([0-9.e+-]*\), test accuracy \([0-9.]*\), agreement with the network \([0-9.]*\)$/\2 \3 \1/p' $c)
  set -- $r $l
  echo "$w,$1,$6,$7,$2,$3,$4,$5,$8" >> "$DOCS/regression.csv"
  echo "  width $w: $(tail -1 "$DOCS/lazy.csv") | $(tail -1 "$DOCS/regression.csv")"
done

echo "== d. $STEPS_C full-batch steps with momentum 0.9 against kernel regression"
echo "width,steps,train_loss,network,ntk_regression,agree_ntk,nngp_regression,agree_nngp" > "$DOCS/converged.csv"
for w in $WIDTHS_C; do
  run=$OUT/momentum_w$w
  rm -rf "$run"
  $LARCH train $CFG --out "$run" $(width $w) $(lrs $w) --set optim.lr=$LR --set optim.momentum=0.9 \
    --set train.batch_size=1000 --set train.epochs=$STEPS_C --set train.eval_every=$STEPS_C \
    --set train.log_every=$STEPS_C > "$run.log" 2>&1
  ck=$(printf '%s/checkpoints/ckpt-%08d.h5' "$run" "$STEPS_C")
  $LARCH ntk $CFG --analytic --samples 1000 --regress 1000 $(width $w) --checkpoint "$ck" > "$OUT/d_w$w.txt"
  loss=$(grep '"step": '$STEPS_C', "epoch"' "$run/metrics.jsonl" | grep -v '"split"' | sed -n 's/.*"loss": \([0-9.e+-]*\).*/\1/p')
  r=$(sed -n 's/.*NTK accuracy \([0-9.]*\), NNGP accuracy \([0-9.]*\); network accuracy \([0-9.]*\), agreement NTK\/network \([0-9.]*\), NNGP\/network \([0-9.]*\)$/\3,\1,\4,\2,\5/p' "$OUT/d_w$w.txt")
  echo "$w,$STEPS_C,$loss,$r" >> "$DOCS/converged.csv"
  echo "  width $w: $(tail -1 "$DOCS/converged.csv")"
done

echo "== tables and plots"
/usr/bin/python3 - "$DOCS" "$SAMPLES" "$STEPS" "$ETA" <<'EOF'
import sys, csv, collections
import numpy as np
docs, N, steps, eta = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
rows = list(csv.DictReader(open(f"{docs}/convergence.csv")))
by = collections.OrderedDict()
for r in rows: by.setdefault(int(r["width"]), []).append(float(r["rel_error"]))
w = np.array(list(by)); m = np.array([np.mean(v) for v in by.values()]); sd = np.array([np.std(v) for v in by.values()])
slope, icpt = np.polyfit(np.log(w), np.log(m), 1)
with open(f"{docs}/convergence.md", "w") as f:
    f.write(f"Relative Frobenius error ||Theta_emp - Theta_analytic||_F / ||Theta_analytic||_F at initialization "
            f"({N} training samples, --scale init, mean over outputs), {len(next(iter(by.values())))} seeds per width.\n\n")
    f.write("| width | parameters | error (mean) | std | seeds |\n|---:|---:|---:|---:|---|\n")
    params = {int(r["width"]): r["params"] for r in rows}
    for wi, v in by.items():
        f.write(f"| {wi} | {params[wi]} | {np.mean(v):.4f} | {np.std(v):.4f} | {', '.join(f'{x:.4f}' for x in v)} |\n")
    f.write(f"\nLeast-squares slope of log(error) against log(width): **{slope:.3f}** (theory: -0.5).\n")
with open(f"{docs}/convergence.dat", "w") as f:
    for r in rows: f.write(f"{r['width']} {r['rel_error']} 0\n")
    f.write("\n\n")
    for wi, mi, si in zip(w, m, sd): f.write(f"{wi} {mi} {si}\n")

lz = list(csv.DictReader(open(f"{docs}/lazy.csv")))
wl = np.array([int(r["width"]) for r in lz]); ch = np.array([float(r["ntk_change"]) for r in lz])
sl = np.polyfit(np.log(wl), np.log(ch), 1)[0]
with open(f"{docs}/lazy.md", "w") as f:
    f.write(f"Relative change ||Theta_T - Theta_0||_F / ||Theta_0||_F of the empirical NTK ({N} training samples, "
            f"--scale init) after {steps} full-batch gradient-descent steps at eta {eta} (NTK parameterization), "
            "and the relative change of its trace.\n\n")
    f.write("| width | train loss | test accuracy | kernel change | trace change |\n|---:|---:|---:|---:|---:|\n")
    for r in lz:
        f.write(f"| {r['width']} | {float(r['train_loss']):.4f} | {float(r['test_acc']):.4f} | {float(r['ntk_change']):.4f} | "
                f"{float(r['ntk_change_trace']):.4f} |\n")
    f.write(f"\nLeast-squares slope of log(change) against log(width): **{sl:.3f}** (lazy regime: about -0.5).\n")
with open(f"{docs}/lazy.dat", "w") as f:
    for wi, ci in zip(wl, ch): f.write(f"{wi} {ci}\n")
with open(f"{docs}/fits.txt", "w") as f:
    f.write(f"{slope} {np.exp(icpt)} {m[0]} {w[0]} {sl} {ch[0]} {wl[0]}\n")

rg = list(csv.DictReader(open(f"{docs}/regression.csv")))
with open(f"{docs}/regression.md", "w") as f:
    f.write(f"Test accuracy on the first 1000 Fashion-MNIST test samples; 1000 training samples (100 per class). "
            f"network: trained {steps} full-batch steps at eta {eta}; linearized: the analytic NTK's gradient descent "
            f"for the same steps from the network's initial outputs; NTK / NNGP regression: kernel regression (ridge "
            "1e-4 x mean diagonal), the infinite-training limit. Agreement: the fraction of test samples where the "
            "argmax equals the network's.\n\n")
    f.write("| width | network | linearized | agreement | NTK regression | agreement | NNGP regression | agreement |\n"
            "|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    for r in rg:
        f.write(f"| {r['width']} | {float(r['network']):.4f} | {float(r['linearized']):.4f} | {float(r['agree_linearized']):.4f} | "
                f"{float(r['ntk_regression']):.4f} | {float(r['agree_ntk']):.4f} | {float(r['nngp_regression']):.4f} | "
                f"{float(r['agree_nngp']):.4f} |\n")
cv = list(csv.DictReader(open(f"{docs}/converged.csv")))
with open(f"{docs}/converged.md", "w") as f:
    f.write(f"Networks trained {cv[0]['steps']} full-batch steps with momentum 0.9 (eta {eta}) against kernel regression "
            "with the analytic NTK and NNGP (ridge 1e-4 x mean diagonal) on the same 1000 training samples; test accuracy "
            "and agreement (argmax) on the first 1000 test samples.\n\n")
    f.write("| width | train loss | network | NTK regression | agreement | NNGP regression | agreement |\n"
            "|---:|---:|---:|---:|---:|---:|---:|\n")
    for r in cv:
        f.write(f"| {r['width']} | {float(r['train_loss']):.4f} | {float(r['network']):.4f} | {float(r['ntk_regression']):.4f} | "
                f"{float(r['agree_ntk']):.4f} | {float(r['nngp_regression']):.4f} | {float(r['agree_nngp']):.4f} |\n")
print(f"convergence slope {slope:.3f}, lazy slope {sl:.3f}")
EOF
read SLOPE A M0 W0 SL C0 WL0 < "$DOCS/fits.txt"
gnuplot <<GP
set terminal pngcairo size 640,480
set logscale xy
set xlabel "width"
set key top right
set output "$DOCS/convergence.png"
set title "empirical vs analytic NTK at initialization ($SAMPLES samples)"
set ylabel "relative Frobenius error"
plot "$DOCS/convergence.dat" index 0 using 1:2 with points pt 7 ps 0.6 lc rgb "gray" title "each seed", \
     "" index 1 using 1:2:3 with yerrorlines pt 7 lc rgb "blue" title "mean over seeds", \
     $A * x**($SLOPE) with lines dt 2 lc rgb "red" title sprintf("fit: slope %.2f", $SLOPE), \
     $M0 * (x/$W0)**(-0.5) with lines dt 3 lc rgb "black" title "slope -1/2"
set output "$DOCS/lazy.png"
set title "relative change of the NTK over $STEPS GD steps (eta $ETA)"
set ylabel "||Theta_T - Theta_0|| / ||Theta_0||"
plot "$DOCS/lazy.dat" using 1:2 with linespoints pt 7 lc rgb "blue" title sprintf("measured (slope %.2f)", $SL), \
     $C0 * (x/$WL0)**(-0.5) with lines dt 3 lc rgb "black" title "slope -1/2", \
     $C0 * (x/$WL0)**(-1) with lines dt 2 lc rgb "gray" title "slope -1"
GP
rm -f "$DOCS/fits.txt" "$DOCS/convergence.dat" "$DOCS/lazy.dat"   # the plots' data: in the CSV files
echo "done in $(( $(date +%s) - T0 )) s; results in $DOCS, logs in $OUT"
