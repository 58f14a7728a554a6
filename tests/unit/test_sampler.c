/* The sampler: greedy, truncations, penalties, seeded determinism, log-probabilities; the same
 * tokens at every vector width, and for a seed the same tokens as the sampler has always drawn. */
#include "harness.h"
#include "synapse/sampler.h"

#include <math.h>
#include <stdint.h>

static void fill_logits(float *l, int n)
{
    for (int i = 0; i < n; i++) l[i] = (float)sin(i * 1.7) * 3.0f;
}

static int argmax(const float *l, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[b]) b = i;
    return b;
}

TEST(sampler_greedy_is_argmax)
{
    float l[100];
    fill_logits(l, 100);
    struct syn_sampling_params p = syn_sampling_default_params();
    p.temperature = 0;
    struct syn_sampler *s = syn_sampler_new(&p, 100);
    CHECK_EQ_INT(syn_sampler_sample(s, l, NULL, NULL, 0), argmax(l, 100));
    syn_sampler_free(s);
    /* top_k = 1 at any temperature is greedy too */
    p.temperature = 2.0f;
    p.top_k = 1;
    s = syn_sampler_new(&p, 100);
    for (int i = 0; i < 20; i++)
        CHECK_EQ_INT(syn_sampler_sample(s, l, NULL, NULL, 0), argmax(l, 100));
    syn_sampler_free(s);
}

TEST(sampler_seed_determinism)
{
    float l[1000];
    fill_logits(l, 1000);
    struct syn_sampling_params p = syn_sampling_default_params();
    p.temperature = 1.5f;
    p.seed = 42;
    int a[50], b[50], c[50];
    struct syn_sampler *s = syn_sampler_new(&p, 1000);
    for (int i = 0; i < 50; i++) a[i] = syn_sampler_sample(s, l, NULL, NULL, 0);
    syn_sampler_reset(s, 42);
    for (int i = 0; i < 50; i++) b[i] = syn_sampler_sample(s, l, NULL, NULL, 0);
    syn_sampler_reset(s, 43);
    for (int i = 0; i < 50; i++) c[i] = syn_sampler_sample(s, l, NULL, NULL, 0);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(memcmp(a, c, sizeof a) != 0);
    syn_sampler_free(s);
}

TEST(sampler_top_p_and_min_p_restrict_candidates)
{
    /* three tokens carry almost all the mass; top_p 0.5 must only ever pick the first */
    float l[50];
    for (int i = 0; i < 50; i++) l[i] = -10.0f;
    l[7] = 5.0f;
    l[9] = 4.0f;
    l[11] = 3.0f;
    struct syn_sampling_params p = syn_sampling_default_params();
    p.top_p = 0.5f;
    struct syn_sampler *s = syn_sampler_new(&p, 50);
    for (int i = 0; i < 200; i++) CHECK_EQ_INT(syn_sampler_sample(s, l, NULL, NULL, 0), 7);
    syn_sampler_free(s);
    p = syn_sampling_default_params();
    p.min_p = 0.3f; /* p(9)/p(7) = e^-1 = 0.37 passes, p(11)/p(7) = 0.14 does not */
    s = syn_sampler_new(&p, 50);
    int seen9 = 0;
    for (int i = 0; i < 400; i++) {
        int t = syn_sampler_sample(s, l, NULL, NULL, 0);
        CHECK(t == 7 || t == 9);
        seen9 += t == 9;
    }
    CHECK(seen9 > 0);
    syn_sampler_free(s);
}

TEST(sampler_penalties_change_greedy_choice)
{
    float l[10] = {0, 0, 0, 2.0f, 1.9f, 0, 0, 0, 0, 0};
    struct syn_sampling_params p = syn_sampling_default_params();
    p.temperature = 0;
    p.presence_penalty = 0.5f;
    struct syn_sampler *s = syn_sampler_new(&p, 10);
    CHECK_EQ_INT(syn_sampler_sample(s, l, NULL, NULL, 0), 3);
    syn_sampler_accept(s, 3, 0);
    CHECK_EQ_INT(syn_sampler_sample(s, l, NULL, NULL, 0), 4);
    /* prompt tokens do not count for presence/frequency */
    syn_sampler_reset(s, 0);
    syn_sampler_accept(s, 3, 1);
    CHECK_EQ_INT(syn_sampler_sample(s, l, NULL, NULL, 0), 3);
    syn_sampler_free(s);
    p.presence_penalty = 0;
    p.repetition_penalty = 1.2f; /* 2.0/1.2 = 1.67 < 1.9 */
    s = syn_sampler_new(&p, 10);
    syn_sampler_accept(s, 3, 1);
    CHECK_EQ_INT(syn_sampler_sample(s, l, NULL, NULL, 0), 4);
    syn_sampler_free(s);
}

