/* rng.c - Philox4x32-10 (Salmon, Moraes, Dror, Shaw, SC'11) and streams. */
#include "larch/rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u   /* round multipliers */
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u   /* key schedule increments (golden ratio, sqrt(3)-1) */
#define PHILOX_W1 0xBB67AE85u

void larch_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;   /* 32x32 -> 64 products */
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;                       /* the Philox S-box permutation */
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += PHILOX_W0;                          /* bump the key */
        k1 += PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

void larch_rng_init(larch_rng *r, uint64_t seed, uint32_t purpose, uint32_t a, uint32_t b)
{
    r->key[0] = (uint32_t)seed;
    r->key[1] = (uint32_t)(seed >> 32);
    r->ctr[0] = 0;
    r->ctr[1] = b;
    r->ctr[2] = a;
    r->ctr[3] = purpose;
    r->pos = 4;
}

void larch_rng_seek(larch_rng *r, uint64_t i)
{
    r->ctr[0] = (uint32_t)(i / 4);
    larch_philox4x32(r->ctr, r->key, r->buf);
    r->ctr[0]++;
    r->pos = (int)(i % 4);
}

uint32_t larch_rng_u32(larch_rng *r)
{
    if (r->pos == 4) {
        larch_philox4x32(r->ctr, r->key, r->buf);
        r->ctr[0]++;
        r->pos = 0;
    }
    return r->buf[r->pos++];
}

float larch_rng_uniform(larch_rng *r)
{
    return (float)(larch_rng_u32(r) >> 8) * (1.0f / 16777216.0f);
}

float larch_rng_normal(larch_rng *r)
{
    /* Box-Muller; u1 in (0, 1] so the log is finite. */
    float u1 = ((float)(larch_rng_u32(r) >> 8) + 1.0f) * (1.0f / 16777216.0f);
    float u2 = larch_rng_uniform(r);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.28318530717958647692f * u2);
}

uint32_t larch_rng_below(larch_rng *r, uint32_t n)
{
    /* Lemire, "Fast random integer generation in an interval" (2019). */
    uint64_t m = (uint64_t)larch_rng_u32(r) * n;
    uint32_t low = (uint32_t)m;
    if (low < n) {
        uint32_t threshold = (uint32_t)(-n) % n;
        while (low < threshold) {
            m = (uint64_t)larch_rng_u32(r) * n;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

uint32_t larch_hash32(const char *s)
{
    uint32_t h = 2166136261u;             /* FNV-1a offset basis */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}
