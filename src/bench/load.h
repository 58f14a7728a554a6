/*
 * The open-loop load generator behind `synapse bench load`. Requests go out at the times a trace
 * says (Poisson arrivals or a recorded trace, see trace.h), whether or not earlier ones have
 * finished, as streaming POST /v1/completions to any OpenAI-compatible server; every token's
 * arrival is timed as its bytes land. Latencies are measured from the request's scheduled time,
 * so a generator that falls behind shows it (the send lag is reported) instead of hiding the
 * server's queueing.
 *
 * Per request: time to first token (TTFT), time per output token (TPOT: (e2e - TTFT) / (tokens -
 * 1)), inter-token latencies (ITL, between streamed chunks) and end-to-end latency. Tokens are
 * the usage.completion_tokens the server reports at the end of the stream (requested with
 * stream_options.include_usage) or, when it reports none, the chunks with text.
 *
 * Goodput, as DistServe defines it: completed requests per second that met both objectives
 * (TTFT <= slo_ttft and TPOT <= slo_tpot). Attainment: the share of all scheduled requests
 * that did.
 *
 * One thread, one libevent loop, non-blocking sockets (http_client.h).
 */
#ifndef SYNAPSE_BENCH_LOAD_H
#define SYNAPSE_BENCH_LOAD_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "bench/trace.h"

struct syn_load_params {
    const char *url;               /* server base URL, "http://host:port" (required) */
    const char *model;             /* the model field; NULL = the first model of GET /v1/models */
    const char *api_key;           /* sent as "Authorization: Bearer KEY"; may be NULL */
    const struct syn_trace *trace; /* the arrivals and their lengths (required) */
    double slo_ttft_s;             /* objectives for goodput (default 0.2 s) */
    double slo_tpot_s;             /* (default 0.05 s) */
    double timeout_s;              /* per request, from its send (default 300 s) */
    int max_conns;                 /* connections open at once (default 8192) */
    double progress_s;             /* a progress line every this many seconds; 0 = none */
    FILE *progress;                /* where progress goes (default stderr) */
    uint64_t seed;                 /* varies the prompts' words (no two prompts share a prefix) */
    double warmup_s;               /* requests scheduled before this offset are sent as usual but
                                      left out of the report's counts and statistics (they stay
                                      in reqs[]); 0 = none */
};

struct syn_load_params syn_load_default_params(void);

/* What went wrong with a request. */
enum syn_load_outcome {
    SYN_LOAD_OK = 0,
    SYN_LOAD_HTTP = 1,    /* a status other than 200 (see status) */
    SYN_LOAD_CONNECT = 2, /* no connection */
    SYN_LOAD_CLOSED = 3,  /* the connection closed or reset before the end of the response */
    SYN_LOAD_TIMEOUT = 4, /* timeout_s passed */
    SYN_LOAD_PROTO = 5,   /* not HTTP, or a 200 that was not an event stream ending in [DONE] */
    SYN_LOAD_STREAM = 6,  /* an error object inside the stream */
    SYN_LOAD_UNSENT = 7,  /* the run ended before it went out (it never does unless stopped) */
};
#define SYN_LOAD_N_OUTCOMES 8

/* "ok", "http", "connect", "closed", "timeout", "protocol", "stream_error", "unsent". */
const char *syn_load_outcome_name(int outcome);

struct syn_load_req {
    double t_sched;    /* scheduled offset from the start (s) */
    double lag;        /* sent - scheduled (s) */
    double ttft;       /* scheduled -> first token (s); -1 without one */
    double tpot;       /* (e2e - ttft) / (tokens - 1) (s); -1 with fewer than 2 tokens */
    double e2e;        /* scheduled -> end of the response (s); -1 if it never ended */
    int prompt_tokens; /* as the server counted them (usage), else asked for (that many
                          words, about as many tokens) */
    int max_tokens;    /* asked for */
    int tokens;        /* output tokens counted */
    int chunks;        /* stream chunks with text */
    int status;        /* HTTP status, 0 when none came */
    int outcome;       /* enum syn_load_outcome */
    int good;          /* completed and met both objectives */
};

struct syn_load_dist {
    size_t n;
    double mean, p50, p90, p99, max;
};

struct syn_load_report {
    size_t n;        /* requests scheduled (= trace->n), the warm-up's included */
    size_t n_warmup; /* of which scheduled before warmup_s: in reqs[], in no count below */
    double warmup_s;
    size_t sent, ok, good; /* after the warm-up, as is everything below */
    size_t outcomes[SYN_LOAD_N_OUTCOMES];
    int http_status[16];   /* distinct non-200 statuses seen ... */
    size_t http_count[16]; /* ... and how often */
    int n_http;
    double wall_s;                    /* the warm-up's end to the last completion (or send) */
    double offered_rps;               /* requests / the trace's span, both after the warm-up */
    double send_rps;                  /* sent / (last send - the warm-up's end) */
    double lag_p50, lag_p99, lag_max; /* send lag (s) */
    double rps;                       /* completed ok requests / wall_s */
    double tokens_per_s;              /* output tokens of ok requests / wall_s */
    double goodput;                   /* good / wall_s */
    double attainment;                /* good / (n - n_warmup) */
    uint64_t out_tokens;
    struct syn_load_dist ttft, tpot, itl, e2e; /* over ok requests (s) */
    int max_conns_open;                        /* most connections open at once */
    char model[128];                           /* the model used */
    double slo_ttft_s, slo_tpot_s;
    struct syn_load_req *reqs; /* (n) per request; owned */
};

/* Runs the whole trace against the server and fills *out (free with syn_load_report_free).
 * Returns 0 when the run happened (whatever the requests' outcomes), or -1 with a message in
 * err when it could not start (bad URL, no model). */
int syn_load_run(const struct syn_load_params *p, struct syn_load_report **out, char *err,
                 size_t errlen);

/* A readable summary. */
void syn_load_print(const struct syn_load_report *r, FILE *f);

/* The summary as one JSON object, with per-request rows when with_requests. Returns 0 or -1. */
int syn_load_write_json(const struct syn_load_report *r, int with_requests, FILE *f);

/* One CSV row per request (t_sched,lag,status,outcome,prompt,max_tokens,tokens,ttft,tpot,e2e). */
int syn_load_write_csv(const struct syn_load_report *r, FILE *f);

void syn_load_report_free(struct syn_load_report *r);

#endif
