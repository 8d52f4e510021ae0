#!/usr/bin/env bash
# cli_import.sh LARCH SRC - `larch import` and `larch export` (safetensors):
# - a small residual CNN trained for 3 steps: export -> import -> export is
#   bit-identical (F32, and F16 / BF16 files re-exported in their own type),
#   the imported checkpoint verifies, evaluates like the original and
#   initializes a run through model.init_from (every tensor loaded);
# - the exported file has PyTorch's names and layouts (OIHW conv weights,
#   batch-norm weight/bias);
# - launch/configs/resnet18.yaml with resnet18_torchvision.map: torchvision's
#   names both ways, the same checkpoint with and without the rules;
# - errors: a truncated file, a header that is not JSON, a missing tensor, a
#   shape mismatch (both names and shapes), a name no rule matches, a bad
#   rules file, export of another model's checkpoint, usage.
. "$(dirname "$0")/cli_helpers.bash"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
header() { LC_ALL=C od -An -v -tu1 -N8 "$1" | awk '{ n = 0; for (i = 8; i >= 1; i--) n = n * 256 + $i; print n }' |
  { read -r n; tail -c +9 "$1" | head -c "$n"; }; }

cat > "$TMP/cfg.yaml" <<YAML
train: {batch_size: 16, epochs: 1, max_steps: 3, seed: 9, threads: 1}
data:
  name: synthetic
  synthetic: {n_train: 64, n_test: 32, classes: 4, shape: [8, 8, 3]}
model:
  - {type: conv2d, name: conv1, filters: 8, kernel: 3, padding: 1, bias: false}
  - {type: batchnorm, name: bn1}
  - {type: relu, name: relu1}
  - {type: conv2d, name: conv2, filters: 8, kernel: 3, stride: 2, padding: 1}
  - {type: batchnorm, name: bn2}
  - {type: conv2d, name: down, filters: 8, kernel: 1, stride: 2, bias: false, input: relu1}
  - {type: add, name: res, inputs: [bn2, down]}
  - {type: dense, name: fc, units: 4}
YAML
"$LARCH" train "$TMP/cfg.yaml" --out "$TMP/run" > "$TMP/train.log" 2>&1 || fail "train: $(tail -3 "$TMP/train.log")"
CK=$(ck "$TMP/run" 3)

# ---- round trips ----
X=(--config "$TMP/cfg.yaml")
out=$("$LARCH" export "$CK" "${X[@]}" --format safetensors --out "$TMP/a.st" 2>&1) && pass "export: $out" || fail "export: $out"
h=$(header "$TMP/a.st")
grep -q '"conv1.weight":{"dtype":"F32","shape":\[8,3,3,3\]' <<<"$h" && grep -q '"bn1.weight":{"dtype":"F32","shape":\[8\]' <<<"$h" \
  && grep -q '"bn2.running_var"' <<<"$h" && grep -q '"fc.weight":{"dtype":"F32","shape":\[4,128\]' <<<"$h" \
  && pass "PyTorch names and layouts: conv1.weight (8, 3, 3, 3), bn1.weight, bn2.running_var, fc.weight (4, 128)" \
  || fail "exported header: $h"
