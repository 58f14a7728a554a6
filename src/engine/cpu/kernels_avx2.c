/*
 * AVX2 kernels (with FMA and F16C): the path for x86 CPUs without AVX-512 VNNI. Compiled with
 * per-function target attributes and only called when kernels.c found the features at run time.
 *
 * Reduction order for one (activation row, weight row) pair:
 *   F32/F16/BF16: one 8-lane f32 accumulator; element k goes to lane k % 8, one FMA per chunk in
 *     increasing k; the last partial chunk is zero-padded; then hsum8() below.
 *   Q8_0/Q4_0: one block per step; each lane's int32 partial sum of four products is exact,
 *     converted to f32 and added with one FMA scaled by d_w * d_x; then hsum8().
 * Every tile shape runs exactly these steps per accumulator, so tiling never changes a result.
 * Q8_0 and Q4_0 use the plain arrangement of quantised activations (kernels_impl.h).
 *
 * Integer products use maddubs (unsigned x signed bytes, pairs summed into int16 with
 * saturation), so each path keeps both factors small enough never to saturate:
 *   Q8_0: |w| (<= 128) times x carrying w's sign (|x| <= 127): pairs <= 2 * 128 * 127 < 32767.
 *   Q4_0: the nibble q (<= 15) times x, minus 8 * (sum of x) per pair, both exact in int16.
 */
#include "engine/cpu/kernels_impl.h"

#include "synapse/tensor.h"

#include <string.h>

#if SYN_HAVE_X86_SIMD

#include <immintrin.h>

#define TARGET   __attribute__((target("avx2,fma,f16c")))
#define INLINE   static inline __attribute__((always_inline))
#define NOINLINE static __attribute__((noinline))
/* Tile loops must be fully unrolled so that the accumulators live in registers. */
#define UNROLL    _Pragma("GCC unroll 8")
#define UNROLL_16 _Pragma("GCC unroll 16")

/* ---- helpers ---- */

/* The fixed horizontal sum: 8 -> 4 -> 2 -> 1. */
TARGET INLINE float hsum8(__m256 v)
{
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}

/* 8 weights of a float type starting at byte p, as f32. */
TARGET INLINE __m256 load_wf(const uint8_t *p, const int wt)
{
    if (wt == SYN_DT_F32) return _mm256_loadu_ps((const float *)p);
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    if (wt == SYN_DT_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* ---- activation quantisation (bit-identical to the scalar definition) ---- */

TARGET static void quantize_row_avx2(const float *x, int K, int wtype, uint8_t *dst)
{
    (void)wtype;
    int8_t *q = (int8_t *)dst;
    float *ds = (float *)(dst + (((size_t)K + 63) & ~(size_t)63));
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 lim = _mm256_set1_ps(127.0f);
    const __m256 nlim = _mm256_set1_ps(-127.0f);
    for (int b = 0; b < K / SYN_QBLOCK; b++) {
        const float *xb = x + (size_t)b * SYN_QBLOCK;
        __m256 v[4];
        __m256 m = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(xb + 8 * i);
            m = _mm256_max_ps(m, _mm256_and_ps(v[i], absmask));
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        __m256 vid = _mm256_set1_ps(id);
        __m256i qi[4];
        for (int i = 0; i < 4; i++) {
            __m256 a = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(v[i], vid), nlim), lim);
            qi[i] = _mm256_cvtps_epi32(a); /* round half to even, like nearbyintf */
        }
        /* Pack 32 int32 to 32 int8; packs works within 128-bit lanes, so restore the order. */
        __m256i p01 = _mm256_packs_epi32(qi[0], qi[1]);
        __m256i p23 = _mm256_packs_epi32(qi[2], qi[3]);
        __m256i p = _mm256_packs_epi16(p01, p23);
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(q + (size_t)b * SYN_QBLOCK), p);
        ds[b] = d;
    }
}

