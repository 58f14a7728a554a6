/*
 * AVX-512 kernels (F, BW, VL, DQ, VNNI, with FMA and F16C): the fastest path, for CPUs such as
 * Zen 4/5 and Ice Lake or later. Compiled with per-function target attributes and only called
 * when kernels.c found the features at run time.
 *
 * Reduction order (what batch invariance rests on), for one (activation row, weight row) pair:
 *   F32/F16/BF16: one 16-lane f32 accumulator; element k goes to lane k % 16 and is added with
 *     one FMA in increasing k; the last partial chunk is masked (zeros); then hsum16().
 *   Q8_0/Q4_0: blocks are taken four at a time, block b + g in lanes 4g..4g+3; a step adds, per
 *     lane, the exact int32 sum of 8 products converted to f32, times d_w * d_x of its block,
 *     with one FMA; missing blocks of a last partial group add exact zeros; then hsum16().
 * Every tile shape below runs exactly these steps per accumulator (hsum16x4 is four hsum16s
 * packed, addition for addition), so the tiling, which only decides how many pairs share
 * loads, never changes a result.
 *
 * Quantised activations are arranged for the four-block steps (xq_row_bytes_avx512 below), so
 * that the inner loops use them straight from memory with no shuffling.
 *
 * With more than one activation row, quantised weights take another road to the same steps:
 * each thread unpacks an L2-sized block of weight rows once into its work area (the packed
 * layout below; the block's first tile of activation rows does it as it computes), then runs
 * every other tile of activation rows against it, activation-row tile by tile so that the
 * tile's activations stay in L1 while the packed rows stream past from L2.
 * The unpacked values are the ones the decode tiles compute in registers, and both roads share
 * the arithmetic (q_pairs), so packing changes no bit.
 */
#include "engine/cpu/kernels_impl.h"

#include "synapse/tensor.h"

#include <string.h>

#if SYN_HAVE_X86_SIMD

#include <immintrin.h>

#define TARGET   __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,f16c")))
#define INLINE   static inline __attribute__((always_inline))
#define NOINLINE static __attribute__((noinline))
/* Tile loops must be fully unrolled so that the accumulators live in registers. */
#define UNROLL    _Pragma("GCC unroll 16")
#define UNROLL_16 _Pragma("GCC unroll 16")
#define WIDE      8 /* weight rows per decode tile */
/* The most weight rows any tile takes (its accumulator arrays are this wide). */
#define MAX_NR (WIDE > 8 ? WIDE : 8)

/* ---- helpers ---- */

/* The fixed horizontal sum: halves folded 16 -> 8 -> 4 -> 2 -> 1. */
TARGET INLINE float hsum16(__m512 v)
{
    __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}

/* hsum16 of a, b, c and d at once, bit for bit: each result lane sees the same additions of
 * the same operands in the same order, four vectors sharing each instruction. */
TARGET INLINE __m128 hsum16x4(__m512 a, __m512 b, __m512 c, __m512 d)
{
    /* 16 -> 8: v[i] + v[i + 8]. */
    __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                              _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
    __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(1, 0, 1, 0)),
                              _mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(3, 2, 3, 2)));
    /* 8 -> 4: v[i] + v[i + 4]; quarter g now belongs to the g-th vector. */
    __m512 s = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(3, 1, 3, 1)));
    /* 4 -> 2 -> 1 within each quarter, as movehl and movehdup do in hsum16. */
    s = _mm512_add_ps(s, _mm512_permute_ps(s, _MM_SHUFFLE(3, 2, 3, 2)));
    s = _mm512_add_ps(s, _mm512_permute_ps(s, _MM_SHUFFLE(1, 1, 1, 1)));
    const __m512i idx = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 8, 4, 0);
    return _mm512_castps512_ps128(_mm512_permutexvar_ps(idx, s));
}

/* Stores the sums of NT x NR accumulators into y, four at a time where the row allows. */
TARGET INLINE void store_sums(const struct syn_mm *mm, __m512 (*acc)[MAX_NR], int t0, int r0,
                              const int NT, const int NR)
{
    UNROLL
    for (int i = 0; i < NT; i++) {
        float *y = mm->y + (size_t)(t0 + i) * mm->R + r0;
        if (NR % 4 == 0) {
            UNROLL
            for (int j = 0; j < NR; j += 4)
                _mm_storeu_ps(y + j,
                              hsum16x4(acc[i][j], acc[i][j + 1], acc[i][j + 2], acc[i][j + 3]));
        } else {
            UNROLL
            for (int j = 0; j < NR; j++) y[j] = hsum16(acc[i][j]);
        }
    }
}

/* Prefetches n bytes from p into L2, one line at a time (n is a compile-time constant in every
 * caller, so the loop unrolls). The tiles use it to fetch the next tile's weight rows, which
 * follow their own in memory, at the rate they consume their own. Measured on Zen 5: it lifts
 * the quantised tiles by 10-25% at batch 1 and the float batch tiles by up to 2x on weights
 * that come from DRAM (their compute per row is short enough for the hardware prefetcher to
 * fall behind). */
TARGET INLINE void prefetch_span(const uint8_t *p, size_t n)
{
    UNROLL_16
    for (size_t l = 0; l < n; l += 64) _mm_prefetch((const char *)p + l, _MM_HINT_T2);
}

/* The same with the non-temporal hint, for the decode tiles, whose weights are read once per
 * step and never again from L2. Measured on Zen 5, 2 threads, every tinyllama-1.1b product of
 * a decode step from DRAM: Q8_0 56 GB/s with the T2 hint, 60 with NTA (T0: slower than T2);
 * F16 tiles, which prefetched only each row's head before, 54-59 GB/s without a linear
 * prefetch and 63-69 with this one (both with the decode lanes of kernels.c). */
TARGET INLINE void prefetch_span_nta(const uint8_t *p, size_t n)
{
    UNROLL_16
    for (size_t l = 0; l < n; l += 64) _mm_prefetch((const char *)p + l, _MM_HINT_NTA);
}

/* Prefetches the first 4 lines of a row into L1: where the hardware prefetcher, which stops at
 * page boundaries, has to start afresh. Measured on Zen 5 at batch 1, for the next tile's rows:
 * float tiles +5-13% on one thread and +1-5% on two; quantised tiles, on top of their linear
 * prefetch, +15-25% on both; 12 lines instead of 4 was slower. */
TARGET INLINE void prefetch_head(const uint8_t *row)
{
    UNROLL
    for (int l = 0; l < 4; l++) _mm_prefetch((const char *)row + 64 * l, _MM_HINT_T0);
}

/* ---- quantised activations ----
 *
 * One row is a sequence of groups of four blocks (128 elements), 256 bytes each:
 *
 *     int8_t  lo[64]   elements 0-15 of each block, block g in bytes 16g..16g+15
 *     int8_t  hi[64]   elements 16-31 of each block, the same way
 *     int32_t bias[16] -c * (the sum of the 8 activations that meet in each lane: 4 from lo and
 *                      4 from hi), c = 128 for Q8_0 and 8 for Q4_0 (see the weight loaders)
 *     float   d[16]    the scale of block g in lanes 4g..4g+3
 *
 * A last group with fewer than four blocks is padded with zero blocks (zero quants, bias and
 * scale), which is what makes the partial step add exact zeros. */

#define GROUP       4   /* blocks per step */
#define GROUP_BYTES 256 /* bytes per group of quantised activations */

static size_t xq_row_bytes_avx512(int K)
{
    return (size_t)((K / SYN_QBLOCK + GROUP - 1) / GROUP) * GROUP_BYTES;
}

