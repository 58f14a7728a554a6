/*
 * The CPU backend: a Llama forward pass over one planned step (engine_impl.h) on a persistent
 * thread pool. Matrix products go through syn_cpu_matmul (kernels.c) with all of the step's
 * tokens at once, so each weight is read once per step whatever the batch; attention runs per
 * (token, head) over the sequence's paged K/V; the small element-wise ops run per row.
 *
 * Batch invariance: every per-token computation here reads only that token's row (norms, RoPE,
 * SwiGLU) or its own sequence's cache (attention), in a fixed order, and the matmul kernels
 * promise the same for their rows; so a token's logits do not depend on its batch.
 *
 * KV layout: block-major, one pool of f32, block b holding every layer's K then V for its
 * block_tokens positions: ((b * n_layer + layer) * 2 + {0:K,1:V}) * block_tokens * kv_dim.
 */
#include "../engine_impl.h"
#include "kernels.h"
#include "threadpool.h"

#include "synapse/log.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define FWD_X86 1
#else
#define FWD_X86 0
#endif

/* Query heads per attention task: a task is a few microseconds of work at short contexts, so
 * one per (token, head) spent as much time handing tasks out as running them at batch 16. The
 * heads of a task that share a K/V head (grouped-query attention) read its K and V once. */
#define ATT_HEADS_PER_TASK 4

struct cpu_state {
    struct syn_pool *pool;
    float *kv;       /* (n_blocks, n_layer, 2, block_tokens, kv_dim) */
    float *x;        /* (T, dim) the residual stream */
    float *xb;       /* (T, max(dim, q_dim)) normed input / attention output */
    float *q;        /* (T, q_dim) */
    float *k;        /* (T, kv_dim) */
    float *v;        /* (T, kv_dim) */
    float *hb;       /* (T, ffn_dim) gate, then silu(gate) * up */
    float *hb2;      /* (T, max(ffn_dim, dim)) up; the attention projection before that */
    float *xo;       /* (max_logit_rows, dim) rows that need logits */
    float *rope_cos; /* (n_ctx, head_dim/2) */
    float *rope_sin; /* (n_ctx, head_dim/2) */
    float *att;      /* (n_threads, ATT_HEADS_PER_TASK, n_ctx) attention scores per thread */
    void *scratch;   /* matmul scratch, 64-byte aligned */
    int n_threads;
};

/* ---- init / release ---- */

static void pick_attention_isa(void);

static void *alloc_aligned(size_t bytes)
{
    void *p = NULL;
    if (bytes == 0) bytes = 64;
    if (posix_memalign(&p, 64, (bytes + 63) & ~(size_t)63) != 0) return NULL;
    return p;
}

static void cpu_release(struct syn_engine *e)
{
    struct cpu_state *s = e->backend_state;
    if (!s) return;
    syn_pool_free(s->pool);
    free(s->kv);
    free(s->x);
    free(s->xb);
    free(s->q);
    free(s->k);
    free(s->v);
    free(s->hb);
    free(s->hb2);
    free(s->xo);
    free(s->rope_cos);
    free(s->rope_sin);
    free(s->att);
    free(s->scratch);
    free(s);
    e->backend_state = NULL;
}

/* Fills the RoPE tables, with Llama-3 or linear scaling and per-frequency divisors applied
 * (engine_impl.h; the CUDA backend uploads the same tables). */
void syn_rope_tables(const struct syn_model *m, int n_ctx, float *cs, float *sn)
{
    const struct syn_hparams *hp = &m->hp;
    const int half = hp->head_dim / 2;
    for (int i = 0; i < half; i++) {
        double freq = pow((double)hp->rope_theta, -2.0 * i / hp->head_dim);
        if (m->rope_freq_factors) freq /= (double)m->rope_freq_factors[i];
        if (hp->rope_scaling == SYN_ROPE_SCALING_LINEAR) freq /= (double)hp->rope_factor;
        if (hp->rope_scaling == SYN_ROPE_SCALING_LLAMA3) {
            double lo = hp->rope_low_freq_factor, hi = hp->rope_high_freq_factor;
            double orig = hp->rope_orig_ctx, f = hp->rope_factor;
            double wavelen = 2.0 * M_PI / freq;
            if (wavelen > orig / lo) {
                freq /= f;
            } else if (wavelen >= orig / hi) {
                double smooth = (orig / wavelen - lo) / (hi - lo);
                freq = (1.0 - smooth) * freq / f + smooth * freq;
            }
        }
        for (int p = 0; p < n_ctx; p++) {
            double a = (double)p * freq;
            cs[(size_t)p * half + i] = (float)cos(a);
            sn[(size_t)p * half + i] = (float)sin(a);
        }
    }
}