/* Prefetches n bytes from p into L2 (n is a compile-time constant in every caller); used to fetch
 * the next tile's weight rows one tile ahead, by the tiles that measured faster with it on the
 * AVX-512 path (all but the float decode tile). */
TARGET INLINE void prefetch_span(const uint8_t *p, size_t n)
{
    UNROLL_16
    for (size_t l = 0; l < n; l += 64) _mm_prefetch((const char *)p + l, _MM_HINT_T2);
}

/* Prefetches the first 4 lines of a row into L1, where the hardware prefetcher, which stops at
 * page boundaries, has to start afresh (as on the AVX-512 path). */
TARGET INLINE void prefetch_head(const uint8_t *row)
{
    UNROLL
    for (int l = 0; l < 4; l++) _mm_prefetch((const char *)row + 64 * l, _MM_HINT_T0);
}

/* ---- float weights ---- */

/* The activations are read straight from x; each step converts NR weight chunks once and uses
 * each for all NT activation rows. */
TARGET INLINE void tile_f(const struct syn_mm *mm, const int wt, int t0, int r0, const int NT,
                          const int NR)
{
    const int K = mm->K;
    const size_t es = wt == SYN_DT_F32 ? 4 : 2;
    const uint8_t *w[4];
    const float *x[4];
    __m256 acc[4][4];
    UNROLL
    for (int j = 0; j < NR; j++) w[j] = mm->w + (size_t)(r0 + j) * mm->w_row_bytes;
    UNROLL
    for (int i = 0; i < NT; i++) {
        x[i] = mm->x + (size_t)(t0 + i) * K;
        UNROLL
        for (int j = 0; j < NR; j++) acc[i][j] = _mm256_setzero_ps();
    }

    /* Batch tiles prefetch the next tile's rows, one tile ahead (see prefetch_span). */
    const size_t pf_step = (size_t)NR * 8 * es;
    const uint8_t *pf = w[0] + (size_t)NR * mm->w_row_bytes;

    /* The decode tile only touches the head of each of the next tile's rows (prefetch_head). */
    if (NT == 1) {
        const uint8_t *next = w[0] + (size_t)NR * mm->w_row_bytes;
        UNROLL
        for (int j = 0; j < NR; j++) prefetch_head(next + (size_t)j * mm->w_row_bytes);
    }

    int k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 wv[4];
        if (NT > 1) {
            prefetch_span(pf, pf_step);
            pf += pf_step;
        }
        UNROLL
        for (int j = 0; j < NR; j++) wv[j] = load_wf(w[j] + (size_t)k * es, wt);
        UNROLL
        for (int i = 0; i < NT; i++) {
            __m256 xv = _mm256_loadu_ps(x[i] + k);
            UNROLL
            for (int j = 0; j < NR; j++) acc[i][j] = _mm256_fmadd_ps(wv[j], xv, acc[i][j]);
        }
    }
    if (k < K) {
        /* The last partial chunk, zero-padded through small copies. */
        size_t n = (size_t)(K - k);
        __m256 wv[4];
        UNROLL
        for (int j = 0; j < NR; j++) {
            uint8_t tmp[32] = {0};
            memcpy(tmp, w[j] + (size_t)k * es, n * es);
            wv[j] = load_wf(tmp, wt);
        }
        UNROLL
        for (int i = 0; i < NT; i++) {
            float tmp[8] = {0};
            memcpy(tmp, x[i] + k, n * sizeof(float));
            __m256 xv = _mm256_loadu_ps(tmp);
            UNROLL
            for (int j = 0; j < NR; j++) acc[i][j] = _mm256_fmadd_ps(wv[j], xv, acc[i][j]);
        }
    }
    UNROLL
    for (int i = 0; i < NT; i++) {
        UNROLL
        for (int j = 0; j < NR; j++) mm->y[(size_t)(t0 + i) * mm->R + r0 + j] = hsum8(acc[i][j]);
    }
}

/* ---- quantised weights ---- */