TARGET static void quantize_row_avx512(const float *x, int K, int wtype, uint8_t *dst)
{
    const int nb = K / SYN_QBLOCK;
    const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    const __m512 lim = _mm512_set1_ps(127.0f);
    const __m512i c = _mm512_set1_epi8(wtype == SYN_DT_Q8_0 ? (char)0x80 : 8);
    for (int g0 = 0; g0 < nb; g0 += GROUP) {
        uint8_t *grp = dst + (size_t)(g0 / GROUP) * GROUP_BYTES;
        if (nb - g0 < GROUP) memset(grp, 0, GROUP_BYTES);
        float *ds = (float *)(grp + 192);
        for (int g = 0; g < GROUP && g0 + g < nb; g++) {
            const float *xb = x + (size_t)(g0 + g) * SYN_QBLOCK;
            __m512 v0 = _mm512_loadu_ps(xb);
            __m512 v1 = _mm512_loadu_ps(xb + 16);
            __m512 m = _mm512_max_ps(_mm512_and_ps(v0, absmask), _mm512_and_ps(v1, absmask));
            float amax = _mm512_reduce_max_ps(m); /* max is exact: its order does not matter */
            float d = amax / 127.0f;
            float id = d != 0.0f ? 1.0f / d : 0.0f;
            __m512 vid = _mm512_set1_ps(id);
            /* cvtps2dq rounds half to even under the default rounding mode, like nearbyintf. */
            __m512 a0 = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v0, vid), -lim), lim);
            __m512 a1 = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v1, vid), -lim), lim);
            _mm_storeu_si128((__m128i *)(grp + 16 * g),
                             _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(a0)));
            _mm_storeu_si128((__m128i *)(grp + 64 + 16 * g),
                             _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(a1)));
            _mm_storeu_ps(ds + 4 * g, _mm_set1_ps(d));
        }
        __m512i lo = _mm512_loadu_si512(grp);
        __m512i hi = _mm512_loadu_si512(grp + 64);
        __m512i z = _mm512_setzero_si512();
        __m512i sum = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(z, c, lo), c, hi);
        _mm512_storeu_si512(grp + 128, _mm512_sub_epi32(z, sum));
    }
}

/* ---- quantised weights: four blocks per step ---- */

/* The f16 scales of n (1..4) blocks starting at blk, block g in lanes 4g..4g+3, zeros for
 * missing blocks. The scales sit at a fixed stride (34 bytes for Q8_0, 18 for Q4_0), so one or
 * two plain loads cover all four and a word permute picks them out; the masked loads of a
 * partial group read no byte past its last block and leave the missing scales zero. */
TARGET INLINE __m512 load_d4(const uint8_t *blk, const int wt, const int n)
{
    __m512i h;
    if (wt == SYN_DT_Q8_0) {
        /* Words 0, 17, 34 and 51 of the 128 bytes from blk; 32 and up index the second load. */
        const __m512i idx = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 51, 51,
                                             51, 51, 34, 34, 34, 34, 17, 17, 17, 17, 0, 0, 0, 0);
        __m512i a, b;
        if (n == 4) {
            a = _mm512_loadu_si512(blk);
            b = _mm512_loadu_si512(blk + 64);
        } else {
            const int bytes = n * (int)sizeof(struct syn_block_q8_0); /* 34, 68 or 102 */
            a = _mm512_maskz_loadu_epi8(bytes >= 64 ? ~(__mmask64)0 : (1ull << bytes) - 1, blk);
            b = _mm512_maskz_loadu_epi8(bytes > 64 ? (1ull << (bytes - 64)) - 1 : 0, blk + 64);
        }
        h = _mm512_permutex2var_epi16(a, idx, b);
    } else {
        /* Words 0, 9, 18 and 27: all within the first 64 bytes. */
        const __m512i idx = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 27, 27,
                                             27, 27, 18, 18, 18, 18, 9, 9, 9, 9, 0, 0, 0, 0);
        const int bytes = n * (int)sizeof(struct syn_block_q4_0); /* 18, 36, 54 or 72 */
        __m512i a = bytes >= 64 ? _mm512_loadu_si512(blk)
                                : _mm512_maskz_loadu_epi8((1ull << bytes) - 1, blk);
        h = _mm512_permutexvar_epi16(idx, a);
    }
    return _mm512_cvtph_ps(_mm512_castsi512_si256(h));
}

/* Q8_0: the quants of n (1..4) blocks split like the activations (*lo = elements 0-15 of each
 * block, *hi = 16-31, block g in quarter g) as unsigned bytes w + 128, since dpbusd multiplies
 * unsigned by signed bytes; the bias in the activations takes the 128 * sum(x) back out.
 * Missing blocks are left as whatever the masked loads give: their activations are zero. */
TARGET INLINE void load_q8_4(const uint8_t *blk, const int n, __m512i *lo, __m512i *hi)
{
    const size_t bb = sizeof(struct syn_block_q8_0);
    __m512i w01, w23;
    if (n == 4) {
        w01 =
            _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const void *)(blk + 2))),
                               _mm256_loadu_si256((const void *)(blk + bb + 2)), 1);
        w23 = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256((const void *)(blk + 2 * bb + 2))),
            _mm256_loadu_si256((const void *)(blk + 3 * bb + 2)), 1);
    } else {
        __m256i z = _mm256_setzero_si256();
        __m256i b0 = _mm256_loadu_si256((const void *)(blk + 2));
        __m256i b1 = n > 1 ? _mm256_loadu_si256((const void *)(blk + bb + 2)) : z;
        __m256i b2 = n > 2 ? _mm256_loadu_si256((const void *)(blk + 2 * bb + 2)) : z;
        w01 = _mm512_inserti64x4(_mm512_castsi256_si512(b0), b1, 1);
        w23 = _mm512_inserti64x4(_mm512_castsi256_si512(b2), z, 1);
    }
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    w01 = _mm512_xor_si512(w01, flip);
    w23 = _mm512_xor_si512(w23, flip);
    *lo = _mm512_shuffle_i64x2(w01, w23, _MM_SHUFFLE(2, 0, 2, 0));
    *hi = _mm512_shuffle_i64x2(w01, w23, _MM_SHUFFLE(3, 1, 3, 1));
}

/* Q4_0: the packed nibbles q = w + 8 of n (1..4) blocks: the low nibbles are elements 0-15 and
 * the high ones 16-31, so block g's 16 bytes in quarter g split straight into *lo and *hi. */
TARGET INLINE void load_q4_4(const uint8_t *blk, const int n, __m512i *lo, __m512i *hi)
{
    const size_t bb = sizeof(struct syn_block_q4_0);
    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const void *)(blk + 2)));
    if (n < 4) v = _mm512_maskz_mov_epi32(0x000f, v);
    if (n > 1) v = _mm512_inserti32x4(v, _mm_loadu_si128((const void *)(blk + bb + 2)), 1);
    if (n > 2) v = _mm512_inserti32x4(v, _mm_loadu_si128((const void *)(blk + 2 * bb + 2)), 2);
    if (n > 3) v = _mm512_inserti32x4(v, _mm_loadu_si128((const void *)(blk + 3 * bb + 2)), 3);
    const __m512i nib = _mm512_set1_epi8(0x0f);
    *lo = _mm512_and_si512(v, nib);
    *hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), nib);
}

