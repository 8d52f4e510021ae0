/* half.h - float <-> fp16 / bf16 conversion of buffers (gradient compression). */
#ifndef LARCH_CORE_HALF_H
#define LARCH_CORE_HALF_H

#include <stddef.h>
#include <stdint.h>

void larch_f32_to_f16(const float *x, uint16_t *y, size_t n);
void larch_f16_to_f32(const uint16_t *x, float *y, size_t n);
void larch_f32_to_bf16(const float *x, uint16_t *y, size_t n);
void larch_bf16_to_f32(const uint16_t *x, float *y, size_t n);

#endif