/* Weight row by weight row: each row's block is unpacked once and meets every activation row's
 * block, which is loaded from the scratch as it is needed. */
TARGET INLINE void tile_q(const struct syn_mm *mm, const int wt, int t0, int r0, const int NT,
                          const int NR)
{
    const int nb = mm->K / SYN_QBLOCK;
    const size_t bb =
        wt == SYN_DT_Q8_0 ? sizeof(struct syn_block_q8_0) : sizeof(struct syn_block_q4_0);
    const size_t dofs = ((size_t)mm->K + 63) & ~(size_t)63;
    const __m256i ones = _mm256_set1_epi16(1);
    const uint8_t *w[4];
    const int8_t *xs[4];
    const float *xd[4];
    __m256 acc[4][4];
    UNROLL
    for (int j = 0; j < NR; j++) w[j] = mm->w + (size_t)(r0 + j) * mm->w_row_bytes;
    UNROLL
    for (int i = 0; i < NT; i++) {
        const uint8_t *row = mm->xq + (size_t)(t0 + i) * mm->xq_stride;
        xs[i] = (const int8_t *)row;
        xd[i] = (const float *)(row + dofs);
        UNROLL
        for (int j = 0; j < NR; j++) acc[i][j] = _mm256_setzero_ps();
    }
    /* The next tile's rows follow this tile's: prefetch them one tile ahead. */
    const size_t pf_step = (size_t)NR * bb;
    const uint8_t *pf = w[0] + (size_t)NR * mm->w_row_bytes;

    /* The decode tile also fetches the head of every one of those rows at once (prefetch_head). */
    if (NT == 1) {
        UNROLL
        for (int j = 0; j < NR; j++) prefetch_head(pf + (size_t)j * mm->w_row_bytes);
    }

    for (int b = 0; b < nb; b++) {
        prefetch_span(pf, pf_step);
        pf += pf_step;
        UNROLL
        for (int j = 0; j < NR; j++) {
            const uint8_t *blk = w[j] + (size_t)b * bb;
            /* Q8_0: wa = |w| and ws = w, whose sign goes onto x. Q4_0: wa = q = w + 8. */
            __m256i wa, ws = _mm256_setzero_si256();
            if (wt == SYN_DT_Q8_0) {
                ws = _mm256_loadu_si256((const __m256i *)(blk + 2));
                wa = _mm256_abs_epi8(ws);
            } else {
                __m128i v = _mm_loadu_si128((const __m128i *)(blk + 2));
                __m256i lh =
                    _mm256_inserti128_si256(_mm256_castsi128_si256(v), _mm_srli_epi16(v, 4), 1);
                wa = _mm256_and_si256(lh, _mm256_set1_epi8(0x0f));
            }
            __m256 dw = _mm256_set1_ps(_cvtsh_ss(syn_load_u16(blk)));
            UNROLL
            for (int i = 0; i < NT; i++) {
                __m256i xv = _mm256_loadu_si256((const __m256i *)(xs[i] + (size_t)b * SYN_QBLOCK));
                __m256i p16;
                if (wt == SYN_DT_Q8_0) {
                    p16 = _mm256_maddubs_epi16(wa, _mm256_sign_epi8(xv, ws));
                } else {
                    /* 8 * (x0 + x1) per pair: what the offset of 8 in q added. */
                    __m256i corr = _mm256_maddubs_epi16(_mm256_set1_epi8(8), xv);
                    p16 = _mm256_sub_epi16(_mm256_maddubs_epi16(wa, xv), corr);
                }
                __m256i s = _mm256_madd_epi16(p16, ones);
                __m256 sc = _mm256_mul_ps(dw, _mm256_broadcast_ss(xd[i] + b));
                acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), sc, acc[i][j]);
            }
        }
    }
    UNROLL
    for (int i = 0; i < NT; i++) {
        UNROLL
        for (int j = 0; j < NR; j++) mm->y[(size_t)(t0 + i) * mm->R + r0 + j] = hsum8(acc[i][j]);
    }
}