/* The batch tiles' step for one group, once the NR weight rows' quants (lo, hi) and scales
 * (dw) are in registers: activation row by activation row, its four vectors loaded once and
 * used for every weight row, each pair then costing its two dpbusd, the conversion, the scale
 * and the FMA. The packed and unpacked batch tiles share it, so they agree bit for bit.
 *
 * The scale of a pair, d_w * d_x per block, is the same in the four lanes of a block, so a
 * 16-lane multiply per pair does 4 products' work 4 times over, on the pipes the dpbusd and the
 * FMA need. With four weight rows, one multiply per activation row makes all four rows'
 * products instead (row j's for block g in lane 4g + j), and an in-lane permute per pair hands
 * row j its own four, block g in lanes 4g..4g+3: the same products, rounded once each as
 * before, for a quarter of the multiplies. Measured on Zen 5 (one thread, weights in L2,
 * T = 64, the same outputs bit for bit): 100 -> 89-90 ticks per weight row and group. */
TARGET INLINE void q_pairs(__m512 (*acc)[MAX_NR], const __m512i *lo, const __m512i *hi,
                           const __m512 *dw, const uint8_t *const *xg, size_t go, const int NT,
                           const int NR)
{
    if (NR == 4) {
        /* Lane 4g + j: row j's scale of block g (any lane of its block holds it). */
        __m512 dwc = _mm512_mask_blend_ps(0x2222, dw[0], dw[1]);
        dwc = _mm512_mask_blend_ps(0x4444, dwc, dw[2]);
        dwc = _mm512_mask_blend_ps(0x8888, dwc, dw[3]);
        UNROLL
        for (int i = 0; i < NT; i++) {
            const uint8_t *g = xg[i] + go;
            const __m512i xl = _mm512_loadu_si512(g), xh = _mm512_loadu_si512(g + 64);
            const __m512i bias = _mm512_loadu_si512(g + 128);
            const __m512 p = _mm512_mul_ps(dwc, _mm512_loadu_ps(g + 192));
            const __m512 sc[4] = {_mm512_permute_ps(p, _MM_SHUFFLE(0, 0, 0, 0)),
                                  _mm512_permute_ps(p, _MM_SHUFFLE(1, 1, 1, 1)),
                                  _mm512_permute_ps(p, _MM_SHUFFLE(2, 2, 2, 2)),
                                  _mm512_permute_ps(p, _MM_SHUFFLE(3, 3, 3, 3))};
            UNROLL
            for (int j = 0; j < 4; j++) {
                __m512i s = _mm512_dpbusd_epi32(bias, lo[j], xl);
                s = _mm512_dpbusd_epi32(s, hi[j], xh);
                acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), sc[j], acc[i][j]);
            }
        }
        return;
    }
    UNROLL
    for (int i = 0; i < NT; i++) {
        const uint8_t *g = xg[i] + go;
        const __m512i xl = _mm512_loadu_si512(g), xh = _mm512_loadu_si512(g + 64);
        const __m512i bias = _mm512_loadu_si512(g + 128);
        const __m512 dx = _mm512_loadu_ps(g + 192);
        UNROLL
        for (int j = 0; j < NR; j++) {
            __m512i s = _mm512_dpbusd_epi32(bias, lo[j], xl);
            s = _mm512_dpbusd_epi32(s, hi[j], xh);
            __m512 sc = _mm512_mul_ps(dw[j], dx);
            acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), sc, acc[i][j]);
        }
    }
}

/* One step of n blocks for an NT x NR tile. The decode tile (NT = 1) takes weight row by weight
 * row, each row's unpacked blocks meeting the activations straight from memory. The batch tiles
 * unpack all NR rows first and then take activation row by activation row, its four vectors
 * loaded once into registers and used for every weight row: each pair then costs its two
 * dpbusd, the conversion, the scale and the FMA, and no loads. */
TARGET INLINE void q_step(__m512 (*acc)[MAX_NR], const int wt, const uint8_t *const *w,
                          const uint8_t *const *xg, int b, const int n, const int NT, const int NR)
{
    const size_t bb =
        wt == SYN_DT_Q8_0 ? sizeof(struct syn_block_q8_0) : sizeof(struct syn_block_q4_0);
    const size_t go = (size_t)(b / GROUP) * GROUP_BYTES;
    if (NT == 1) {
        UNROLL
        for (int j = 0; j < NR; j++) {
            const uint8_t *blk = w[j] + (size_t)b * bb;
            __m512i lo, hi;
            if (wt == SYN_DT_Q8_0)
                load_q8_4(blk, n, &lo, &hi);
            else
                load_q4_4(blk, n, &lo, &hi);
            __m512 dw = load_d4(blk, wt, n);
            const uint8_t *g = xg[0] + go;
            __m512i s = _mm512_loadu_si512(g + 128);
            s = _mm512_dpbusd_epi32(s, lo, _mm512_loadu_si512(g));
            s = _mm512_dpbusd_epi32(s, hi, _mm512_loadu_si512(g + 64));
            __m512 sc = _mm512_mul_ps(dw, _mm512_loadu_ps(g + 192));
            acc[0][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), sc, acc[0][j]);
        }
        return;
    }
    __m512i lo[MAX_NR], hi[MAX_NR];
    __m512 dw[MAX_NR];
    UNROLL
    for (int j = 0; j < NR; j++) {
        const uint8_t *blk = w[j] + (size_t)b * bb;
        if (wt == SYN_DT_Q8_0)
            load_q8_4(blk, n, &lo[j], &hi[j]);
        else
            load_q4_4(blk, n, &lo[j], &hi[j]);
        dw[j] = load_d4(blk, wt, n);
    }
    q_pairs(acc, lo, hi, dw, xg, go, NT, NR);
}

/* What every quantised tile starts with: its NR weight rows, its NT rows of quantised
 * activations, and zeroed sums. */
TARGET INLINE void tile_q_start(const struct syn_mm *mm, int t0, int r0, const int NT, const int NR,
                                const uint8_t **w, const uint8_t **xg, __m512 (*acc)[MAX_NR])
{
    UNROLL
    for (int j = 0; j < NR; j++) w[j] = mm->w + (size_t)(r0 + j) * mm->w_row_bytes;
    UNROLL
    for (int i = 0; i < NT; i++) {
        xg[i] = mm->xq + (size_t)(t0 + i) * mm->xq_stride;
        UNROLL
        for (int j = 0; j < NR; j++) acc[i][j] = _mm512_setzero_ps();
    }
}

TARGET INLINE void tile_q(const struct syn_mm *mm, const int wt, int t0, int r0, const int NT,
                          const int NR)
{
    const int nb = mm->K / SYN_QBLOCK;
    const size_t bb =
        wt == SYN_DT_Q8_0 ? sizeof(struct syn_block_q8_0) : sizeof(struct syn_block_q4_0);
    const uint8_t *w[MAX_NR], *xg[8];
    __m512 acc[8][MAX_NR];
    tile_q_start(mm, t0, r0, NT, NR, w, xg, acc);

    /* Prefetch the next tile's rows, one tile ahead (see prefetch_span). */
    const size_t pf_step = (size_t)NR * GROUP * bb;
    const uint8_t *pf = w[0] + (size_t)NR * mm->w_row_bytes;

    /* The decode tile also fetches the head of every one of those rows at once: the linear
     * prefetch above reaches the later rows' heads only late in this tile (prefetch_head). */
    if (NT == 1) {
        UNROLL
        for (int j = 0; j < NR; j++) prefetch_head(pf + (size_t)j * mm->w_row_bytes);
    }

    int b = 0;
    for (; b + GROUP <= nb; b += GROUP) {
        if (NT == 1)
            prefetch_span_nta(pf, pf_step);
        else
            prefetch_span(pf, pf_step);
        pf += pf_step;
        q_step(acc, wt, w, xg, b, GROUP, NT, NR);
    }
    switch (nb - b) {
    case 1:
        q_step(acc, wt, w, xg, b, 1, NT, NR);
        break;
    case 2:
        q_step(acc, wt, w, xg, b, 2, NT, NR);
        break;
    case 3:
        q_step(acc, wt, w, xg, b, 3, NT, NR);
        break;
    }
    store_sums(mm, acc, t0, r0, NT, NR);
}

