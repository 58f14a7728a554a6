/*
 * syn_sampler_sample's cost per row of logits (µs/row) for greedy, temperature 1, top-k 40,
 * top-p 0.9, min-p 0.05 and the three penalties, on two kinds of rows: "llm" (a few dozen
 * plausible tokens well above a Gaussian bulk, as a trained model gives) and "flat" (Gaussian
 * logits of standard deviation 1, as a random-weight model gives: the nucleus holds most of the
 * vocabulary). Also the cost of syn_sampler_new + syn_sampler_free.
 *
 * Built by bench/sampler.sh, which can link a second sampler (src/engine/sampler.c of another
 * commit, its symbols renamed old_*) so that old and new are timed in one run, alternating, and
 * their draws compared: every row is sampled by both with the same seeds, so "same" counts the
 * draws where the two picked the same token. --check N draws N times with random parameters on
 * random rows of random lengths (old and new must agree on every one). Not a test.
 *
 *   sampler [--vocab N] [--reps R] [--draws D] [--only MODE] [--width W] [--check N]
 *
 * --width W: the new sampler's vector kernels W floats wide (16, 8, 4) instead of the widest.
 */
#define _POSIX_C_SOURCE 200809L
#include "synapse/sampler.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NROWS 16 /* rows in flight, as 16 sequences of a batch: one sampler each */

struct impl {
    const char *name;
    struct syn_sampler *(*make)(const struct syn_sampling_params *, int);
    void (*release)(struct syn_sampler *);
    void (*accept)(struct syn_sampler *, int32_t, int);
    int32_t (*sample)(struct syn_sampler *, const float *, float *, struct syn_logprob *, int);
};

#ifdef SAMPLER_OLD
struct syn_sampler *old_syn_sampler_new(const struct syn_sampling_params *p, int n_vocab);
void old_syn_sampler_free(struct syn_sampler *s);
void old_syn_sampler_accept(struct syn_sampler *s, int32_t token, int is_prompt);
int32_t old_syn_sampler_sample(struct syn_sampler *s, const float *logits, float *out_logprob,
                               struct syn_logprob *top, int n_top);
static const struct impl impls[] = {
    {"old", old_syn_sampler_new, old_syn_sampler_free, old_syn_sampler_accept,
     old_syn_sampler_sample},
    {"new", syn_sampler_new, syn_sampler_free, syn_sampler_accept, syn_sampler_sample},
};
#else
static const struct impl impls[] = {
    {"new", syn_sampler_new, syn_sampler_free, syn_sampler_accept, syn_sampler_sample},
};
#endif
enum { N_IMPL = sizeof impls / sizeof impls[0] };

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static uint64_t g_rng = 88172645463325252ull;

static double uniform(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) * (1.0 / 9007199254740992.0);
}

static double gauss(void)
{
    double u = uniform() + 1e-300, v = uniform();
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* flat: N(0, 1). llm: a N(0, 2^2) bulk and 32 plausible tokens, the best c in [12, 20] (how sure
 * the model is varies from row to row), each next one 0.25-0.75 lower. */
static void make_row(float *l, int n, int flat)
{
    for (int i = 0; i < n; i++) l[i] = (float)(gauss() * (flat ? 1.0 : 2.0));
    if (flat) return;
    double c = 12.0 + 8.0 * uniform();
    for (int j = 0; j < 32 && j < n; j++) {
        l[(int)(uniform() * n)] = (float)c;
        c -= 0.25 + 0.5 * uniform();
    }
}

/* Tokens in the top-p 0.9 nucleus of row l (double precision, for the report only). */
static int nucleus_size(const float *l, int n, double *tmp)
{
    double mx = -INFINITY, z = 0, acc = 0;
    for (int i = 0; i < n; i++) mx = l[i] > mx ? l[i] : mx;
    for (int i = 0; i < n; i++) z += tmp[i] = exp(l[i] - mx);
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_d);
    int k = 0;
    for (int i = n - 1; i >= 0 && acc < 0.9 * z; i--) acc += tmp[i], k++;
    return k;
}

struct mode {
    const char *name;
    float temperature, top_p, min_p, rep, freq, pres;
    int top_k;
};

static const struct mode modes[] = {
    {"greedy", 0.0f, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f, 0},
    {"temperature 1", 1.0f, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f, 0},
    {"top-k 40", 1.0f, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f, 40},
    {"top-p 0.9", 1.0f, 0.9f, 0.0f, 1.0f, 0.0f, 0.0f, 0},
    {"min-p 0.05", 1.0f, 1.0f, 0.05f, 1.0f, 0.0f, 0.0f, 0},
    {"penalties", 1.0f, 1.0f, 0.0f, 1.1f, 0.5f, 0.5f, 0},
};