/* ---- tiles (as in kernels_avx512.c, with 16 registers instead of 32) ---- */

#define WIDE 4 /* weight rows per decode tile */
#define MT   4 /* activation rows per batch tile */
#define MR   2 /* weight rows per batch tile */

/* clang-format off */
#define TILE_CASES(body, m, wt, t, r, nt, nr)                                                      \
    switch ((nt) * 16 + (nr)) {                                                                    \
    case 0x10 + WIDE: body(m, wt, t, r, 1, WIDE); break;                                           \
    case 0x10 + MR: body(m, wt, t, r, 1, MR); break;                                               \
    case 0x20 + MR: body(m, wt, t, r, 2, MR); break;                                               \
    case 0x30 + MR: body(m, wt, t, r, 3, MR); break;                                               \
    case 0x40 + MR: body(m, wt, t, r, 4, MR); break;                                               \
    case 0x11: body(m, wt, t, r, 1, 1); break;                                                     \
    case 0x21: body(m, wt, t, r, 2, 1); break;                                                     \
    case 0x31: body(m, wt, t, r, 3, 1); break;                                                     \
    case 0x41: body(m, wt, t, r, 4, 1); break;                                                     \
    }
/* clang-format on */

typedef void tile_fn(const struct syn_mm *mm, int t0, int r0, int nt, int nr);

TARGET NOINLINE void tiles_f32(const struct syn_mm *m, int t, int r, int nt,
                               int nr){TILE_CASES(tile_f, m, SYN_DT_F32, t, r, nt, nr)}

TARGET NOINLINE void tiles_f16(const struct syn_mm *m, int t, int r, int nt,
                               int nr){TILE_CASES(tile_f, m, SYN_DT_F16, t, r, nt, nr)}

TARGET NOINLINE void tiles_bf16(const struct syn_mm *m, int t, int r, int nt,
                                int nr){TILE_CASES(tile_f, m, SYN_DT_BF16, t, r, nt, nr)}

TARGET NOINLINE void tiles_q8_0(const struct syn_mm *m, int t, int r, int nt,
                                int nr){TILE_CASES(tile_q, m, SYN_DT_Q8_0, t, r, nt, nr)}

TARGET NOINLINE void tiles_q4_0(const struct syn_mm *m, int t, int r, int nt, int nr)
{
    TILE_CASES(tile_q, m, SYN_DT_Q4_0, t, r, nt, nr)
}

/* ---- driver ---- */

/* Weight rows [rs, re) against activation rows [ts, te). */
static void run_block(tile_fn *tile, const struct syn_mm *mm, int rs, int re, int ts, int te)
{
    int r = rs;
    if (te - ts == 1) {
        for (; r + WIDE <= re; r += WIDE) tile(mm, ts, r, 1, WIDE);
    } else {
        for (; r + MR <= re; r += MR) {
            int t = ts;
            for (; t + MT <= te; t += MT) tile(mm, t, r, MT, MR);
            if (t < te) tile(mm, t, r, te - t, MR);
        }
    }
    for (; r < re; r++) {
        int t = ts;
        for (; t + MT <= te; t += MT) tile(mm, t, r, MT, 1);
        if (t < te) tile(mm, t, r, te - t, 1);
    }
}

/* ---- K-quants ----
 *
 * The AVX-512 design (kernels_avx512.c) at half the width: against the super-block activations
 * (kernels_impl.h), per 32 elements maddubs (exact 16-bit sums of two products) and madd with
 * the sub-block's scale words (exact int32), added into 8 int32 lanes; per super-block and
 * activation row one FMA with d * xd, and Q4_K/Q5_K's mins one with dmin * m against the
 * activations' xd-scaled sums of 32 (Q6_K's -32 offset comes from the sums of 16 in the
 * integers); hsum8 at the end. Up to two activation rows share each unpacked weight
 * super-block; the steps per pair depend only on K. */

#define KQ_T 2