/* ---- packed quantised weights, for the batch tiles ----
 *
 * With many activation rows, each block of weight rows is unpacked once into the thread's work
 * area (what load_q8_4 / load_q4_4 and load_d4 give, stored as they are) and every later batch
 * tile loads its registers from there with three plain loads per row and group, instead of
 * unpacking the same rows again for every tile of activation rows. The unpacking is done by the
 * block's first tile of activation rows (tile_qf), which computes from the registers it
 * unpacked and stores them on the way. Per row and group of four blocks:
 *
 *     int8_t lo[64], hi[64]   the quants as the dpbusd steps take them
 *     float  dw[16]           the block scales, block g in lanes 4g..4g+3
 */

#define PACK_GROUP_BYTES 192

static int n_groups(int K)
{
    return (K / SYN_QBLOCK + GROUP - 1) / GROUP;
}

/* Weight rows per L2-resident block, a multiple of 8 so that tiles stay whole. */
static int block_rows(size_t w_row_bytes)
{
    int sub = (int)(SYN_L2_WEIGHT_BYTES / w_row_bytes) & ~7;
    return sub < 8 ? 8 : sub;
}

static size_t q_row_bytes(int wtype, int K)
{
    const size_t bb =
        wtype == SYN_DT_Q8_0 ? sizeof(struct syn_block_q8_0) : sizeof(struct syn_block_q4_0);
    return (size_t)(K / SYN_QBLOCK) * bb;
}

static size_t work_bytes_avx512(int wtype, int K, int T)
{
    if (T <= 1 || (wtype != SYN_DT_Q8_0 && wtype != SYN_DT_Q4_0)) return 0;
    return (size_t)block_rows(q_row_bytes(wtype, K)) * (size_t)n_groups(K) * PACK_GROUP_BYTES;
}

/* An NT x NR tile over the weight rows as they are in memory that also packs them: a batch tile
 * like tile_q's (the same q_pairs, so the same bits) that stores each group's unpacked rows at
 * pk (row r0's packed row; rows pk_stride bytes apart) for the block's later tiles.
 *
 * It replaces a separate packing pass over the block before its first tile. That pass only
 * moved memory, and it did not overlap with the tiles' arithmetic: reading the weights from
 * DRAM and computing with them added up. Fused, the first tile's arithmetic runs while its
 * rows arrive. Measured on Zen 5, every product of six tinyllama-1.1b Q8_0 layers and the
 * output projection at T = 16, six rounds alternated with the separate pass: one thread
 * 43.4-45.4 -> 37.2-39.5 ms (CPU time), two threads 23.2-24.0 -> 20.6-21.6 ms. */
TARGET INLINE void tile_qf(const struct syn_mm *mm, const int wt, int t0, int r0, const int NT,
                           const int NR, uint8_t *pk, size_t pk_stride)
{
    const int nb = mm->K / SYN_QBLOCK;
    const size_t bb =
        wt == SYN_DT_Q8_0 ? sizeof(struct syn_block_q8_0) : sizeof(struct syn_block_q4_0);
    const uint8_t *w[MAX_NR], *xg[8];
    __m512 acc[8][MAX_NR];
    tile_q_start(mm, t0, r0, NT, NR, w, xg, acc);

    /* Prefetch the next tile's rows one tile ahead, as the decode tile does: their heads at
     * once, the rest with the non-temporal hint at the rate this tile consumes its own. These
     * raw rows are read once, by this tile, and packed; what the later tiles read is the
     * packed copy. Measured on Zen 5, 2 threads, tinyllama-1.1b Q8_0 decode steps at T = 16,
     * six rounds alternated in one process: this tile's share 71-74 -> 55-58 ms per step
     * (CPU time, both threads), the step 76-80 -> 67-70 ms; two tiles ahead was slower, and
     * so was fetching the next block into L2 during this block's packed tiles (its prefetches
     * held the miss buffers that the packed tiles' L2 reads need). */
    const size_t pf_step = (size_t)NR * GROUP * bb;
    const uint8_t *pf = w[0] + (size_t)NR * mm->w_row_bytes;
    UNROLL
    for (int j = 0; j < NR; j++) prefetch_head(pf + (size_t)j * mm->w_row_bytes);

    for (int b = 0; b < nb; b += GROUP, pk += PACK_GROUP_BYTES) {
        const int n = nb - b < GROUP ? nb - b : GROUP;
        __m512i lo[MAX_NR], hi[MAX_NR];
        __m512 dw[MAX_NR];
        if (n == GROUP) {
            prefetch_span_nta(pf, pf_step);
            pf += pf_step;
        }
        UNROLL
        for (int j = 0; j < NR; j++) {
            const uint8_t *blk = w[j] + (size_t)b * bb;
            /* Whole groups with n known at compile time; a last partial one at run time. */
            if (n == GROUP) {
                if (wt == SYN_DT_Q8_0)
                    load_q8_4(blk, GROUP, &lo[j], &hi[j]);
                else
                    load_q4_4(blk, GROUP, &lo[j], &hi[j]);
                dw[j] = load_d4(blk, wt, GROUP);
            } else {
                if (wt == SYN_DT_Q8_0)
                    load_q8_4(blk, n, &lo[j], &hi[j]);
                else
                    load_q4_4(blk, n, &lo[j], &hi[j]);
                dw[j] = load_d4(blk, wt, n);
            }
            uint8_t *d = pk + (size_t)j * pk_stride;
            _mm512_store_si512(d, lo[j]);
            _mm512_store_si512(d + 64, hi[j]);
            _mm512_store_ps(d + 128, dw[j]);
        }
        q_pairs(acc, lo, hi, dw, xg, (size_t)(b / GROUP) * GROUP_BYTES, NT, NR);
    }
    store_sums(mm, acc, t0, r0, NT, NR);
}

/* An NT x NR tile over packed rows: mm->w is the work area (rows of n_groups(K) groups), r0
 * counts from its first row, and mm->y starts at that row's column. */
TARGET INLINE void tile_qp(const struct syn_mm *mm, const int wt, int t0, int r0, const int NT,
                           const int NR)
{
    (void)wt;
    const int ng = n_groups(mm->K);
    const uint8_t *w[MAX_NR], *xg[8];
    __m512 acc[8][MAX_NR];
    tile_q_start(mm, t0, r0, NT, NR, w, xg, acc);
    for (int G = 0; G < ng; G++) {
        __m512i lo[MAX_NR], hi[MAX_NR];
        __m512 dw[MAX_NR];
        UNROLL
        for (int j = 0; j < NR; j++) {
            const uint8_t *p = w[j] + (size_t)G * PACK_GROUP_BYTES;
            lo[j] = _mm512_load_si512(p);
            hi[j] = _mm512_load_si512(p + 64);
            dw[j] = _mm512_load_ps(p + 128);
        }
        q_pairs(acc, lo, hi, dw, xg, (size_t)G * GROUP_BYTES, NT, NR);
    }
    store_sums(mm, acc, t0, r0, NT, NR);
}

/* ---- float weights ---- */

