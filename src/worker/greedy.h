/*
 * The greedy pick (temperature 0, no penalties, no logprobs) without the sampler's general path.
 *
 * syn_sampler_sample copies the logits into its work area (for the penalties) and then scans
 * them one element at a time: about 25 us per row of a 32,000-token vocabulary here, which at
 * 16 sequences is a tenth of a stories15m engine step spent between steps. This finds the same
 * token (the first index of the largest non-NaN logit; index 0 when logit 0 is NaN, as the
 * sampler's running comparison gives) in two vector passes over the row, about 4x faster.
 * It belongs in the sampler (src/engine/sampler.c); until it is there, the worker uses it for
 * the jobs it applies to, and tests/unit/test_greedy.c holds it to the sampler's answer.
 */
#ifndef SYN_WORKER_GREEDY_H
#define SYN_WORKER_GREEDY_H

#include "synapse/sampler.h"

#include <stdint.h>

/* 1 when syn_sampler_sample with p (and no logprobs asked) is a plain argmax. */
int greedy_applies(const struct syn_sampling_params *p, int want_logprobs);

/* The token syn_sampler_sample picks from logits (n floats, n >= 1) when greedy_applies. */
int32_t greedy_argmax(const float *logits, int n);

#endif