TARGET INLINE void kq45_pass(const uint8_t *w, const struct syn_kq_row *x, const int nt, int K,
                             const int q5, float *out)
{
    const size_t bb = q5 ? SYN_Q5K_BYTES : SYN_Q4K_BYTES;
    const __m256i low4 = _mm256_set1_epi8(15), one8 = _mm256_set1_epi8(1);
    __m256 acc[KQ_T], accm[KQ_T];
    UNROLL
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps(), accm[t] = _mm256_setzero_ps();
    for (int sb = 0; sb < K / SYN_QK_K; sb++) {
        const uint8_t *blk = w + (size_t)sb * bb;
        const uint8_t *qs = blk + (q5 ? 48 : 16);
        const uint32_t a = syn_load_u32(blk + 4), b = syn_load_u32(blk + 8),
                       c = syn_load_u32(blk + 12);
        uint32_t sc[2] = {a & 0x3f3f3f3fu, (c & 0x0f0f0f0fu) | ((a >> 6) & 0x03030303u) << 4};
        uint32_t mn[2] = {b & 0x3f3f3f3fu, ((c >> 4) & 0x0f0f0f0fu) | ((b >> 6) & 0x03030303u)
                                                                          << 4};
        uint8_t scb[8];
        memcpy(scb, sc, 8);
        const __m256 mf = _mm256_cvtepi32_ps(
            _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)mn))); /* m[0..7] */
        const __m256i h =
            q5 ? _mm256_loadu_si256((const __m256i *)(blk + 16)) : _mm256_setzero_si256();
        __m256i isum[KQ_T];
        UNROLL
        for (int t = 0; t < nt; t++) isum[t] = _mm256_setzero_si256();
        UNROLL
        for (int j = 0; j < 8; j++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * (j / 2)));
            q = _mm256_and_si256(j % 2 ? _mm256_srli_epi16(q, 4) : q, low4);
            if (q5)
                q = _mm256_or_si256(
                    q, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, j), one8), 4));
            const __m256i sv = _mm256_set1_epi16((short)scb[j]);
            UNROLL
            for (int t = 0; t < nt; t++) {
                const __m256i p = _mm256_maddubs_epi16(
                    q,
                    _mm256_loadu_si256((const __m256i *)(x[t].q + (size_t)sb * SYN_QK_K + 32 * j)));
                isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(p, sv));
            }
        }
        const float d = _cvtsh_ss(syn_load_u16(blk)), dmin = _cvtsh_ss(syn_load_u16(blk + 2));
        const __m256 mdv = _mm256_mul_ps(mf, _mm256_set1_ps(dmin)); /* dmin * m[j] */
        UNROLL
        for (int t = 0; t < nt; t++) {
            const float xd = x[t].d[sb];
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_set1_ps(d * xd), acc[t]);
            accm[t] = _mm256_fmadd_ps(_mm256_loadu_ps(x[t].xsum + 8 * sb), mdv, accm[t]);
        }
    }
    UNROLL
    for (int t = 0; t < nt; t++) out[t] = hsum8(acc[t]) - hsum8(accm[t]);
}

