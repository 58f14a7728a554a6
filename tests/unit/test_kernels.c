/*
 * The CPU kernels and thread pool: every weight type on every instruction set this CPU has,
 * against a double-precision reference, by normalised error (sum |y - ref| / sum |ref|); batch
 * invariance (a row's output bits never depend on the batch, the thread count or the tiling);
 * and the pool's contract (every task exactly once, in any sequence of regions).
 *
 * The error bounds (the data are deterministic, so a bound either always holds or never does):
 *   F32/F16/BF16: the weights are exact in f32 (F16/BF16 widen exactly), so the only error is
 *     f32 rounding of the products and of the running sums. For zero-mean data the rounding
 *     errors of a sum of n terms grow like sqrt(n) times eps relative to the result: a few 1e-7
 *     for n = 2048 in one lane (the scalar path; measured 4.6e-7 over these shapes), less when
 *     16 lanes share the work (measured 1.4e-7 to 1.8e-7). Bound: 1e-6.
 *   Q8_0/Q4_0 against the exact activations: 8-bit activation quantisation rounds each x by up
 *     to d/2, d = amax/127 of its block; for uniform data in [-1, 1) that is an rms error of
 *     d/sqrt(12) ~= 0.0023 against an rms x of 0.58, i.e. 0.4%, and since the errors are
 *     independent the dot products carry the same relative error (measured 0.37% to 0.41%).
 *     Bound: 1e-2.
 *   Q8_0/Q4_0 against the same quantised activations: the integer sums are exact, so what is
 *     left is f32 rounding of the per-block terms, as for the float types (measured ~1e-7).
 *     Bound: 1e-6.
 */
#include "harness.h"

#include "engine/cpu/kernels.h"
#include "engine/cpu/membw.h"
#include "engine/cpu/threadpool.h"
#include "synapse/tensor.h"

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>

/* ---- test data ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rng_u32(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

/* Uniform in [-1, 1). */
static float rng_f(void)
{
    return (float)((double)rng_u32() / 2147483648.0 - 1.0);
}

static void fill_random(float *v, size_t n)
{
    for (size_t i = 0; i < n; i++) v[i] = rng_f();
}

