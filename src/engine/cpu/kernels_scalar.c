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

/* ---- K-quants ----
 *
 * Against the super-block activations (kernels_impl.h), super-block after super-block: the
 * products of each sub-block summed exactly in int32, times its integer scale, summed exactly
 * over the super-block (|sum| < 2^31: at most 256 * 63 * 127 * 63 for Q4_K/Q5_K's quants and
 * scales, 256 * 32 * 127 * 128 for Q6_K's), then one float term per super-block:
 *     Q4_K/Q5_K: (float)sum(sc * q * xq) * (d * xd) - dmin * sum((float)m * xsum)
 *     Q6_K:      (float)sum(sc * ((q * xq) - 32 * bsum)) * (d * xd)
 * The SIMD paths compute the same integers; their float terms run in lanes, in their own order. */

void syn_cpu_quantize_row_kq(const float *x, int K, uint8_t *dst)
{
    const struct syn_kq_row r = syn_kq_row(dst, K);
    for (int b = 0; b < K / 256; b++) {
        const float *xb = x + (size_t)b * 256;
        int8_t *q = r.q + (size_t)b * 256;
        float amax = 0.0f;
        for (int i = 0; i < 256; i++) {
            float a = fabsf(xb[i]);
            if (a > amax) amax = a;
        }
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int i = 0; i < 256; i++) {
            float v = nearbyintf(xb[i] * id);
            if (v > 127.0f) v = 127.0f;
            if (v < -127.0f) v = -127.0f;
            q[i] = (int8_t)v;
        }
        for (int k = 0; k < 16; k++) {
            int sum = 0;
            for (int i = 0; i < 16; i++) sum += q[16 * k + i];
            r.bsum[b * 16 + k] = (int16_t)sum;
        }
        for (int j = 0; j < 8; j++)
            r.xsum[b * 8 + j] = d * (float)(r.bsum[b * 16 + 2 * j] + r.bsum[b * 16 + 2 * j + 1]);
        r.d[b] = d;
    }
}

static float dot_q45_k(const uint8_t *w, const uint8_t *xq, int K, int q5)
{
    const struct syn_kq_row x = syn_kq_row(xq, K);
    const size_t bb = q5 ? SYN_Q5K_BYTES : SYN_Q4K_BYTES;
    float s = 0.0f;
    for (int sb = 0; sb < K / SYN_QK_K; sb++) {
        const uint8_t *blk = w + (size_t)sb * bb;
        const uint8_t *qh = blk + 16, *qs = blk + (q5 ? 48 : 16);
        const int8_t *xs = x.q + (size_t)sb * SYN_QK_K;
        int32_t isum = 0;
        float msum = 0.0f;
        for (int j = 0; j < 8; j++) {
            const uint8_t *q = qs + 32 * (j / 2);
            uint8_t sc, m;
            syn_kquant_scale_min(blk + 4, j, &sc, &m);
            int32_t p = 0;
            for (int l = 0; l < 32; l++) {
                int v = j % 2 ? q[l] >> 4 : q[l] & 15;
                if (q5) v += ((qh[l] >> j) & 1) << 4;
                p += v * xs[32 * j + l];
            }
            isum += sc * p;
            msum += (float)m * x.xsum[sb * 8 + j];
        }
        const float d = f16_to_f32(load_u16(blk)), dmin = f16_to_f32(load_u16(blk + 2));
        s += (float)isum * (d * x.d[sb]) - dmin * msum;
    }
    return s;
}

