/* half.c - 16-bit floating-point conversions for gradient compression:
 * IEEE binary16 (fp16: 5-bit exponent, range 6e-5 .. 65504, 11-bit
 * significand) through the compiler's _Float16, and bfloat16 (bf16: float's
 * 8-bit exponent and range, 8-bit significand) by rounding float's upper
 * half to nearest even. */
#include "core/half.h"
#include "core/dispatch.h"

#include <string.h>

LARCH_HOT void larch_f32_to_f16(const float *x, uint16_t *y, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        _Float16 h = (_Float16)x[i];
        memcpy(&y[i], &h, sizeof h);
    }
}

LARCH_HOT void larch_f16_to_f32(const uint16_t *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        _Float16 h;
        memcpy(&h, &x[i], sizeof h);
        y[i] = (float)h;
    }
}

LARCH_HOT void larch_f32_to_bf16(const float *x, uint16_t *y, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        if ((u & 0x7fffffffu) > 0x7f800000u) { y[i] = (uint16_t)((u >> 16) | 0x40u); continue; }   /* NaN stays NaN */
        u += 0x7fffu + ((u >> 16) & 1u);                 /* round to nearest even */
        y[i] = (uint16_t)(u >> 16);
    }
}

LARCH_HOT void larch_bf16_to_f32(const uint16_t *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)x[i] << 16;
        memcpy(&y[i], &u, sizeof u);
    }
}