/* 16 weights of a float type from element k of row w, as f32. */
TARGET INLINE __m512 load_wf(const uint8_t *w, const int wt, int k)
{
    if (wt == SYN_DT_F32) return _mm512_loadu_ps(w + (size_t)k * 4);
    __m256i h = _mm256_loadu_si256((const void *)(w + (size_t)k * 2));
    if (wt == SYN_DT_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* The same for the last, partial chunk: lanes outside m read as zero (and touch no memory). */
TARGET INLINE __m512 load_wf_mask(const uint8_t *w, const int wt, int k, __mmask16 m)
{
    if (wt == SYN_DT_F32) return _mm512_maskz_loadu_ps(m, w + (size_t)k * 4);
    __m256i h = _mm256_maskz_loadu_epi16(m, w + (size_t)k * 2);
    if (wt == SYN_DT_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* The activations are read straight from x (T rows of K floats). Each step converts NR weight
 * chunks once and uses each for all NT activation rows. */
TARGET INLINE void tile_f(const struct syn_mm *mm, const int wt, int t0, int r0, const int NT,
                          const int NR)
{
    const int K = mm->K;
    const uint8_t *w[MAX_NR];
    const float *x[8];
    __m512 acc[8][MAX_NR];
    UNROLL
    for (int j = 0; j < NR; j++) w[j] = mm->w + (size_t)(r0 + j) * mm->w_row_bytes;
    UNROLL
    for (int i = 0; i < NT; i++) {
        x[i] = mm->x + (size_t)(t0 + i) * K;
        UNROLL
        for (int j = 0; j < NR; j++) acc[i][j] = _mm512_setzero_ps();
    }

    /* Every tile prefetches the next tile's rows, one tile ahead (see prefetch_span; the
     * decode tile with the non-temporal hint, prefetch_span_nta). */
    const size_t pf_step = (size_t)NR * 16 * (wt == SYN_DT_F32 ? 4 : 2);
    const uint8_t *pf = w[0] + (size_t)NR * mm->w_row_bytes;

    /* The decode tile also fetches the head of each of those rows at once (prefetch_head):
     * without it, the linear prefetch reaches the later rows' heads only late in this tile
     * (measured on Zen 5, 2 threads: 49 GB/s without, 64-69 with). */
    if (NT == 1) {
        const uint8_t *next = w[0] + (size_t)NR * mm->w_row_bytes;
        UNROLL
        for (int j = 0; j < NR; j++) prefetch_head(next + (size_t)j * mm->w_row_bytes);
    }

    int k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 wv[MAX_NR];
        if (NT > 1)
            prefetch_span(pf, pf_step);
        else
            prefetch_span_nta(pf, pf_step);
        pf += pf_step;
        UNROLL
        for (int j = 0; j < NR; j++) wv[j] = load_wf(w[j], wt, k);
        UNROLL
        for (int i = 0; i < NT; i++) {
            __m512 xv = _mm512_loadu_ps(x[i] + k);
            UNROLL
            for (int j = 0; j < NR; j++) acc[i][j] = _mm512_fmadd_ps(wv[j], xv, acc[i][j]);
        }
    }
    if (k < K) {
        __mmask16 m = (__mmask16)((1u << (K - k)) - 1);
        __m512 wv[MAX_NR];
        UNROLL
        for (int j = 0; j < NR; j++) wv[j] = load_wf_mask(w[j], wt, k, m);
        UNROLL
        for (int i = 0; i < NT; i++) {
            __m512 xv = _mm512_maskz_loadu_ps(m, x[i] + k);
            UNROLL
            for (int j = 0; j < NR; j++) acc[i][j] = _mm512_fmadd_ps(wv[j], xv, acc[i][j]);
        }
    }
    store_sums(mm, acc, t0, r0, NT, NR);
}

/* ---- tiles ----
 *
 * Each weight type gets one function holding every tile shape the driver asks for, each shape
 * compiled separately with its loops unrolled: the decode tile 1 x WIDE (one activation row
 * against many weight rows, which is what streams the weights fastest), the batch tile
 * MT x MR, and the leftovers n x MR and n x 1 for n < MT at the edges of T and R. */

/* The batch tiles, MT activation rows x MR weight rows. The float tiles convert each weight
 * chunk once per tile, so they take many activation rows; the quantised tiles read the
 * activations from memory and take a square tile. */
#define MT_F 6
#define MR_F 4
#define MT_Q 4
#define MR_Q 4

/* The case labels of the batch tile shapes: n x MR and n x 1 for n = 1..MT (MT <= 8; shapes
 * beyond MT compile to nothing). */
/* clang-format off */
#define BATCH_TILE_CASES(body, m, wt, t, r, MT, MR)                                                \
    case 0x10 + MR: body(m, wt, t, r, 1, MR); break;                                               \
    case 0x20 + MR: if (MT >= 2) body(m, wt, t, r, 2, MR); break;                                  \
    case 0x30 + MR: if (MT >= 3) body(m, wt, t, r, 3, MR); break;                                  \
    case 0x40 + MR: if (MT >= 4) body(m, wt, t, r, 4, MR); break;                                  \
    case 0x50 + MR: if (MT >= 5) body(m, wt, t, r, 5, MR); break;                                  \
    case 0x60 + MR: if (MT >= 6) body(m, wt, t, r, 6, MR); break;                                  \
    case 0x70 + MR: if (MT >= 7) body(m, wt, t, r, 7, MR); break;                                  \
    case 0x80 + MR: if (MT >= 8) body(m, wt, t, r, 8, MR); break;                                  \
    case 0x11: body(m, wt, t, r, 1, 1); break;                                                     \
    case 0x21: if (MT >= 2) body(m, wt, t, r, 2, 1); break;                                        \
    case 0x31: if (MT >= 3) body(m, wt, t, r, 3, 1); break;                                        \
    case 0x41: if (MT >= 4) body(m, wt, t, r, 4, 1); break;                                        \
    case 0x51: if (MT >= 5) body(m, wt, t, r, 5, 1); break;                                        \
    case 0x61: if (MT >= 6) body(m, wt, t, r, 6, 1); break;                                        \
    case 0x71: if (MT >= 7) body(m, wt, t, r, 7, 1); break;                                        \
    case 0x81: if (MT >= 8) body(m, wt, t, r, 8, 1); break;

/* Every tile shape a type's driver asks for: 1 x WIDE and the batch shapes. */
#define TILE_CASES(body, m, wt, t, r, nt, nr, MT, MR)                                              \
    switch ((nt) * 16 + (nr)) {                                                                    \
    case 0x10 + WIDE: body(m, wt, t, r, 1, WIDE); break;                                           \
    BATCH_TILE_CASES(body, m, wt, t, r, MT, MR)                                                    \
    }
/* clang-format on */

typedef void tile_fn(const struct syn_mm *mm, int t0, int r0, int nt, int nr);

TARGET NOINLINE void tiles_f32(const struct syn_mm *m, int t, int r, int nt,
                               int nr){TILE_CASES(tile_f, m, SYN_DT_F32, t, r, nt, nr, MT_F, MR_F)}

TARGET NOINLINE void tiles_f16(const struct syn_mm *m, int t, int r, int nt,
                               int nr){TILE_CASES(tile_f, m, SYN_DT_F16, t, r, nt, nr, MT_F, MR_F)}

TARGET NOINLINE void tiles_bf16(const struct syn_mm *m, int t, int r, int nt, int nr){
    TILE_CASES(tile_f, m, SYN_DT_BF16, t, r, nt, nr, MT_F, MR_F)}

TARGET NOINLINE void tiles_q8_0(const struct syn_mm *m, int t, int r, int nt, int nr){
    TILE_CASES(tile_q, m, SYN_DT_Q8_0, t, r, nt, nr, MT_Q, MR_Q)}

TARGET NOINLINE void tiles_q4_0(const struct syn_mm *m, int t, int r, int nt, int nr){
    TILE_CASES(tile_q, m, SYN_DT_Q4_0, t, r, nt, nr, MT_Q, MR_Q)}

/* Every packed tile shape: the batch shapes only. */
#define PACKED_CASES(body, m, wt, t, r, nt, nr, MT, MR)                                            \
    switch ((nt)*16 + (nr)) {                                                                      \
        BATCH_TILE_CASES(body, m, wt, t, r, MT, MR)                                                \
    }

TARGET NOINLINE void tiles_q8_0p(const struct syn_mm *m, int t, int r, int nt, int nr){
    PACKED_CASES(tile_qp, m, SYN_DT_Q8_0, t, r, nt, nr, MT_Q, MR_Q)}

TARGET NOINLINE void tiles_q4_0p(const struct syn_mm *m, int t, int r, int nt, int nr)
{
    PACKED_CASES(tile_qp, m, SYN_DT_Q4_0, t, r, nt, nr, MT_Q, MR_Q)
}

/* The packing first tiles (tile_qf), in the batch shapes; pk and pk_stride as for tile_qf. */
#define TILE_QF(m, wt, t, r, nt, nr) tile_qf(m, wt, t, r, nt, nr, pk, pk_stride)

typedef void tile_pack_fn(const struct syn_mm *mm, int t0, int r0, int nt, int nr, uint8_t *pk,
                          size_t pk_stride);

TARGET NOINLINE void tiles_q8_0f(const struct syn_mm *m, int t, int r, int nt, int nr, uint8_t *pk,
                                 size_t pk_stride){
    PACKED_CASES(TILE_QF, m, SYN_DT_Q8_0, t, r, nt, nr, MT_Q, MR_Q)}

TARGET NOINLINE void tiles_q4_0f(const struct syn_mm *m, int t, int r, int nt, int nr, uint8_t *pk,
                                 size_t pk_stride)
{
    PACKED_CASES(TILE_QF, m, SYN_DT_Q4_0, t, r, nt, nr, MT_Q, MR_Q)
}

/* A weight type's tiles and the batch tile shape they were compiled for. */
struct tile_set {
    tile_fn *fn; /* runs one tile of nt x nr */
    int mt, mr;  /* the batch tile */
};

/* ---- driver ---- */

/* Weight rows [rs, re) against activation rows [ts, te). */
static void run_block(const struct tile_set *set, const struct syn_mm *mm, int rs, int re, int ts,
                      int te)
{
    const int mt = set->mt, mr = set->mr;
    int r = rs;
    if (te - ts == 1) {
        for (; r + WIDE <= re; r += WIDE) set->fn(mm, ts, r, 1, WIDE);
    } else {
        for (; r + mr <= re; r += mr) {
            int t = ts;
            for (; t + mt <= te; t += mt) set->fn(mm, t, r, mt, mr);
            if (t < te) set->fn(mm, t, r, te - t, mr);
        }
    }
    for (; r < re; r++) {
        int t = ts;
        for (; t + mt <= te; t += mt) set->fn(mm, t, r, mt, 1);
        if (t < te) set->fn(mm, t, r, te - t, 1);
    }
}

/* The same, activation-row tile by tile: for the quantised batch tiles, whose activations
 * (256 bytes per 128 elements) outweigh the weights (136 or 72 bytes), so that a tile's
 * activation rows stay in L1 while the block's weight rows stream past them from L2. */
static void run_block_t_major(const struct tile_set *set, const struct syn_mm *mm, int rs, int re,
                              int ts, int te)
{
    const int mt = set->mt, mr = set->mr;
    for (int t = ts; t < te; t += mt) {
        const int nt = te - t < mt ? te - t : mt;
        int r = rs;
        for (; r + mr <= re; r += mr) set->fn(mm, t, r, nt, mr);
        for (; r < re; r++) set->fn(mm, t, r, nt, 1);
    }
}

/* The quantised batch path with packing, block by block of rows: the first tile of activation
 * rows against the rows in memory, packing them (tile_qf), then the other tiles of activation
 * rows against the packed block, tile by tile (run_block_t_major). */
static void rows_packed(const struct syn_mm *mm, int r0, int r1, uint8_t *work)
{
    static const struct tile_set q8 = {tiles_q8_0p, MT_Q, MR_Q}, q4 = {tiles_q4_0p, MT_Q, MR_Q};
    const struct tile_set *set = mm->wtype == SYN_DT_Q8_0 ? &q8 : &q4;
    tile_pack_fn *first = mm->wtype == SYN_DT_Q8_0 ? tiles_q8_0f : tiles_q4_0f;
    const int sub = block_rows(mm->w_row_bytes);
    const int mr = set->mr, nt = mm->T < set->mt ? mm->T : set->mt;
    struct syn_mm pm = *mm;
    pm.w = work;
    pm.w_row_bytes = (size_t)n_groups(mm->K) * PACK_GROUP_BYTES;
    for (int rs = r0; rs < r1; rs += sub) {
        const int re = rs + sub < r1 ? rs + sub : r1;
        int r = rs;
        for (; r + mr <= re; r += mr)
            first(mm, 0, r, nt, mr, work + (size_t)(r - rs) * pm.w_row_bytes, pm.w_row_bytes);
        for (; r < re; r++)
            first(mm, 0, r, nt, 1, work + (size_t)(r - rs) * pm.w_row_bytes, pm.w_row_bytes);
        pm.y = mm->y + rs;
        run_block_t_major(set, &pm, 0, re - rs, nt, mm->T);
    }
}

/* ---- K-quants ----
 *
 * Against the super-block activations (kernels_impl.h). A weight super-block is unpacked once
 * into four vectors of 64 unsigned quants (nibbles, with Q5_K's fifth bit or Q6_K's top two) and
 * its sub-block scales into four vectors of 16-bit words, and then met by up to KQ_T activation
 * rows: per 64 elements, maddubs (exact 16-bit sums of two products: at most 2 * 63 * 127) and
 * vpdpwssd with the scales (exact int32), into 16 int32 lanes. Per super-block and activation
 * row the lanes, converted to f32, times d, take one FMA with xd; Q4_K/Q5_K's mins (dmin * m
 * against the activations' xd-scaled sums of 32) take one more, into 8 lanes; Q6_K's -32 offset
 * comes from the sums of 16 in the integers. The float accumulators are folded with hsum16 (and
 * the 8 with hsum8's steps) at the end. The steps per (activation row, weight row) pair depend
 * only on K, so no result depends on the batch or on KQ_T's tiling. */

#define KQ_T 6 /* activation rows per pass over a weight super-block */

/* A super-block's 256 unsigned quants (qv) times 256 activations, each product pair scaled by
 * its sub-block's scale word (sv), in 16 exact int32 lanes. */
TARGET INLINE __m512i kq_isum(const __m512i *qv, const __m512i *sv, const int8_t *xs)
{
    __m512i isum = _mm512_setzero_si512();
    UNROLL
    for (int ch = 0; ch < 4; ch++) {
        const __m512i p = _mm512_maddubs_epi16(qv[ch], _mm512_loadu_si512(xs + 64 * ch));
        isum = _mm512_dpwssd_epi32(isum, p, sv[ch]); /* isum + the pairs of p times sv, exact */
    }
    return isum;
}

/* Q4_K/Q5_K against nt (1..KQ_T) activation rows: out[t] for each. */
TARGET INLINE void kq45_pass(const uint8_t *w, const struct syn_kq_row *x, const int nt, int K,
                             const int q5, float *out)
{
    const size_t bb = q5 ? SYN_Q5K_BYTES : SYN_Q4K_BYTES;
    const __m512i low4 = _mm512_set1_epi8(15), one8 = _mm512_set1_epi8(1);
    /* word shifts: the low 256 bits keep the low nibbles (or qh bit 2c), the high take the high
     * nibbles (bit 2c + 1) of the same 32 bytes, broadcast to both halves */
    const __m512i sh_nib = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
    __m512i sh_h[4], sctl[4];
    UNROLL
    for (int ch = 0; ch < 4; ch++) {
        sh_h[ch] = _mm512_inserti64x4(_mm512_set1_epi16((short)(2 * ch)),
                                      _mm256_set1_epi16((short)(2 * ch + 1)), 1);
        /* bytes of scale word 2ch in the low two 128-bit lanes, of word 2ch + 1 in the high two,
         * for vpshufb over the eight scale words broadcast to every lane */
        sctl[ch] =
            _mm512_inserti64x4(_mm512_set1_epi16((short)((4 * ch) | (4 * ch + 1) << 8)),
                               _mm256_set1_epi16((short)((4 * ch + 2) | (4 * ch + 3) << 8)), 1);
    }
    const __m128i m3f = _mm_set1_epi8(0x3f), m03 = _mm_set1_epi8(3), m0f = _mm_set1_epi8(15);
    const __m128i sh_c = _mm_setr_epi32(0, 4, 0, 0);
    __m512 acc[KQ_T];
    __m256 accm[KQ_T];
    UNROLL
    for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps(), accm[t] = _mm256_setzero_ps();
    for (int sb = 0; sb < K / SYN_QK_K; sb++) {
        const uint8_t *blk = w + (size_t)sb * bb;
        const uint8_t *qs = blk + (q5 ? 48 : 16);
        /* the 6-bit scales and mins (syn_kquant_scale_min), in 32-bit lanes a, b, c of the 12
         * bytes: sc = [a & 0x3f.., (c & 0x0f..) | (a >> 6 & 3..) << 4], m the same from b and
         * c >> 4; u holds sc[0..7] in bytes 0-7 and m[0..7] in bytes 8-15 */
        const __m128i v = _mm_loadu_si128((const __m128i *)(blk + 4));
        const __m128i lo = _mm_and_si128(v, m3f);
        const __m128i top = _mm_slli_epi32(_mm_and_si128(_mm_srli_epi32(v, 6), m03), 4);
        const __m128i cs =
            _mm_and_si128(_mm_srlv_epi32(_mm_shuffle_epi32(v, 0xaa), sh_c), m0f); /* c, c >> 4 */
        const __m128i u = _mm_unpacklo_epi32(lo, _mm_or_si128(cs, top));
        const __m512i scb = _mm512_broadcast_i32x4(_mm_cvtepu8_epi16(u));
        const __m128i mq = _mm_srli_si128(u, 8); /* m[0..7] */
        __m512i qv[4], sv[4];
        const __m512i hb =
            q5 ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(blk + 16)))
               : _mm512_setzero_si512();
        UNROLL
        for (int ch = 0; ch < 4; ch++) {
            const __m512i qb =
                _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(qs + 32 * ch)));
            qv[ch] = _mm512_and_si512(_mm512_srlv_epi16(qb, sh_nib), low4);
            if (q5)
                qv[ch] = _mm512_or_si512(
                    qv[ch],
                    _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(hb, sh_h[ch]), one8), 4));
            sv[ch] = _mm512_shuffle_epi8(scb, sctl[ch]);
        }
        const __m128 dd = _mm_cvtph_ps(_mm_cvtsi32_si128((int)syn_load_u32(blk))); /* d, dmin */
        const __m512 dv = _mm512_broadcastss_ps(dd);
        /* dmin * m[j], against the activations' xd * (sum of sub-block j) */
        const __m256 mdv = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(mq)),
                                         _mm256_broadcastss_ps(_mm_movehdup_ps(dd)));
        UNROLL
        for (int t = 0; t < nt; t++) {
            const __m512i isum = kq_isum(qv, sv, x[t].q + (size_t)sb * SYN_QK_K);
            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(isum), dv),
                                     _mm512_set1_ps(x[t].d[sb]), acc[t]);
            accm[t] = _mm256_fmadd_ps(_mm256_loadu_ps(x[t].xsum + 8 * sb), mdv, accm[t]);
        }
    }
    UNROLL
    for (int t = 0; t < nt; t++) {
        __m128 m4 = _mm_add_ps(_mm256_castps256_ps128(accm[t]), _mm256_extractf128_ps(accm[t], 1));
        m4 = _mm_add_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_add_ss(m4, _mm_movehdup_ps(m4));
        out[t] = hsum16(acc[t]) - _mm_cvtss_f32(m4);
    }
}

