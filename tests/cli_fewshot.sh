#!/usr/bin/env bash
# cli_fewshot.sh LARCH SRC - the class-balanced sampler and `larch eval
# --fewshot/--zeroshot` (docs/fewshot.md), on synthetic data (seconds):
# - training with data.sampler: class_balanced on classes 0-3 of 8 gives the
#   same run on 1 and 2 ranks; its errors (batch != P x K, more classes per
#   batch than the data has, a class with fewer than K samples);
# - few-shot evaluation on the held-out classes 4-7: the text lines and the
#   JSON record, accuracy above chance, the same record on 1 and 2 ranks
#   (prototype and k-NN, with support augmentation);
# - zero-shot: an attribute head trained with data.attributes on classes
#   0-5, evaluated on 6,7 against chance;
# - the errors: an unknown node, a class not in the data, N larger than the
#   classes given, K + Q more than a class has, k larger than the support,
#   a malformed attribute table, a table of the wrong width, usage.
. "$(dirname "$0")/cli_helpers.bash"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

cat > "$TMP/cfg.yaml" <<'YAML'
train: {batch_size: 64, epochs: 2, seed: 3, log_every: 1, threads: 1}
optim: {name: sgd, lr: 0.05, momentum: 0.9}
data:
  name: synthetic
  synthetic: {n_train: 1024, n_test: 512, classes: 8, shape: [4, 4, 1], noise: 0.8}
  classes: [0, 3]
  sampler: class_balanced
  classes_per_batch: 4
  samples_per_class: 16
model:
  - {type: dense, name: fc1, units: 32}
  - {type: relu}
  - {type: dense, name: emb, units: 16}
  - {type: relu}
  - {type: dense, name: out, units: 4}
YAML
CFG=$TMP/cfg.yaml

# stdout carries the results; stderr (a sanitizer's report included) goes to $TMP/err
# --- the sampler: the same run on 1 and 2 ranks
run 1 "$TMP/r1" && run 2 "$TMP/r2" || fail "class-balanced training: $(tail -3 "$TMP/r1.log" "$TMP/r2.log")"
# per-step training losses (lines without "split"), equal up to summation order (design.md, decision 4)
losses() { grep -v '"split"' "$1/metrics.jsonl" | sed 's/.*"loss": \([0-9.e+-]*\).*/\1/'; }
n1=$(losses "$TMP/r1" | wc -l)
if [ "$n1" -ge 10 ] && paste <(losses "$TMP/r1") <(losses "$TMP/r2") |
   awk '{ d = $1 - $2; if (d < 0) d = -d; if (NF != 2 || d > 1e-5 * (1 + $1)) bad++ } END { exit bad > 0 }'
then pass "class_balanced: 1 and 2 ranks take the same $n1 steps (losses within 1e-5)"
else fail "class_balanced: the losses of 1 and 2 ranks differ: $(paste <(losses "$TMP/r1") <(losses "$TMP/r2") | head -5)"; fi
expect 1 "data.classes_per_batch (4) x data.samples_per_class (8) must equal train.batch_size (64)" -- \
  "$LARCH" config "$CFG" --set data.samples_per_class=8
expect 1 "8 classes per batch but synthetic-train has samples of only 4 class(es)" -- \
  "$LARCH" train "$CFG" --out "$TMP/e1" --set data.classes_per_batch=8 --set data.samples_per_class=8
expect 1 "class 0 of synthetic-train has 3 sample(s), fewer than the 4 samples per class" -- \
  "$LARCH" train "$CFG" --out "$TMP/e2" --set data.train_per_class=3 --set train.batch_size=8 \
  --set data.classes_per_batch=2 --set data.samples_per_class=4
expect 0 "class_balanced" -- "$LARCH" config --help
expect 0 "data.classes_per_batch is ignored: it applies to data.sampler: class_balanced only" -- \
  "$LARCH" config "$CFG" --set data.sampler=shuffle

CK=$(ls "$TMP"/r1/checkpoints/ckpt-*.h5 | tail -1)
[ -f "$CK" ] || fail "no checkpoint in $TMP/r1/checkpoints"

# --- few-shot: output format, above chance, 1 vs 2 ranks
FS=(eval "$CFG" --checkpoint "$CK" --embedding emb --classes 4-7 --episodes 60 --queries 5)
out=$("$LARCH" "${FS[@]}" --fewshot 3,2 2>>"$TMP/err") || fail "fewshot: $(tail -3 "$TMP/err")"
if grep -qE '^fewshot: 3-way 2-shot, 5 queries per class, 60 episodes from classes 4,5,6,7 of the test split \([0-9]+ images\); embedding emb \(16 values\), prototype, euclidean distance' <<<"$out" &&
   grep -qE '^fewshot: accuracy 0\.[0-9]{4} \+- 0\.[0-9]{4} \(95% confidence interval; episode std 0\.[0-9]{4}\); recall@1 [01]\.[0-9]{4}, recall@5 [01]\.[0-9]{4}$' <<<"$out"