static int cpu_init(struct syn_engine *e, char *err, size_t errlen)
{
    const struct syn_hparams *hp = &e->model.hp;
    struct cpu_state *s = calloc(1, sizeof *s);
    if (!s) return syn_seterr(err, errlen, SYN_ENOMEM, "cpu: out of memory");
    e->backend_state = s;
    s->pool = syn_pool_new(e->n_threads);
    if (!s->pool) {
        cpu_release(e);
        return syn_seterr(err, errlen, SYN_ENOMEM, "cpu: cannot start the thread pool");
    }
    s->n_threads = syn_pool_size(s->pool);
    const size_t T = (size_t)e->max_batch_tokens;
    const size_t qd = (size_t)hp->n_head * hp->head_dim, kvd = (size_t)hp->n_kv_head * hp->head_dim;
    const size_t wide = qd > (size_t)hp->dim ? qd : (size_t)hp->dim;
    const size_t half = (size_t)hp->head_dim / 2;
    size_t kv_floats = (size_t)e->n_blocks * hp->n_layer * 2 * (size_t)e->block_tokens * kvd;

    /* the largest matmul scratch any weight needs at T rows */
    size_t scratch = 0;
    for (int l = 0; l < hp->n_layer; l++) {
        const struct syn_layer *L = &e->model.layers[l];
        const struct syn_weight *lw[] = {&L->wq,     &L->wk,   &L->wv,    &L->wo,
                                         &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof lw / sizeof lw[0]; i++) {
            size_t b = syn_cpu_matmul_scratch_bytes(lw[i]->type, lw[i]->cols, (int)T, s->n_threads);
            if (b > scratch) scratch = b;
        }
    }
    size_t b = syn_cpu_matmul_scratch_bytes(e->model.output.type, hp->dim, e->max_logit_rows,
                                            s->n_threads);
    if (b > scratch) scratch = b;

    s->kv = alloc_aligned(kv_floats * sizeof(float));
    s->x = alloc_aligned(T * hp->dim * sizeof(float));
    s->xb = alloc_aligned(T * wide * sizeof(float));
    s->q = alloc_aligned(T * qd * sizeof(float));
    s->k = alloc_aligned(T * kvd * sizeof(float));
    s->v = alloc_aligned(T * kvd * sizeof(float));
    s->hb = alloc_aligned(T * (size_t)hp->ffn_dim * sizeof(float));
    /* hb2 also takes the attention projection (T, dim) */
    const size_t ffw =
        (size_t)hp->ffn_dim > (size_t)hp->dim ? (size_t)hp->ffn_dim : (size_t)hp->dim;
    s->hb2 = alloc_aligned(T * ffw * sizeof(float));
    s->xo = alloc_aligned((size_t)e->max_logit_rows * hp->dim * sizeof(float));
    s->rope_cos = alloc_aligned((size_t)e->n_ctx * half * sizeof(float));
    s->rope_sin = alloc_aligned((size_t)e->n_ctx * half * sizeof(float));
    s->att =
        alloc_aligned((size_t)s->n_threads * ATT_HEADS_PER_TASK * (size_t)e->n_ctx * sizeof(float));
    s->scratch = alloc_aligned(scratch);
    if (!s->kv || !s->x || !s->xb || !s->q || !s->k || !s->v || !s->hb || !s->hb2 || !s->xo ||
        !s->rope_cos || !s->rope_sin || !s->att || !s->scratch) {
        cpu_release(e);
        return syn_seterr(err, errlen, SYN_ENOMEM,
                          "cpu: out of memory for the KV cache (%zu MiB) and step buffers",
                          kv_floats * sizeof(float) >> 20);
    }
    syn_rope_tables(&e->model, e->n_ctx, s->rope_cos, s->rope_sin);
    pick_attention_isa();
    syn_info("cpu", "%d threads, kernels %s", s->n_threads, syn_cpu_kernels_isa());
    return SYN_OK;
}

/* ---- attention's vector pieces ----
 * A dot product and an axpy over one head (head_dim floats), in the widest instruction set the
 * CPU has, chosen once per process: the reduction order depends only on head_dim, so a token's
 * attention does not depend on its batch. */