out=$("$LARCH" import "$TMP/a.st" "${X[@]}" --out "$TMP/b.h5" 2>&1) && pass "import: $out" || fail "import: $out"
"$LARCH" export "$TMP/b.h5" "${X[@]}" --format safetensors --out "$TMP/b.st" > /dev/null 2>&1
cmp -s "$TMP/a.st" "$TMP/b.st" && pass "export -> import -> export: bit-identical" || fail "export -> import -> export differs"
"$LARCH" ckpt verify "$TMP/b.h5" > "$TMP/verify.log" 2>&1 && pass "the imported checkpoint verifies" || fail "verify: $(tail -3 "$TMP/verify.log")"
e1=$("$LARCH" eval "$TMP/cfg.yaml" --checkpoint "$CK" 2>&1 | sed -n 's/^eval: [^:]*: //p')
e2=$("$LARCH" eval "$TMP/cfg.yaml" --checkpoint "$TMP/b.h5" 2>&1 | sed -n 's/^eval: [^:]*: //p')
[ -n "$e1" ] && [ "$e1" = "$e2" ] && pass "larch eval: '$e1' from both checkpoints" || fail "eval: '$e1' vs '$e2'"
for dt in f16 bf16; do
  DT=$(tr a-z A-Z <<<"$dt")
  "$LARCH" export "$CK" "${X[@]}" --format safetensors --dtype $dt --out "$TMP/$dt.st" > /dev/null 2>&1 || fail "export --dtype $dt"
  grep -q "\"dtype\":\"$DT\"" <(header "$TMP/$dt.st") && ! grep -q '"F32"' <(header "$TMP/$dt.st") || fail "$dt: dtypes: $(header "$TMP/$dt.st" | head -c 200)"
  "$LARCH" import "$TMP/$dt.st" "${X[@]}" --out "$TMP/$dt.h5" > /dev/null 2>&1 \
    && "$LARCH" export "$TMP/$dt.h5" "${X[@]}" --format safetensors --dtype $dt --out "$TMP/$dt.2.st" > /dev/null 2>&1 \
    && cmp -s "$TMP/$dt.st" "$TMP/$dt.2.st" && pass "$DT: import -> export --dtype $dt bit-identical" || fail "$DT round trip"
done
sed -e "s|^model:|model:\n  init_from: {file: $TMP/b.h5}\n  layers:|" -e 's|^  - |    - |' "$TMP/cfg.yaml" > "$TMP/init.yaml"
"$LARCH" train "$TMP/init.yaml" --out "$TMP/init" --set train.max_steps=1 > "$TMP/init.log" 2>&1 \
  && grep -q "loaded 14 tensor(s)" "$TMP/init.log" && grep -q "0 freshly initialized" "$TMP/init.log" \
  && pass "model.init_from the imported checkpoint: $(grep -o 'loaded 14 tensor(s)[^;]*' "$TMP/init.log")" \
  || fail "init_from: $(grep -i 'init_from\|error' "$TMP/init.log" | head -3)"

# ---- resnet18 and torchvision's names ----
# (11.7M parameters: the optimized build runs this; under the sanitizers it
# would only repeat, 40 times slower, the conversions checked above)
if [ "${LARCH_TEST_SANITIZED:-OFF}" = ON ]; then
  pass "resnet18 round trips: run in the optimized build only"
else
R=(--config "$SRC/launch/configs/resnet18.yaml")
MAP=$SRC/launch/configs/resnet18_torchvision.map
"$LARCH" train "$SRC/launch/configs/resnet18.yaml" --out "$TMP/r18" --set train.batch_size=2 --set train.max_steps=1 \
  --set data.synthetic.n_train=2 --set data.synthetic.n_test=2 --set train.threads=1 --set train.eval_batch=2 > "$TMP/r18.log" 2>&1 \
  || fail "resnet18: one step: $(tail -3 "$TMP/r18.log")"
RC=$(ck "$TMP/r18" 1)
"$LARCH" export "$RC" "${R[@]}" --format safetensors --map "$MAP" --out "$TMP/r.st" > /dev/null 2>&1 || fail "resnet18 export --map"
h=$(header "$TMP/r.st")
n=$(grep -o '"data_offsets"' <<<"$h" | wc -l)
[ "$n" -eq 102 ] && grep -q '"layer2.0.downsample.1.running_var":{"dtype":"F32","shape":\[128\]' <<<"$h" \
  && grep -q '"layer4.1.conv2.weight":{"dtype":"F32","shape":\[512,512,3,3\]' <<<"$h" && grep -q '"fc.weight":{"dtype":"F32","shape":\[1000,512\]' <<<"$h" \
  && grep -q '"layer1.0.bn1.weight"' <<<"$h" && pass "resnet18 --map: 102 tensors under torchvision's names (layer4.1.conv2.weight (512, 512, 3, 3), ...)" \
  || fail "resnet18 export: $n tensors: $(head -c 300 <<<"$h")"
"$LARCH" import "$TMP/r.st" "${R[@]}" --map "$MAP" --out "$TMP/r.h5" > /dev/null 2>&1 \
  && "$LARCH" export "$TMP/r.h5" "${R[@]}" --format safetensors --map "$MAP" --out "$TMP/r2.st" > /dev/null 2>&1 \
  && cmp -s "$TMP/r.st" "$TMP/r2.st" && pass "resnet18: import --map -> export --map bit-identical" || fail "resnet18 round trip with the map"
