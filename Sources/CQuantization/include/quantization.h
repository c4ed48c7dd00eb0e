// The two elementwise passes of dynamic int8 quantisation (`--precision int8`): the largest magnitude of a float32
// tensor, then its values scaled, rounded and narrowed to int8. oneDNN 2.6 has neither as one primitive (its
// reductions have no |x| max, and a reorder would need the scale per call). Each function is compiled for AVX-512,
// AVX2 and baseline x86-64, the copy picked at load time (`target_clones`); ReferenceBackend has the same math as
// plain Swift loops, which the tests compare against.
#pragma once
#include <stddef.h>
#include <stdint.h>

// max |x[i]| over n values; +inf when one is infinite, NaN when one is NaN (so a caller can refuse non-finite input).
float sv_abs_max(const float *x, size_t n);

// q[i] = x[i] * inverse_scale rounded to the nearest integer (ties to even), for |x[i] * inverse_scale| <= 127.
void sv_quantize_s8(const float *x, int8_t *q, size_t n, float inverse_scale);

// The same two passes over bfloat16 values (the upper halves of float32s).
float sv_abs_max_bf16(const uint16_t *x, size_t n);
void sv_quantize_s8_bf16(const uint16_t *x, int8_t *q, size_t n, float inverse_scale);