then pass "fewshot: the text lines"; else fail "fewshot text: $out"; fi
json=$(tail -1 <<<"$out")
acc=$(sed 's/.*"accuracy": \([0-9.]*\).*/\1/' <<<"$json")
ci=$(sed 's/.*"ci95": \([0-9.]*\).*/\1/' <<<"$json")
if grep -qE '^\{"eval": "fewshot", "way": 3, "shot": 2, "queries": 5, "episodes": 60, "classes": \[4, 5, 6, 7\], .*"recall@5": [0-9.]+\}$' <<<"$json" &&
   awk -v a="$acc" -v c="$ci" 'BEGIN { exit !(a > 0.45 && a <= 1 && c > 0 && c < 0.2) }'
then pass "fewshot: JSON record, accuracy $acc +- $ci above chance 0.33"; else fail "fewshot JSON: $json"; fi
for opts in "--fewshot 3,2 --augment 3" "--fewshot 2,3 --method knn --k 3 --distance cosine --batch 7"; do
  # shellcheck disable=SC2086
  a1=$("$LARCH" "${FS[@]}" $opts 2>>"$TMP/err" | tail -1)
  # shellcheck disable=SC2086
  a2=$(timeout 120 "$MPIEXEC" -n 2 --oversubscribe "$LARCH" "${FS[@]}" $opts 2>>"$TMP/err" | tail -1)
  if [ -n "$a1" ] && [ "$a1" = "$a2" ] && grep -q '"accuracy"' <<<"$a1"; then pass "fewshot $opts: 1 and 2 ranks agree"
  else fail "fewshot $opts: 1 rank '$a1', 2 ranks '$a2'"; fi
done
a3=$("$LARCH" "${FS[@]}" --fewshot 3,2 --augment 3 --seed 11 2>>"$TMP/err" | tail -1)
[ "$a3" != "$a1" ] && pass "another --seed, other episodes" || fail "--seed 11 changed nothing"

# --- errors
expect 1 "--embedding nope: $CFG has no layer of that name (its layers: fc1, relu1, emb, relu3, out)" -- \
  "$LARCH" "${FS[@]}" --fewshot 3,2 --embedding nope
expect 1 "--embedding nope: $CFG has no layer of that name" -- "$MPIEXEC" -n 2 --oversubscribe "$LARCH" "${FS[@]}" --fewshot 3,2 --embedding nope
expect 1 "--classes 6-9: class 8 is not in the test split" -- "$LARCH" "${FS[@]}" --fewshot 3,2 --classes 6-9
expect 1 "5-way episodes need 5 classes but --classes 4-6 gives 3" -- "$LARCH" "${FS[@]}" --fewshot 5,1 --classes 4-6
expect 1 "needs 105 images of each class, but class 4 has" -- "$LARCH" "${FS[@]}" --fewshot 3,100 --queries 5
expect 1 "--k 7: an episode has only 6 support images" -- "$LARCH" "${FS[@]}" --fewshot 3,2 --method knn --k 7
expect 1 "--classes: class list '4-x': the range at '-x' has no end" -- "$LARCH" "${FS[@]}" --fewshot 3,2 --classes 4-x
expect 2 "--fewshot 5: expected N,K" -- "$LARCH" "${FS[@]}" --fewshot 5
expect 2 "N x K <= 65536" -- "$LARCH" "${FS[@]}" --fewshot 100,1000
expect 2 "give one of --fewshot N,K and --zeroshot TABLE" -- "$LARCH" "${FS[@]}"
expect 2 "--method mean: expected prototype or knn" -- "$LARCH" "${FS[@]}" --fewshot 3,2 --method mean
expect 2 "--distance manhattan: expected euclidean or cosine" -- "$LARCH" "${FS[@]}" --fewshot 3,2 --distance manhattan
expect 2 "--episodes 0: expected an integer from 1 to 10000000" -- "$LARCH" "${FS[@]}" --fewshot 3,2 --episodes 0
expect 0 "--augment T" -- "$LARCH" eval --fewshot 5,1 --help