/* Q6_K against nt (1..KQ_T) activation rows: out[t] for each. */
TARGET INLINE void kq6_pass(const uint8_t *w, const struct syn_kq_row *x, const int nt, int K,
                            float *out)
{
    const __m512i low4 = _mm512_set1_epi8(15), low2 = _mm512_set1_epi8(3);
    const __m512i z = _mm512_setzero_si512();
    /* word shifts: the low 32 bytes take bits 0-1 (or 4-5) of qh, the high 32 bytes 2-3 (6-7) */
    const __m512i sh_a = _mm512_inserti64x4(z, _mm256_set1_epi16(2), 1);
    const __m512i sh_b = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
    /* chunk ch (elements 64ch ..): word i (products 2i, 2i + 1) belongs to sub-block 4ch + i/8 */
    __m512i sidx[4];
    UNROLL
    for (int ch = 0; ch < 4; ch++)
        sidx[ch] = _mm512_inserti64x4(
            _mm512_castsi256_si512(
                _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16((short)(4 * ch))),
                                        _mm_set1_epi16((short)(4 * ch + 1)), 1)),
            _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16((short)(4 * ch + 2))),
                                    _mm_set1_epi16((short)(4 * ch + 3)), 1),
            1);
    __m512 acc[KQ_T];
    UNROLL
    for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    for (int sb = 0; sb < K / SYN_QK_K; sb++) {
        const uint8_t *blk = w + (size_t)sb * SYN_Q6K_BYTES;
        const __m256i scw = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(blk + 192)));
        const __m512i scw5 = _mm512_castsi256_si512(scw);
        __m512i qv[4], sv[4];
        UNROLL
        for (int n = 0; n < 2; n++) {
            const __m512i L = _mm512_loadu_si512(blk + 64 * n);
            const __m256i H = _mm256_loadu_si256((const __m256i *)(blk + 128 + 32 * n));
            const __m512i H2 = _mm512_inserti64x4(_mm512_castsi256_si512(H), H, 1);
            qv[2 * n] = _mm512_or_si512(
                _mm512_and_si512(L, low4),
                _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(H2, sh_a), low2), 4));
            qv[2 * n + 1] = _mm512_or_si512(
                _mm512_and_si512(_mm512_srli_epi16(L, 4), low4),
                _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(H2, sh_b), low2), 4));
        }
        UNROLL
        for (int ch = 0; ch < 4; ch++) sv[ch] = _mm512_permutexvar_epi16(sidx[ch], scw5);
        const float d = _cvtsh_ss(syn_load_u16(blk + 208));
        UNROLL
        for (int t = 0; t < nt; t++) {
            __m512i isum = kq_isum(qv, sv, x[t].q + (size_t)sb * SYN_QK_K);
            /* - 32 * sum(sc * bsum), in the low 8 lanes */
            const __m256i bs = _mm256_loadu_si256((const __m256i *)(x[t].bsum + 16 * sb));
            const __m256i off = _mm256_slli_epi32(_mm256_madd_epi16(bs, scw), 5);
            isum = _mm512_sub_epi32(isum, _mm512_zextsi256_si512(off));
            acc[t] =
                _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d * x[t].d[sb]), acc[t]);
        }
    }
    UNROLL
    for (int t = 0; t < nt; t++) out[t] = hsum16(acc[t]);
}