static float bits_f(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t f_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Our own conversions, so the tests do not lean on the code under test elsewhere. Round to
 * nearest even; the random data here is always finite and well inside both ranges. */
static uint16_t to_bf16(float f)
{
    uint32_t u = f_bits(f);
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

static float from_bf16(uint16_t h)
{
    return bits_f((uint32_t)h << 16);
}

static float from_f16(uint16_t h)
{
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    float v = e == 0 ? ldexpf((float)m, -24) : ldexpf((float)(m | 0x400), e - 25);
    return (h & 0x8000) ? -v : v;
}

static uint16_t to_f16(float f)
{
    /* Exhaustive search is too slow; use the rounding of the nearest representable value. */
    float a = fabsf(f);
    uint16_t sign = f < 0 ? 0x8000 : 0;
    if (a < ldexpf(1.0f, -24) * 0.5f) return sign;
    int e;
    frexpf(a, &e); /* a = m * 2^e, m in [0.5, 1) */
    int exp = e - 1 + 15;
    float step = exp <= 0 ? ldexpf(1.0f, -24) : ldexpf(1.0f, e - 11);
    float q = nearbyintf(a / step) * step; /* a / step is exact: step is a power of two */
    int ee;
    frexpf(q, &ee);
    uint16_t h;
    if (ee - 1 + 15 <= 0)
        h = (uint16_t)(q / ldexpf(1.0f, -24));
    else
        h = (uint16_t)(((ee - 1 + 15) << 10) | ((uint32_t)(q / ldexpf(1.0f, ee - 11)) & 0x3ff));
    return sign | h;
}

/* A weight matrix in one type, with its values as the kernels must see them. */
struct wmat {
    int type;    /* SYN_DT_* */
    int R, K;    /* rows, elements per row */
    void *data;  /* R rows in the on-file layout; from malloc() */
    double *deq; /* R x K dequantised values; from malloc() */
    size_t row_bytes;
};

static size_t type_row_bytes(int type, int K)
{
    switch (type) {
    case SYN_DT_F32:
        return (size_t)K * 4;
    case SYN_DT_F16:
    case SYN_DT_BF16:
        return (size_t)K * 2;
    case SYN_DT_Q8_0:
        return (size_t)K / 32 * 34;
    case SYN_DT_Q4_0:
        return (size_t)K / 32 * 18;
    case SYN_DT_Q4_1:
    case SYN_DT_Q5_0:
    case SYN_DT_Q5_1:
        return (size_t)K / 32 * (size_t)syn_dtype_block_bytes(type);
    case SYN_DT_Q4_K:
    case SYN_DT_Q5_K:
    case SYN_DT_Q6_K:
        return (size_t)K / 256 * (size_t)syn_dtype_block_bytes(type);
    }
    return 0;
}

static void wmat_make(struct wmat *m, int type, int R, int K)
{
    m->type = type;
    m->R = R;
    m->K = K;
    m->row_bytes = type_row_bytes(type, K);
    m->data = malloc(m->row_bytes * (size_t)R);
    m->deq = malloc(sizeof(double) * (size_t)R * (size_t)K);
    CHECK(m->data && m->deq);
    float *src = malloc(sizeof(float) * (size_t)K);
    for (int r = 0; r < R; r++) {
        fill_random(src, (size_t)K);
        uint8_t *row = (uint8_t *)m->data + m->row_bytes * (size_t)r;
        double *dq = m->deq + (size_t)r * K;
        for (int k = 0; k < K; k++) {
            if (type == SYN_DT_F32) {
                memcpy(row + 4 * k, &src[k], 4);
                dq[k] = src[k];
            } else if (type == SYN_DT_F16) {
                uint16_t h = to_f16(src[k]);
                memcpy(row + 2 * k, &h, 2);
                dq[k] = from_f16(h);
            } else if (type == SYN_DT_BF16) {
                uint16_t h = to_bf16(src[k]);
                memcpy(row + 2 * k, &h, 2);
                dq[k] = from_bf16(h);
            }
        }
        if (type != SYN_DT_Q8_0 && type != SYN_DT_Q4_0 && syn_dtype_block_elems(type) > 1) {
            /* K-quants, Q4_1, Q5_0, Q5_1: every byte random (so every scale, min and quant bit
             * pattern occurs), then the f16 scales (and mins) set to small values; tensor.c's
             * reference dequantiser gives the values. */
            const int bb = syn_dtype_block_bytes(type), be = syn_dtype_block_elems(type);
            float *deq = malloc(sizeof(float) * (size_t)K);
            CHECK(deq);
            for (int i = 0; i < bb * (K / be); i++) row[i] = (uint8_t)rng_u32();
            for (int b = 0; b < K / be; b++) {
                uint8_t *blk = row + (size_t)bb * b;
                uint16_t d = to_f16(0.0005f + 0.002f * (float)(rng_u32() % 1000) / 1000.0f);
                uint16_t dmin = to_f16(0.0005f + 0.004f * (float)(rng_u32() % 1000) / 1000.0f);
                if (type == SYN_DT_Q6_K) {
                    memcpy(blk + 208, &d, 2);
                } else if (type == SYN_DT_Q5_0) {
                    memcpy(blk, &d, 2);
                } else {
                    memcpy(blk, &d, 2);
                    memcpy(blk + 2, &dmin, 2);
                }
            }
            CHECK_EQ_INT(syn_dequantize_row(type, row, deq, (uint64_t)K), 0);
            for (int k = 0; k < K; k++) dq[k] = deq[k];
            free(deq);
        }
        if (type == SYN_DT_Q8_0 || type == SYN_DT_Q4_0) {
            for (int b = 0; b < K / 32; b++) {
                /* Random scales and quants over the whole range, -128 and 0..15 included. */
                uint16_t d = to_f16(0.001f + 0.02f * (float)(rng_u32() % 1000) / 1000.0f);
                float df = from_f16(d);
                if (type == SYN_DT_Q8_0) {
                    uint8_t *blk = row + 34 * b;
                    memcpy(blk, &d, 2);
                    for (int i = 0; i < 32; i++) {
                        int8_t q = (int8_t)(rng_u32() & 0xff);
                        blk[2 + i] = (uint8_t)q;
                        dq[b * 32 + i] = (double)df * q;
                    }
                } else {
                    uint8_t *blk = row + 18 * b;
                    memcpy(blk, &d, 2);
                    for (int i = 0; i < 16; i++) {
                        uint8_t lo = rng_u32() & 15, hi = rng_u32() & 15;
                        blk[2 + i] = (uint8_t)(lo | hi << 4);
                        dq[b * 32 + i] = (double)df * (lo - 8);
                        dq[b * 32 + 16 + i] = (double)df * (hi - 8);
                    }
                }
            }
        }
    }
    free(src);
}

static void wmat_free(struct wmat *m)
{
    free(m->data);
    free(m->deq);
}

/* The activation quantisation the kernels promise (kernels_impl.h), dequantised: blocks of 32,
 * or of 256 for the K-quants. */
static void quantise_like_kernels(const float *x, int K, int n, double *out)
{
    for (int b = 0; b < K / n; b++) {
        float amax = 0;
        for (int i = 0; i < n; i++)
            if (fabsf(x[b * n + i]) > amax) amax = fabsf(x[b * n + i]);
        float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        for (int i = 0; i < n; i++) out[b * n + i] = (double)d * nearbyintf(x[b * n + i] * id);
    }
}

static void *scratch_for(int type, int K, int T)
{
    size_t n = syn_cpu_matmul_scratch_bytes(type, K, T, 2); /* pools here have 1 or 2 threads */
    void *p = aligned_alloc(64, n ? (n + 63) / 64 * 64 : 64);
    CHECK(p);
    memset(p, 0, n);
    return p;
}

/* Runs the kernel (via pool) and returns y (malloc'ed, T x R). */
static float *run_matmul(struct syn_pool *pool, const struct wmat *m, const float *x, int T)
{
    float *y = malloc(sizeof(float) * (size_t)T * (size_t)m->R);
    void *scratch = scratch_for(m->type, m->K, T);
    CHECK(y);
    syn_cpu_matmul(pool, m->data, m->type, m->R, m->K, x, T, y, scratch);
    free(scratch);
    return y;
}

/* Adds sum |y - ref| to *num and sum |ref| to *den, against a double reference; xq != 0 uses
 * the activations quantised as the kernels do. */
static void add_error(const struct wmat *m, const float *x, int T, const float *y, int xq,
                      double *num, double *den)
{
    double *xd = malloc(sizeof(double) * (size_t)m->K);
    for (int t = 0; t < T; t++) {
        const float *xt = x + (size_t)t * m->K;
        if (xq)
            quantise_like_kernels(xt, m->K, syn_dtype_block_elems(m->type) == 256 ? 256 : 32, xd);
        else
            for (int k = 0; k < m->K; k++) xd[k] = xt[k];
        for (int r = 0; r < m->R; r++) {
            double ref = 0;
            for (int k = 0; k < m->K; k++) ref += m->deq[(size_t)r * m->K + k] * xd[k];
            *num += fabs((double)y[(size_t)t * m->R + r] - ref);
            *den += fabs(ref);
        }
    }
    free(xd);
}

static double norm_error(const struct wmat *m, const float *x, int T, const float *y, int xq)
{
    double num = 0, den = 0;
    add_error(m, x, T, y, xq, &num, &den);
    return den > 0 ? num / den : num;
}

static const char *const isas[] = {"scalar", "avx2", "avx512"};
static const int all_types[] = {SYN_DT_F32, SYN_DT_F16, SYN_DT_BF16, SYN_DT_Q8_0, SYN_DT_Q4_0};

static int is_quant(int type)
{
    return syn_dtype_block_elems(type) > 1;
}

/* ---- agreement with the reference ---- */

/* One type on every ISA over a set of shapes. The normalised error is taken over all the
 * shapes of one ISA together: a single tiny dot product can cancel to almost nothing, which makes
 * its own ratio meaningless, while a wrong result in any shape still moves the total far past
 * the bound (the totals are dominated by the large shapes' |ref|, of order 10 per output). */
static void check_type_against_reference(int type, const int (*shapes)[3], int n_shapes)
{
    struct syn_pool *pool = syn_pool_new(2);
    CHECK(pool);
    int tested = 0;
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        if (syn_cpu_kernels_force(isas[i]) != 0) continue;
        tested++;
        double num = 0, den = 0, qnum = 0, qden = 0;
        for (int s = 0; s < n_shapes; s++) {
            int R = shapes[s][0], K = shapes[s][1], T = shapes[s][2];
            struct wmat m;
            wmat_make(&m, type, R, K);
            float *x = malloc(sizeof(float) * (size_t)T * K);
            fill_random(x, (size_t)T * K);
            float *y = run_matmul(pool, &m, x, T);
            add_error(&m, x, T, y, 0, &num, &den);
            if (is_quant(type)) add_error(&m, x, T, y, 1, &qnum, &qden);
            free(x);
            free(y);
            wmat_free(&m);
        }
        double e = num / den, bound = is_quant(type) ? 1e-2 : 1e-6;
        if (getenv("SYNAPSE_TEST_VERBOSE"))
            fprintf(stderr, "  %s %s: error %.3g, vs quantised activations %.3g\n", isas[i],
                    syn_dtype_name(type), e, qden > 0 ? qnum / qden : 0.0);
        if (!(e < bound)) FAIL("%s %s: error %.3g >= %g", isas[i], syn_dtype_name(type), e, bound);
        if (is_quant(type) && !(qnum / qden < 1e-6))
            FAIL("%s %s: error vs quantised activations %.3g >= 1e-6", isas[i],
                 syn_dtype_name(type), qnum / qden);
    }
    CHECK(tested >= 1);
    syn_pool_free(pool);
}

/* R not a multiple of any tile width, K from one block to a model's width, T across the tile
 * heights; odd K for the float types, which have no blocks. */
static const int float_shapes[][3] = {
    {1, 32, 1},  {37, 32, 1}, {37, 64, 5}, {19, 288, 7},  {70, 2048, 3}, {9, 33, 2},
    {13, 47, 9}, {5, 1, 1},   {17, 15, 4}, {33, 288, 16}, {8, 17, 1},
};
static const int quant_shapes[][3] = {
    {1, 32, 1},    {37, 32, 1},  {37, 64, 5},  {19, 288, 7},
    {70, 2048, 3}, {33, 96, 16}, {17, 288, 1}, {12, 160, 9},
};
/* K-quants: rows of whole super-blocks (256). */
static const int kquant_shapes[][3] = {
    {1, 256, 1},   {37, 256, 1},  {37, 512, 5},  {19, 768, 7},
    {70, 2048, 3}, {33, 256, 16}, {17, 1024, 1}, {12, 512, 9},
};
#define N_FLOAT_SHAPES  ((int)(sizeof float_shapes / sizeof float_shapes[0]))
#define N_KQUANT_SHAPES ((int)(sizeof kquant_shapes / sizeof kquant_shapes[0]))
#define N_QUANT_SHAPES  ((int)(sizeof quant_shapes / sizeof quant_shapes[0]))

TEST(kernels_f32_matches_reference)
{
    check_type_against_reference(SYN_DT_F32, float_shapes, N_FLOAT_SHAPES);
}

TEST(kernels_f16_matches_reference)
{
    check_type_against_reference(SYN_DT_F16, float_shapes, N_FLOAT_SHAPES);
}

TEST(kernels_bf16_matches_reference)
{
    check_type_against_reference(SYN_DT_BF16, float_shapes, N_FLOAT_SHAPES);
}

TEST(kernels_q8_0_matches_reference)
{
    check_type_against_reference(SYN_DT_Q8_0, quant_shapes, N_QUANT_SHAPES);
}

TEST(kernels_q4_0_matches_reference)
{
    check_type_against_reference(SYN_DT_Q4_0, quant_shapes, N_QUANT_SHAPES);
}

TEST(kernels_q4_1_q5_0_q5_1_match_reference)
{
    check_type_against_reference(SYN_DT_Q4_1, quant_shapes, N_QUANT_SHAPES);
    check_type_against_reference(SYN_DT_Q5_0, quant_shapes, N_QUANT_SHAPES);
    check_type_against_reference(SYN_DT_Q5_1, quant_shapes, N_QUANT_SHAPES);
}

TEST(kernels_q4_k_matches_reference)
{
    check_type_against_reference(SYN_DT_Q4_K, kquant_shapes, N_KQUANT_SHAPES);
}

TEST(kernels_q5_k_matches_reference)
{
    check_type_against_reference(SYN_DT_Q5_K, kquant_shapes, N_KQUANT_SHAPES);
}

TEST(kernels_q6_k_matches_reference)
{
    check_type_against_reference(SYN_DT_Q6_K, kquant_shapes, N_KQUANT_SHAPES);
}

TEST(kernels_isa_names_and_forcing)
{
    const char *chosen = syn_cpu_kernels_isa();
    CHECK(strcmp(chosen, "avx512") == 0 || strcmp(chosen, "avx2") == 0 ||
          strcmp(chosen, "scalar") == 0);
    CHECK_EQ_INT(syn_cpu_kernels_force("scalar"), 0);
    CHECK_EQ_STR(syn_cpu_kernels_isa(), "scalar");
    CHECK_EQ_INT(syn_cpu_kernels_force("sse9"), -1);
    CHECK_EQ_STR(syn_cpu_kernels_isa(), "scalar");
    CHECK_EQ_INT(syn_cpu_kernels_force(NULL), -1);
    /* The default must be the best this CPU has: forcing it back succeeds. */
    CHECK_EQ_INT(syn_cpu_kernels_force(chosen), 0);
}

/* One-hot quantised weights: row r has weight 1 (scale 1) at element r and 0 elsewhere, so
 * y[r] is exactly q[r] * d of the quantised activations: the kernels' own quantisation,
 * observable bit for bit. */
static void make_one_hot(int type, int K, uint8_t *w)
{
    const size_t bb = type == SYN_DT_Q8_0 ? 34 : 18;
    const uint16_t one = 0x3c00; /* 1.0 in f16 */
    memset(w, 0, bb * (size_t)(K / 32) * (size_t)K);
    for (int r = 0; r < K; r++) {
        uint8_t *row = w + bb * (size_t)(K / 32) * (size_t)r;
        for (int b = 0; b < K / 32; b++) {
            uint8_t *blk = row + bb * (size_t)b;
            memcpy(blk, &one, 2);
            if (type == SYN_DT_Q4_0) memset(blk + 2, 0x88, 16); /* 8 = weight 0 */
        }
        int b = r / 32, i = r % 32;
        uint8_t *q = row + bb * (size_t)b + 2;
        if (type == SYN_DT_Q8_0)
            q[i] = 1;
        else if (i < 16)
            q[i] = (uint8_t)((q[i] & 0xf0) | 9);
        else
            q[i - 16] = (uint8_t)((q[i - 16] & 0x0f) | (9 << 4));
    }
}

TEST(kernels_quantise_activations_as_documented)
{
    /* Every ISA's activation quantisation is the documented one, bit for bit, including a
     * block of zeros and a block of exact ties (which round to even). */
    const int K = 288, T = 2;
    float x[288 * 2];
    fill_random(x, sizeof x / sizeof x[0]);
    for (int i = 0; i < 32; i++) x[64 + i] = 0.0f;
    /* A block whose scale is exactly 0.5, so x / d lands on halves. */
    for (int i = 0; i < 32; i++) x[128 + i] = (float)(i - 16) * 0.5f + 0.25f;
    x[128] = -63.5f;
    for (int i = 0; i < 32; i++) x[288 + 160 + i] *= 1e-3f; /* small values, small scale */
    float expect[288 * 2];
    for (int t = 0; t < T; t++)
        for (int b = 0; b < K / 32; b++) {
            const float *xb = x + t * K + b * 32;
            float amax = 0;
            for (int i = 0; i < 32; i++)
                if (fabsf(xb[i]) > amax) amax = fabsf(xb[i]);
            float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
            for (int i = 0; i < 32; i++) expect[t * K + b * 32 + i] = nearbyintf(xb[i] * id) * d;
        }
    const int types[] = {SYN_DT_Q8_0, SYN_DT_Q4_0};
    uint8_t *w = malloc(34 * (size_t)(K / 32) * K);
    CHECK(w);
    for (size_t ti = 0; ti < 2; ti++) {
        make_one_hot(types[ti], K, w);
        for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
            if (syn_cpu_kernels_force(isas[i]) != 0) continue;
            void *s = scratch_for(types[ti], K, T);
            float y[288 * 2];
            syn_cpu_matmul(NULL, w, types[ti], K, K, x, T, y, s);
            free(s);
            for (int k = 0; k < K * T; k++)
                if (y[k] != expect[k]) /* exact; == only so that -0 and 0 agree */
                    FAIL("%s %s: element %d of row %d quantises to %.9g, expected %.9g", isas[i],
                         syn_dtype_name(types[ti]), k % K, k / K, y[k], expect[k]);
        }
    }
    free(w);
}

