/*
 * Token sampling: from one row of logits to one token id, with the controls OpenAI-compatible
 * clients send (temperature, top-k, top-p, min-p, repetition/frequency/presence penalties, seed)
 * and the log-probability of the chosen token and of the top alternatives.
 *
 * A sampler belongs to one sequence: it keeps that sequence's random state and token counts for
 * penalties. The same seed, parameters and logits give the same tokens on every machine (the
 * generator is our own splitmix/xoshiro, the arithmetic is ordinary IEEE float).
 * All memory is allocated in syn_sampler_new, only what the parameters need (a greedy sampler
 * without penalties is a few dozen bytes); sampling allocates nothing.
 */
#ifndef SYNAPSE_SAMPLER_H
#define SYNAPSE_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

struct syn_sampling_params {
    float temperature;        /* 0 = greedy (argmax); default 1 */
    int top_k;                /* 0 = off */
    float top_p;              /* 1 = off */
    float min_p;              /* 0 = off: drop tokens with p < min_p * p_max */
    float repetition_penalty; /* 1 = off; > 1 discourages tokens already seen (CTRL-style) */
    float frequency_penalty;  /* 0 = off; OpenAI semantics: logit -= count * f */
    float presence_penalty;   /* 0 = off; logit -= (count > 0) * p */
    uint64_t seed;            /* random seed */
};

struct syn_sampling_params syn_sampling_default_params(void);

/* Validates ranges (temperature 0..100, top_p (0,1], min_p [0,1], penalties -2..2 for OpenAI's
 * two, repetition 0 < r <= 10, top_k >= 0). Returns 0 or SYN_EINVAL with a message. */
int syn_sampling_validate(const struct syn_sampling_params *p, char *err, size_t errlen);

struct syn_sampler;

/* NULL on allocation failure. */
struct syn_sampler *syn_sampler_new(const struct syn_sampling_params *p, int n_vocab);
void syn_sampler_free(struct syn_sampler *s);
/* Forgets history and restarts the random stream from seed. */
void syn_sampler_reset(struct syn_sampler *s, uint64_t seed);

/* Records a token of the sequence (prompt tokens count for the repetition penalty only;
 * generated tokens for all penalties): is_prompt says which. */
void syn_sampler_accept(struct syn_sampler *s, int32_t token, int is_prompt);

struct syn_logprob {
    int32_t token;
    float logprob;
};

/* Picks a token from logits (n_vocab floats, not modified). When out_logprob is non-NULL it
 * receives the chosen token's log-probability under the model's distribution (log-softmax of the
 * raw logits, as OpenAI reports it). When n_top > 0, top receives the n_top most likely tokens
 * under that distribution, most likely first. Returns the token id. */
int32_t syn_sampler_sample(struct syn_sampler *s, const float *logits, float *out_logprob,
                           struct syn_logprob *top, int n_top);

/* For tests and benchmarks: makes every sampler use vector kernels `floats` wide (16: AVX-512,
 * 8: AVX2, 4: the baseline), or the widest this CPU runs for 0 or a width it does not run.
 * Every width picks the same tokens. Returns the width now in use. */
int syn_sampler_set_vector_width(int floats);

/* ---- sampling on a backend's device (syn_engine_sample) ---- */

/* Everything a device needs to pick the token syn_sampler_sample would pick, for a sampler that
 * needs no host-side state (no penalties): the truncations, and the uniform number the
 * sampler's own stream gives for this draw, so that seeded runs stay reproducible. */
struct syn_sample_spec {
    float temperature; /* 0 = greedy */
    int top_k;
    float top_p;
    float min_p;
    double u; /* uniform in [0, 1); unused (0) when greedy */
};

/* 1 when the sampler can be run on a device: no repetition, frequency or presence penalty. */
int syn_sampler_device_ok(const struct syn_sampler *s);

/* Fills spec and advances the random stream exactly as one syn_sampler_sample call would. */
void syn_sampler_device_spec(struct syn_sampler *s, struct syn_sample_spec *spec);

#endif
