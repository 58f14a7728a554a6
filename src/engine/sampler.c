/*
 * Token sampling (see include/synapse/sampler.h). The order of operations follows what
 * OpenAI-compatible servers do: penalties on the raw logits, then greedy or temperature, then the
 * truncations (top-k, min-p, top-p) on the probabilities, then one draw. Log-probabilities are
 * reported from the raw logits, before any of that.
 *
 * What a draw is, exactly (draw_reference spells it out): the candidates are the tokens whose
 * probability is at least a floor (min-p times the largest, and with top-p the cut-off below
 * which no token can be in the nucleus, (1 - top_p) / (n - 1)). When top-k or top-p truncates
 * they are ranked by probability, ties by lower id; top-k keeps the first k, top-p the shortest
 * prefix whose mass (summed in rank order, in double) reaches top_p times that of all it ranks;
 * then the token is the first, in rank order (otherwise in id order), whose running mass passes
 * u times the kept mass, u uniform in [0, 1) from the sampler's own generator.
 *
 * Ranking every candidate and adding in that order costs 0.5-4 ms a row at 32,000 tokens, so the
 * draw takes shortcuts that pick the same token:
 *  - top-k with k <= SEL_MAX: the k best by a heap over one pass (select_top): exactly the
 *    reference's first k, on which the rest of the reference runs as it is (draw_ranked);
 *  - top-p: its nucleus among the SEL_NUCLEUS best, or else found by probability buckets (struct
 *    buckets), where only the bucket holding the cut and the one holding the draw are ranked;
 *  - id order (no truncation, or min-p alone): the block of BLOCK tokens holding the draw from
 *    block masses, then the token by a walk through that block;
 *  - the softmax's sum, whose rounding only matters through the float 1/sum (inverse_sum).
 * These add the same numbers in other orders, so their running masses are only known to within
 * sum_bound (~1e-11 of the total at 32,000 tokens): a shortcut takes a position only where that
 * cannot move it, and hands the draw to the reference otherwise (a limit falling exactly on a
 * running mass, as with many equal probabilities). So a seed draws the tokens it always drew.
 *
 * Determinism: ties are broken by token id, the generator is ours, the arithmetic is ordinary
 * IEEE float and double (no contraction into fused multiply-adds), and the vector kernels give
 * the same bits at every width (they are compiled for AVX-512, AVX2 and the baseline, and the
 * CPU picks one).
 *
 * Greedy (temperature 0) is the first index of the largest logit, found in two vector passes over
 * the logits where they are (argmax_first); only penalties make a copy.
 *
 * This file is compiled in two parts: the sampler, and at its end the vector kernels, which the
 * sampler includes (from this same file) once per vector width; SAMPLER_VW says which part.
 */
#ifndef SAMPLER_VW /* ---- the sampler ---- */

#include "synapse/sampler.h"

#include "synapse/error.h"

#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

enum {
    BLOCK = 256,      /* tokens per block of the id-order draw (scale_blocks) */
    SEL_MAX = 256,    /* top-k up to this many is found by a heap (select_top) */
    SEL_NUCLEUS = 64, /* top-p without top-k first looks for its nucleus among this many */
    NBUCKET = 2048,   /* probability buckets of the other ranked truncations (struct buckets) */
};

struct syn_sampler {
    struct syn_sampling_params p; /* copy of the caller's params */
    int n_vocab;
    int penalise;     /* a penalty is on: accept keeps the history below */
    uint64_t rng[4];  /* xoshiro256** state */
    int32_t *count;   /* (n_vocab) generated occurrences of each token; only when penalise */
    uint8_t *seen;    /* (n_vocab) 1 if the token appeared anywhere (prompt too); idem */
    int32_t *touched; /* (n_vocab) the n_touched tokens with seen set, to apply and clear; idem */
    int n_touched;
    float *work;    /* (n_vocab) penalised logits, then probabilities; not for greedy alone */
    double *blocks; /* (n_vocab / BLOCK + 1) candidate mass of each block; temperature > 0 */
    uint64_t *keys; /* (n_vocab) candidates as rank keys (rank_key); with top-k or top-p */
    int32_t *bucket_count; /* (NBUCKET + 1) struct buckets' counts and masses; with keys */
    double *bucket_mass;
};

struct syn_sampling_params syn_sampling_default_params(void)
{
    struct syn_sampling_params p = {
        .temperature = 1.0f,
        .top_k = 0,
        .top_p = 1.0f,
        .min_p = 0.0f,
        .repetition_penalty = 1.0f,
        .frequency_penalty = 0.0f,
        .presence_penalty = 0.0f,
        .seed = 0,
    };
    return p;
}