/* ---- batch invariance ---- */

/* For one type on the current ISA: the outputs of a few probe rows computed alone (T = 1, no
 * pool) must reappear bit for bit inside batches of every size 1..70, at different positions,
 * with pools of 1 and 2 threads, and when only a window of the weight rows is multiplied. */
static void check_batch_invariance(int type, int K)
{
    const int R = 77, N = 70;
    struct wmat m;
    wmat_make(&m, type, R, K);
    float *xs = malloc(sizeof(float) * (size_t)N * K);
    float *batch = malloc(sizeof(float) * (size_t)N * K);
    CHECK(xs && batch);
    fill_random(xs, (size_t)N * K);

    /* Alone. */
    float *alone = malloc(sizeof(float) * (size_t)N * R);
    for (int i = 0; i < N; i++) {
        float *y = run_matmul(NULL, &m, xs + (size_t)i * K, 1);
        memcpy(alone + (size_t)i * R, y, sizeof(float) * R);
        free(y);
    }

    struct syn_pool *pools[2] = {syn_pool_new(1), syn_pool_new(2)};
    CHECK(pools[0] && pools[1]);
    for (int T = 1; T <= N; T++) {
        /* Batch rows: a rotation of the probes, so each probe sits at a different position
         * as T grows. */
        int shift = (T * 7) % N;
        for (int t = 0; t < T; t++)
            memcpy(batch + (size_t)t * K, xs + (size_t)((t + shift) % N) * K, sizeof(float) * K);
        for (int p = 0; p < 2; p++) {
            float *y = run_matmul(pools[p], &m, batch, T);
            for (int t = 0; t < T; t++) {
                int src = (t + shift) % N;
                if (memcmp(y + (size_t)t * R, alone + (size_t)src * R, sizeof(float) * R) != 0)
                    FAIL("%s %s K=%d: row %d at position %d of a batch of %d (pool %d) differs "
                         "from the same row alone",
                         syn_cpu_kernels_isa(), syn_dtype_name(type), K, src, t, T, p + 1);
            }
            free(y);
        }
    }

    /* A window of weight rows [5, 5 + 13): the tiling of rows changes, the bits must not. */
    struct wmat win = m;
    win.R = 13;
    win.data = (uint8_t *)m.data + m.row_bytes * 5;
    float *y = run_matmul(pools[1], &win, xs, N);
    for (int t = 0; t < N; t++)
        if (memcmp(y + (size_t)t * 13, alone + (size_t)t * R + 5, sizeof(float) * 13) != 0)
            FAIL("%s %s K=%d: a window of weight rows changes row %d's output",
                 syn_cpu_kernels_isa(), syn_dtype_name(type), K, t);
    free(y);

    syn_pool_free(pools[0]);
    syn_pool_free(pools[1]);
    free(alone);
    free(batch);
    free(xs);
    wmat_free(&m);
}