static float dot_q6_k(const uint8_t *w, const uint8_t *xq, int K)
{
    const struct syn_kq_row x = syn_kq_row(xq, K);
    float s = 0.0f;
    for (int sb = 0; sb < K / SYN_QK_K; sb++) {
        const uint8_t *blk = w + (size_t)sb * SYN_Q6K_BYTES;
        const int8_t *sc = (const int8_t *)(blk + 192);
        const int8_t *xs = x.q + (size_t)sb * SYN_QK_K;
        int32_t isum = 0;
        for (int k = 0; k < 16; k++) { /* sub-block k: elements 16k .. 16k + 15 */
            int32_t p = 0;
            for (int e = 16 * k; e < 16 * k + 16; e++) {
                int half = e / 128, i = (e % 128) / 32, l = e % 32;
                uint8_t lo = blk[64 * half + l + 32 * (i & 1)], hi = blk[128 + 32 * half + l];
                int q = (i < 2 ? lo & 15 : lo >> 4) | (((hi >> (2 * i)) & 3) << 4);
                p += q * xs[e];
            }
            isum += sc[k] * (p - 32 * x.bsum[sb * 16 + k]);
        }
        s += (float)isum * (f16_to_f32(load_u16(blk + 208)) * x.d[sb]);
    }
    return s;
}

static void rows_kquant_scalar(const struct syn_mm *mm, int r0, int r1)
{
    for (int t = 0; t < mm->T; t++) {
        const uint8_t *xq = mm->xq + (size_t)t * mm->xq_stride;
        float *y = mm->y + (size_t)t * mm->R;
        for (int r = r0; r < r1; r++) {
            const uint8_t *w = mm->w + (size_t)r * mm->w_row_bytes;
            y[r] = mm->wtype == SYN_DT_Q6_K ? dot_q6_k(w, xq, mm->K)
                                            : dot_q45_k(w, xq, mm->K, mm->wtype == SYN_DT_Q5_K);
        }
    }
}

/* Q4_1, Q5_0, Q5_1 against the plain activations, block after block: the exact int32 sums of
 * q * xq (q = 0..31, the fifth bit included) and of xq, then
 *     Q5_0:       (float)(sum(q * xq) - 16 * sum(xq)) * (d * xd)
 *     Q4_1, Q5_1: (float)sum(q * xq) * (d * xd) + (float)sum(xq) * (m * xd)
 * The SIMD paths compute the same per-block terms (their float sums run in lanes). */
static float dot_q32_offset(const uint8_t *w, const uint8_t *xq, int K, int wtype)
{
    const int8_t *xs = (const int8_t *)xq;
    const float *xd = (const float *)(xq + (((size_t)K + 63) & ~(size_t)63));
    const int has_m = wtype != SYN_DT_Q5_0, has_h = wtype != SYN_DT_Q4_1;
    const size_t bb = (size_t)(has_m ? 4 : 2) + (has_h ? 4 : 0) + 16;
    float s = 0.0f;
    for (int b = 0; b < K / SYN_QBLOCK; b++) {
        const uint8_t *blk = w + (size_t)b * bb, *hp = blk + (has_m ? 4 : 2);
        const uint8_t *q = hp + (has_h ? 4 : 0);
        uint32_t qh = 0;
        if (has_h) memcpy(&qh, hp, sizeof qh);
        const int8_t *x = xs + (size_t)b * SYN_QBLOCK;
        int32_t isum = 0, xsum = 0;
        for (int j = 0; j < 32; j++) {
            int v = (j < 16 ? q[j] & 15 : q[j - 16] >> 4) | (int)((qh >> j) & 1) << 4;
            isum += v * x[j];
            xsum += x[j];
        }
        const float d = f16_to_f32(load_u16(blk));
        if (has_m)
            s += (float)isum * (d * xd[b]) + (float)xsum * (f16_to_f32(load_u16(blk + 2)) * xd[b]);
        else
            s += (float)(isum - 16 * xsum) * (d * xd[b]);
    }
    return s;
}

static void rows_scalar(const struct syn_mm *mm, int r0, int r1, uint8_t *work)
{
    (void)work;
    if (syn_is_q32_offset(mm->wtype)) {
        for (int t = 0; t < mm->T; t++)
            for (int r = r0; r < r1; r++)
                mm->y[(size_t)t * mm->R + r] =
                    dot_q32_offset(mm->w + (size_t)r * mm->w_row_bytes,
                                   mm->xq + (size_t)t * mm->xq_stride, mm->K, mm->wtype);
        return;
    }
    if (syn_is_kquant(mm->wtype)) {
        rows_kquant_scalar(mm, r0, r1);
        return;
    }
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