TEST(sampler_logprobs)
{
    float l[4] = {1.0f, 2.0f, 3.0f, 0.5f};
    struct syn_sampling_params p = syn_sampling_default_params();
    p.temperature = 0;
    struct syn_sampler *s = syn_sampler_new(&p, 4);
    float lp;
    struct syn_logprob top[3];
    int t = syn_sampler_sample(s, l, &lp, top, 3);
    CHECK_EQ_INT(t, 2);
    double z = exp(1.0) + exp(2.0) + exp(3.0) + exp(0.5);
    CHECK_NEAR(lp, 3.0 - log(z), 1e-5);
    CHECK_EQ_INT(top[0].token, 2);
    CHECK_EQ_INT(top[1].token, 1);
    CHECK_EQ_INT(top[2].token, 0);
    CHECK_NEAR(top[1].logprob, 2.0 - log(z), 1e-5);
    syn_sampler_free(s);
}

TEST(sampler_validate_rejects_out_of_range)
{
    char err[128];
    struct syn_sampling_params p = syn_sampling_default_params();
    CHECK_EQ_INT(syn_sampling_validate(&p, err, sizeof err), 0);
    p.top_p = 0;
    CHECK(syn_sampling_validate(&p, err, sizeof err) < 0);
    CHECK(strstr(err, "top_p"));
    p = syn_sampling_default_params();
    p.temperature = -1;
    CHECK(syn_sampling_validate(&p, err, sizeof err) < 0);
    p = syn_sampling_default_params();
    p.frequency_penalty = 3;
    CHECK(syn_sampling_validate(&p, err, sizeof err) < 0);
}

/* The draw follows softmax(logits / T), with and without truncation (the untruncated path draws
 * over the probabilities directly), for logits spread over the exp's whole range: a token 80
 * nats below the best is never drawn, a NaN or -inf logit never. */
TEST(sampler_draws_follow_the_softmax)
{
    enum { N = 7, DRAWS = 40000 };
    const float l[N] = {0.0f, logf(2.0f), logf(3.0f), -80.0f, -INFINITY, NAN, logf(4.0f)};
    const double want[N] = {0.1, 0.2, 0.3, 0, 0, 0, 0.4};
    for (int variant = 0; variant < 3; variant++) {
        struct syn_sampling_params p = syn_sampling_default_params();
        p.seed = 7;
        p.temperature = variant == 2 ? 0.5f : 1.0f;
        if (variant == 1) p.top_p = 0.999f; /* the sorted path: keeps all four */
        struct syn_sampler *s = syn_sampler_new(&p, N);
        int count[N] = {0};
        for (int i = 0; i < DRAWS; i++) count[syn_sampler_sample(s, l, NULL, NULL, 0)]++;
        double w2[N], z = 0;
        for (int i = 0; i < N; i++) z += w2[i] = want[i] * want[i];
        for (int i = 0; i < N; i++) {
            double e = variant == 2 ? w2[i] / z : want[i];
            double got = (double)count[i] / DRAWS;
            /* 5 standard deviations of a binomial proportion */
            double tol = 5.0 * sqrt(e * (1 - e) / DRAWS) + 1e-9;
            if (fabs(got - e) > tol)
                FAIL("variant %d token %d: drawn %.4f, expected %.4f", variant, i, got, e);
        }
        syn_sampler_free(s);
    }
}

/* ---- greedy: the vector argmax against the scalar loop it stands for ---- */

/* The vector widths this machine runs (16, 8, 4 floats: AVX-512, AVX2, baseline); n of them. */
static int widths(int *w)
{
    int n = 0;
    for (int want = 16; want >= 4; want /= 2) {
        int got = syn_sampler_set_vector_width(want);
        if (got == want) w[n++] = got;
    }
    syn_sampler_set_vector_width(0);
    return n;
}

