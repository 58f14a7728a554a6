/*
 * Prometheus text exposition (format 0.0.4) for the gateway's /metrics and the worker's: latency
 * and size histograms with bucket sets chosen per quantity, the writer (HELP/TYPE lines, label
 * escaping, numbers, cumulative buckets), and the standard process_* metrics read from
 * /proc/self. Counters and gauges are plain fields of the structures that own them; this module
 * only formats them. The worker (src/worker/metrics.c) uses it too: one format, one writer.
 *
 * Not thread-safe by itself: a histogram belongs to one thread, or to whoever holds its lock.
 * docs/metrics.md lists every metric that is written with it.
 */
#ifndef SYN_GW_METRICS_H
#define SYN_GW_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

#define GW_HIST_MAX_BUCKETS 24

/* A histogram over fixed upper bounds (ascending; +Inf is implied after the last). */
struct gw_hist {
    const double *bounds;                     /* n_bounds upper bounds, static storage */
    int n_bounds;                             /* 1 .. GW_HIST_MAX_BUCKETS */
    uint64_t counts[GW_HIST_MAX_BUCKETS + 1]; /* per bucket, not cumulative; [n_bounds] = +Inf */
    double sum;                               /* of every observed value */
    uint64_t n;                               /* observations */
};

/* Bucket sets, each for the range its quantity takes in LLM serving. */
enum gw_buckets {
    GW_BUCKETS_TTFT,      /* time to first token: 5 ms .. 60 s (prefill, queueing, cold start) */
    GW_BUCKETS_ITL,       /* inter-token latency: 1 ms .. 5 s (one decode step of a batch) */
    GW_BUCKETS_E2E,       /* whole request: 10 ms .. 10 min (long generations) */
    GW_BUCKETS_QUEUE,     /* queue wait: 1 ms .. 5 min (scale from zero waits a cold start) */
    GW_BUCKETS_STEP,      /* one engine step: 100 us .. 10 s */
    GW_BUCKETS_COUNT_SEQ, /* sequences per step: 1 .. 512 (powers of two) */
    GW_BUCKETS_COUNT_TOK, /* tokens per step: 1 .. 16384 (powers of two) */
};

/* Zeroes h and gives it a bucket set. */
void gw_hist_init(struct gw_hist *h, enum gw_buckets set);
void gw_hist_observe(struct gw_hist *h, double v);
/* k observations of the same value v (e.g. k tokens that arrived dt apart each). */
void gw_hist_observe_n(struct gw_hist *h, double v, uint64_t k);

/* "# HELP" and "# TYPE" lines. help must not contain a newline. */
void gw_metric_header(struct evbuffer *out, const char *name, const char *type, const char *help);
/* name{label="value"[,label2="value2"]} v. label and label2 may be NULL. Values are escaped;
 * v may be NaN or infinite. */
void gw_metric_value(struct evbuffer *out, const char *name, const char *label, const char *value,
                     const char *label2, const char *value2, double v);
/* The _bucket (cumulative, with le), _sum and _count series of one histogram, with one optional
 * label. */
void gw_metric_hist(struct evbuffer *out, const char *name, const char *label, const char *value,
                    const struct gw_hist *h);

/* The process collector's standard families, from /proc/self (what client libraries export, so
 * that existing dashboards work): process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_open_fds, process_max_fds,
 * process_start_time_seconds. A value that cannot be read is left out. */
void gw_metric_process(struct evbuffer *out);

/* Formats a number as the text format wants it ("NaN", "+Inf", integers without a fraction).
 * Returns the length written (buf of at least 32 bytes). For tests and hand-written output. */
int gw_metric_number(char *buf, size_t cap, double v);

#endif