static float dot_scalar(const float *a, const float *b, int n)
{
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static void axpy_scalar(float *y, float a, const float *x, int n)
{
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

#if FWD_X86
__attribute__((target("avx512f"))) static float dot_avx512(const float *a, const float *b, int n)
{
    __m512 acc = _mm512_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16)
        acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc);
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        acc =
            _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

__attribute__((target("avx512f"))) static void axpy_avx512(float *y, float a, const float *x, int n)
{
    __m512 va = _mm512_set1_ps(a);
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i,
                         _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(
            y + i, m,
            _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
    }
}

__attribute__((target("avx2,fma"))) static float dot_avx2(const float *a, const float *b, int n)
{
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
    float s = _mm_cvtss_f32(h);
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

__attribute__((target("avx2,fma"))) static void axpy_avx2(float *y, float a, const float *x, int n)
{
    __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i,
                         _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}
#endif

/* g[i] = silu(g[i]) * u[i]. */
static void swiglu_scalar(float *g, const float *u, int n)
{
    for (int i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

#if FWD_X86
/* exp(v) for 16 floats: v = n ln2 + r with |r| <= ln2 / 2 (ln2 split in two so that r is
 * exact to f32 precision), e^r by its Taylor polynomial to degree 7 (error under 1e-7
 * relative), times 2^n by scalef, which gives inf above ~88.7 and 0 below ~-103 as expf does.
 * Within 2 ulp of expf; a given input always gives the same output, so batch invariance holds. */
__attribute__((target("avx512f"))) static __m512 exp16(__m512 v)
{
    const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
    const __m512 ln2_hi = _mm512_set1_ps(0.693145751953125f);
    const __m512 ln2_lo = _mm512_set1_ps(1.428606765330187045e-06f);
    v = _mm512_max_ps(_mm512_min_ps(v, _mm512_set1_ps(128.0f)), _mm512_set1_ps(-128.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(v, log2e), _MM_FROUND_TO_NEAREST_INT);
    __m512 r = _mm512_fnmadd_ps(n, ln2_hi, v);
    r = _mm512_fnmadd_ps(n, ln2_lo, r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* Every element, the last partial vector included (masked), goes through exp16, so an
 * element's result never depends on where the row's chunks were cut. */
__attribute__((target("avx512f"))) static void swiglu_avx512(float *g, const float *u, int n)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 x = _mm512_maskz_loadu_ps(m, g + i);
        __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), x));
        __m512 y =
            _mm512_mul_ps(_mm512_div_ps(x, _mm512_add_ps(one, e)), _mm512_maskz_loadu_ps(m, u + i));
        _mm512_mask_storeu_ps(g + i, m, y);
    }
}
#endif

#if FWD_X86
/* out = x * (1 / sqrt(mean(x^2) + eps)) * w. The sum of squares runs in 16 lanes (element i
 * in lane i % 16, the last partial vector masked) and is folded by _mm512_reduce_add_ps: an
 * order fixed by n alone, so a row's result does not depend on its batch. The scaling is
 * (x * scale) * w element by element, as in the scalar version. */
__attribute__((target("avx512f"))) static void rmsnorm_avx512(float *out, const float *x,
                                                              const float *w, int n, float eps)
{
    __m512 acc = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        acc = _mm512_fmadd_ps(v, v, acc);
    }
    const float ss = _mm512_reduce_add_ps(acc);
    const __m512 scale = _mm512_set1_ps(1.0f / sqrtf(ss / (float)n + eps));
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), scale);
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, w + i)));
    }
}
#endif