"$LARCH" import "$TMP/r.st" "${R[@]}" --out "$TMP/r3.h5" > /dev/null 2>&1 \
  && "$LARCH" export "$TMP/r3.h5" "${R[@]}" --format safetensors --map "$MAP" --out "$TMP/r3.st" > /dev/null 2>&1 \
  && cmp -s "$TMP/r.st" "$TMP/r3.st" && pass "resnet18: torchvision's names also load without --map (the naming convention)" \
  || fail "resnet18 without --map"
"$LARCH" export "$RC" "${R[@]}" --format safetensors --out "$TMP/rl.st" > /dev/null 2>&1
expect 1 "no rule of $MAP matches tensor 'layer1_0_conv1.weight'" -- "$LARCH" import "$TMP/rl.st" "${R[@]}" --map "$MAP" --out "$TMP/o.h5"
fi

# ---- errors ----
head -c -100 "$TMP/a.st" > "$TMP/cut.st"
expect 1 "$TMP/cut.st: truncated: tensor 'fc.weight' ends at data byte" -- "$LARCH" import "$TMP/cut.st" "${X[@]}" --out "$TMP/o.h5"
{ printf '\x10\x00\x00\x00\x00\x00\x00\x00'; printf '{"conv1.weight":'; } > "$TMP/json.st"
expect 1 "$TMP/json.st: the header is not valid JSON" -- "$LARCH" import "$TMP/json.st" "${X[@]}" --out "$TMP/o.h5"
{ printf '\x48\x00\x00\x00\x00\x00\x00\x00'; printf '%-72s' '{"conv1.weight":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
  printf '\x00\x00\x80\x3f'; } > "$TMP/small.st"
expect 1 "tensor 'conv1.weight' has shape (1,) but the model's 'conv1.weight' has shape (8, 3, 3, 3) ((8, 3, 3, 3) in PyTorch's layout)" -- \
  "$LARCH" import "$TMP/small.st" "${X[@]}" --out "$TMP/o.h5"
expect 1 "tensor 'conv1.weight' has shape (8, 3, 3, 3) but the model's 'conv1.weight' has shape (4, 3, 3, 3)" -- \
  "$LARCH" import "$TMP/a.st" "${X[@]}" --set model.0.filters=4 --out "$TMP/o.h5"
printf 'fc.bias -\nbn{1}.weight bn{1}.scale\nbn{1}.bias bn{1}.shift\nbn{1}.running_{2} bn{1}.running_{2}\n{1}.{2} {1}.{2}\n' > "$TMP/drop.map"
expect 1 "the model's 'fc.bias' has no tensor in the file (1 model tensor(s) missing)" -- "$LARCH" import "$TMP/a.st" "${X[@]}" --map "$TMP/drop.map" --out "$TMP/o.h5"
printf '# rules\nconv{1}.weight conv{2}.weight\n' > "$TMP/bad.map"
expect 1 "$TMP/bad.map:2: placeholder {1} is on one side only" -- "$LARCH" import "$TMP/a.st" "${X[@]}" --map "$TMP/bad.map" --out "$TMP/o.h5"
if [ -n "${RC:-}" ]; then   # the resnet18 checkpoint of the optimized build's section above
  expect 1 "is not a checkpoint of $TMP/cfg.yaml's model" -- "$LARCH" export "$RC" "${X[@]}" --format safetensors --out "$TMP/o.st"
fi
expect 1 "$TMP/none.st: cannot open it" -- "$LARCH" import "$TMP/none.st" "${X[@]}" --out "$TMP/o.h5"
expect 2 "--format onnx: the only format is safetensors" -- "$LARCH" export "$CK" "${X[@]}" --format onnx --out "$TMP/o.st"
expect 2 "usage: larch import" -- "$LARCH" import "$TMP/a.st" --out "$TMP/o.h5"
[ ! -e "$TMP/o.h5" ] && [ ! -e "$TMP/o.st" ] && pass "no output file after a failure" || fail "a failed import/export left a file"
finish cli_import