static void check_batch_invariance_all_isas(int type)
{
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        if (syn_cpu_kernels_force(isas[i]) != 0) continue;
        if (syn_dtype_block_elems(type) == 256) {
            check_batch_invariance(type, 256);
            check_batch_invariance(type, 768);
            continue;
        }
        check_batch_invariance(type, 288);
        check_batch_invariance(type, 96);
        if (!is_quant(type)) check_batch_invariance(type, 45);
    }
}

TEST_TIMEOUT(kernels_batch_invariant_f32, 120)
{
    check_batch_invariance_all_isas(SYN_DT_F32);
}

TEST_TIMEOUT(kernels_batch_invariant_f16, 120)
{
    check_batch_invariance_all_isas(SYN_DT_F16);
}

TEST_TIMEOUT(kernels_batch_invariant_bf16, 120)
{
    check_batch_invariance_all_isas(SYN_DT_BF16);
}

TEST_TIMEOUT(kernels_batch_invariant_q8_0, 120)
{
    check_batch_invariance_all_isas(SYN_DT_Q8_0);
}

TEST_TIMEOUT(kernels_batch_invariant_q4_0, 120)
{
    check_batch_invariance_all_isas(SYN_DT_Q4_0);
}

TEST_TIMEOUT(kernels_batch_invariant_q4_1_q5_0_q5_1, 120)
{
    check_batch_invariance_all_isas(SYN_DT_Q4_1);
    check_batch_invariance_all_isas(SYN_DT_Q5_0);
    check_batch_invariance_all_isas(SYN_DT_Q5_1);
}