/* nt activation rows from t0 against weight row w. */
TARGET static void kq_rows_pass(const struct syn_mm *mm, const uint8_t *w, int t0, int nt,
                                float *out)
{
    struct syn_kq_row x[KQ_T];
    for (int t = 0; t < nt; t++)
        x[t] = syn_kq_row(mm->xq + (size_t)(t0 + t) * mm->xq_stride, mm->K);
    switch (mm->wtype * 8 + nt) {
#define KQ_CASES(N)                                                                                \
    case SYN_DT_Q4_K * 8 + N:                                                                      \
        kq45_pass(w, x, N, mm->K, 0, out);                                                         \
        break;                                                                                     \
    case SYN_DT_Q5_K * 8 + N:                                                                      \
        kq45_pass(w, x, N, mm->K, 1, out);                                                         \
        break;                                                                                     \
    case SYN_DT_Q6_K * 8 + N:                                                                      \
        kq6_pass(w, x, N, mm->K, out);                                                             \
        break;
        KQ_CASES(1)
        KQ_CASES(2)
        KQ_CASES(3)
        KQ_CASES(4)
        KQ_CASES(5)
        KQ_CASES(6)
#undef KQ_CASES
    default:
        break;
    }
}

/* Weight row by weight row, each against every activation row (KQ_T at a time) while it sits in
 * L1. */
