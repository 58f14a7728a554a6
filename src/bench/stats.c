/* Percentiles and sample arrays (stats.h). */
#include "bench/stats.h"

#include <stdlib.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void syn_stats_sort(double *v, size_t n)
{
    if (n > 1) qsort(v, n, sizeof *v, cmp_double);
}

double syn_stats_quantile(const double *sorted, size_t n, double q)
{
    if (n == 0) return 0;
    if (q <= 0) return sorted[0];
    if (q >= 1) return sorted[n - 1];
    double pos = q * (double)(n - 1);
    size_t i = (size_t)pos;
    double f = pos - (double)i;
    if (i + 1 >= n) return sorted[n - 1];
    return sorted[i] + f * (sorted[i + 1] - sorted[i]);
}

double syn_stats_mean(const double *v, size_t n)
{
    if (n == 0) return 0;
    double s = 0;
    for (size_t i = 0; i < n; i++) s += v[i];
    return s / (double)n;
}

int syn_samples_add(struct syn_samples *s, double x)
{
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 256;
        double *nv = realloc(s->v, nc * sizeof *nv);
        if (!nv) return -1;
        s->v = nv;
        s->cap = nc;
    }
    s->v[s->n++] = x;
    return 0;
}

void syn_samples_release(struct syn_samples *s)
{
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}