TEST_TIMEOUT(kernels_batch_invariant_q4_k, 120)
{
    check_batch_invariance_all_isas(SYN_DT_Q4_K);
}

TEST_TIMEOUT(kernels_batch_invariant_q5_k, 120)
{
    check_batch_invariance_all_isas(SYN_DT_Q5_K);
}

TEST_TIMEOUT(kernels_batch_invariant_q6_k, 120)
{
    check_batch_invariance_all_isas(SYN_DT_Q6_K);
}

TEST_TIMEOUT(kernels_quant_batch_across_l2_blocks, 120)
{
    /* Weight rows over several of the batch path's L2-sized blocks in one call (one thread takes
     * every row at once; 2048-element rows make 3 blocks of Q8_0 and 2 of Q4_0 here), a
     * leftover row, and batches that fill the first tile of activation rows, which packs each
     * block, partly, wholly or with tiles after it: every row exactly as it comes alone. */
    const int R = 201, K = 2048, N = 19;
    const int batches[] = {2, 4, 5, 16, 19};
    const int types[] = {SYN_DT_Q8_0, SYN_DT_Q4_0};
    struct syn_pool *pools[2] = {syn_pool_new(1), syn_pool_new(2)};
    CHECK(pools[0] && pools[1]);
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        struct wmat m;
        wmat_make(&m, types[ti], R, K);
        float *xs = malloc(sizeof(float) * (size_t)N * K);
        float *alone = malloc(sizeof(float) * (size_t)N * R);
        CHECK(xs && alone);
        fill_random(xs, (size_t)N * K);
        for (int i = 0; i < N; i++) {
            float *y = run_matmul(NULL, &m, xs + (size_t)i * K, 1);
            memcpy(alone + (size_t)i * R, y, sizeof(float) * R);
            free(y);
        }
        for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++) {
            for (int p = 0; p < 2; p++) {
                const int T = batches[b];
                float *y = run_matmul(pools[p], &m, xs, T);
                for (int t = 0; t < T; t++)
                    if (memcmp(y + (size_t)t * R, alone + (size_t)t * R, sizeof(float) * R) != 0)
                        FAIL("%s %s: row %d of a batch of %d (pool %d) differs from the same row "
                             "alone",
                             syn_cpu_kernels_isa(), syn_dtype_name(types[ti]), t, T, p + 1);
                free(y);
            }
        }
        free(alone);
        free(xs);
        wmat_free(&m);
    }
    syn_pool_free(pools[0]);
    syn_pool_free(pools[1]);
}

