/*
 * Portable C kernels: the fallback for CPUs without AVX2 (and for compilers without x86
 * intrinsics), written for clarity over speed. Each dot product runs strictly left to right,
 * one element (or, for quantised weights, one block) after another, so its result depends only
 * on the row and the activations, never on the batch.
 *
 * The activation quantiser here is also the definition the SIMD quantisers match bit for bit.
 */
#include "engine/cpu/kernels_impl.h"

#include "synapse/tensor.h"

#include <math.h>
#include <string.h>

/* ---- element conversions (our own, so the hot path does not call into tensor.c) ---- */

static inline float bits_to_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0x1f) return bits_to_f32(sign | 0x7f800000u | (man << 13)); /* inf, NaN */
    if (exp != 0) return bits_to_f32(sign | ((exp + 112) << 23) | (man << 13));
    /* Zero or subnormal: man * 2^-24 is exact in f32. */
    float v = (float)man * (1.0f / 16777216.0f);
    return sign ? -v : v;
}

static inline float bf16_to_f32(uint16_t h)
{
    return bits_to_f32((uint32_t)h << 16);
}

static inline uint16_t load_u16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* ---- activation quantisation ---- */

static void quantize_row_scalar(const float *x, int K, int wtype, uint8_t *dst)
{
    (void)wtype;
    int8_t *q = (int8_t *)dst;
    float *ds = (float *)(dst + (((size_t)K + 63) & ~(size_t)63));
    for (int b = 0; b < K / SYN_QBLOCK; b++) {
        const float *xb = x + (size_t)b * SYN_QBLOCK;
        float amax = 0.0f;
        for (int i = 0; i < SYN_QBLOCK; i++) {
            float a = fabsf(xb[i]);
            if (a > amax) amax = a;
        }
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int i = 0; i < SYN_QBLOCK; i++) {
            float v = nearbyintf(xb[i] * id); /* round half to even, as cvtps2dq does */
            if (v > 127.0f) v = 127.0f;
            if (v < -127.0f) v = -127.0f;
            q[(size_t)b * SYN_QBLOCK + i] = (int8_t)v;
        }
        ds[b] = d;
    }
}

/* ---- dot products, one (activation row, weight row) pair at a time ---- */

static float dot_f32(const uint8_t *w, const float *x, int K)
{
    float s = 0.0f;
    for (int k = 0; k < K; k++) {
        float wk;
        memcpy(&wk, w + (size_t)k * 4, sizeof wk);
        s += wk * x[k];
    }
    return s;
}

static float dot_f16(const uint8_t *w, const float *x, int K)
{
    float s = 0.0f;
    for (int k = 0; k < K; k++) s += f16_to_f32(load_u16(w + (size_t)k * 2)) * x[k];
    return s;
}

static float dot_bf16(const uint8_t *w, const float *x, int K)
{
    float s = 0.0f;
    for (int k = 0; k < K; k++) s += bf16_to_f32(load_u16(w + (size_t)k * 2)) * x[k];
    return s;
}

/* xq: one quantised activation row (layout in kernels_impl.h). */
static float dot_q8_0(const uint8_t *w, const uint8_t *xq, int K)
{
    const int8_t *xs = (const int8_t *)xq;
    const float *xd = (const float *)(xq + (((size_t)K + 63) & ~(size_t)63));
    const size_t bb = sizeof(struct syn_block_q8_0);
    float s = 0.0f;
    for (int b = 0; b < K / SYN_QBLOCK; b++) {
        const uint8_t *blk = w + (size_t)b * bb;
        const int8_t *wq = (const int8_t *)(blk + 2);
        int32_t acc = 0;
        for (int i = 0; i < SYN_QBLOCK; i++) acc += (int32_t)wq[i] * xs[b * SYN_QBLOCK + i];
        s += (float)acc * (f16_to_f32(load_u16(blk)) * xd[b]);
    }
    return s;
}

static float dot_q4_0(const uint8_t *w, const uint8_t *xq, int K)
{
    const int8_t *xs = (const int8_t *)xq;
    const float *xd = (const float *)(xq + (((size_t)K + 63) & ~(size_t)63));
    const size_t bb = sizeof(struct syn_block_q4_0);
    float s = 0.0f;
    for (int b = 0; b < K / SYN_QBLOCK; b++) {
        const uint8_t *blk = w + (size_t)b * bb;
        const uint8_t *wq = blk + 2;
        const int8_t *xb = xs + b * SYN_QBLOCK;
        int32_t acc = 0;
        for (int i = 0; i < 16; i++) {
            acc += ((int32_t)(wq[i] & 0x0f) - 8) * xb[i];
            acc += ((int32_t)(wq[i] >> 4) - 8) * xb[i + 16];
        }
        s += (float)acc * (f16_to_f32(load_u16(blk)) * xd[b]);
    }
    return s;
}

static void rows_scalar(const struct syn_mm *mm, int r0, int r1, uint8_t *work)
{
    (void)work;
    for (int t = 0; t < mm->T; t++) {
        const float *x = mm->x + (size_t)t * mm->K;
        const uint8_t *xq = mm->xq ? mm->xq + (size_t)t * mm->xq_stride : NULL;
        float *y = mm->y + (size_t)t * mm->R;
        for (int r = r0; r < r1; r++) {
            const uint8_t *w = mm->w + (size_t)r * mm->w_row_bytes;
            switch (mm->wtype) {
            case SYN_DT_F32:
                y[r] = dot_f32(w, x, mm->K);
                break;
            case SYN_DT_F16:
                y[r] = dot_f16(w, x, mm->K);
                break;
            case SYN_DT_BF16:
                y[r] = dot_bf16(w, x, mm->K);
                break;
            case SYN_DT_Q8_0:
                y[r] = dot_q8_0(w, xq, mm->K);
                break;
            case SYN_DT_Q4_0:
                y[r] = dot_q4_0(w, xq, mm->K);
                break;
            default:
                break;
            }
        }
    }
}

const struct syn_cpu_isa syn_cpu_isa_scalar = {
    .name = "scalar",
    .xq_row_bytes = syn_xq_plain_row_bytes,
    .quantize_row = quantize_row_scalar,
    .rows = rows_scalar,
};
