/* larch/rng.h - counter-based random numbers (Philox4x32-10).
 *
 * Every random draw in larch is a pure function of (seed, purpose, a, b, i):
 * the seed of the run, a purpose (what the numbers are for), two coordinates
 * chosen by the purpose (for example step and global sample index) and the
 * draw's position i in the stream. Nothing depends on the rank, so 1 rank and
 * N ranks draw identical numbers for the same sample (docs/design.md, decision 4).
 * Philox4x32-10 is from Salmon et al., "Parallel random numbers: as easy as
 * 1, 2, 3" (SC'11).
 */
#ifndef LARCH_RNG_H
#define LARCH_RNG_H

#include <stdint.h>
#include "larch/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Purposes: distinct streams that never overlap. Layers add a hash of their
 * name to LARCH_RNG_DROPOUT so two dropout layers draw different masks. */
enum {
    LARCH_RNG_INIT     = 0x1000,
    LARCH_RNG_SHUFFLE  = 0x2000,
    LARCH_RNG_AUGMENT  = 0x3000,
    LARCH_RNG_DROPOUT  = 0x4000,
    LARCH_RNG_SYNTH    = 0x5000,
    LARCH_RNG_USER     = 0x6000,
    LARCH_RNG_EPISODE  = 0x7000,    /* few-shot evaluation episodes (src/data/fewshot.c) */
    LARCH_RNG_ATTACK   = 0x8000     /* adversarial attacks: random starts, targets (src/nn/attack.c) */
};

/* One Philox4x32-10 block: out = philox(ctr, key). */
LARCH_API void larch_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* A sequential stream over one (seed, purpose, a, b): counter word 0 counts
 * blocks of four 32-bit draws. */
typedef struct larch_rng {
    uint32_t key[2];
    uint32_t ctr[4];   /* {block, b, a, purpose} */
    uint32_t buf[4];
    int pos;           /* next unused word of buf; 4 = empty */
} larch_rng;

LARCH_API void larch_rng_init(larch_rng *r, uint64_t seed, uint32_t purpose, uint32_t a, uint32_t b);
/* Jump to draw number i (0-based) of the stream. */
LARCH_API void larch_rng_seek(larch_rng *r, uint64_t i);
LARCH_API uint32_t larch_rng_u32(larch_rng *r);
/* Uniform in [0, 1) with 24 random bits. */
LARCH_API float larch_rng_uniform(larch_rng *r);
/* Standard normal (Box-Muller; consumes two draws). */
LARCH_API float larch_rng_normal(larch_rng *r);
/* Uniform integer in [0, n), n >= 1 (Lemire's multiply-shift with rejection). */
LARCH_API uint32_t larch_rng_below(larch_rng *r, uint32_t n);
/* A 32-bit FNV-1a hash of a string, for per-layer purposes. */
LARCH_API uint32_t larch_hash32(const char *s);

#ifdef __cplusplus
}
#endif
#endif