TEST(kernels_large_batch_uses_every_block)
{
    /* T beyond the kernels' activation block and R beyond one task's rows, against the
     * reference, on the default ISA: no block of rows or activations is skipped or repeated. */
    struct syn_pool *pool = syn_pool_new(2);
    for (size_t ti = 0; ti < sizeof all_types / sizeof all_types[0]; ti++) {
        int type = all_types[ti];
        struct wmat m;
        wmat_make(&m, type, 301, 256);
        float *x = malloc(sizeof(float) * 67 * 256);
        fill_random(x, 67 * 256);
        float *y = run_matmul(pool, &m, x, 67);
        double e = norm_error(&m, x, 67, y, is_quant(type));
        if (!(e < 1e-6)) FAIL("%s: error %.3g", syn_dtype_name(type), e);
        free(x);
        free(y);
        wmat_free(&m);
    }
    syn_pool_free(pool);
}

TEST(kernels_multi_matches_single)
{
    /* Three products sharing their activations, as one region, give every element bit for bit
     * what each product gives alone, on every ISA, batch sizes 1 and 37, with 2 threads. */
    struct syn_pool *pool = syn_pool_new(2);
    CHECK(pool);
    const int K = 320, Rs[3] = {300, 40, 77}, Ts[2] = {1, 37};
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        if (syn_cpu_kernels_force(isas[i]) != 0) continue;
        for (size_t ti = 0; ti < sizeof all_types / sizeof all_types[0]; ti++) {
            int type = all_types[ti];
            struct wmat m[3];
            for (int p = 0; p < 3; p++) wmat_make(&m[p], type, Rs[p], K);
            for (int tc = 0; tc < 2; tc++) {
                const int T = Ts[tc];
                float *x = malloc(sizeof(float) * (size_t)T * K);
                CHECK(x);
                fill_random(x, (size_t)T * K);
                struct syn_cpu_mm_part parts[3];
                float *alone[3];
                for (int p = 0; p < 3; p++) {
                    alone[p] = run_matmul(pool, &m[p], x, T);
                    parts[p] = (struct syn_cpu_mm_part){m[p].data, Rs[p],
                                                        malloc(sizeof(float) * (size_t)T * Rs[p])};
                    CHECK(parts[p].y);
                }
                void *scratch = scratch_for(type, K, T);
                syn_cpu_matmul_multi(pool, type, K, x, T, parts, 3, scratch);
                for (int p = 0; p < 3; p++) {
                    if (memcmp(parts[p].y, alone[p], sizeof(float) * (size_t)T * Rs[p]) != 0)
                        FAIL("%s %s T=%d: part %d differs from the same product alone", isas[i],
                             syn_dtype_name(type), T, p);
                    free(parts[p].y);
                    free(alone[p]);
                }
                free(scratch);
                free(x);
            }
            for (int p = 0; p < 3; p++) wmat_free(&m[p]);
        }
    }
    syn_pool_free(pool);
}