static struct syn_sampling_params params_of(const struct mode *m)
{
    struct syn_sampling_params p = syn_sampling_default_params();
    p.temperature = m->temperature;
    p.top_k = m->top_k;
    p.top_p = m->top_p;
    p.min_p = m->min_p;
    p.repetition_penalty = m->rep;
    p.frequency_penalty = m->freq;
    p.presence_penalty = m->pres;
    return p;
}

/* One mode on one set of rows: each impl gets NROWS samplers (seeds 1..NROWS, a 256-token
 * history when penalised); reps rounds, the impls alternating, each round draws times. */
static void run_mode(const struct mode *m, float *const *rows, int n, int reps, int draws)
{
    struct syn_sampling_params p = params_of(m);
    int penal = m->rep != 1.0f || m->freq != 0.0f || m->pres != 0.0f;
    struct syn_sampler *smp[N_IMPL][NROWS];
    int32_t *tok[N_IMPL];
    double *us[N_IMPL];
    for (int k = 0; k < N_IMPL; k++) {
        tok[k] = malloc(sizeof *tok[k] * (size_t)draws);
        us[k] = malloc(sizeof *us[k] * (size_t)reps);
        for (int r = 0; r < NROWS; r++) {
            p.seed = (uint64_t)r + 1;
            smp[k][r] = impls[k].make(&p, n);
            if (penal)
                for (int h = 0; h < 256; h++) impls[k].accept(smp[k][r], (h * 7919) % n, h < 200);
        }
    }
    long same = 0, compared = 0;
    for (int rep = 0; rep < reps; rep++) {
        for (int kk = 0; kk < N_IMPL; kk++) {
            int k = (kk + rep) % N_IMPL; /* alternate which goes first */
            double t0 = now_s();
            for (int d = 0; d < draws; d++) {
                struct syn_sampler *s = smp[k][d % NROWS];
                tok[k][d] = impls[k].sample(s, rows[d % NROWS], NULL, NULL, 0);
                if (penal) impls[k].accept(s, tok[k][d], 0);
            }
            us[k][rep] = (now_s() - t0) * 1e6 / draws;
        }
        for (int d = 0; N_IMPL > 1 && d < draws; d++) same += tok[0][d] == tok[1][d];
        compared += draws;
    }
    printf("| %-14s |", m->name);
    for (int k = 0; k < N_IMPL; k++) {
        qsort(us[k], (size_t)reps, sizeof *us[k], cmp_d);
        printf(" %9.1f |", us[k][reps / 2]);
    }
    if (N_IMPL > 1)
        printf(" %6.1fx | %ld/%ld |", us[0][reps / 2] / us[1][reps / 2], same, compared);
    printf("\n");
    for (int k = 0; k < N_IMPL; k++) {
        for (int r = 0; r < NROWS; r++) impls[k].release(smp[k][r]);
        free(tok[k]);
        free(us[k]);
    }
}

static void run_create(int n, int reps)
{
    struct syn_sampling_params p = syn_sampling_default_params();
    printf("| %-14s |", "new + free");
    double first = 0;
    for (int k = 0; k < N_IMPL; k++) {
        double best = INFINITY;
        for (int rep = 0; rep < reps; rep++) {
            double t0 = now_s();
            for (int i = 0; i < 64; i++) impls[k].release(impls[k].make(&p, n));
            double t = (now_s() - t0) * 1e6 / 64;
            best = t < best ? t : best;
        }
        printf(" %9.2f |", best);
        if (k == 0) first = best;
        if (k == 1) printf(" %6.1fx | |", first / best);
    }
    printf("\n");
}

/* Random parameters on random rows: old and new must draw the same tokens and report the same
 * log-probabilities. Returns the number of disagreements. */
