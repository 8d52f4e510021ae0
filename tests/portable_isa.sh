#!/usr/bin/env bash
# portable_isa.sh NATIVE SANITIZE COMPILER_ID COMPILER_VERSION FILE... - a portable
# build (LARCH_NATIVE=OFF) runs on any x86-64 CPU: outside the run-time
# clones of src/core/dispatch.h, the disassembly of FILE (the larch program,
# the library) has no instruction beyond baseline x86-64 (SSE2), and the
# hot kernels have their three clones (baseline, x86-64-v3, x86-64-v4)
# and the ifunc resolver that picks one at load time, the AVX2 clones using
# ymm registers, the AVX-512 ones zmm, and the fp16 conversions F16C.
#
# Beyond baseline means: any ymm, zmm or mask (k0-k7) register; any
# VEX/EVEX-encoded instruction (AVX, AVX2, FMA, F16C, AVX-512: every
# mnemonic starting with "v"); BMI1/BMI2, LZCNT, MOVBE, POPCNT, CRC32 and
# the SSE4.1 rounding, blend, dot-product, test and insert instructions.
# (tzcnt is not on the list: GCC writes `rep bsf`, which objdump prints as
# tzcnt and which runs as bsf on CPUs without BMI1.)
#
# With SANITIZE on (LARCH_SANITIZE: the instrumented loops are not
# vectorized) the register-width checks are left out; the others stay.
# Exits 77 (skipped) in a native build, off x86-64, or with a compiler that
# makes no clones (src/core/dispatch.h: GCC 12 or newer).
set -u
NATIVE=$1 SANITIZE=$2 CC_ID=$3 CC_VERSION=$4
shift 4
FILES=("$@")

case "$NATIVE" in ON|on|1|TRUE|true|YES|yes)
  echo "SKIP: LARCH_NATIVE=ON builds for this CPU only (-march=native)"; exit 77 ;; esac
if [ "$(uname -m)" != x86_64 ]; then echo "SKIP: not x86-64 ($(uname -m)): no run-time clones"; exit 77; fi
if [ "$CC_ID" != GNU ] || [ "${CC_VERSION%%.*}" -lt 12 ]; then
  echo "SKIP: $CC_ID $CC_VERSION makes no target_clones (GCC 12 or newer does)"; exit 77