static void rmsnorm_scalar(float *out, const float *x, const float *w, int n, float eps)
{
    float ss = 0.0f;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    float scale = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

static float (*g_dot)(const float *, const float *, int) = dot_scalar;
static void (*g_axpy)(float *, float, const float *, int) = axpy_scalar;
static void (*g_swiglu)(float *, const float *, int) = swiglu_scalar;
static void (*g_rmsnorm)(float *, const float *, const float *, int, float) = rmsnorm_scalar;

static void pick_attention_isa(void)
{
#if FWD_X86
    __builtin_cpu_init();
    const char *isa = syn_cpu_kernels_isa();
    if (!strcmp(isa, "avx512") && __builtin_cpu_supports("avx512f")) {
        g_dot = dot_avx512;
        g_axpy = axpy_avx512;
        g_swiglu = swiglu_avx512;
        g_rmsnorm = rmsnorm_avx512;
    } else if (strcmp(isa, "scalar") != 0 && __builtin_cpu_supports("avx2") &&
               __builtin_cpu_supports("fma")) {
        g_dot = dot_avx2;
        g_axpy = axpy_avx2;
    }
#endif
}

/* ---- element-wise pieces, one row per call ---- */

static void rmsnorm_row(float *out, const float *x, const float *w, int n, float eps)
{
    g_rmsnorm(out, x, w, n, eps);
}

/* Rotates each head of vec (n_heads * head_dim) for position pos. */
static void rope_row(float *vec, int n_heads, int head_dim, int neox, const float *cs,
                     const float *sn)
{
    const int half = head_dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = vec + (size_t)h * head_dim;
        for (int i = 0; i < half; i++) {
            int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
            float x0 = v[a], x1 = v[b];
            v[a] = x0 * cs[i] - x1 * sn[i];
            v[b] = x0 * sn[i] + x1 * cs[i];
        }
    }
}

/* Work shared by the parallel regions of one step. */
struct step_ctx {
    struct syn_engine *e;
    struct cpu_state *s;
    const struct syn_step_plan *plan;
    int layer;
};

static float *kv_slot(const struct syn_engine *e, const struct cpu_state *s, int seq, int pos,
                      int layer, int which)
{
    const struct syn_hparams *hp = &e->model.hp;
    const size_t kvd = (size_t)hp->n_kv_head * hp->head_dim;
    int32_t block = e->seqs[seq].blocks[pos / e->block_tokens];
    size_t base = (((size_t)block * hp->n_layer + layer) * 2 + which) * e->block_tokens;
    return s->kv + (base + (size_t)(pos % e->block_tokens)) * kvd;
}

/* Rows [task*ROWS, ...): embedding lookup. */
#define ROWS_PER_TASK 4

/* Up to this many elements (rows x dim) the caller normalises the rows itself: a parallel region
 * costs more than the work (an AVX-512 row of 2048 takes well under a microsecond). */
#define SERIAL_NORM_ELEMS 65536

