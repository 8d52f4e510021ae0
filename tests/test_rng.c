/* test_rng.c - Philox4x32-10 known answers (Random123's kat_vectors) and the
 * properties the rest of larch relies on: streams are pure functions of
 * their coordinates, seek matches sequential draws, and the helpers are
 * unbiased enough. */
#include "check.h"
#include "larch/larch.h"

#include <stdint.h>

static void kat(const uint32_t c[4], const uint32_t k[2], const uint32_t want[4])
{
    uint32_t out[4];
    larch_philox4x32(c, k, out);
    for (int i = 0; i < 4; i++) CHECK(out[i] == want[i], "word %d: %08x want %08x", i, out[i], want[i]);
}

int main(void)
{
    /* Random123 kat_vectors, philox4x32 with 10 rounds */
    kat((uint32_t[]){0, 0, 0, 0}, (uint32_t[]){0, 0}, (uint32_t[]){0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
    kat((uint32_t[]){0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, (uint32_t[]){0xffffffff, 0xffffffff},
        (uint32_t[]){0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
    kat((uint32_t[]){0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, (uint32_t[]){0xa4093822, 0x299f31d0},
        (uint32_t[]){0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1});

    /* a stream is a pure function of (seed, purpose, a, b); seek = skip */
    larch_rng r1, r2;
    larch_rng_init(&r1, 42, LARCH_RNG_DROPOUT, 3, 1000);
    uint32_t seq[37];
    for (int i = 0; i < 37; i++) seq[i] = larch_rng_u32(&r1);
    for (int i = 0; i < 37; i += 5) {
        larch_rng_init(&r2, 42, LARCH_RNG_DROPOUT, 3, 1000);
        larch_rng_seek(&r2, (uint64_t)i);
        CHECK(larch_rng_u32(&r2) == seq[i], "seek to %d", i);
    }
    larch_rng_init(&r2, 42, LARCH_RNG_DROPOUT, 3, 1001);
    CHECK(larch_rng_u32(&r2) != seq[0], "neighbouring streams differ");
    larch_rng_init(&r2, 43, LARCH_RNG_DROPOUT, 3, 1000);
    CHECK(larch_rng_u32(&r2) != seq[0], "seeds differ");

    /* uniform in [0, 1), normal with mean 0 and variance 1, below(n) in range and flat */
    larch_rng_init(&r1, 1, LARCH_RNG_USER, 0, 0);
    double s = 0, s2 = 0, umin = 1, umax = 0;
    const int N = 200000;
    for (int i = 0; i < N; i++) {
        float u = larch_rng_uniform(&r1);
        if (u < umin) umin = u;
        if (u > umax) umax = u;
        double z = larch_rng_normal(&r1);
        s += z; s2 += z * z;
    }
    CHECK(umin >= 0.0 && umax < 1.0, "uniform range [%g, %g]", umin, umax);
    CHECK_NEAR(s / N, 0.0, 0.01);
    CHECK_NEAR(s2 / N, 1.0, 0.02);
    int hist[7] = {0};
    for (int i = 0; i < 70000; i++) {
        uint32_t v = larch_rng_below(&r1, 7);
        CHECK(v < 7, "below(7) gave %u", v);
        if (v < 7) hist[v]++;
    }
    for (int i = 0; i < 7; i++) CHECK(hist[i] > 9500 && hist[i] < 10500, "below(7) bucket %d has %d", i, hist[i]);
    CHECK(larch_rng_below(&r1, 1) == 0, "below(1)");
    CHECK(larch_hash32("fc1") != larch_hash32("fc2"), "hash");
    return check_result("test_rng");
}
