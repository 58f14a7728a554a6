/*
 * The greedy pick, vectorised with GCC/Clang vector extensions (see greedy.h): portable C that
 * compiles to SSE on baseline x86-64 and to NEON on ARM.
 */
#include "greedy.h"

#include <string.h>

typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

int greedy_applies(const struct syn_sampling_params *p, int want_logprobs)
{
    /* the sampler's tests, negated: it penalises when any penalty differs from off */
    return p->temperature == 0.0f && p->repetition_penalty == 1.0f &&
           p->frequency_penalty == 0.0f && p->presence_penalty == 0.0f && !want_logprobs;
}

/* Lane-wise "x > m ? x : m": a NaN in x never wins, as in the sampler's scalar loop. */
static inline v4f vmax(v4f m, v4f x)
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

int32_t greedy_argmax(const float *w, int n)
{
    /* the sampler keeps best = w[0] and replaces it only with a larger value: when w[0] is NaN
     * nothing compares larger and it answers 0 */
    if (n <= 1 || w[0] != w[0]) return 0;
    /* pass 1: the largest value, in 16 independent lanes (NaNs never enter) */
    v4f a = {w[0], w[0], w[0], w[0]}, b = a, c = a, d = a;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        a = vmax(a, load4(w + i));
        b = vmax(b, load4(w + i + 4));
        c = vmax(c, load4(w + i + 8));
        d = vmax(d, load4(w + i + 12));
    }
    a = vmax(vmax(a, b), vmax(c, d));
    float m = a[0];
    for (int k = 1; k < 4; k++)
        if (a[k] > m) m = a[k];
    for (; i < n; i++)
        if (w[i] > m) m = w[i];
    /* pass 2: its first index, which is the one the scalar loop settles on (a later equal
     * value never replaces it; -0 and +0 compare equal in both) */
    v4f mv = {m, m, m, m};
    for (i = 0; i + 16 <= n; i += 16) {
        v4i e = (load4(w + i) == mv) | (load4(w + i + 4) == mv) | (load4(w + i + 8) == mv) |
                (load4(w + i + 12) == mv);
        if (e[0] | e[1] | e[2] | e[3]) break;
    }
    for (; i < n; i++)
        if (w[i] == m) return i;
    return 0; /* not reached: m is one of the values */
}