static int n_row_tasks(int T)
{
    return (T + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
}

static void task_embed(void *arg, int task, int thread)
{
    (void)thread;
    struct step_ctx *c = arg;
    const struct syn_model *m = &c->e->model;
    const int dim = m->hp.dim;
    const size_t row_bytes = syn_dtype_row_bytes(m->tok_embd.type, (uint64_t)dim);
    for (int t = task * ROWS_PER_TASK; t < c->plan->n_tokens && t < (task + 1) * ROWS_PER_TASK;
         t++) {
        const uint8_t *row =
            (const uint8_t *)m->tok_embd.data + (size_t)c->plan->tokens[t] * row_bytes;
        syn_dequantize_row(m->tok_embd.type, row, c->s->x + (size_t)t * dim, (uint64_t)dim);
    }
}

static void task_attn_norm(void *arg, int task, int thread)
{
    (void)thread;
    struct step_ctx *c = arg;
    const struct syn_hparams *hp = &c->e->model.hp;
    const float *w = c->e->model.layers[c->layer].attn_norm;
    for (int t = task * ROWS_PER_TASK; t < c->plan->n_tokens && t < (task + 1) * ROWS_PER_TASK; t++)
        rmsnorm_row(c->s->xb + (size_t)t * hp->dim, c->s->x + (size_t)t * hp->dim, w, hp->dim,
                    hp->norm_eps);
}

static void task_ffn_norm(void *arg, int task, int thread)
{
    (void)thread;
    struct step_ctx *c = arg;
    const struct syn_hparams *hp = &c->e->model.hp;
    const float *w = c->e->model.layers[c->layer].ffn_norm;
    for (int t = task * ROWS_PER_TASK; t < c->plan->n_tokens && t < (task + 1) * ROWS_PER_TASK; t++)
        rmsnorm_row(c->s->xb + (size_t)t * hp->dim, c->s->x + (size_t)t * hp->dim, w, hp->dim,
                    hp->norm_eps);
}

/* Biases, RoPE on q and k, then k and v into the cache at each token's (seq, pos). */
static void task_rope_store(void *arg, int task, int thread)
{
    (void)thread;
    struct step_ctx *c = arg;
    const struct syn_engine *e = c->e;
    const struct syn_hparams *hp = &e->model.hp;
    const struct syn_layer *L = &e->model.layers[c->layer];
    struct cpu_state *s = c->s;
    const int qd = hp->n_head * hp->head_dim, kvd = hp->n_kv_head * hp->head_dim;
    const int half = hp->head_dim / 2;
    for (int t = task * ROWS_PER_TASK; t < c->plan->n_tokens && t < (task + 1) * ROWS_PER_TASK;
         t++) {
        float *q = s->q + (size_t)t * qd, *k = s->k + (size_t)t * kvd, *v = s->v + (size_t)t * kvd;
        if (L->bq) {
            for (int i = 0; i < qd; i++) q[i] += L->bq[i];
            for (int i = 0; i < kvd; i++) k[i] += L->bk[i];
            for (int i = 0; i < kvd; i++) v[i] += L->bv[i];
        }
        int pos = c->plan->pos[t];
        const float *cs = s->rope_cos + (size_t)pos * half, *sn = s->rope_sin + (size_t)pos * half;
        rope_row(q, hp->n_head, hp->head_dim, hp->rope_neox, cs, sn);
        rope_row(k, hp->n_kv_head, hp->head_dim, hp->rope_neox, cs, sn);
        int seq = c->plan->seq[t];
        memcpy(kv_slot(e, s, seq, pos, c->layer, 0), k, sizeof(float) * (size_t)kvd);
        memcpy(kv_slot(e, s, seq, pos, c->layer, 1), v, sizeof(float) * (size_t)kvd);
    }
}

static int n_att_chunks(const struct syn_hparams *hp)
{
    return (hp->n_head + ATT_HEADS_PER_TASK - 1) / ATT_HEADS_PER_TASK;
}

/* Where heads h .. h + nh - 1 of token t (sharing K/V head g) find their inputs. */
struct att_heads {
    const float *q;        /* (nh, head_dim): the heads' queries, one after the other */
    float *out;            /* (nh, head_dim): their outputs */
    float *att;            /* (nh, n_ctx): their scores, then weights */
    int n_ctx;             /* stride of att */
    const float *kv;       /* the KV pool */
    const int32_t *blocks; /* the sequence's block table */
    int bt, kvd, pos;      /* block tokens, K/V row width, the token's position */
    size_t block_stride;   /* floats per block */
    size_t k_off, v_off;   /* head g's K and V within a block (layer included) */
    float scale;           /* 1 / sqrt(head_dim) */
};

#if FWD_X86
/* nh heads (1, 2 or 4) of head_dim = 16 * nc (nc <= 8) that share a K/V head, on AVX-512: each
 * K and V row is loaded once for all of them, and the queries and the outputs stay in registers
 * across positions (the generic path calls a dot and an axpy per head and position, and its
 * axpy reloads and stores the output each time, a chain through memory). For every head the
 * operations and their order are dot_avx512's and axpy_avx512's, so the results are the same
 * bit for bit. nc and nh are constants at each call (see att_heads_avx512), so loops over them
 * unroll. */
__attribute__((target("avx512f"), always_inline)) static inline void
att_heads_avx512_n(const struct att_heads *a, const int nc, const int nh)
{
    /* locals, not a->: the score stores could alias the struct for the compiler */
    const float *const kv = a->kv, *const q = a->q;
    const int32_t *const blocks = a->blocks;
    const int bt = a->bt, kvd = a->kvd, pos = a->pos, hd = 16 * nc;
    const size_t n_ctx = (size_t)a->n_ctx, stride = a->block_stride;
    const size_t k_off = a->k_off, v_off = a->v_off;
    const float scale = a->scale;
    float *const att = a->att, *const out = a->out;
    __m512 qv[4][8], ov[4][8];
    float mx[4], inv[4];
#pragma GCC unroll 4
    for (int h = 0; h < nh; h++) {
#pragma GCC unroll 8
        for (int i = 0; i < nc; i++) qv[h][i] = _mm512_loadu_ps(q + hd * h + 16 * i);
        mx[h] = -INFINITY;
    }
    for (int b = 0, j = 0; j <= pos; b++) {
        const float *k = kv + (size_t)blocks[b] * stride + k_off;
        for (int r = 0; r < bt && j <= pos; r++, j++, k += kvd) {
            __m512 kr[8];
#pragma GCC unroll 8
            for (int i = 0; i < nc; i++) kr[i] = _mm512_loadu_ps(k + 16 * i);
#pragma GCC unroll 4
            for (int h = 0; h < nh; h++) {
                __m512 acc = _mm512_setzero_ps();
#pragma GCC unroll 8
                for (int i = 0; i < nc; i++) acc = _mm512_fmadd_ps(kr[i], qv[h][i], acc);
                float d = _mm512_reduce_add_ps(acc) * scale;
                att[h * n_ctx + (size_t)j] = d;
                if (d > mx[h]) mx[h] = d;
            }
        }
    }
    for (int h = 0; h < nh; h++) {
        float *w = att + h * n_ctx, sum = 0.0f;
        for (int j = 0; j <= pos; j++) {
            w[j] = expf(w[j] - mx[h]);
            sum += w[j];
        }
        inv[h] = 1.0f / sum;
    }
#pragma GCC unroll 4
    for (int h = 0; h < nh; h++)
#pragma GCC unroll 8
        for (int i = 0; i < nc; i++) ov[h][i] = _mm512_setzero_ps();
    for (int b = 0, j = 0; j <= pos; b++) {
        const float *v = kv + (size_t)blocks[b] * stride + v_off;
        for (int r = 0; r < bt && j <= pos; r++, j++, v += kvd) {
            __m512 vr[8];
#pragma GCC unroll 8
            for (int i = 0; i < nc; i++) vr[i] = _mm512_loadu_ps(v + 16 * i);
#pragma GCC unroll 4
            for (int h = 0; h < nh; h++) {
                const __m512 w = _mm512_set1_ps(att[h * n_ctx + (size_t)j] * inv[h]);
#pragma GCC unroll 8
                for (int i = 0; i < nc; i++) ov[h][i] = _mm512_fmadd_ps(w, vr[i], ov[h][i]);
            }
        }
    }
#pragma GCC unroll 4
    for (int h = 0; h < nh; h++)
#pragma GCC unroll 8
        for (int i = 0; i < nc; i++) _mm512_storeu_ps(out + hd * h + 16 * i, ov[h][i]);
}

static int g_att_generic; /* syn_cpu_attention_force_generic */

/* The most heads one att_heads_avx512 call takes at this head_dim (its outputs must fit the
 * registers), 0 when the AVX-512 path does not apply. */
static int att_avx512_max_heads(int hd)
{
    if (g_att_generic || g_dot != dot_avx512 || hd % 16 || hd > 128) return 0;
    return hd <= 64 ? 4 : 2;
}

__attribute__((target("avx512f"))) static void att_heads_avx512(const struct att_heads *a, int hd,
                                                                int nh)
{
#define ATT_CASE(nc, n)                                                                            \
    case (nc)*8 + (n):                                                                             \
        att_heads_avx512_n(a, nc, n);                                                              \
        break
#define ATT_CASES(nc)                                                                              \
    ATT_CASE(nc, 1);                                                                               \
    ATT_CASE(nc, 2);                                                                               \
    ATT_CASE(nc, 4)
    switch (hd / 16 * 8 + nh) {
        ATT_CASES(1);
        ATT_CASES(2);
        ATT_CASES(3);
        ATT_CASES(4);
        ATT_CASE(5, 1);
        ATT_CASE(5, 2);
        ATT_CASE(6, 1);
        ATT_CASE(6, 2);
        ATT_CASE(7, 1);
        ATT_CASE(7, 2);
        ATT_CASE(8, 1);
        ATT_CASE(8, 2);
    default:
        abort(); /* att_avx512_max_heads and the caller keep to the cases above */
    }
#undef ATT_CASES
#undef ATT_CASE
}
#endif

void syn_cpu_attention_force_generic(int on)
{
#if FWD_X86
    g_att_generic = on;
#else
    (void)on;
#endif
}

/* Heads h .. h + nh - 1 of token t, which share one K/V head: softmax(q k^T / sqrt(d)) v over
 * positions 0..pos of the token's sequence, block by block. */
static void attention_heads(struct step_ctx *c, int t, int h, int nh, int thread)
{
    const struct syn_engine *e = c->e;
    const struct syn_hparams *hp = &e->model.hp;
    struct cpu_state *s = c->s;
    const int hd = hp->head_dim, qd = hp->n_head * hd, kvd = hp->n_kv_head * hd;
    const int g = h / (hp->n_head / hp->n_kv_head);
    const int bt = e->block_tokens;
    const size_t layer_off = (size_t)c->layer * 2 * bt * kvd;
    struct att_heads a = {
        .q = s->q + (size_t)t * qd + (size_t)h * hd,
        .out = s->xb + (size_t)t * qd + (size_t)h * hd,
        .att = s->att + (size_t)thread * ATT_HEADS_PER_TASK * e->n_ctx,
        .n_ctx = e->n_ctx,
        .kv = s->kv,
        .blocks = e->seqs[c->plan->seq[t]].blocks,
        .bt = bt,
        .kvd = kvd,
        .pos = c->plan->pos[t],
        .block_stride = (size_t)hp->n_layer * 2 * bt * kvd,
        .k_off = layer_off + (size_t)g * hd,
        .v_off = layer_off + (size_t)bt * kvd + (size_t)g * hd,
        .scale = 1.0f / sqrtf((float)hd),
    };
#if FWD_X86
    const int most = att_avx512_max_heads(hd);
    if (most) {
        for (int done = 0; done < nh;) {
            int n = nh - done >= 4 && most >= 4 ? 4 : nh - done >= 2 ? 2 : 1;
            struct att_heads part = a;
            part.q += (size_t)done * hd;
            part.out += (size_t)done * hd;
            att_heads_avx512(&part, hd, n);
            done += n;
        }
        return;
    }
#endif
    for (int k = 0; k < nh; k++) {
        const float *q = a.q + (size_t)k * hd;
        float *att = a.att, *out = a.out + (size_t)k * hd;
        float mx = -INFINITY;
        for (int j = 0; j <= a.pos; j++) {
            const float *kr =
                a.kv + (size_t)a.blocks[j / bt] * a.block_stride + a.k_off + (size_t)(j % bt) * kvd;
            float d = g_dot(q, kr, hd) * a.scale;
            att[j] = d;
            if (d > mx) mx = d;
        }
        float sum = 0.0f;
        for (int j = 0; j <= a.pos; j++) {
            att[j] = expf(att[j] - mx);
            sum += att[j];
        }
        const float inv = 1.0f / sum;
        for (int i = 0; i < hd; i++) out[i] = 0.0f;
        for (int j = 0; j <= a.pos; j++) {
            const float *v =
                a.kv + (size_t)a.blocks[j / bt] * a.block_stride + a.v_off + (size_t)(j % bt) * kvd;
            g_axpy(out, att[j] * inv, v, hd);
        }
    }
}

/* Heads [chunk * ATT_HEADS_PER_TASK, ...) of one token, those sharing a K/V head together. */
static void task_attention(void *arg, int task, int thread)
{
    struct step_ctx *c = arg;
    const struct syn_hparams *hp = &c->e->model.hp;
    const int nc = n_att_chunks(hp), t = task / nc, h0 = task % nc * ATT_HEADS_PER_TASK;
    const int group = hp->n_head / hp->n_kv_head;
    const int end = h0 + ATT_HEADS_PER_TASK < hp->n_head ? h0 + ATT_HEADS_PER_TASK : hp->n_head;
    for (int h = h0; h < end;) {
        int n = 1;
        while (h + n < end && (h + n) / group == h / group) n++;
        attention_heads(c, t, h, n, thread);
        h += n;
    }
}

/* SwiGLU in chunks of SWIGLU_CHUNK columns (a multiple of 16) of one row, so that a single
 * token's 5632 columns still spread over the threads. */
#define SWIGLU_CHUNK 1024

static int n_swiglu_chunks(const struct syn_engine *e)
{
    return (e->model.hp.ffn_dim + SWIGLU_CHUNK - 1) / SWIGLU_CHUNK;
}

static void task_swiglu(void *arg, int task, int thread)
{
    (void)thread;
    struct step_ctx *c = arg;
    const int f = c->e->model.hp.ffn_dim, nc = n_swiglu_chunks(c->e);
    const int t = task / nc, i0 = task % nc * SWIGLU_CHUNK;
    const int n = f - i0 < SWIGLU_CHUNK ? f - i0 : SWIGLU_CHUNK;
    g_swiglu(c->s->hb + (size_t)t * f + i0, c->s->hb2 + (size_t)t * f + i0, n);
}

static void task_final_norm(void *arg, int task, int thread)
{
    (void)thread;
    struct step_ctx *c = arg;
    const struct syn_hparams *hp = &c->e->model.hp;
    for (int r = task * ROWS_PER_TASK; r < c->plan->n_out && r < (task + 1) * ROWS_PER_TASK; r++)
        rmsnorm_row(c->s->xo + (size_t)r * hp->dim, c->s->x + (size_t)c->plan->out_idx[r] * hp->dim,
                    c->e->model.output_norm, hp->dim, hp->norm_eps);
}

static void matmul(struct cpu_state *s, const struct syn_weight *w, const float *x, int T, float *y)
{
    syn_cpu_matmul(s->pool, w->data, w->type, w->rows, w->cols, x, T, y, s->scratch);
}

/* Two or three products of the same input x (q, k, v; gate, up) as one parallel region when
 * their weights share a type and width, which all files seen so far do; separately otherwise. */
static void matmul_shared(struct cpu_state *s, const struct syn_weight *const *w, float *const *y,
                          int n, const float *x, int T)
{
    struct syn_cpu_mm_part parts[SYN_CPU_MM_MAX_PARTS];
    int same = 1;
    for (int i = 0; i < n; i++) {
        parts[i] = (struct syn_cpu_mm_part){w[i]->data, w[i]->rows, y[i]};
        if (w[i]->type != w[0]->type || w[i]->cols != w[0]->cols) same = 0;
    }
    if (same) {
        syn_cpu_matmul_multi(s->pool, w[0]->type, w[0]->cols, x, T, parts, n, s->scratch);
        return;
    }
    for (int i = 0; i < n; i++) matmul(s, w[i], x, T, y[i]);
}

static void add_rows(float *x, const float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

/* A row task (ROWS_PER_TASK rows each) over T rows of n elements: serially when small. */
static void run_rows(struct cpu_state *s, syn_pool_fn fn, struct step_ctx *c, int T, int n)
{
    const int rt = n_row_tasks(T);
    if ((size_t)T * (size_t)n <= SERIAL_NORM_ELEMS) {
        for (int i = 0; i < rt; i++) fn(c, i, 0);
        return;
    }
    syn_pool_run(s->pool, fn, c, rt);
}

static int cpu_forward(struct syn_engine *e, const struct syn_step_plan *plan)
{
    struct cpu_state *s = e->backend_state;
    const struct syn_hparams *hp = &e->model.hp;
    const int T = plan->n_tokens;
    struct step_ctx c = {e, s, plan, 0};
    const int rt = n_row_tasks(T);

    syn_pool_run(s->pool, task_embed, &c, rt);
    for (int l = 0; l < hp->n_layer; l++) {
        const struct syn_layer *L = &e->model.layers[l];
        c.layer = l;
        run_rows(s, task_attn_norm, &c, T, hp->dim);
        const struct syn_weight *qkv_w[] = {&L->wq, &L->wk, &L->wv};
        float *const qkv_y[] = {s->q, s->k, s->v};
        matmul_shared(s, qkv_w, qkv_y, 3, s->xb, T);
        syn_pool_run(s->pool, task_rope_store, &c, rt);
        syn_pool_run(s->pool, task_attention, &c, T * n_att_chunks(hp));
        /* the attention output is in xb (T, q_dim); project it into hb2 as scratch, add */
        matmul(s, &L->wo, s->xb, T, s->hb2);
        add_rows(s->x, s->hb2, (size_t)T * hp->dim);

        run_rows(s, task_ffn_norm, &c, T, hp->dim);
        const struct syn_weight *ffn_w[] = {&L->w_gate, &L->w_up};
        float *const ffn_y[] = {s->hb, s->hb2};
        matmul_shared(s, ffn_w, ffn_y, 2, s->xb, T);
        syn_pool_run(s->pool, task_swiglu, &c, T * n_swiglu_chunks(e));
        matmul(s, &L->w_down, s->hb, T, s->xb);
        add_rows(s->x, s->xb, (size_t)T * hp->dim);
    }
    if (plan->n_out > 0) {
        syn_pool_run(s->pool, task_final_norm, &c, n_row_tasks(plan->n_out));
        matmul(s, &e->model.output, s->xo, plan->n_out, plan->logits);
    }
    return SYN_OK;
}

const struct syn_backend syn_backend_cpu = {
    .name = "cpu",
    .init = cpu_init,
    .forward = cpu_forward,
    .release = cpu_release,
};