fi
command -v objdump >/dev/null || { echo "FAIL: objdump (binutils) not found"; exit 1; }
[ ${#FILES[@]} -gt 0 ] || { echo "FAIL: no file to check"; exit 1; }

# The hot kernels that must have their three clones (src/core/dispatch.h).
KERNELS=(relu_forward relu_backward leaky_forward gelu_backward sigmoid_backward tanh_backward
         bn_forward bn_backward gn_forward gn_backward affine_out larch_channel_sums
         maxpool_forward maxpool_backward avgpool_forward avgpool_backward gap_forward gap_backward
         dropout_forward dropout_backward add_forward pass_grad im2col col2im softmax_ce mse
         larch_sgd_update larch_adam_update larch_lars_update larch_lamb_norms larch_lamb_update
         larch_sumsq larch_f32_to_f16 larch_f16_to_f32 larch_f32_to_bf16 larch_bf16_to_f32 u8_normalize)
# Kernels whose AVX2 clone must use ymm and AVX-512 clone zmm: plain
# elementwise float loops GCC vectorizes at any width.
WIDE=(relu_forward relu_backward larch_sgd_update larch_adam_update col2im add_forward)

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

for f in "${FILES[@]}"; do
  [ -f "$f" ] || { bad "$f does not exist"; continue; }
  # "FUNCTION<TAB>MNEMONIC<TAB>OPERANDS" for every instruction of FILE
  if ! objdump -d --no-show-raw-insn "$f" >"$tmp/dis" 2>"$tmp/err"; then
    bad "objdump -d $f: $(head -c 300 "$tmp/err")"; continue
  fi
  awk '/^[0-9a-f]+ <.*>:$/ { fn = substr($2, 2, length($2) - 3); next }
       /^ +[0-9a-f]+:\t/ { split($0, a, "\t"); n = split(a[2], w, " "); if (n == 0) next
                           ops = ""; for (i = 2; i <= n; i++) ops = ops w[i] " "
                           print fn "\t" w[1] "\t" ops }' "$tmp/dis" >>"$tmp/insn"
done
[ -s "$tmp/insn" ] || { bad "no instructions disassembled from ${FILES[*]}"; exit 1; }
echo "disassembled $(wc -l <"$tmp/insn") instructions in $(cut -f1 "$tmp/insn" | sort -u | wc -l) functions"

# 1. nothing beyond baseline outside the clones
awk -F'\t' '$1 !~ /\.arch_x86_64_v[34]$/ {
    m = $2
    if ($3 ~ /%[yz]mm[0-9]|%k[0-7]([^0-9]|$)/ ||
        (m ~ /^v/ && m !~ /^verr|^verw/) ||
        m ~ /^(andn|bextr|blsi|blsmsk|blsr|bzhi|pdep|pext|mulx|rorx|sarx|shlx|shrx|lzcnt|movbe|popcnt|crc32[bwlq]?)$/ ||
        m ~ /^(round[sp][sd]|blendv?p[sd]|pblendvb|pblendw|dpp[sd]|ptest|insertps|pmulld|pminsd|pmaxsd|pminud|pmaxud)$/)
        print $1 ": " m " " $3
}' "$tmp/insn" | sort | uniq -c | sort -rn >"$tmp/beyond"
if [ -s "$tmp/beyond" ]; then
  bad "instructions beyond baseline x86-64 outside the run-time clones (count, function: instruction):"
  head -40 "$tmp/beyond"
else
  echo "ok: no AVX/AVX2/AVX-512/BMI/SSE4 instruction outside the .arch_x86_64_v3/.arch_x86_64_v4 clones"
fi

# 2. every key kernel has its clones and a resolver
cut -f1 "$tmp/insn" | sort -u >"$tmp/fns"
missing=0
for k in "${KERNELS[@]}"; do
  for suffix in default arch_x86_64_v3 arch_x86_64_v4; do
    grep -qx "$k.$suffix" "$tmp/fns" || { bad "no clone $k.$suffix"; missing=1; }
  done
  grep -qx "$k.resolver" "$tmp/fns" || { bad "no resolver $k.resolver"; missing=1; }
done
[ $missing = 0 ] && echo "ok: ${#KERNELS[@]} kernels have default, x86-64-v3 and x86-64-v4 clones and a resolver"

# 3. the clones really use the wider instructions (optimized builds)
case "$SANITIZE" in ON|on|1|TRUE|true|YES|yes)
  echo "sanitizer build: vector widths not checked"; WIDE=() ;; esac
for k in "${WIDE[@]}"; do
  awk -F'\t' -v f="$k.arch_x86_64_v3" '$1 == f && $3 ~ /%ymm/ { found = 1 } END { exit !found }' "$tmp/insn" ||
    bad "$k.arch_x86_64_v3 uses no ymm register"
  awk -F'\t' -v f="$k.arch_x86_64_v4" '$1 == f && $3 ~ /%zmm/ { found = 1 } END { exit !found }' "$tmp/insn" ||
    bad "$k.arch_x86_64_v4 uses no zmm register"
  awk -F'\t' -v f="$k.default" '$1 == f && $3 ~ /%xmm/ { found = 1 } END { exit !found }' "$tmp/insn" ||
    bad "$k.default uses no SSE register"
done
[ ${#WIDE[@]} = 0 ] || awk -F'\t' '$1 == "larch_f32_to_f16.arch_x86_64_v3" && $2 == "vcvtps2ph" { found = 1 } END { exit !found }' "$tmp/insn" ||
  bad "larch_f32_to_f16.arch_x86_64_v3 has no F16C vcvtps2ph"
[ ${#WIDE[@]} = 0 ] || awk -F'\t' '$1 == "larch_f16_to_f32.arch_x86_64_v3" && $2 == "vcvtph2ps" { found = 1 } END { exit !found }' "$tmp/insn" ||
  bad "larch_f16_to_f32.arch_x86_64_v3 has no F16C vcvtph2ps"
awk -F'\t' '$1 == "larch_f32_to_f16.default" && $2 ~ /^v/ { found = 1 } END { exit found }' "$tmp/insn" ||
  bad "larch_f32_to_f16.default uses VEX instructions"
[ $fail = 0 ] && [ ${#WIDE[@]} -gt 0 ] && echo "ok: ${#WIDE[@]} AVX2 clones use ymm, their AVX-512 clones zmm; the fp16 clones use F16C"
exit $fail