int syn_sampling_validate(const struct syn_sampling_params *p, char *err, size_t errlen)
{
    if (!(p->temperature >= 0.0f && p->temperature <= 100.0f))
        return syn_seterr(err, errlen, SYN_EINVAL, "temperature must be in [0, 100], got %g",
                          (double)p->temperature);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return syn_seterr(err, errlen, SYN_EINVAL, "top_p must be in (0, 1], got %g",
                          (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return syn_seterr(err, errlen, SYN_EINVAL, "min_p must be in [0, 1], got %g",
                          (double)p->min_p);
    if (p->top_k < 0)
        return syn_seterr(err, errlen, SYN_EINVAL, "top_k must be >= 0, got %d", p->top_k);
    if (!(p->frequency_penalty >= -2.0f && p->frequency_penalty <= 2.0f))
        return syn_seterr(err, errlen, SYN_EINVAL, "frequency_penalty must be in [-2, 2], got %g",
                          (double)p->frequency_penalty);
    if (!(p->presence_penalty >= -2.0f && p->presence_penalty <= 2.0f))
        return syn_seterr(err, errlen, SYN_EINVAL, "presence_penalty must be in [-2, 2], got %g",
                          (double)p->presence_penalty);
    if (!(p->repetition_penalty > 0.0f && p->repetition_penalty <= 10.0f))
        return syn_seterr(err, errlen, SYN_EINVAL, "repetition_penalty must be in (0, 10], got %g",
                          (double)p->repetition_penalty);
    return SYN_OK;
}

/* ---- random numbers: splitmix64 to seed, xoshiro256** to draw ---- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t next_u64(uint64_t s[4])
{
    uint64_t r = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* Uniform in [0, 1) with 53 bits. */
static double next_double(uint64_t s[4])
{
    return (double)(next_u64(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- lifecycle and history ---- */

void syn_sampler_reset(struct syn_sampler *s, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
    for (int k = 0; k < s->n_touched; k++) {
        s->seen[s->touched[k]] = 0;
        s->count[s->touched[k]] = 0;
    }
    s->n_touched = 0;
}

/* Only what the parameters will use is allocated: a greedy sampler without penalties is the
 * struct alone, which is what makes a sampler per request cheap. */
struct syn_sampler *syn_sampler_new(const struct syn_sampling_params *p, int n_vocab)
{
    if (n_vocab <= 0) return NULL;
    struct syn_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = *p;
    s->n_vocab = n_vocab;
    s->penalise = p->repetition_penalty != 1.0f || p->frequency_penalty != 0.0f ||
                  p->presence_penalty != 0.0f;
    const size_t n = (size_t)n_vocab;
    int fail = 0;
    if (s->penalise) {
        s->count = calloc(n, sizeof *s->count);
        s->seen = calloc(n, 1);
        s->touched = malloc(sizeof *s->touched * n);
        fail |= !s->count || !s->seen || !s->touched;
    }
    if (s->penalise || p->temperature != 0.0f) {
        s->work = malloc(sizeof *s->work * n);
        fail |= !s->work;
    }
    if (p->temperature != 0.0f) {
        s->blocks = malloc(sizeof *s->blocks * (n / BLOCK + 1));
        fail |= !s->blocks;
        if (p->top_k > 0 || p->top_p < 1.0f) {
            s->keys = malloc(sizeof *s->keys * n);
            s->bucket_count = malloc(sizeof *s->bucket_count * (NBUCKET + 1));
            s->bucket_mass = malloc(sizeof *s->bucket_mass * (NBUCKET + 1));
            fail |= !s->keys || !s->bucket_count || !s->bucket_mass;
        }
    }
    if (fail) {
        syn_sampler_free(s);
        return NULL;
    }
    syn_sampler_reset(s, p->seed);
    return s;
}

void syn_sampler_free(struct syn_sampler *s)
{
    if (!s) return;
    free(s->count);
    free(s->seen);
    free(s->touched);
    free(s->work);
    free(s->blocks);
    free(s->keys);
    free(s->bucket_count);
    free(s->bucket_mass);
    free(s);
}

/* Without penalties nothing reads the history, so none is kept. */
void syn_sampler_accept(struct syn_sampler *s, int32_t token, int is_prompt)
{
    if (!s->penalise || token < 0 || token >= s->n_vocab) return;
    if (!s->seen[token]) {
        s->seen[token] = 1;
        s->touched[s->n_touched++] = token;
    }
    if (!is_prompt && s->count[token] < INT32_MAX) s->count[token]++;
}

/* w = logits with the penalties applied to the tokens seen so far (the others are as given). */
static void apply_penalties(struct syn_sampler *s, const float *logits)
{
    const struct syn_sampling_params *p = &s->p;
    float *w = s->work;
    memcpy(w, logits, sizeof *w * (size_t)s->n_vocab);
    for (int k = 0; k < s->n_touched; k++) {
        int i = s->touched[k];
        if (p->repetition_penalty != 1.0f)
            w[i] = w[i] > 0 ? w[i] / p->repetition_penalty : w[i] * p->repetition_penalty;
        if (s->count[i]) {
            w[i] -= (float)s->count[i] * p->frequency_penalty;
            w[i] -= p->presence_penalty;
        }
    }
}

/* ---- log-probabilities of the raw distribution ---- */

static void raw_logprobs(const float *logits, int n, int32_t chosen, float *out_logprob,
                         struct syn_logprob *top, int n_top)
{
    float mx = -INFINITY;
    for (int i = 0; i < n; i++)
        if (logits[i] > mx) mx = logits[i];
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += exp((double)(logits[i] - mx));
    double lse = (double)mx + log(sum);
    if (out_logprob) *out_logprob = (float)((double)logits[chosen] - lse);
    if (n_top <= 0 || !top) return;
    if (n_top > n) n_top = n;
    /* insertion into a small sorted list: n_top is at most a few dozen */
    int have = 0;
    for (int i = 0; i < n; i++) {
        float v = logits[i];
        if (have == n_top && !(v > top[have - 1].logprob)) continue;
        int j = have < n_top ? have++ : have - 1;
        while (j > 0 && top[j - 1].logprob < v) {
            top[j] = top[j - 1];
            j--;
        }
        top[j].token = i;
        top[j].logprob = v;
    }
    for (int i = 0; i < have; i++) top[i].logprob = (float)((double)top[i].logprob - lse);
}

/* ---- vector kernels ----
 * The loops over whole rows are in the kernels part at the end of this file, compiled once per
 * vector width with GCC/Clang vector extensions: 16 floats with AVX-512, 8 with AVX2, 4 otherwise
 * (SSE2, NEON). Each width is the target's own: GCC keeps a vector wider than the target's
 * registers in memory and splits its comparisons into scalars, which made one 16-float source
 * compiled for AVX2 slower than scalar code. */

static uint32_t float_bits(float x)
{
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    return b;
}

/* A candidate: at least the floor, and some probability. */
static inline int is_cand(float w, float floor_p)
{
    return w >= floor_p && w > 0.0f;
}

/* is_cand for a probability's bits: "bits >= cand_bits(floor_p)" (a probability is never
 * negative, so it orders as its bits do, and "> 0" is "bits >= 1"). */
static inline int32_t cand_bits(float floor_p)
{
    int32_t b = (int32_t)float_bits(floor_p);
    return b > 1 ? b : 1;
}

struct kernels {
    int width; /* floats per vector */
    /* The largest of x[0..*end) (NaNs never win) or x0 if nothing is larger; *end = how far the
     * vectors went (the caller does the rest). */
    float (*largest)(const float *x, int n, float x0, int *end);
    /* The first i with x[i] == m, n if none. */
    int (*first_equal)(const float *x, int n, float m);
    /* w[i] = e^((x[i] - mx) inv_t) for x[i] <= mx or NaN (0 below e^-87 and for NaN); returns
     * their sum, added in no particular order (inverse_sum makes it exact); *emax = the
     * largest w[i]. */
    double (*exp_sum)(float *w, const float *x, int n, float mx, float inv_t, float *emax);
    /* w[i] *= scale (w >= 0); then blocks[b] = the mass of the candidates among tokens
     * [b BLOCK, (b + 1) BLOCK), added in no particular order; returns how many there are. */
    int (*scale_blocks)(float *w, int n, float scale, float floor_p, double *blocks);
    /* The first i' >= i from which a vector's worth of w holds a value whose bits are in
     * [lo, hi] (w >= 0, so a range of probabilities), or where fewer than that are left. */
    int (*next_in)(const float *w, int i, int n, int32_t lo, int32_t hi);
};

#define SAMPLER_VW     16
#define SAMPLER_TARGET __attribute__((target("avx512f")))
#include "sampler.c"
#undef SAMPLER_VW
#undef SAMPLER_TARGET
#define SAMPLER_VW     8
#define SAMPLER_TARGET __attribute__((target("avx2")))
#include "sampler.c"
#undef SAMPLER_VW
#undef SAMPLER_TARGET
#define SAMPLER_VW 4
#define SAMPLER_TARGET
#include "sampler.c"
#undef SAMPLER_VW
#undef SAMPLER_TARGET

/* The widest kernels this CPU runs. */
static const struct kernels *widest(void)
{
#if defined(__x86_64__) || defined(__i386__)
    if (__builtin_cpu_supports("avx512f")) return &kernels_16;
    if (__builtin_cpu_supports("avx2")) return &kernels_8;
#endif
    return &kernels_4;
}

/* The kernels in use: the widest, unless syn_sampler_set_vector_width said otherwise. Atomic
 * so that a test's change is seen cleanly; every choice gives the same results. */
static const struct kernels *_Atomic chosen_kernels;

static const struct kernels *kern(void)
{
    const struct kernels *k = atomic_load_explicit(&chosen_kernels, memory_order_relaxed);
    if (!k) {
        k = widest();
        atomic_store_explicit(&chosen_kernels, k, memory_order_relaxed);
    }
    return k;
}

int syn_sampler_set_vector_width(int floats)
{
    const struct kernels *k = widest();
    if (floats > 0 && floats < k->width) k = floats >= 8 ? &kernels_8 : &kernels_4;
    atomic_store_explicit(&chosen_kernels, k, memory_order_relaxed);
    return k->width;
}

/* The first index of the largest value (NaNs never win; index 0 when x[0] is NaN or n == 1):
 * what a scalar "best = x[0]; if (x[i] > best) ..." loop settles on. */
static int32_t argmax_first(const float *x, int n)
{
    if (n <= 1 || x[0] != x[0]) return 0;
    const struct kernels *k = kern();
    int i;
    float m = k->largest(x, n, x[0], &i);
    for (; i < n; i++)
        if (x[i] > m) m = x[i];
    /* a later equal value never replaces the first; -0 and +0 compare equal here as there */
    i = k->first_equal(x, n, m);
    return i < n ? i : 0; /* always < n: m is one of the values */
}

/* The largest non-NaN value, -inf when there is none. */
static float max_of(const float *x, int n)
{
    int i;
    float m = kern()->largest(x, n, -INFINITY, &i);
    for (; i < n; i++)
        if (x[i] > m) m = x[i];
    return m;
}

/* How far two sums of the same `terms` non-negative terms, added in different orders in double,
 * and the products of either with a number in [0, 1], can be apart: each sum is within
 * terms 2^-53 of the exact one (to first order), so 8 (terms + 2) 2^-53 of the total leaves room
 * for both, their products and the rounding of the bound itself. */
static double sum_bound(int terms, double total)
{
    return (double)(terms + 2) * 0x1p-50 * total;
}

/* The softmax's 1/sum as a float, as the sampler has always computed it: the sum of w[0..n) in
 * four lanes (token i into lane i % 4, in id order), then (lane 0 + lane 1) + (lane 2 + lane 3).
 * Only the float 1/sum matters, so `approx` (the same sum added in another order) decides it
 * when every sum within the bound of it gives the same float; otherwise the lanes are added. */
static float inverse_sum(const float *w, int n, double approx)
{
    const double d = sum_bound(n, approx);
    const float a = (float)(1.0 / (approx - d)), b = (float)(1.0 / (approx + d));
    if (a == b) return a;
    double acc[4] = {0, 0, 0, 0};
    for (int i = 0; i < n; i++) acc[i & 3] += w[i];
    return (float)(1.0 / ((acc[0] + acc[1]) + (acc[2] + acc[3])));
}

/* ---- ranking ---- */

/* A candidate's rank as one integer: its probability's bits (a positive float orders as its
 * bits do) above its id's complement, so that a larger key is a higher probability, and among
 * equal probabilities the lower id. */
static inline uint64_t rank_key(float w, int32_t id)
{
    uint32_t b;
    memcpy(&b, &w, sizeof b);
    return (uint64_t)b << 32 | (uint32_t) ~(uint32_t)id;
}

static inline float key_prob(uint64_t k)
{
    uint32_t b = (uint32_t)(k >> 32);
    float w;
    memcpy(&w, &b, sizeof w);
    return w;
}

static inline int32_t key_id(uint64_t k)
{
    return (int32_t) ~(uint32_t)k;
}

/* Min-heap of keys (h[0] the smallest): moves h[0] down to its place. */
static void sift_down(uint64_t *h, int n, int i)
{
    uint64_t x = h[i];
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && h[c + 1] < h[c]) c++;
        if (h[c] >= x) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

/* Heapsort of a min-heap into descending order. */
static void heap_sort_desc(uint64_t *h, int n)
{
    for (int end = n - 1; end > 0; end--) {
        uint64_t t = h[0];
        h[0] = h[end];
        h[end] = t;
        sift_down(h, end, 0);
    }
}

static int cmp_key_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x < y) - (x > y);
}

/* keys[0..m) = the m highest-ranked candidates, best first (fewer when there are fewer): a
 * min-heap of the best so far over one pass in id order. Once it is full, a token must be
 * strictly more probable than its smallest to enter (an equal one has a higher id), which the
 * vector kernel rules out for most of the row at once. */
static int select_top(const float *w, int n, float floor_p, int m, uint64_t *keys)
{
    int have = 0, i = 0;
    for (; i < n && have < m; i++)
        if (is_cand(w[i], floor_p)) keys[have++] = rank_key(w[i], i);
    if (have < m) {
        qsort(keys, (size_t)have, sizeof *keys, cmp_key_desc);
        return have;
    }
    for (int k = m / 2 - 1; k >= 0; k--) sift_down(keys, m, k);
    const struct kernels *kv = kern();
    float thr = key_prob(keys[0]);
    while (i < n) {
        i = kv->next_in(w, i, n, (int32_t)float_bits(thr) + 1, INT32_MAX);
        for (int end = i + 16 < n ? i + 16 : n; i < end; i++)
            if (w[i] > thr) {
                keys[0] = rank_key(w[i], i);
                sift_down(keys, m, 0);
                thr = key_prob(keys[0]);
            }
    }
    heap_sort_desc(keys, m);
    return m;
}

/* ---- the draw ---- */

/* The reference's draw among ranked candidates keys[0..k): mass in rank order, the nucleus cut,
 * then the draw. Exact: keys[0..k) are the reference's first k. */
static int32_t draw_ranked(const uint64_t *keys, int k, float top_p, double u)
{
    double mass = 0.0;
    for (int i = 0; i < k; i++) mass += key_prob(keys[i]);
    if (top_p < 1.0f) {
        double acc = 0.0, limit = (double)top_p * mass;
        for (int i = 0; i < k; i++) {
            acc += key_prob(keys[i]);
            if (acc >= limit) {
                k = i + 1;
                mass = acc;
                break;
            }
        }
    }
    double r = u * mass, acc = 0.0;
    for (int i = 0; i < k; i++) {
        acc += key_prob(keys[i]);
        if (r < acc) return key_id(keys[i]);
    }
    return key_id(keys[k - 1]);
}

/* Sorts keys[0..m) best first: insertion for a few (or already ranked, as equal probabilities
 * gathered in id order are), qsort otherwise. */
static void rank_keys(uint64_t *keys, int m)
{
    int sorted = 1;
    for (int i = 1; i < m && sorted; i++) sorted = keys[i - 1] > keys[i];
    if (sorted) return;
    if (m > 32) {
        qsort(keys, (size_t)m, sizeof *keys, cmp_key_desc);
        return;
    }
    for (int i = 1; i < m; i++) {
        uint64_t x = keys[i];
        int j = i;
        for (; j > 0 && keys[j - 1] < x; j--) keys[j] = keys[j - 1];
        keys[j] = x;
    }
}

/* ---- probability buckets ----
 * For a nucleus or a top k too large to rank: the candidates' mass summed (and for a top k, the
 * candidates counted) by ranges of probability, which are ranges of rank. A position in rank
 * order (where the running mass reaches a target, or the k-th) is found bucket by bucket, then
 * only its bucket is ranked.
 * Its running mass is the buckets' above it plus its own in rank order, within sum_bound of the
 * reference's, so a position is taken only where that cannot change it. */

struct buckets {
    const float *w; /* (n) the probabilities */
    int n;
    int32_t lo;     /* a candidate's bits are >= lo */
    uint32_t top;   /* the bits of the largest probability: bucket b holds the candidates */
    int shift;      /* whose bits are in (top - ((b + 1) << shift), top - (b << shift)] */
    int nb;         /* buckets in use */
    int counted;    /* count is kept (only a top-k needs it: counting costs) */
    int32_t *count; /* (nb) candidates in each bucket */
    double *mass;   /* (nb) their mass, summed in id order */
    uint64_t *keys; /* (n) room for one bucket's candidates, ranked */
};

static void buckets_fill(struct buckets *bk, const struct syn_sampler *s, float pmax, float floor_p,
                         int counted)
{
    bk->w = s->work;
    bk->n = s->n_vocab;
    bk->lo = cand_bits(floor_p);
    bk->top = float_bits(pmax);
    bk->keys = s->keys;
    bk->count = s->bucket_count;
    bk->mass = s->bucket_mass;
    const uint32_t range = bk->top - (uint32_t)bk->lo; /* pmax is a candidate: >= lo */
    bk->shift = 0;
    while ((range >> bk->shift) >= NBUCKET) bk->shift++;
    bk->nb = (int)(range >> bk->shift) + 1;
    bk->counted = counted;
    memset(bk->mass, 0, sizeof *bk->mass * (size_t)bk->nb);
    /* the others go to bucket nb, a spare (branches on the probabilities mispredict); locals,
     * or every store into the buckets would reload bk's fields */
    const float *w = bk->w;
    int32_t *count = bk->count;
    double *mass = bk->mass;
    const uint32_t top = bk->top, spare = (uint32_t)bk->nb;
    const int32_t lo = bk->lo;
    const int shift = bk->shift;
    mass[spare] = 0.0;
    if (counted) {
        memset(count, 0, sizeof *count * (size_t)(bk->nb + 1));
        for (int i = 0; i < bk->n; i++) {
            const uint32_t b = float_bits(w[i]);
            const uint32_t k = (int32_t)b >= lo ? (top - b) >> shift : spare;
            count[k]++;
            mass[k] += w[i];
        }
    } else {
        for (int i = 0; i < bk->n; i++) {
            const uint32_t b = float_bits(w[i]);
            mass[(int32_t)b >= lo ? (top - b) >> shift : spare] += w[i];
        }
    }
}

/* Ranks bucket b's candidates into bk->keys; returns how many. */
static int buckets_rank(struct buckets *bk, int b)
{
    const int64_t hi = (int64_t)bk->top - ((int64_t)b << bk->shift);
    int64_t lo = (int64_t)bk->top - ((int64_t)(b + 1) << bk->shift) + 1;
    if (lo < bk->lo) lo = bk->lo;
    const struct kernels *kv = kern();
    int m = 0;
    for (int i = 0; i < bk->n;) {
        i = kv->next_in(bk->w, i, bk->n, (int32_t)lo, (int32_t)hi);
        for (int end = i + 16 < bk->n ? i + 16 : bk->n; i < end; i++) {
            const int64_t x = float_bits(bk->w[i]);
            if (x >= lo && x <= hi) bk->keys[m++] = rank_key(bk->w[i], i);
        }
    }
    rank_keys(bk->keys, m);
    return m;
}

/* Ranks every candidate into bk->keys, a bucket sort (the buckets' counts, which it needs, become
 * their ends); returns their number. */
static int buckets_rank_all(struct buckets *bk)
{
    int end = 0;
    for (int b = 0; b < bk->nb; b++) {
        const int c = bk->count[b];
        bk->count[b] = end; /* for now its start */
        end += c;
    }
    for (int i = 0; i < bk->n; i++) {
        const uint32_t x = float_bits(bk->w[i]);
        if ((int32_t)x >= bk->lo)
            bk->keys[bk->count[(bk->top - x) >> bk->shift]++] = rank_key(bk->w[i], i);
    }
    for (int b = 0, start = 0; b < bk->nb; start = bk->count[b++])
        rank_keys(bk->keys + start, bk->count[b] - start);
    return end;
}

/* The candidate at rank `rank` (0 = the most probable; needs counts): its bucket is ranked into
 * bk->keys, *before = the mass ranked above that bucket; returns the index of the candidate in
 * keys, -1 when the buckets disagree with the ranking. */
static int buckets_at_rank(struct buckets *bk, int rank, double *before)
{
    double m = 0.0;
    int r = 0, b = 0;
    while (b < bk->nb - 1 && r + bk->count[b] <= rank) m += bk->mass[b], r += bk->count[b++];
    if (buckets_rank(bk, b) != bk->count[b] || rank - r >= bk->count[b]) return -1;
    *before = m;
    return rank - r;
}

/* The first candidate, in rank order and among ranks < limit (a limit needs counts), whose
 * running mass is past target by more than tol while the one before it is short of it by more
 * than tol: it is then the reference's first to reach or pass target, where the reference's
 * target is within tol / 2 of this one. 0 and *id = its token, *mass = its running mass, *rank =
 * its rank (with counts); -1 where there is no such candidate. */
static int buckets_find_mass(struct buckets *bk, double target, double tol, int limit, int32_t *id,
                             double *mass, int *rank)
{
    double before = 0.0;
    int r = 0, b = 0;
    for (; b < bk->nb - 1 && before + bk->mass[b] <= target; b++) {
        before += bk->mass[b];
        if (bk->counted) r += bk->count[b];
    }
    const int m = buckets_rank(bk, b);
    if (bk->counted && m != bk->count[b]) return -1;
    double acc = before;
    for (int i = 0; i < m && r + i < limit; i++) {
        const double prev = acc;
        acc += key_prob(bk->keys[i]);
        if (acc < target - tol) continue;
        /* prev == 0: the first rank, whose lower end (0) is exact */
        if (acc - target > tol && (prev == 0.0 || target - prev > tol)) {
            *id = key_id(bk->keys[i]);
            *mass = acc;
            *rank = r + i;
            return 0;
        }
        return -1;
    }
    return -1;
}

/* The definition of the draw over the candidates (w >= floor_p, w > 0; nc >= 1 of them) for the
 * sampler's truncations and the uniform u: what the sampler has always done, and what every
 * shortcut in draw_ranked_truncation and draw_in_id_order must agree with. Ranking is by bucket
 * sort (buckets_rank_all), which gives the same order as sorting every candidate. */
static int32_t draw_reference(struct syn_sampler *s, float pmax, float floor_p, int nc, double u)
{
    const struct syn_sampling_params *p = &s->p;
    const float *w = s->work;
    const int n = s->n_vocab;
    if ((p->top_k > 0 && p->top_k < nc) || p->top_p < 1.0f) {
        struct buckets bk;
        buckets_fill(&bk, s, pmax, floor_p, 1);
        int k = buckets_rank_all(&bk);
        if (p->top_k > 0 && p->top_k < k) k = p->top_k;
        return draw_ranked(s->keys, k, p->top_p, u);
    }
    /* no truncation by rank: every candidate, in id order */
    double mass = 0.0;
    int last = 0;
    for (int i = 0; i < n; i++)
        if (is_cand(w[i], floor_p)) mass += w[i], last = i;
    double r = u * mass, acc = 0.0;
    for (int i = 0; i < n; i++) {
        if (!is_cand(w[i], floor_p)) continue;
        acc += w[i];
        if (r < acc) return i;
    }
    return last;
}

/* The draw over the candidates in id order, from the block masses: the running mass of the
 * blocks finds the block where u times the total is passed, a walk through it the token. Each
 * running mass here and in the reference is within sum_bound of the exact one, so a token
 * whose interval holds r with more than the bound to spare on both sides is the reference's
 * token; otherwise the reference decides. */
static int32_t draw_in_id_order(struct syn_sampler *s, float floor_p, int nc, double u)
{
    const float *w = s->work;
    const int n = s->n_vocab, nb = (n + BLOCK - 1) / BLOCK;
    double total = 0.0;
    for (int b = 0; b < nb; b++) total += s->blocks[b];
    const double r = u * total, tol = sum_bound(nc + nb, total);
    if (r < total - tol) {
        double acc = 0.0;
        int b = 0;
        while (b < nb - 1 && acc + s->blocks[b] <= r) acc += s->blocks[b++];
        for (int i = b * BLOCK, end = i + BLOCK < n ? i + BLOCK : n; i < end; i++) {
            if (!is_cand(w[i], floor_p)) continue;
            double before = acc;
            acc += w[i];
            if (r < acc) {
                /* before == 0: the first candidate, whose lower end (0) is exact */
                if (acc - r > tol && (before == 0.0 || r - before > tol)) return i;
                break;
            }
        }
    }
    return draw_reference(s, 0.0f, floor_p, nc, u);
}

/* The ranked draw (top-k keeping k, top-p) from buckets: the reference's token, or -1 when a
 * position cannot be proven (the reference then decides). */
static int32_t draw_bucketed(struct syn_sampler *s, float pmax, float floor_p, int nc, int k,
                             double u)
{
    struct buckets bk;
    buckets_fill(&bk, s, pmax, floor_p, k < nc);
    double total = 0.0;
    for (int b = 0; b < bk.nb; b++) total += bk.mass[b];
    const double tol = sum_bound(nc + bk.nb, total);
    /* the kept mass: of the first k, or of all */
    double kept = total, at;
    if (k < nc) {
        int i = buckets_at_rank(&bk, k - 1, &kept);
        if (i < 0) return -1;
        for (int j = 0; j <= i; j++) kept += key_prob(bk.keys[j]);
    }
    int32_t id;
    int cut = k < nc ? k : INT_MAX, rank;
    if (s->p.top_p < 1.0f) {
        if (buckets_find_mass(&bk, (double)s->p.top_p * kept, tol, cut, &id, &at, &rank) < 0)
            return -1;
        kept = at;
        if (k < nc) cut = rank + 1;
    }
    /* at least tol short of the kept mass, the draw falls before the cut (whose running mass is
     * kept, computed the same way) */
    const double target = u * kept;
    if (target > kept - tol) return -1; /* the reference may fall back on its last candidate */
    if (buckets_find_mass(&bk, target, tol, cut, &id, &at, &rank) < 0) return -1;
    return id;
}

/* The draw when top-k or top-p ranks the candidates. */
static int32_t draw_ranked_truncation(struct syn_sampler *s, float pmax, float floor_p, int nc,
                                      double u)
{
    const struct syn_sampling_params *p = &s->p;
    const int k = p->top_k > 0 && p->top_k < nc ? p->top_k : nc;
    if (k <= SEL_MAX) { /* the first k exactly */
        select_top(s->work, s->n_vocab, floor_p, k, s->keys);
        return draw_ranked(s->keys, k, p->top_p, u);
    }
    const int nb = (s->n_vocab + BLOCK - 1) / BLOCK;
    double total = 0.0;
    for (int b = 0; b < nb; b++) total += s->blocks[b];
    const double limit = (double)p->top_p * total, tol = sum_bound(nc + nb, total);
    if (k == nc && p->top_p < 1.0f && (double)pmax * SEL_NUCLEUS > limit) {
        /* a nucleus among the SEL_NUCLEUS best (which it cannot be unless that many at pmax
         * would reach the limit): their running masses are the reference's, the limit it must
         * reach (top_p times the total, summed in rank order there and by blocks here) is known
         * to within the bound */
        int m = select_top(s->work, s->n_vocab, floor_p, SEL_NUCLEUS, s->keys);
        double acc = 0.0;
        for (int i = 0; i < m; i++) {
            double before = acc;
            acc += key_prob(s->keys[i]);
            if (acc < limit - tol) continue;
            if (acc - limit > tol && (i == 0 || limit - before > tol))
                return draw_ranked(s->keys, i + 1, 1.0f, u);
            break;
        }
    }
    int32_t id = draw_bucketed(s, pmax, floor_p, nc, k, u);
    return id >= 0 ? id : draw_reference(s, pmax, floor_p, nc, u);
}

/* Softmax at the temperature into s->work, then the truncations and the draw. */
static int32_t draw(struct syn_sampler *s, const float *x)
{
    const struct syn_sampling_params *p = &s->p;
    const struct kernels *k = kern();
    const int n = s->n_vocab;
    const int truncated = p->top_k > 0 || p->top_p < 1.0f || p->min_p > 0.0f;
    const float mx = max_of(x, n);
    float emax;
    const double sum = k->exp_sum(s->work, x, n, mx, 1.0f / p->temperature, &emax);
    if (!(sum > 0.0)) {
        /* no finite largest logit (all -inf or NaN, or a +inf): no token has a probability.
         * Token 0, after the draw the truncated path has always made (the untruncated one
         * made none). */
        if (truncated) next_double(s->rng);
        return 0;
    }
    /* the largest probability is the largest e^x scaled: a product's rounding is monotonic */
    const float inv_sum = inverse_sum(s->work, n, sum), pmax = emax * inv_sum;
    float floor_p = p->min_p > 0.0f ? p->min_p * pmax : 0.0f;
    if (p->top_p < 1.0f && n > 1) {
        float c = (1.0f - p->top_p) / (float)(n - 1);
        if (c > floor_p) floor_p = c;
    }
    const int nc = k->scale_blocks(s->work, n, inv_sum, floor_p, s->blocks);
    const double u = next_double(s->rng);
    if (nc == 0) /* every probability is below the floor: the first most probable token */
        return argmax_first(s->work, n);
    if ((p->top_k > 0 && p->top_k < nc) || p->top_p < 1.0f)
        return draw_ranked_truncation(s, pmax, floor_p, nc, u);
    return draw_in_id_order(s, floor_p, nc, u);
}

int32_t syn_sampler_sample(struct syn_sampler *s, const float *logits, float *out_logprob,
                           struct syn_logprob *top, int n_top)
{
    const float *x = logits;
    if (s->penalise) {
        apply_penalties(s, logits);
        x = s->work;
    }
    int32_t chosen = s->p.temperature == 0.0f ? argmax_first(x, s->n_vocab) : draw(s, x);
    if (out_logprob || (top && n_top > 0))
        raw_logprobs(logits, s->n_vocab, chosen, out_logprob, top, n_top);
    return chosen;
}

/* ---- device sampling ---- */

int syn_sampler_device_ok(const struct syn_sampler *s)
{
    return s->p.repetition_penalty == 1.0f && s->p.frequency_penalty == 0.0f &&
           s->p.presence_penalty == 0.0f;
}

void syn_sampler_device_spec(struct syn_sampler *s, struct syn_sample_spec *spec)
{
    spec->temperature = s->p.temperature;
    spec->top_k = s->p.top_k;
    spec->top_p = s->p.top_p;
    spec->min_p = s->p.min_p;
    /* syn_sampler_sample draws exactly once, and only when it does not take the argmax */
    spec->u = s->p.temperature == 0.0f ? 0.0 : next_double(s->rng);
}

#else /* ---- the vector kernels, SAMPLER_VW floats wide (see "vector kernels" above) ---- */

#define KNAME_(name, w) name##_##w
#define KNAME(name, w)  KNAME_(name, w)
#define K(name)         KNAME(name, SAMPLER_VW)
#define VF              K(vf)
#define VI              K(vi)
#define VD              K(vd)
#define KERNEL          SAMPLER_TARGET static
#define HELPER          SAMPLER_TARGET static inline __attribute__((always_inline))

typedef float VF __attribute__((vector_size(4 * SAMPLER_VW)));
typedef int32_t VI __attribute__((vector_size(4 * SAMPLER_VW)));
typedef double VD __attribute__((vector_size(4 * SAMPLER_VW))); /* half as many lanes */

/* the low and high halves of a VF, each as wide as a VD */
#if SAMPLER_VW == 16
#define LOW(v)  __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7)
#define HIGH(v) __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15)
#elif SAMPLER_VW == 8
#define LOW(v)  __builtin_shufflevector(v, v, 0, 1, 2, 3)
#define HIGH(v) __builtin_shufflevector(v, v, 4, 5, 6, 7)
#else
#define LOW(v)  __builtin_shufflevector(v, v, 0, 1)
#define HIGH(v) __builtin_shufflevector(v, v, 2, 3)
#endif

HELPER VF K(load)(const float *p)
{
    VF v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* every lane x (x - 0 is x, -0 and NaN included) */
HELPER VF K(splat)(float x)
{
    return x - (VF){0};
}

HELPER int K(any)(VI m)
{
    uint64_t q[SAMPLER_VW / 2], r = 0;
    memcpy(q, &m, sizeof q);
    for (int k = 0; k < SAMPLER_VW / 2; k++) r |= q[k];
    return r != 0;
}

/* Lane-wise "x > m ? x : m": a NaN in x never wins, as in a scalar "if (x > m) m = x". */
HELPER VF K(vmax)(VF m, VF x)
{
    VI gt = x > m;
    return (VF)(((VI)x & gt) | ((VI)m & ~gt));
}

HELPER double K(hsum)(VD v)
{
    double l[SAMPLER_VW / 2], s = 0.0;
    memcpy(l, &v, sizeof l);
    for (int k = 0; k < SAMPLER_VW / 2; k++) s += l[k];
    return s;
}

/* e^x for x <= 0 or NaN: x = k ln2 + r with |r| <= ln2/2, e^r by a degree-6 Taylor polynomial
 * (relative error under 2e-7 on that range, about a float's rounding), 2^k put into the exponent
 * bits. Below -87 the result is 0 (expf gives subnormals there, which no draw can tell from 0 at
 * float mass), and so is it for NaN (a NaN logit gets no probability). The same IEEE operations
 * in every lane at every width, so the same bits. */
HELPER VF K(exp_nonpos)(VF x)
{
    VI under = ~(x >= -87.0f); /* NaN too */
    x = (VF)(((VI)x & ~under) | ((VI)K(splat)(-87.0f) & under));
    /* k = x log2e rounded to an integer (halves toward zero): x log2e - 0.5 is <= -0.5, and
     * truncating it toward zero is its ceiling */
    VF t = x * 1.44269504f - 0.5f;
    VI k = __builtin_convertvector(t, VI);
    VF kf = __builtin_convertvector(k, VF);
    VF r = x - kf * 0.693145752f - kf * 1.42860677e-6f;
    VF p = K(splat)(1.0f / 720) * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 1.0f / 2;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    VF scale = (VF)((k + 127) << 23); /* k >= -126 for x >= -87 */
    VF y = p * scale;
    return (VF)((VI)y & ~under);
}

KERNEL float K(largest)(const float *x, int n, float x0, int *end)
{
    VF a = K(splat)(x0), b = a;
    int i = 0;
    for (; i + 2 * SAMPLER_VW <= n; i += 2 * SAMPLER_VW) {
        a = K(vmax)(a, K(load)(x + i));
        b = K(vmax)(b, K(load)(x + i + SAMPLER_VW));
    }
    a = K(vmax)(a, b);
    float m = x0;
    for (int k = 0; k < SAMPLER_VW; k++)
        if (a[k] > m) m = a[k];
    *end = i;
    return m;
}

KERNEL int K(first_equal)(const float *x, int n, float m)
{
    int i = 0;
    for (; i + SAMPLER_VW <= n; i += SAMPLER_VW)
        if (K(any)(K(load)(x + i) == m)) break;
    for (; i < n; i++)
        if (x[i] == m) return i;
    return n;
}

KERNEL double K(exp_sum)(float *w, const float *x, int n, float mx, float inv_t, float *emax)
{
    VD a = {0}, b = {0};
    VF m = {0};
    int i = 0;
    /* two vectors at a time: the polynomial is a long chain, two of them keep the units busy */
    for (; i + 2 * SAMPLER_VW <= n; i += 2 * SAMPLER_VW) {
        VF e = K(exp_nonpos)((K(load)(x + i) - mx) * inv_t);
        VF f = K(exp_nonpos)((K(load)(x + i + SAMPLER_VW) - mx) * inv_t);
        memcpy(w + i, &e, sizeof e);
        memcpy(w + i + SAMPLER_VW, &f, sizeof f);
        a += __builtin_convertvector(LOW(e), VD) + __builtin_convertvector(LOW(f), VD);
        b += __builtin_convertvector(HIGH(e), VD) + __builtin_convertvector(HIGH(f), VD);
        m = K(vmax)(K(vmax)(m, e), f);
    }
    for (; i + SAMPLER_VW <= n; i += SAMPLER_VW) {
        VF e = K(exp_nonpos)((K(load)(x + i) - mx) * inv_t);
        memcpy(w + i, &e, sizeof e);
        a += __builtin_convertvector(LOW(e), VD);
        b += __builtin_convertvector(HIGH(e), VD);
        m = K(vmax)(m, e);
    }
    double s = K(hsum)(a + b);
    float best = 0.0f;
    for (int k = 0; k < SAMPLER_VW; k++)
        if (m[k] > best) best = m[k];
    if (i < n) { /* the tail, padded with mx (whose e^0 is not kept) */
        float t[SAMPLER_VW];
        for (int k = 0; k < SAMPLER_VW; k++) t[k] = i + k < n ? x[i + k] : mx;
        VF e = K(exp_nonpos)((K(load)(t) - mx) * inv_t);
        memcpy(t, &e, sizeof t);
        for (int k = 0; i + k < n; k++) {
            s += w[i + k] = t[k];
            if (t[k] > best) best = t[k];
        }
    }
    *emax = best;
    return s;
}

KERNEL int K(scale_blocks)(float *w, int n, float scale, float floor_p, double *blocks)
{
    const int32_t lo_bits = cand_bits(floor_p);
    int nc = 0;
    for (int b = 0; b * BLOCK < n; b++) {
        const int end = (b + 1) * BLOCK < n ? (b + 1) * BLOCK : n;
        VD acc0 = {0}, acc1 = {0};
        VI cnt = {0};
        int i = b * BLOCK;
        for (; i + SAMPLER_VW <= end; i += SAMPLER_VW) {
            VF v = K(load)(w + i) * scale;
            memcpy(w + i, &v, sizeof v);
            VI c = (VI)v >= lo_bits; /* -1: a candidate */
            v = (VF)((VI)v & c);
            cnt -= c;
            acc0 += __builtin_convertvector(LOW(v), VD);
            acc1 += __builtin_convertvector(HIGH(v), VD);
        }
        double m = K(hsum)(acc0 + acc1);
        int32_t lanes[SAMPLER_VW];
        memcpy(lanes, &cnt, sizeof lanes);
        for (int k = 0; k < SAMPLER_VW; k++) nc += lanes[k];
        for (; i < end; i++) {
            w[i] *= scale;
            if (is_cand(w[i], floor_p)) m += w[i], nc++;
        }
        blocks[b] = m;
    }
    return nc;
}

KERNEL int K(next_in)(const float *w, int i, int n, int32_t lo, int32_t hi)
{
    for (; i + SAMPLER_VW <= n; i += SAMPLER_VW) {
        VI bits;
        memcpy(&bits, w + i, sizeof bits);
        if (K(any)((bits >= lo) & (bits <= hi))) return i;
    }
    return i;
}

static const struct kernels K(kernels) = {
    SAMPLER_VW, K(largest), K(first_equal), K(exp_sum), K(scale_blocks), K(next_in),
};

#undef KNAME_
#undef KNAME
#undef K
#undef VF
#undef VI
#undef VD
#undef KERNEL
#undef HELPER
#undef LOW
#undef HIGH

#endif