static int32_t greedy_pick(const float *l, int n)
{
    struct syn_sampling_params p = syn_sampling_default_params();
    p.temperature = 0;
    struct syn_sampler *s = syn_sampler_new(&p, n);
    int32_t id = syn_sampler_sample(s, l, NULL, NULL, 0);
    syn_sampler_free(s);
    return id;
}

static uint64_t g_x = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(void)
{
    g_x ^= g_x << 13;
    g_x ^= g_x >> 7;
    g_x ^= g_x << 17;
    return (uint32_t)(g_x >> 11);
}

/* Ties pick the lowest id, a NaN never wins (a NaN first answers 0, as "best = x[0]" does), -0
 * and +0 tie, infinities are values: the first index of the largest, at every vector width and
 * every length around the widths. */
TEST(sampler_greedy_matches_the_scalar_argmax)
{
    static float l[4099];
    int w[3], nw = widths(w);
    for (int k = 0; k < nw; k++) {
        CHECK_EQ_INT(syn_sampler_set_vector_width(w[k]), w[k]);
        for (int n = 1; n <= 70; n++)
            for (int rep = 0; rep < 20; rep++) {
                for (int i = 0; i < n; i++) l[i] = (float)(rnd() % 7) - 3.0f; /* many ties */
                CHECK_EQ_INT(greedy_pick(l, n), argmax(l, n));
            }
        for (int rep = 0; rep < 200; rep++) {
            int n = 4000 + (int)(rnd() % 99);
            for (int i = 0; i < n; i++) l[i] = (float)rnd() / 65536.0f - 1000.0f;
            /* specials at random places: NaN, -inf, +inf, -0 and +0, repeated maxima */
            for (int j = 0; j < 8; j++) {
                int at = (int)(rnd() % (uint32_t)n);
                switch (rnd() % 6) {
                case 0:
                    l[at] = NAN;
                    break;
                case 1:
                    l[at] = -INFINITY;
                    break;
                case 2:
                    l[at] = rep % 3 ? 1e30f : INFINITY;
                    break;
                case 3:
                    l[at] = -0.0f;
                    break;
                case 4:
                    l[at] = 0.0f;
                    break;
                default:
                    l[at] = l[(at * 7) % n];
                    break;
                }
            }
            CHECK_EQ_INT(greedy_pick(l, n), argmax(l, n));
        }
        float nan_first[20], all_ninf[20], zeros[20];
        for (int i = 0; i < 20; i++) nan_first[i] = (float)i, all_ninf[i] = -INFINITY;
        nan_first[0] = NAN;
        for (int i = 0; i < 20; i++) zeros[i] = -1.0f;
        zeros[5] = -0.0f;
        zeros[9] = 0.0f;
        CHECK_EQ_INT(greedy_pick(nan_first, 20), 0);
        CHECK_EQ_INT(greedy_pick(all_ninf, 20), 0);
        CHECK_EQ_INT(greedy_pick(zeros, 20), 5);
        zeros[5] = 0.0f, zeros[9] = -0.0f;
        CHECK_EQ_INT(greedy_pick(zeros, 20), 5);
    }
}

/* At temperature 0 the truncations change nothing and log-probabilities do not change the pick;
 * penalties do (sampler_penalties_change_greedy_choice). */
TEST(sampler_greedy_ignores_truncations_and_logprobs)
{
    float l[300];
    for (int i = 0; i < 300; i++) l[i] = (float)(rnd() % 1000) / 100.0f;
    const int want = argmax(l, 300);
    struct syn_sampling_params p = syn_sampling_default_params();
    p.temperature = 0;
    p.top_k = 3;
    p.top_p = 0.5f;
    p.min_p = 0.2f;
    struct syn_sampler *s = syn_sampler_new(&p, 300);
    float lp = 1;
    struct syn_logprob top[2];
    CHECK_EQ_INT(syn_sampler_sample(s, l, NULL, NULL, 0), want);
    CHECK_EQ_INT(syn_sampler_sample(s, l, &lp, top, 2), want);
    CHECK(lp < 0.0f);
    CHECK_EQ_INT(top[0].token, want);
    syn_sampler_free(s);
}

/* ---- the same tokens as before, at every width ---- */

