/*
 * Percentiles for the load generator and the simulator: sort once, then read any quantile by
 * linear interpolation between the two nearest ranks (NumPy's default, so numbers can be checked
 * against it).
 */
#ifndef SYNAPSE_BENCH_STATS_H
#define SYNAPSE_BENCH_STATS_H

#include <stddef.h>

/* Sorts v[0..n) ascending in place. */
void syn_stats_sort(double *v, size_t n);

/* The q-quantile (0..1) of sorted v; 0 when n == 0. */
double syn_stats_quantile(const double *sorted, size_t n, double q);

/* Mean of v; 0 when n == 0. */
double syn_stats_mean(const double *v, size_t n);

/* A growable array of doubles (latency samples). */
struct syn_samples {
    double *v; /* (cap) from realloc, freed by syn_samples_release */
    size_t n, cap;
};

/* Appends x; returns 0 or -1 when out of memory (the sample is dropped). */
int syn_samples_add(struct syn_samples *s, double x);
void syn_samples_release(struct syn_samples *s);

#endif
