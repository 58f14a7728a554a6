/*
 * Internal to the CPU kernels: what kernels.c (dispatch, work split, thread pool glue) shares
 * with the per-instruction-set files kernels_scalar.c, kernels_avx2.c and kernels_avx512.c.
 * Nothing outside src/engine/cpu/kernels*.c should include it.
 *
 * Quantised activations (for Q8_0, Q4_0 and the K-quant weights) live in the caller's scratch, one row per
 * activation row. Every path quantises the same way, bit for bit, block by block of 32:
 *
 *     d = amax / 127,  q = round-half-even(x * (1 / d)),  q = 0 when amax is 0,
 *
 * so x[k] ~= d * q[k] with |q| <= 127 (never -128, which the integer dot products of every path
 * rely on). How the q and d are arranged in the row is up to each instruction set (its
 * xq_row_bytes and quantize_row); the plain arrangement, used by the scalar and AVX2 paths, is
 *
 *     int8_t q[K]            the quants, block after block; padded to a multiple of 64 bytes
 *     float  d[K / 32]       one scale per block; padded to a multiple of 64 bytes
 */
#ifndef SYN_CPU_KERNELS_IMPL_H
#define SYN_CPU_KERNELS_IMPL_H

#include "synapse/tensor.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Unaligned little-endian loads of a block's f16 scales and bit fields (every path). */
static inline uint16_t syn_load_u16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline uint32_t syn_load_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Elements per quantised block, for both weight types and the activations. */
#define SYN_QBLOCK 32

/* Q4_K, Q5_K, Q6_K: super-blocks of 256 (synapse/tensor.h). Their activations are quantised
 * a super-block at a time instead (as llama.cpp's Q8_K does), on every instruction set, by
 * syn_cpu_quantize_row_kq (kernels_scalar.c):
 *
 *     d = amax / 127 over the 256,  q = round-half-even(x * (1 / d)),  q = 0 when amax is 0,
 *
 * arranged as
 *
 *     int8_t  q[K]           the quants; padded to a multiple of 64 bytes
 *     float   d[K / 256]     one scale per super-block; padded to a multiple of 64 bytes
 *     int16_t bsum[K / 16]   the sum of each 16 quants; padded to a multiple of 64 bytes
 *     float   xsum[K / 32]   d of the super-block times the sum of each 32 quants (the two bsums
 *                            added exactly, then one rounding); padded to a multiple of 64 bytes
 *
 * One scale per super-block lets a weight super-block's integer products, each scaled by its
 * 6- or 8-bit sub-block scale, add up exactly in int32 before one conversion to float; bsum
 * gives Q6_K's -32 offset its share without touching the quants, xsum the Q4_K/Q5_K mins'. */
static inline int syn_is_kquant(int wtype)
{
    return wtype == SYN_DT_Q4_K || wtype == SYN_DT_Q5_K || wtype == SYN_DT_Q6_K;
}

/* Q4_1, Q5_0, Q5_1 (blocks of 32 with an offset: a min, or -16): against activations in the
 * plain arrangement on every instruction set, quantised by the scalar definition. They come as
 * llama.cpp's fallbacks for matrices whose rows are not whole super-blocks. */
static inline int syn_is_q32_offset(int wtype)
{
    return wtype == SYN_DT_Q4_1 || wtype == SYN_DT_Q5_0 || wtype == SYN_DT_Q5_1;
}

static inline size_t syn_round64(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

static inline size_t syn_xq_kq_row_bytes(int K)
{
    return syn_round64((size_t)K) + syn_round64((size_t)(K / 256) * sizeof(float)) +
           syn_round64((size_t)(K / 16) * sizeof(int16_t)) +
           syn_round64((size_t)(K / 32) * sizeof(float));
}

/* The parts of one super-block activation row. */
struct syn_kq_row {
    int8_t *q;
    float *d;
    int16_t *bsum;
    float *xsum;
};

static inline struct syn_kq_row syn_kq_row(const uint8_t *xq, int K)
{
    struct syn_kq_row r;
    uint8_t *p = (uint8_t *)xq;
    r.q = (int8_t *)p;
    p += syn_round64((size_t)K);
    r.d = (float *)p;
    p += syn_round64((size_t)(K / 256) * sizeof(float));
    r.bsum = (int16_t *)p;
    p += syn_round64((size_t)(K / 16) * sizeof(int16_t));
    r.xsum = (float *)p;
    return r;
}

void syn_cpu_quantize_row_kq(const float *x, int K, uint8_t *dst);

/* Bytes of one quantised activation row of K elements in the plain arrangement. */
static inline size_t syn_xq_plain_row_bytes(int K)
{
    size_t q = ((size_t)K + 63) & ~(size_t)63;
    size_t d = ((size_t)(K / SYN_QBLOCK) * sizeof(float) + 63) & ~(size_t)63;
    return q + d;
}

/* One matrix product as the per-ISA row functions see it. */
struct syn_mm {
    const uint8_t *w;   /* R rows of K elements of wtype, rows contiguous */
    size_t w_row_bytes; /* bytes per weight row */
    int wtype;         /* SYN_DT_F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K or Q6_K */
    int R;             /* weight rows = output columns */
    int K;             /* elements per row */
    int T;             /* activation rows */
    const float *x;    /* T rows of K floats */
    const uint8_t *xq; /* quantised activations, T rows of xq_stride bytes (quantised weights) */
    size_t xq_stride;  /* bytes per quantised row: the ISA's xq_row_bytes(K) */
    float *y;          /* T rows of R floats */
};

/* One instruction set's kernels. */
struct syn_cpu_isa {
    const char *name; /* "avx512", "avx2", "scalar" */
    /* Bytes of one quantised activation row of K elements, a multiple of 64. */
    size_t (*xq_row_bytes)(int K);
    /* Quantises one activation row of K floats into dst, arranged for weights of wtype. */
    void (*quantize_row)(const float *x, int K, int wtype, uint8_t *dst);
    /* Bytes of per-thread work space rows() needs for weights of wtype, K elements per row and
     * T activation rows (0 if none), a multiple of 64. Optional (NULL: none). */
    size_t (*work_bytes)(int wtype, int K, int T);
    /* Computes y[t][r] for every t < T and r0 <= r < r1; work: the calling thread's
     * work_bytes(...) bytes, 64-byte aligned (NULL if work_bytes is NULL or gave 0). */
    void (*rows)(const struct syn_mm *mm, int r0, int r1, uint8_t *work);
};

extern const struct syn_cpu_isa syn_cpu_isa_scalar;
extern const struct syn_cpu_isa syn_cpu_isa_avx2;
extern const struct syn_cpu_isa syn_cpu_isa_avx512;

/* Whether this compiler can build the x86 SIMD files (they are empty otherwise). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SYN_HAVE_X86_SIMD 1
#else
#define SYN_HAVE_X86_SIMD 0
#endif

/* Rows of the weight matrix that one work unit should cover so that its weights stay in L2
 * while every block of activation rows passes over them. */
#define SYN_L2_WEIGHT_BYTES (192 * 1024)

/* Activation rows processed together against one L2-resident block of weight rows (the float
 * batch tiles; the AVX-512 quantised ones take every row against a packed block instead). */
#define SYN_T_BLOCK 32

#endif