TARGET INLINE void kq6_pass(const uint8_t *w, const struct syn_kq_row *x, const int nt, int K,
                            float *out)
{
    const __m256i low4 = _mm256_set1_epi8(15), low2 = _mm256_set1_epi8(3);
    __m256 acc[KQ_T];
    UNROLL
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int sb = 0; sb < K / SYN_QK_K; sb++) {
        const uint8_t *blk = w + (size_t)sb * SYN_Q6K_BYTES;
        const int8_t *sc = (const int8_t *)(blk + 192);
        const __m256i scw = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)sc));
        __m256i isum[KQ_T];
        UNROLL
        for (int t = 0; t < nt; t++) isum[t] = _mm256_setzero_si256();
        UNROLL
        for (int n = 0; n < 2; n++) {
            const __m256i H = _mm256_loadu_si256((const __m256i *)(blk + 128 + 32 * n));
            UNROLL
            for (int i = 0; i < 4; i++) { /* elements 128n + 32i .. + 31 */
                __m256i L = _mm256_loadu_si256((const __m256i *)(blk + 64 * n + 32 * (i & 1)));
                L = _mm256_and_si256(i < 2 ? L : _mm256_srli_epi16(L, 4), low4);
                const __m256i q = _mm256_or_si256(
                    L, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(H, 2 * i), low2), 4));
                const int k = 8 * n + 2 * i; /* words 0-7: sub-block k, 8-15: k + 1 */
                const __m256i sv =
                    _mm256_set_m128i(_mm_set1_epi16(sc[k + 1]), _mm_set1_epi16(sc[k]));
                UNROLL
                for (int t = 0; t < nt; t++) {
                    const __m256i p = _mm256_maddubs_epi16(
                        q, _mm256_loadu_si256((const __m256i *)(x[t].q + (size_t)sb * SYN_QK_K +
                                                                128 * n + 32 * i)));
                    isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(p, sv));
                }
            }
        }
        const float d = _cvtsh_ss(syn_load_u16(blk + 208));
        UNROLL
        for (int t = 0; t < nt; t++) {
            const __m256i bs = _mm256_loadu_si256((const __m256i *)(x[t].bsum + 16 * sb));
            const __m256i v =
                _mm256_sub_epi32(isum[t], _mm256_slli_epi32(_mm256_madd_epi16(bs, scw), 5));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), _mm256_set1_ps(d * x[t].d[sb]), acc[t]);
        }
    }
    UNROLL
    for (int t = 0; t < nt; t++) out[t] = hsum8(acc[t]);
}

TARGET static void rows_kquant_avx2(const struct syn_mm *mm, int r0, int r1)
{
    for (int r = r0; r < r1; r++) {
        const uint8_t *w = mm->w + (size_t)r * mm->w_row_bytes;
        for (int t0 = 0; t0 < mm->T; t0 += KQ_T) {
            const int nt = mm->T - t0 < KQ_T ? mm->T - t0 : KQ_T;
            struct syn_kq_row x[KQ_T];
            float out[KQ_T];
            for (int t = 0; t < nt; t++)
                x[t] = syn_kq_row(mm->xq + (size_t)(t0 + t) * mm->xq_stride, mm->K);
            if (mm->wtype == SYN_DT_Q6_K) {
                if (nt == 2)
                    kq6_pass(w, x, 2, mm->K, out);
                else
                    kq6_pass(w, x, 1, mm->K, out);
            } else {
                const int q5 = mm->wtype == SYN_DT_Q5_K;
                if (nt == 2 && q5)
                    kq45_pass(w, x, 2, mm->K, 1, out);
                else if (nt == 2)
                    kq45_pass(w, x, 2, mm->K, 0, out);
                else if (q5)
                    kq45_pass(w, x, 1, mm->K, 1, out);
                else
                    kq45_pass(w, x, 1, mm->K, 0, out);
            }
            for (int t = 0; t < nt; t++) mm->y[(size_t)(t0 + t) * mm->R + r] = out[t];
        }
    }
}

/* ---- Q4_1, Q5_0, Q5_1: one (activation row, weight row) pair at a time ----
 *
 * The AVX-512 path's steps (kernels_avx512.c) with maddubs + madd(1) for the two exact int32
 * sums, and qh's bits spread to bytes by a shuffle and compare. */