TARGET static void rows_kquant_avx512(const struct syn_mm *mm, int r0, int r1)
{
    for (int r = r0; r < r1; r++) {
        const uint8_t *w = mm->w + (size_t)r * mm->w_row_bytes;
        if (r + 1 < r1) prefetch_head(w + mm->w_row_bytes);
        for (int t0 = 0; t0 < mm->T; t0 += KQ_T) {
            const int nt = mm->T - t0 < KQ_T ? mm->T - t0 : KQ_T;
            float out[KQ_T];
            kq_rows_pass(mm, w, t0, nt, out);
            for (int t = 0; t < nt; t++) mm->y[(size_t)(t0 + t) * mm->R + r] = out[t];
        }
    }
}

/* ---- Q4_1, Q5_0, Q5_1: one (activation row, weight row) pair at a time ----
 *
 * Against the plain activations (kernels_impl.h), a block of 32 per step: its quants (low
 * nibbles then high, plus 16 where qh's bit is set) meet the 32 activations in one 256-bit
 * dpbusd, their sum in another, giving 8 exact int32 lanes each; the block's terms (as in
 * kernels_scalar.c) are added lane-wise with one or two FMAs, then folded with hsum8. */

TARGET INLINE float hsum8_512(__m256 v)
{
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}

TARGET static float dot_q32_offset_avx512(const uint8_t *w, const uint8_t *xq, int K, int wtype)
{
    const int8_t *xs = (const int8_t *)xq;
    const float *xd = (const float *)(xq + (((size_t)K + 63) & ~(size_t)63));
    const int has_m = wtype != SYN_DT_Q5_0, has_h = wtype != SYN_DT_Q4_1;
    const size_t bb = (size_t)(has_m ? 4 : 2) + (has_h ? 4 : 0) + 16;
    const __m128i low4 = _mm_set1_epi8(15);
    const __m256i ones = _mm256_set1_epi8(1), sixteen = _mm256_set1_epi8(16);
    const __m256i z = _mm256_setzero_si256();
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < K / SYN_QBLOCK; b++) {
        const uint8_t *blk = w + (size_t)b * bb, *hp = blk + (has_m ? 4 : 2);
        const __m128i qs = _mm_loadu_si128((const __m128i *)(hp + (has_h ? 4 : 0)));
        __m256i q =
            _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(qs, 4), low4), _mm_and_si128(qs, low4));
        if (has_h)
            q = _mm256_or_si256(q, _mm256_maskz_mov_epi8((__mmask32)syn_load_u32(hp), sixteen));
        const __m256i x = _mm256_loadu_si256((const __m256i *)(xs + (size_t)b * SYN_QBLOCK));
        const __m256i isum = _mm256_dpbusd_epi32(z, q, x), xsum = _mm256_dpbusd_epi32(z, ones, x);
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
    return hsum8_512(acc);
}

TARGET static void rows_q32_offset_avx512(const struct syn_mm *mm, int r0, int r1)
{
    for (int r = r0; r < r1; r++) {
        const uint8_t *w = mm->w + (size_t)r * mm->w_row_bytes;
        for (int t = 0; t < mm->T; t++)
            mm->y[(size_t)t * mm->R + r] =
                dot_q32_offset_avx512(w, mm->xq + (size_t)t * mm->xq_stride, mm->K, mm->wtype);
    }
}

static void rows_avx512(const struct syn_mm *mm, int r0, int r1, uint8_t *work)
{
    if (syn_is_q32_offset(mm->wtype)) {
        rows_q32_offset_avx512(mm, r0, r1);
        return;
    }
    if (syn_is_kquant(mm->wtype)) {
        rows_kquant_avx512(mm, r0, r1);
        return;
    }
    if (work && mm->T > 1 && (mm->wtype == SYN_DT_Q8_0 || mm->wtype == SYN_DT_Q4_0)) {
        rows_packed(mm, r0, r1, work);
        return;
    }
    static const struct tile_set f32 = {tiles_f32, MT_F, MR_F}, f16 = {tiles_f16, MT_F, MR_F},
                                 bf16 = {tiles_bf16, MT_F, MR_F}, q8 = {tiles_q8_0, MT_Q, MR_Q},
                                 q4 = {tiles_q4_0, MT_Q, MR_Q};
    const struct tile_set *set;
    switch (mm->wtype) {
    case SYN_DT_F32:
        set = &f32;
        break;
    case SYN_DT_F16:
        set = &f16;
        break;
    case SYN_DT_BF16:
        set = &bf16;
        break;
    case SYN_DT_Q8_0:
        set = &q8;
        break;
    case SYN_DT_Q4_0:
        set = &q4;
        break;
    default:
        return;
    }
    /* Rows per sub-block: as many as keep their weights in L2 while every block of activation
     * rows passes over them (a multiple of 8 so tiles stay whole). */
    int sub = block_rows(mm->w_row_bytes);
    if (mm->T == 1) sub = r1 - r0; /* nothing to reuse: one pass of decode tiles */
    const int t_major = mm->T > 1 && (mm->wtype == SYN_DT_Q8_0 || mm->wtype == SYN_DT_Q4_0);
    for (int rs = r0; rs < r1; rs += sub) {
        int re = rs + sub < r1 ? rs + sub : r1;
        if (t_major) {
            run_block_t_major(set, mm, rs, re, 0, mm->T);
            continue;
        }
        for (int ts = 0; ts < mm->T; ts += SYN_T_BLOCK) {
            int te = ts + SYN_T_BLOCK < mm->T ? ts + SYN_T_BLOCK : mm->T;
            run_block(set, mm, rs, re, ts, te);
        }
    }
}

const struct syn_cpu_isa syn_cpu_isa_avx512 = {
    .name = "avx512",
    .xq_row_bytes = xq_row_bytes_avx512,
    .quantize_row = quantize_row_avx512,
    .work_bytes = work_bytes_avx512,
    .rows = rows_avx512,
};

#else /* !SYN_HAVE_X86_SIMD */

const struct syn_cpu_isa syn_cpu_isa_avx512 = {.name = "avx512"};

#endif