TEST(kernels_decode_lanes_match_serial)
{
    /* Decode (T = 1) and small batches (up to 32 rows) on a pool cut the rows into one lane per
     * thread, taken in units of 16 rows, with threads stealing units from each other's lanes:
     * with more threads than cores (so that stealing happens), fewer units than threads, and
     * several parts whose units run across part boundaries, every element must come out bit
     * for bit as on one thread. */
    const int K = 256, Rs[3] = {333, 17, 40};
    const int sizes[3] = {2, 3, 8};
    const int Ts[3] = {1, 5, 16};
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++)
        for (int tt = 0; tt < 3; tt++) {
            const int T = Ts[tt];
            if (syn_cpu_kernels_force(isas[i]) != 0) continue;
            for (size_t ti = 0; ti < sizeof all_types / sizeof all_types[0]; ti++) {
                const int type = all_types[ti];
                struct wmat m[3];
                for (int p = 0; p < 3; p++) wmat_make(&m[p], type, Rs[p], K);
                float *x = malloc(sizeof(float) * K * T);
                CHECK(x);
                fill_random(x, (size_t)K * T);
                float *serial[3];
                for (int p = 0; p < 3; p++) serial[p] = run_matmul(NULL, &m[p], x, T);
                for (int si = 0; si < 3; si++) {
                    struct syn_pool *pool = syn_pool_new(sizes[si]);
                    CHECK(pool);
                    const size_t sb = syn_cpu_matmul_scratch_bytes(type, K, T, 8);
                    void *scratch = aligned_alloc(64, (sb + 63) / 64 * 64 + 64);
                    CHECK(scratch);
                    for (int round = 0; round < (T == 1 ? 20 : 5); round++) {
                        struct syn_cpu_mm_part parts[3];
                        for (int p = 0; p < 3; p++) {
                            parts[p] = (struct syn_cpu_mm_part){m[p].data, Rs[p],
                                                                malloc(sizeof(float) * Rs[p] * T)};
                            CHECK(parts[p].y);
                        }
                        /* one part alone (a small R: fewer units than threads), then all three */
                        syn_cpu_matmul(pool, m[1].data, type, Rs[1], K, x, T, parts[1].y, scratch);
                        if (memcmp(parts[1].y, serial[1], sizeof(float) * Rs[1] * T) != 0)
                            FAIL("%s %s: %d rows, T = %d, on %d threads differ from one thread",
                                 isas[i], syn_dtype_name(type), Rs[1], T, sizes[si]);
                        syn_cpu_matmul_multi(pool, type, K, x, T, parts, 3, scratch);
                        for (int p = 0; p < 3; p++) {
                            if (memcmp(parts[p].y, serial[p], sizeof(float) * Rs[p] * T) != 0)
                                FAIL(
                                    "%s %s: part %d, T = %d, on %d threads differs from one thread",
                                    isas[i], syn_dtype_name(type), p, T, sizes[si]);
                            free(parts[p].y);
                        }
                    }
                    free(scratch);
                    syn_pool_free(pool);
                }
                for (int p = 0; p < 3; p++) {
                    free(serial[p]);
                    wmat_free(&m[p]);
                }
                free(x);
            }
        }
}

/* ---- thread pool ---- */

/* A region's bookkeeping: how often each task ran, and on which threads. */
struct count_ctx {
    _Atomic int *hits;        /* per task */
    _Atomic int bad_thread;   /* set if a thread number was out of range */
    int pool_size;            /* valid thread numbers are 0..pool_size-1 */
    struct syn_pool *nest;    /* if set, each task starts a nested region on it */
    _Atomic int *nested_hits; /* per task of the nested regions */
};

static void count_task(void *ctx, int task, int thread)
{
    struct count_ctx *c = ctx;
    atomic_fetch_add(&c->hits[task], 1);
    if (thread < 0 || thread >= c->pool_size) atomic_store(&c->bad_thread, 1);
    if (c->nest) {
        struct count_ctx inner = {c->nested_hits, 0, c->pool_size, NULL, NULL};
        syn_pool_run(c->nest, count_task, &inner, 5);
        if (atomic_load(&inner.bad_thread)) atomic_store(&c->bad_thread, 1);
    }
}

