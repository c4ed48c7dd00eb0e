#include "quantization.h"
#include <math.h>
#include <string.h>

#if defined(__x86_64__) && defined(__linux__)
#define SV_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SV_CLONES
#endif

// For non-negative floats the order of the bit patterns is the order of the values, and an integer max reduction
// vectorises without fast-math: |x| is the pattern with the sign bit cleared. Infinity (0x7f800000) and NaN
// (above it) come out as the largest patterns, so they are what is returned.
SV_CLONES float sv_abs_max(const float *x, size_t n) {
    uint32_t largest = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &x[i], sizeof bits);
        bits &= 0x7fffffffu;
        largest = bits > largest ? bits : largest;
    }
    float result;
    memcpy(&result, &largest, sizeof result);
    return result;
}

// A bfloat16's pattern with the sign cleared orders as its value does, as a float's: the same reduction on 16 bits.
SV_CLONES float sv_abs_max_bf16(const uint16_t *x, size_t n) {
    uint16_t largest = 0;
    for (size_t i = 0; i < n; i++) {
        uint16_t bits = x[i] & 0x7fffu;
        largest = bits > largest ? bits : largest;
    }
    uint32_t widened = (uint32_t)largest << 16;
    float result;
    memcpy(&result, &widened, sizeof result);
    return result;
}

SV_CLONES void sv_quantize_s8_bf16(const uint16_t *x, int8_t *q, size_t n, float inverse_scale) {
    for (size_t i = 0; i < n; i++) {
        uint32_t widened = (uint32_t)x[i] << 16;
        float value;
        memcpy(&value, &widened, sizeof value);
        q[i] = (int8_t)(int32_t)rintf(value * inverse_scale);
    }
}

// rintf rounds in the current mode (to nearest, ties to even): what oneDNN's reorders and the reference use.
SV_CLONES void sv_quantize_s8(const float *x, int8_t *q, size_t n, float inverse_scale) {
    for (size_t i = 0; i < n; i++) q[i] = (int8_t)(int32_t)rintf(x[i] * inverse_scale);
}