static uint32_t hash32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

/* Rows built without libm, so the same on every machine. kind 0: flat, logits in [-2, 2];
 * 1: peaked, a [-4, 4] bulk and 20 tokens from 14 down to 10.2; 2: ties, every logit 0, 1 or 2. */
static void golden_row(float *l, int n, int kind)
{
    for (int i = 0; i < n; i++) {
        uint32_t h = hash32((uint32_t)i * 2654435761u + (uint32_t)kind);
        l[i] = kind == 2 ? (float)(h % 3) : (float)(h % 4001) / 1000.0f - 2.0f;
        if (kind == 1) l[i] *= 2.0f;
    }
    if (kind == 1)
        for (int j = 0; j < 20; j++)
            l[hash32(1000u + (uint32_t)j) % (uint32_t)n] = 14.0f - 0.2f * (float)j;
}

struct golden {
    int kind;
    float temperature;
    int top_k;
    float top_p, min_p, repetition, frequency, presence;
};

/* Each case takes one of the draw's ways (noted), at 32,000 tokens. */
static const struct golden golden_cases[] = {
    {0, 0.0f, 0, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f},     /* greedy */
    {0, 1.0f, 0, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f},     /* untruncated: id order by blocks */
    {1, 1.0f, 0, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f},     /* (idem) */
    {0, 1.0f, 0, 1.0f, 0.3f, 1.0f, 0.0f, 0.0f},     /* min-p: id order by blocks */
    {1, 0.7f, 0, 1.0f, 0.05f, 1.0f, 0.0f, 0.0f},    /* (idem) */
    {0, 1.0f, 40, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f},    /* top-k: the heap */
    {1, 1.5f, 40, 0.9f, 0.0f, 1.0f, 0.0f, 0.0f},    /* (idem, with top-p) */
    {1, 1.0f, 0, 0.9f, 0.0f, 1.0f, 0.0f, 0.0f},     /* top-p: a nucleus among the best 64 */
    {0, 1.0f, 0, 0.9f, 0.0f, 1.0f, 0.0f, 0.0f},     /* top-p: buckets */
    {0, 1.3f, 0, 0.5f, 0.0f, 1.0f, 0.0f, 0.0f},     /* (idem) */
    {1, 2.0f, 0, 0.95f, 0.0f, 1.0f, 0.0f, 0.0f},    /* (idem) */
    {0, 1.0f, 1000, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f},  /* a large top-k: buckets */
    {0, 1.0f, 3000, 0.95f, 0.0f, 1.0f, 0.0f, 0.0f}, /* (idem, with top-p) */
    {2, 1.0f, 0, 0.5f, 0.0f, 1.0f, 0.0f, 0.0f},     /* ties: buckets */
    {2, 1.0f, 300, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f},   /* (idem) */
    {2, 1.0f, 5000, 0.3f, 0.0f, 1.0f, 0.0f, 0.0f},  /* (idem) */
    {1, 0.8f, 0, 0.9f, 0.02f, 1.2f, 0.5f, 0.5f},    /* penalties, few candidates: the heap */
    {0, 0.0f, 0, 1.0f, 0.0f, 1.3f, 0.0f, 1.0f},     /* penalties, greedy */
};

/* What the sampler drew before its draws took shortcuts (commit 87372db), seeds 1234 + case,
 * after 50 prompt tokens, each draw accepted. */