static void check_pool_runs_every_task_once(struct syn_pool *pool, int size, int rounds)
{
    _Atomic int hits[200];
    for (int round = 0; round < rounds; round++) {
        int n = 1 + (round * 37) % 200;
        for (int i = 0; i < n; i++) atomic_init(&hits[i], 0);
        struct count_ctx c = {hits, 0, size, NULL, NULL};
        syn_pool_run(pool, count_task, &c, n);
        for (int i = 0; i < n; i++)
            if (atomic_load(&hits[i]) != 1)
                FAIL("round %d: task %d of %d ran %d times", round, i, n, atomic_load(&hits[i]));
        CHECK(!atomic_load(&c.bad_thread));
    }
}

TEST(pool_runs_every_task_exactly_once)
{
    for (int size = 1; size <= 4; size++) {
        struct syn_pool *pool = syn_pool_new(size);
        CHECK(pool);
        CHECK_EQ_INT(syn_pool_size(pool), size);
        check_pool_runs_every_task_once(pool, size, 2000);
        syn_pool_free(pool);
    }
}

TEST(pool_null_and_empty_regions)
{
    _Atomic int hits[10];
    for (int i = 0; i < 10; i++) atomic_init(&hits[i], 0);
    struct count_ctx c = {hits, 0, 1, NULL, NULL};
    syn_pool_run(NULL, count_task, &c, 10);
    for (int i = 0; i < 10; i++) CHECK_EQ_INT(atomic_load(&hits[i]), 1);
    CHECK_EQ_INT(syn_pool_size(NULL), 1);
    struct syn_pool *pool = syn_pool_new(2);
    syn_pool_run(pool, count_task, &c, 0);
    syn_pool_run(pool, count_task, &c, -3);
    for (int i = 0; i < 10; i++) CHECK_EQ_INT(atomic_load(&hits[i]), 1);
    syn_pool_free(pool);
    syn_pool_free(NULL);
}

TEST(pool_default_size_is_online_cpus)
{
    struct syn_pool *pool = syn_pool_new(0);
    CHECK(pool);
    CHECK_EQ_INT(syn_pool_size(pool), sysconf(_SC_NPROCESSORS_ONLN));
    syn_pool_free(pool);
}

TEST(pool_nested_region_runs_serially)
{
    /* A task that starts a region on its own pool gets it run on its own thread (no deadlock),
     * and every inner task still runs exactly once per outer task. */
    struct syn_pool *pool = syn_pool_new(3);
    _Atomic int hits[16], nested[5];
    for (int i = 0; i < 16; i++) atomic_init(&hits[i], 0);
    for (int i = 0; i < 5; i++) atomic_init(&nested[i], 0);
    struct count_ctx c = {hits, 0, 3, pool, nested};
    syn_pool_run(pool, count_task, &c, 16);
    for (int i = 0; i < 16; i++) CHECK_EQ_INT(atomic_load(&hits[i]), 1);
    for (int i = 0; i < 5; i++) CHECK_EQ_INT(atomic_load(&nested[i]), 16);
    CHECK(!atomic_load(&c.bad_thread));
    syn_pool_free(pool);
}

TEST(pool_wakes_after_sleeping)
{
    /* Idle longer than the spin phase so the workers sleep, then run again, several times. */
    struct syn_pool *pool = syn_pool_new(2);
    for (int i = 0; i < 5; i++) {
        usleep(20000);
        check_pool_runs_every_task_once(pool, 2, 200);
    }
    syn_pool_free(pool);
}

/* Work split between tasks must show up: with 2 threads and tasks that wait, both run. */
struct who_ctx {
    _Atomic int seen[2]; /* per thread number: ran at least one task */
};

static void who_task(void *ctx, int task, int thread)
{
    (void)task;
    struct who_ctx *c = ctx;
    atomic_store(&c->seen[thread], 1);
    usleep(2000);
}

TEST(pool_uses_its_workers)
{
    struct syn_pool *pool = syn_pool_new(2);
    struct who_ctx c;
    atomic_init(&c.seen[0], 0);
    atomic_init(&c.seen[1], 0);
    syn_pool_run(pool, who_task, &c, 40);
    CHECK(atomic_load(&c.seen[0]));
    CHECK(atomic_load(&c.seen[1]));
    syn_pool_free(pool);
}

TEST(pool_create_and_free_repeatedly)
{
    for (int i = 0; i < 50; i++) {
        struct syn_pool *pool = syn_pool_new(1 + i % 4);
        CHECK(pool);
        if (i % 2) check_pool_runs_every_task_once(pool, 1 + i % 4, 100);
        syn_pool_free(pool);
    }
}

/* ---- bandwidth ---- */

TEST(membw_reports_a_plausible_figure)
{
    struct syn_pool *pool = syn_pool_new(2);
    double gbs = syn_membw_read_gbs(pool, (size_t)64 << 20, 2);
    /* Anything from a slow VM to a many-channel server, but positive and finite. */
    CHECK(gbs > 0.1 && gbs < 10000.0);
    CHECK(syn_membw_read_gbs(pool, 1 << 20, 0) < 0);
    syn_pool_free(pool);
}
