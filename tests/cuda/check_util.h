/*
 * What the CUDA checks share, in C and C++ alike: tests/unit/test_cuda.c on a GPU and the host
 * emulator's tests/cuda/emu/emu_check.cpp and emu_engine.cpp. A seeded xorshift for inputs (each
 * check seeds before drawing) and the normalized mean squared error the agreement is judged by.
 */
#ifndef SYN_TESTS_CUDA_CHECK_UTIL_H
#define SYN_TESTS_CUDA_CHECK_UTIL_H

#include <stddef.h>
#include <stdint.h>

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static inline void seed(uint64_t s)
{
    g_rng = s * 0x9e3779b97f4a7c15ull + 1;
}

/* Uniform in [-1, 1). */
static inline float frand(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

/* sum (got - ref)^2 / sum ref^2 (the plain sum when ref is all zeros); NaN in, NaN out. */
static inline double nmse(const float *got, const float *ref, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * (double)ref[i];
    }
    return den > 0 ? num / den : num;
}

#endif
