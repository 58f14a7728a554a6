/*
 * Request traces for the load generator and the cost simulator: a list of arrivals, each with a
 * time offset and the prompt and output lengths in tokens. Read from a CSV such as the Azure LLM
 * inference traces (TIMESTAMP, ContextTokens, GeneratedTokens; a UTF-8 byte-order mark and CRLF
 * line ends are accepted), or made up as Poisson arrivals at a fixed rate. Both `synapse bench
 * load` and `synapse bench sim` replay the same struct, scaled the same way, so that a real run
 * and a simulated one see exactly the same requests.
 *
 * Not a general CSV reader: no quoted fields, three columns found by name.
 */
#ifndef SYNAPSE_BENCH_TRACE_H
#define SYNAPSE_BENCH_TRACE_H

#include <stddef.h>
#include <stdint.h>

struct syn_trace_req {
    double t;          /* seconds since the first arrival (after scaling) */
    int prompt_tokens; /* >= 1 */
    int output_tokens; /* >= 1 */
};

struct syn_trace {
    struct syn_trace_req *reqs; /* (n) in arrival order; from malloc, freed by syn_trace_free */
    size_t n;
    double span_s; /* time of the last arrival (reqs[n-1].t), 0 when n < 2 */
};

/* Reads a CSV trace. The header names the columns (case-insensitive): a time column
 * ("TIMESTAMP", "time", "timestamp") holding "YYYY-MM-DD HH:MM:SS[.frac]" or plain seconds, a
 * prompt column ("ContextTokens", "prompt_tokens", "input_tokens") and an output column
 * ("GeneratedTokens", "output_tokens"). Rows are sorted by time and offsets start at 0.
 * Returns 0, or a negative syn_err with "trace: FILE line N: ..." in err. */
int syn_trace_load(const char *path, struct syn_trace **out, char *err, size_t errlen);

/* The same from a buffer (len bytes, need not be NUL-terminated); name is used in messages. */
int syn_trace_parse(const char *buf, size_t len, const char *name, struct syn_trace **out,
                    char *err, size_t errlen);

/* Poisson arrivals at rate requests/s in [0, duration_s) (exponential gaps), every one with the
 * given lengths. Deterministic for a seed. Returns 0 or SYN_ENOMEM / SYN_EINVAL. */
int syn_trace_poisson(double rate, double duration_s, int prompt_tokens, int output_tokens,
                      uint64_t seed, struct syn_trace **out);

struct syn_trace_scaling {
    double start_s;     /* drop arrivals before this offset (in the trace's own seconds) */
    double time_scale;  /* offsets are multiplied by this: 0.5 replays twice as fast (default 1) */
    double token_scale; /* prompt and output lengths are multiplied by this, rounded, >= 1 */
    double duration_s;  /* after scaling keep arrivals with t < duration_s; 0 = all */
    int max_context;    /* prompt + output <= this (prompt shortened first); 0 = no limit */
};

/* Applies s in place: start, time scale, duration, then token scale and context limit. Offsets
 * start at 0 again afterwards. */
void syn_trace_scale(struct syn_trace *t, const struct syn_trace_scaling *s);

void syn_trace_free(struct syn_trace *t);

#endif