static const int32_t golden_tokens[][12] = {
    {978, 978, 978, 978, 978, 978, 978, 978, 978, 978, 978, 978},
    {20205, 17588, 11732, 2073, 21518, 5463, 17906, 5674, 2253, 18190, 30308, 27162},
    {25049, 15442, 21409, 21409, 25049, 1829, 4194, 15442, 15442, 7653, 3839, 1829},
    {14856, 1177, 3079, 26018, 8207, 7634, 13442, 6585, 11937, 23378, 10543, 26397},
    {499, 1827, 1827, 25049, 15442, 1829, 15442, 17559, 25049, 15442, 499, 7653},
    {4108, 11547, 24437, 7629, 23593, 15498, 30736, 30736, 19975, 23593, 29493, 14760},
    {1827, 1827, 15442, 17559, 1827, 22268, 22268, 31758, 15442, 6858, 15442, 7653},
    {7653, 7653, 31758, 1827, 22268, 1827, 7653, 31758, 7653, 15442, 25049, 15442},
    {1449, 23428, 7354, 10931, 11649, 30384, 11061, 27876, 16540, 21561, 5519, 11554},
    {1015, 23103, 30348, 27364, 8860, 11097, 1717, 29464, 14648, 4193, 16993, 20616},
    {19499, 26058, 10957, 22190, 499, 14993, 2107, 21649, 25049, 25191, 17807, 10268},
    {15195, 30649, 28980, 29956, 6433, 18996, 8288, 7749, 26937, 2266, 1952, 978},
    {14902, 23075, 12899, 21033, 28990, 20392, 30348, 8934, 17773, 28086, 28990, 3744},
    {3875, 16291, 10063, 13590, 6208, 18942, 410, 20665, 404, 3969, 18875, 527},
    {389, 855, 303, 588, 748, 140, 409, 355, 208, 576, 303, 477},
    {786, 1542, 726, 635, 3230, 2765, 705, 1352, 1632, 3880, 1402, 741},
    {21409, 25049, 7653, 1827, 15442, 1829, 6858, 31758, 499, 22268, 29451, 17559},
    {978, 5990, 7374, 11547, 17335, 19668, 21922, 23438, 23593, 29130, 29493, 30774},
};

TEST_TIMEOUT(sampler_draws_the_tokens_it_always_drew, 120)
{
    enum { N = 32000, D = 12 };
    static float l[3][N];
    for (int k = 0; k < 3; k++) golden_row(l[k], N, k);
    int w[3], nw = widths(w);
    for (int k = 0; k < nw; k++) {
        CHECK_EQ_INT(syn_sampler_set_vector_width(w[k]), w[k]);
        for (size_t c = 0; c < sizeof golden_cases / sizeof golden_cases[0]; c++) {
            const struct golden *g = &golden_cases[c];
            struct syn_sampling_params p = syn_sampling_default_params();
            p.temperature = g->temperature;
            p.top_k = g->top_k;
            p.top_p = g->top_p;
            p.min_p = g->min_p;
            p.repetition_penalty = g->repetition;
            p.frequency_penalty = g->frequency;
            p.presence_penalty = g->presence;
            p.seed = 1234 + c;
            struct syn_sampler *s = syn_sampler_new(&p, N);
            for (int i = 0; i < 50; i++)
                syn_sampler_accept(s, (int32_t)(hash32(77u + (uint32_t)i) % N), 1);
            for (int d = 0; d < D; d++) {
                int32_t t = syn_sampler_sample(s, l[g->kind], NULL, NULL, 0);
                if (t != golden_tokens[c][d])
                    FAIL("width %d, case %zu, draw %d: token %d, before %d", w[k], c, d, t,
                         golden_tokens[c][d]);
                syn_sampler_accept(s, t, 0);
            }
            syn_sampler_free(s);
        }
    }
}

/* A nucleus limit that falls exactly on a running mass (1000 equal probabilities, top_p 0.5:
 * 500 of them reach it exactly): no shortcut can decide it, the reference arithmetic does, and
 * ties go to the lower ids: ids 0..499 only, each about as often. */
TEST(sampler_top_p_limit_on_a_boundary_keeps_the_lower_ids)
{
    enum { N = 1000, DRAWS = 8000 };
    static float l[N];
    static int count[N];
    for (int i = 0; i < N; i++) l[i] = 1.5f;
    struct syn_sampling_params p = syn_sampling_default_params();
    p.top_p = 0.5f;
    p.seed = 3;
    int w[3], nw = widths(w);
    for (int k = 0; k < nw; k++) {
        CHECK_EQ_INT(syn_sampler_set_vector_width(w[k]), w[k]);
        memset(count, 0, sizeof count);
        struct syn_sampler *s = syn_sampler_new(&p, N);
        for (int d = 0; d < DRAWS; d++) count[syn_sampler_sample(s, l, NULL, NULL, 0)]++;
        syn_sampler_free(s);
        for (int i = 500; i < N; i++) CHECK_EQ_INT(count[i], 0);
        for (int i = 0; i < 500; i++)
            if (count[i] < 3 || count[i] > 40)
                FAIL("id %d drawn %d times of %d", i, count[i], DRAWS);
    }
}