# --- zero-shot: an attribute head on classes 0-5, the unseen 6 and 7
cat > "$TMP/attr.csv" <<'CSV'
# 8 synthetic classes: a 3-bit code and its parity
class,name,b0,b1,b2,parity
0,c0,0,0,0,0
1,c1,1,0,0,1
2,c2,0,1,0,1
3,c3,1,1,0,0
4,c4,0,0,1,1
5,c5,1,0,1,0
6,c6,0,1,1,0
7,c7,1,1,1,1
CSV
cat > "$TMP/zs.yaml" <<YAML
train: {batch_size: 64, epochs: 2, seed: 3, log_every: 4, threads: 1}
optim: {name: sgd, lr: 0.05, momentum: 0.9}
data:
  name: synthetic
  synthetic: {n_train: 1024, n_test: 512, classes: 8, shape: [4, 4, 1], noise: 0.3}
  classes: [0, 5]
  attributes: $TMP/attr.csv
model:
  - {type: dense, name: fc1, units: 32}
  - {type: relu}
  - {type: dense, name: attr, units: 4}
loss: {name: attr, type: mse, on: targets}
YAML
"$LARCH" train "$TMP/zs.yaml" --out "$TMP/z" > "$TMP/z.log" 2>&1 || fail "attribute head: $(tail -3 "$TMP/z.log")"
ZK=$(ls "$TMP"/z/checkpoints/ckpt-*.h5 | tail -1)
ZS=(eval "$TMP/zs.yaml" --checkpoint "$ZK" --embedding attr)
out=$("$LARCH" "${ZS[@]}" --classes 6,7 --zeroshot "$TMP/attr.csv" 2>>"$TMP/err") || fail "zeroshot: $(tail -3 "$TMP/err")"
if grep -qE '^zeroshot: accuracy [01]\.[0-9]{4} \(chance 0\.5000\); per class: 6 c6 [01]\.[0-9]{4}, 7 c7 [01]\.[0-9]{4}$' <<<"$out" &&
   grep -qE '^\{"eval": "zeroshot", "classes": \[6, 7\], "images": [0-9]+, .*"chance": 0\.500000, "per_class": \[[0-9.]+, [0-9.]+\]\}$' <<<"$out"
then pass "zeroshot: text and JSON"; else fail "zeroshot output: $out"; fi
# seen classes are recognized from their attributes: a check that the head learned them
seen=$("$LARCH" "${ZS[@]}" --classes 0-5 --zeroshot "$TMP/attr.csv" 2>>"$TMP/err" | tail -1 | sed 's/.*"accuracy": \([0-9.]*\).*/\1/')
awk -v a="$seen" 'BEGIN { exit !(a > 0.5) }' && pass "zeroshot on the seen classes: $seen" || fail "seen-class attribute accuracy $seen"
z1=$("$LARCH" "${ZS[@]}" --classes 6,7 --zeroshot "$TMP/attr.csv" --distance cosine 2>>"$TMP/err" | tail -1)
z2=$(timeout 120 "$MPIEXEC" -n 2 --oversubscribe "$LARCH" "${ZS[@]}" --classes 6,7 --zeroshot "$TMP/attr.csv" --distance cosine 2>>"$TMP/err" | tail -1)
[ -n "$z1" ] && [ "$z1" = "$z2" ] && pass "zeroshot: 1 and 2 ranks agree" || fail "zeroshot ranks: '$z1' vs '$z2'"
printf 'class,name,b0,b1,b2,parity\n0,c0,0,0,0\n' > "$TMP/bad.csv"
expect 1 "bad.csv:2: 3 value(s) where the header names 4 attributes" -- "$LARCH" "${ZS[@]}" --classes 6,7 --zeroshot "$TMP/bad.csv"
printf 'class,name,b0,b1,b2\n0,c0,0,0,0\n1,c1,1,0,0\n2,c2,0,1,0\n3,c3,1,1,0\n4,c4,0,0,1\n5,c5,1,0,1\n6,c6,0,1,1\n7,c7,1,1,1\n' >> "$TMP/narrow.csv"
expect 1 "has 3 attributes but --embedding attr gives 4 values per image" -- \
  "$LARCH" "${ZS[@]}" --classes 6,7 --zeroshot "$TMP/narrow.csv"
head -8 "$TMP/attr.csv" > "$TMP/six.csv"                      # the header and classes 0-5 only
expect 1 "six.csv has 6 class rows but the test split has 8 classes" -- \
  "$LARCH" "${ZS[@]}" --classes 6,7 --zeroshot "$TMP/six.csv"
expect 1 "data.attributes: $TMP/bad.csv:2: 3 value(s)" -- \
  "$LARCH" train "$TMP/zs.yaml" --out "$TMP/z2" --set data.attributes="$TMP/bad.csv"
finish cli_fewshot
