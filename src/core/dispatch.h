/* dispatch.h - run-time selection of the hot memory-bound loops.
 *
 * A portable build (the default, LARCH_NATIVE=OFF) compiles for the
 * compiler's baseline x86-64 (SSE2), so the binary runs on any x86-64 CPU.
 * The functions marked LARCH_HOT (elementwise layers, normalization,
 * pooling, im2col/col2im, channel sums, the losses, the optimizer updates,
 * the 16-bit conversions: docs/build.md lists them) are compiled three
 * times by GCC's target_clones: baseline, x86-64-v3 (AVX2, FMA, F16C) and
 * x86-64-v4 (AVX-512 F/BW/CD/DQ/VL); the dynamic loader calls each
 * function's resolver once, which picks the best clone the CPU supports
 * (libgcc's __builtin_cpu_supports("x86-64-v3"/"x86-64-v4")). The clones
 * carry the suffixes .arch_x86_64_v3 and .arch_x86_64_v4 in the symbol
 * table (tests/portable_isa.sh checks them).
 *
 * Results do not depend on the clone: the build is ISO C (-std=c11 implies
 * -ffp-contract=off, so no multiply-add is fused) without -ffast-math, so
 * the vector code computes exactly what the scalar code computes, and the
 * reductions keep their written order.
 *
 * LARCH_HOT expands to nothing in a native build (LARCH_NATIVE defined by
 * CMake with -march=native: every function already uses the build
 * machine's instructions), off x86-64, and with compilers other than GCC 12
 * or newer (clang spells the clone targets differently).
 */
#ifndef LARCH_DISPATCH_H
#define LARCH_DISPATCH_H

#if !defined(LARCH_NATIVE) && defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__INTEL_COMPILER) && __GNUC__ >= 12
#define LARCH_HOT __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#define LARCH_DISPATCH 1   /* the clones exist in this build */
#else
#define LARCH_HOT
#define LARCH_DISPATCH 0
#endif

#endif