static long check(long n_draws)
{
    long bad = 0;
    float *l = malloc(sizeof *l * 40000);
    for (long done = 0; done < n_draws;) {
        int n = uniform() < 0.5 ? 1 + (int)(uniform() * 200) : 1 + (int)(uniform() * 40000);
        int kind = (int)(uniform() * 5);
        make_row(l, n, kind & 1);
        if (kind == 2) /* ties: a few distinct values */
            for (int i = 0; i < n; i++) l[i] = (float)(int)(l[i] * 2);
        if (kind == 4) /* all equal: top-p limits fall on running masses */
            for (int i = 0; i < n; i++) l[i] = 0.5f;
        if (kind == 3 && n > 4) { /* specials */
            l[(int)(uniform() * n)] = NAN;
            l[(int)(uniform() * n)] = -INFINITY;
            l[(int)(uniform() * n)] = -100.0f;
        }
        struct syn_sampling_params p = syn_sampling_default_params();
        double x = uniform();
        p.temperature = x < 0.1 ? 0.0f : (float)(0.05 + 2.5 * uniform());
        if (uniform() < 0.5) p.top_k = 1 + (int)(uniform() * (uniform() < 0.5 ? 50 : n));
        if (uniform() < 0.5) p.top_p = (float)(0.02 + 0.98 * uniform());
        if (uniform() < 0.3) p.top_p = uniform() < 0.5 ? 0.999999f : 0.5f;
        if (uniform() < 0.4) p.min_p = (float)(uniform() * (uniform() < 0.5 ? 0.2 : 1.0));
        if (uniform() < 0.3) p.repetition_penalty = (float)(0.5 + uniform());
        if (uniform() < 0.3) p.frequency_penalty = (float)(4 * uniform() - 2);
        if (uniform() < 0.3) p.presence_penalty = (float)(4 * uniform() - 2);
        p.seed = (uint64_t)(uniform() * 1e15);
        int want_lp = uniform() < 0.2;
        struct syn_sampler *a = impls[0].make(&p, n), *b = impls[N_IMPL - 1].make(&p, n);
        for (int h = 0; h < 20; h++) {
            int t = (int)(uniform() * n);
            impls[0].accept(a, t, h & 1);
            impls[N_IMPL - 1].accept(b, t, h & 1);
        }
        for (int d = 0; d < 16; d++, done++) {
            float lpa = 0, lpb = 0;
            struct syn_logprob ta[5], tb[5];
            int32_t x1 = impls[0].sample(a, l, want_lp ? &lpa : NULL, ta, want_lp ? 5 : 0);
            int32_t x2 = impls[N_IMPL - 1].sample(b, l, want_lp ? &lpb : NULL, tb, want_lp ? 5 : 0);
            if (x1 != x2 || memcmp(&lpa, &lpb, sizeof lpa) ||
                (want_lp && memcmp(ta, tb, sizeof ta[0] * (size_t)(n < 5 ? n : 5)))) {
                if (bad++ < 10)
                    fprintf(
                        stderr,
                        "check: n %d kind %d t %g k %d p %.9g min_p %g pen %g/%g/%g: %d vs %d\n", n,
                        kind, (double)p.temperature, p.top_k, (double)p.top_p, (double)p.min_p,
                        (double)p.repetition_penalty, (double)p.frequency_penalty,
                        (double)p.presence_penalty, x1, x2);
            }
            impls[0].accept(a, x1, 0);
            impls[N_IMPL - 1].accept(b, x2, 0);
        }
        impls[0].release(a);
        impls[N_IMPL - 1].release(b);
    }
    free(l);
    return bad;
}

int main(int argc, char **argv)
{
    int n = 32000, reps = 7, draws = 256;
    long n_check = 0;
    const char *only = NULL;
    int width = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--vocab") && i + 1 < argc)
            n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--draws") && i + 1 < argc)
            draws = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--check") && i + 1 < argc)
            n_check = atol(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else if (!strcmp(argv[i], "--width") && i + 1 < argc)
            width = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: sampler [--vocab N] [--reps R] [--draws D] [--only MODE] "
                            "[--width W] [--check N]\n");
            return 2;
        }
    }
    if (n < 1 || reps < 1 || draws < 1) return 2;
    width = syn_sampler_set_vector_width(width);
    if (n_check > 0) {
        long bad = check(n_check);
        printf("check: %ld draws with random parameters, %ld disagreements (%s against %s, "
               "%d-float vectors)\n",
               n_check, bad, impls[0].name, impls[N_IMPL - 1].name, width);
        return bad != 0;
    }
    float *rows[NROWS];
    double *tmp = malloc(sizeof *tmp * (size_t)n);
    for (int flat = 0; flat < 2; flat++) {
        double nuc = 0;
        for (int r = 0; r < NROWS; r++) {
            rows[r] = malloc(sizeof *rows[r] * (size_t)n);
            make_row(rows[r], n, flat);
            nuc += nucleus_size(rows[r], n, tmp);
        }
        printf("\n%s rows, vocabulary %d, %d rows in turn (top-p 0.9 nucleus: %.0f tokens on "
               "average), µs per row, median of %d rounds of %d draws; new: %d-float vectors\n\n",
               flat ? "flat" : "llm", n, NROWS, nuc / NROWS, reps, draws, width);
        printf("| %-14s |", "mode");
        for (int k = 0; k < N_IMPL; k++) printf(" %9s |", impls[k].name);
        if (N_IMPL > 1) printf(" speedup | same draws |");
        printf("\n|---|");
        for (int k = 0; k < N_IMPL; k++) printf("---|");
        if (N_IMPL > 1) printf("---|---|");
        printf("\n");
        for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++)
            if (!only || strstr(modes[m].name, only)) run_mode(&modes[m], rows, n, reps, draws);
        if (!flat && !only) run_create(n, reps);
        for (int r = 0; r < NROWS; r++) free(rows[r]);
    }
    free(tmp);
    return 0;
}
