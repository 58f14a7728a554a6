/*
 * Token sampling (see include/synapse/sampler.h). The order of operations follows what
 * OpenAI-compatible servers do: penalties on the raw logits, then greedy or temperature, then the
 * truncations (top-k, min-p, top-p) on the probabilities, then one draw. Log-probabilities are
 * reported from the raw logits, before any of that.
 *
 * Determinism: ties are broken by token id, the generator is ours, and nothing depends on the
 * order qsort happens to leave equal elements in.
 *
 * Greedy (temperature 0) is the first index of the largest logit, found in two vector passes over
 * the logits where they are (argmax_first); only penalties make a copy.
 */
#include "synapse/sampler.h"

#include "synapse/error.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct syn_sampler {
    struct syn_sampling_params p; /* copy of the caller's params */
    int n_vocab;
    int penalise;     /* a penalty is on: accept keeps the history below */
    uint64_t rng[4];  /* xoshiro256** state */
    int32_t *count;   /* (n_vocab) generated occurrences of each token; only when penalise */
    uint8_t *seen;    /* (n_vocab) 1 if the token appeared anywhere (prompt too); idem */
    int32_t *touched; /* (n_vocab) the n_touched tokens with seen set, to apply and clear; idem */
    int n_touched;
    float *work;   /* (n_vocab) penalised logits, then probabilities; not for greedy alone */
    int32_t *cand; /* (n_vocab) candidate ids; with a truncation at temperature > 0 */
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
    if (p->temperature != 0.0f && (p->top_k > 0 || p->top_p < 1.0f || p->min_p > 0.0f)) {
        s->cand = malloc(sizeof *s->cand * n);
        fail |= !s->cand;
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
    free(s->cand);
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

/* ---- sampling ---- */

typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

/* e^x for x <= 0 in four lanes (GCC/Clang vector extensions: SSE on baseline x86-64):
 * x = k ln2 + r with |r| <= ln2/2, e^r by a degree-6 Taylor polynomial (relative error under
 * 2e-7 on that range, about a float's rounding), 2^k put into the exponent bits. Below -87 the
 * result is 0 (expf gives subnormals there, which no draw can tell from 0 at float mass), and
 * so is it for NaN. */
static inline v4f exp4_nonpos(v4f x)
{
    const v4f lo = {-87.0f, -87.0f, -87.0f, -87.0f};
    v4i under = ~(x >= lo); /* NaN (a NaN logit) too: it gets no probability */
    x = (v4f)(((v4i)x & ~under) | ((v4i)lo & under));
    const v4f log2e = {1.44269504f, 1.44269504f, 1.44269504f, 1.44269504f};
    const v4f half = {0.5f, 0.5f, 0.5f, 0.5f};
    /* k = x log2e rounded to an integer (halves toward zero): x log2e - 0.5 is <= -0.5, and
     * truncating it toward zero is its ceiling */
    v4f t = x * log2e - half;
    v4i k = __builtin_convertvector(t, v4i); /* truncates toward zero: t <= -0.5 here */
    v4f kf = __builtin_convertvector(k, v4f);
    const v4f ln2_hi = {0.693145752f, 0.693145752f, 0.693145752f, 0.693145752f};
    const v4f ln2_lo = {1.42860677e-6f, 1.42860677e-6f, 1.42860677e-6f, 1.42860677e-6f};
    v4f r = x - kf * ln2_hi - kf * ln2_lo;
    const v4f c2 = {1.0f / 2, 1.0f / 2, 1.0f / 2, 1.0f / 2};
    const v4f c3 = {1.0f / 6, 1.0f / 6, 1.0f / 6, 1.0f / 6};
    const v4f c4 = {1.0f / 24, 1.0f / 24, 1.0f / 24, 1.0f / 24};
    const v4f c5 = {1.0f / 120, 1.0f / 120, 1.0f / 120, 1.0f / 120};
    const v4f c6 = {1.0f / 720, 1.0f / 720, 1.0f / 720, 1.0f / 720};
    const v4f one = {1.0f, 1.0f, 1.0f, 1.0f};
    v4f p = c6;
    p = p * r + c5;
    p = p * r + c4;
    p = p * r + c3;
    p = p * r + c2;
    p = p * r + one;
    p = p * r + one;
    const v4i bias = {127, 127, 127, 127};
    v4f scale = (v4f)((k + bias) << 23); /* k >= -126 for x >= -87 */
    v4f y = p * scale;
    return (v4f)((v4i)y & ~under);
}

/* w[i] = e^((w[i] - mx) inv_t) for i < n; returns their sum in double (lanes summed apart, then
 * together: the order is fixed, so a seed gives the same draws on every machine). */
static double exp_lanes(float *w, int n, float mx, float inv_t)
{
    const v4f vm = {mx, mx, mx, mx}, vt = {inv_t, inv_t, inv_t, inv_t};
    double acc[4] = {0, 0, 0, 0};
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        v4f x;
        memcpy(&x, w + i, sizeof x);
        v4f e = exp4_nonpos((x - vm) * vt);
        memcpy(w + i, &e, sizeof e);
        for (int j = 0; j < 4; j++) acc[j] += e[j];
    }
    for (; i < n; i++) {
        v4f x = {(w[i] - mx) * inv_t, 0, 0, 0};
        w[i] = exp4_nonpos(x)[0];
        acc[i & 3] += w[i];
    }
    return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

/* Lane-wise "x > m ? x : m": a NaN in x never wins, as in a scalar "if (x > m) m = x". */
static inline v4f vmax4(v4f m, v4f x)
{
    v4i gt = x > m;
    return (v4f)(((v4i)x & gt) | ((v4i)m & ~gt));
}

static inline v4f load4(const float *p)
{
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* The first index of the largest value (NaNs never win; index 0 when x[0] is NaN or n == 1),
 * which is what a scalar "best = x[0]; if (x[i] > best) ..." loop settles on: the largest value
 * in sixteen lanes, then its first index. About 4x faster than the scalar loop. */
static int32_t argmax_first(const float *x, int n)
{
    if (n <= 1 || x[0] != x[0]) return 0;
    v4f a = {x[0], x[0], x[0], x[0]}, b = a, c = a, d = a;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        a = vmax4(a, load4(x + i));
        b = vmax4(b, load4(x + i + 4));
        c = vmax4(c, load4(x + i + 8));
        d = vmax4(d, load4(x + i + 12));
    }
    a = vmax4(vmax4(a, b), vmax4(c, d));
    float m = a[0];
    for (int k = 1; k < 4; k++)
        if (a[k] > m) m = a[k];
    for (; i < n; i++)
        if (x[i] > m) m = x[i];
    /* a later equal value never replaces the first; -0 and +0 compare equal here as there */
    const v4f mv = {m, m, m, m};
    for (i = 0; i + 16 <= n; i += 16) {
        v4i e = (load4(x + i) == mv) | (load4(x + i + 4) == mv) | (load4(x + i + 8) == mv) |
                (load4(x + i + 12) == mv);
        if (e[0] | e[1] | e[2] | e[3]) break;
    }
    for (; i < n; i++)
        if (x[i] == m) return i;
    return 0; /* not reached: m is one of the values */
}

static int cmp_desc(const void *a, const void *b, void *arg)
{
    const float *p = arg;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (p[x] > p[y]) return -1;
    if (p[x] < p[y]) return 1;
    return (x > y) - (x < y);
}

int32_t syn_sampler_sample(struct syn_sampler *s, const float *logits, float *out_logprob,
                           struct syn_logprob *top, int n_top)
{
    const int n = s->n_vocab;
    const struct syn_sampling_params *p = &s->p;
    float *w = s->work;

    /* penalties on raw logits */
    if (s->penalise) apply_penalties(s, logits);
    int32_t chosen = 0;
    if (p->temperature == 0.0f) {
        chosen = argmax_first(s->penalise ? w : logits, n);
        goto out;
    }
    if (!s->penalise) memcpy(w, logits, sizeof *w * (size_t)n);

    /* softmax at temperature: exp in four lanes (exp_lanes), the sum in double */
    float mx = -INFINITY;
    for (int i = 0; i < n; i++)
        if (w[i] > mx) mx = w[i];
    const float inv_t = 1.0f / p->temperature;
    const double sum = exp_lanes(w, n, mx, inv_t);
    const float inv_sum = (float)(1.0 / sum);
    float pmax = 0.0f;
    for (int i = 0; i < n; i++) {
        w[i] *= inv_sum;
        if (w[i] > pmax) pmax = w[i];
    }

    /* no truncation (top-k off, top-p 1, min-p 0): every token with a probability is a
     * candidate, in id order, so draw over w directly without listing them */
    if (p->top_p >= 1.0f && p->top_k <= 0 && !(p->min_p > 0.0f)) {
        double mass = 0.0;
        int last = -1;
        for (int i = 0; i < n; i++)
            if (w[i] > 0.0f) mass += w[i], last = i;
        if (last < 0) { /* every probability underflowed: the argmax, as below */
            for (int i = 0; i < n; i++)
                if (w[i] == pmax) {
                    chosen = i;
                    break;
                }
            goto out;
        }
        double r = next_double(s->rng) * mass, acc = 0.0;
        chosen = last;
        for (int i = 0; i < n; i++) {
            if (!(w[i] > 0.0f)) continue;
            acc += w[i];
            if (r < acc) {
                chosen = i;
                break;
            }
        }
        goto out;
    }

    /* candidates: min-p, and when top-p is on, the cut-off below which no token can be in the
     * nucleus ((1 - top_p) / (n - 1)) to keep the sort short */
    float floor_p = p->min_p > 0.0f ? p->min_p * pmax : 0.0f;
    if (p->top_p < 1.0f && n > 1) {
        float c = (1.0f - p->top_p) / (float)(n - 1);
        if (c > floor_p) floor_p = c;
    }
    int nc = 0;
    for (int i = 0; i < n; i++)
        if (w[i] >= floor_p && w[i] > 0.0f) s->cand[nc++] = i;
    if (nc == 0) { /* every probability underflowed below the floor: keep the argmax */
        for (int i = 0; i < n; i++)
            if (w[i] == pmax) {
                s->cand[nc++] = i;
                break;
            }
    }
    int need_sort = (p->top_k > 0 && p->top_k < nc) || p->top_p < 1.0f;
    if (need_sort) qsort_r(s->cand, (size_t)nc, sizeof *s->cand, cmp_desc, w);
    if (p->top_k > 0 && p->top_k < nc) nc = p->top_k;
    double mass = 0.0;
    for (int i = 0; i < nc; i++) mass += w[s->cand[i]];
    if (p->top_p < 1.0f) {
        double acc = 0.0, limit = (double)p->top_p * mass;
        for (int i = 0; i < nc; i++) {
            acc += w[s->cand[i]];
            if (acc >= limit) {
                nc = i + 1;
                mass = acc;
                break;
            }
        }
    }
    double r = next_double(s->rng) * mass, acc = 0.0;
    chosen = s->cand[nc - 1];
    for (int i = 0; i < nc; i++) {
        acc += w[s->cand[i]];
        if (r < acc) {
            chosen = s->cand[i];
            break;
        }
    }
out:
    if (out_logprob || (top && n_top > 0)) raw_logprobs(logits, n, chosen, out_logprob, top, n_top);
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
