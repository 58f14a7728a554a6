/*
 * Prometheus text exposition for the gateway's /metrics: counters and gauges are plain fields of
 * the structures that own them; this module holds the latency histograms and writes the text
 * format (names, HELP/TYPE lines, label escaping). Later issues add the autoscaler's metrics.
 */
#ifndef SYN_GW_METRICS_H
#define SYN_GW_METRICS_H

#include <stdint.h>

struct evbuffer;

#define GW_HIST_BUCKETS 14

/* A latency histogram in seconds with fixed buckets (5 ms .. 60 s, then +Inf). */
struct gw_hist {
    uint64_t counts[GW_HIST_BUCKETS + 1]; /* per bucket (not cumulative); last = +Inf */
    double sum;
    uint64_t n;
};

void gw_hist_observe(struct gw_hist *h, double seconds);

/* "# HELP" and "# TYPE" lines. */
void gw_metric_header(struct evbuffer *out, const char *name, const char *type, const char *help);
/* name{label="value"[,label2="value2"]} v. label2 may be NULL. Values are escaped. */
void gw_metric_value(struct evbuffer *out, const char *name, const char *label, const char *value,
                     const char *label2, const char *value2, double v);
/* The _bucket, _sum and _count series of one labelled histogram. */
void gw_metric_hist(struct evbuffer *out, const char *name, const char *label, const char *value,
                    const struct gw_hist *h);

#endif
