/* The worker's greedy pick (src/worker/greedy.c) against the sampler it stands in for: the same
 * token on random rows, ties, NaNs, infinities, signed zeros and every length around the vector
 * width, and the cases where the sampler must be used instead. */
#include "harness.h"
#include "synapse/sampler.h"
#include "worker/greedy.h"

#include <math.h>

static int32_t sampler_pick(const float *l, int n)
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

TEST(greedy_matches_the_sampler)
{
    static float l[4099];
    for (int n = 1; n <= 70; n++) /* every tail length around the 16-wide blocks */
        for (int rep = 0; rep < 20; rep++) {
            for (int i = 0; i < n; i++) l[i] = (float)(rnd() % 7) - 3.0f; /* many ties */
            CHECK_EQ_INT(greedy_argmax(l, n), sampler_pick(l, n));
        }
    for (int rep = 0; rep < 200; rep++) {
        int n = 4000 + (int)(rnd() % 99);
        for (int i = 0; i < n; i++) l[i] = (float)rnd() / 65536.0f - 1000.0f;
        /* specials at random places: NaN, -inf, +inf, -0 and +0, repeated maxima */
        for (int k = 0; k < 8; k++) {
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
        CHECK_EQ_INT(greedy_argmax(l, n), sampler_pick(l, n));
    }
    /* the sampler's edge cases: a NaN first answers 0; all -inf answers 0; signed zeros tie */
    float nan_first[20], all_ninf[20], zeros[20];
    for (int i = 0; i < 20; i++) nan_first[i] = (float)i, all_ninf[i] = -INFINITY;
    nan_first[0] = NAN;
    for (int i = 0; i < 20; i++) zeros[i] = -1.0f;
    zeros[5] = -0.0f;
    zeros[9] = 0.0f;
    CHECK_EQ_INT(greedy_argmax(nan_first, 20), sampler_pick(nan_first, 20));
    CHECK_EQ_INT(greedy_argmax(all_ninf, 20), sampler_pick(all_ninf, 20));
    CHECK_EQ_INT(greedy_argmax(zeros, 20), 5);
    CHECK_EQ_INT(sampler_pick(zeros, 20), 5);
}

TEST(greedy_applies_only_where_the_sampler_is_an_argmax)
{
    struct syn_sampling_params p = syn_sampling_default_params();
    CHECK(!greedy_applies(&p, 0)); /* temperature 1 */
    p.temperature = 0;
    CHECK(greedy_applies(&p, 0));
    CHECK(!greedy_applies(&p, 1)); /* logprobs come from the sampler */
    struct syn_sampling_params q = p;
    q.repetition_penalty = 1.1f;
    CHECK(!greedy_applies(&q, 0));
    q = p;
    q.frequency_penalty = 0.5f;
    CHECK(!greedy_applies(&q, 0));
    q = p;
    q.presence_penalty = -0.5f;
    CHECK(!greedy_applies(&q, 0));
    q = p; /* truncations do not matter at temperature 0 */
    q.top_k = 3;
    q.top_p = 0.5f;
    q.min_p = 0.2f;
    CHECK(greedy_applies(&q, 0));
}