TARGET static float dot_q32_offset_avx2(const uint8_t *w, const uint8_t *xq, int K, int wtype)
{
    const int8_t *xs = (const int8_t *)xq;
    const float *xd = (const float *)(xq + (((size_t)K + 63) & ~(size_t)63));
    const int has_m = wtype != SYN_DT_Q5_0, has_h = wtype != SYN_DT_Q4_1;
    const size_t bb = (size_t)(has_m ? 4 : 2) + (has_h ? 4 : 0) + 16;
    const __m128i low4 = _mm_set1_epi8(15);
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    const __m256i sixteen = _mm256_set1_epi8(16);
    /* byte k of the result takes byte k / 8 of qh, and tests bit k % 8 of it */
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2,
                                            2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < K / SYN_QBLOCK; b++) {
        const uint8_t *blk = w + (size_t)b * bb, *hp = blk + (has_m ? 4 : 2);
        const __m128i qs = _mm_loadu_si128((const __m128i *)(hp + (has_h ? 4 : 0)));
        __m256i q =
            _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(qs, 4), low4), _mm_and_si128(qs, low4));
        if (has_h) {
            const __m256i hb = _mm256_and_si256(
                _mm256_shuffle_epi8(_mm256_set1_epi32((int)syn_load_u32(hp)), spread), bit);
            q = _mm256_or_si256(q, _mm256_and_si256(_mm256_cmpeq_epi8(hb, bit), sixteen));
        }
        const __m256i x = _mm256_loadu_si256((const __m256i *)(xs + (size_t)b * SYN_QBLOCK));
        const __m256i isum = _mm256_madd_epi16(_mm256_maddubs_epi16(q, x), ones16);
        const __m256i xsum = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, x), ones16);
        const float d = _cvtsh_ss(syn_load_u16(blk));
        if (has_m) {
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(d * xd[b]), acc);
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(xsum),
                                  _mm256_set1_ps(_cvtsh_ss(syn_load_u16(blk + 2)) * xd[b]), acc);
        } else {
            acc = _mm256_fmadd_ps(
                _mm256_cvtepi32_ps(_mm256_sub_epi32(isum, _mm256_slli_epi32(xsum, 4))),
                _mm256_set1_ps(d * xd[b]), acc);
        }
    }
    return hsum8(acc);
}

static void rows_avx2(const struct syn_mm *mm, int r0, int r1, uint8_t *work)
{
    (void)work;
    if (syn_is_q32_offset(mm->wtype)) {
        for (int r = r0; r < r1; r++)
            for (int t = 0; t < mm->T; t++)
                mm->y[(size_t)t * mm->R + r] =
                    dot_q32_offset_avx2(mm->w + (size_t)r * mm->w_row_bytes,
                                        mm->xq + (size_t)t * mm->xq_stride, mm->K, mm->wtype);
        return;
    }
    if (syn_is_kquant(mm->wtype)) {
        rows_kquant_avx2(mm, r0, r1);
        return;
    }
    tile_fn *tile;
    switch (mm->wtype) {
    case SYN_DT_F32:
        tile = tiles_f32;
        break;
    case SYN_DT_F16:
        tile = tiles_f16;
        break;
    case SYN_DT_BF16:
        tile = tiles_bf16;
        break;
    case SYN_DT_Q8_0:
        tile = tiles_q8_0;
        break;
    case SYN_DT_Q4_0:
        tile = tiles_q4_0;
        break;
    default:
        return;
    }
    int sub = (int)(SYN_L2_WEIGHT_BYTES / mm->w_row_bytes) & ~7;
    if (sub < 8) sub = 8;
    for (int rs = r0; rs < r1; rs += sub) {
        int re = rs + sub < r1 ? rs + sub : r1;
        for (int ts = 0; ts < mm->T; ts += SYN_T_BLOCK) {
            int te = ts + SYN_T_BLOCK < mm->T ? ts + SYN_T_BLOCK : mm->T;
            run_block(tile, mm, rs, re, ts, te);
        }
    }
}

const struct syn_cpu_isa syn_cpu_isa_avx2 = {
    .name = "avx2",
    .xq_row_bytes = syn_xq_plain_row_bytes,
    .quantize_row = quantize_row_avx2,
    .rows = rows_avx2,
};

#else /* !SYN_HAVE_X86_SIMD */

const struct syn_cpu_isa syn_cpu_isa_avx2 = {.name = "avx2"};

#endif
