/* Histograms and the Prometheus text format (see metrics.h). */
#include "gateway/metrics.h"

#include <event2/buffer.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static const double bounds[GW_HIST_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                               1,     2.5,  5,     10,   20,  30,   60};

void gw_hist_observe(struct gw_hist *h, double s)
{
    int b = 0;
    while (b < GW_HIST_BUCKETS && s > bounds[b]) b++;
    h->counts[b]++;
    h->sum += s;
    h->n++;
}

void gw_metric_header(struct evbuffer *out, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void add_escaped(struct evbuffer *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            evbuffer_add(out, "\\\\", 2);
        else if (*s == '"')
            evbuffer_add(out, "\\\"", 2);
        else if (*s == '\n')
            evbuffer_add(out, "\\n", 2);
        else
            evbuffer_add(out, s, 1);
    }
}

static void add_num(struct evbuffer *out, double v)
{
    if (isinf(v))
        evbuffer_add_printf(out, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15)
        evbuffer_add_printf(out, "%.0f", v);
    else
        evbuffer_add_printf(out, "%.9g", v);
}

static void labels(struct evbuffer *out, const char *label, const char *value, const char *label2,
                   const char *value2)
{
    if (!label) return;
    evbuffer_add_printf(out, "{%s=\"", label);
    add_escaped(out, value);
    evbuffer_add(out, "\"", 1);
    if (label2) {
        evbuffer_add_printf(out, ",%s=\"", label2);
        add_escaped(out, value2);
        evbuffer_add(out, "\"", 1);
    }
    evbuffer_add(out, "}", 1);
}

void gw_metric_value(struct evbuffer *out, const char *name, const char *label, const char *value,
                     const char *label2, const char *value2, double v)
{
    evbuffer_add_printf(out, "%s", name);
    labels(out, label, value, label2, value2);
    evbuffer_add(out, " ", 1);
    add_num(out, v);
    evbuffer_add(out, "\n", 1);
}

void gw_metric_hist(struct evbuffer *out, const char *name, const char *label, const char *value,
                    const struct gw_hist *h)
{
    char series[160], le[32];
    uint64_t cum = 0;
    snprintf(series, sizeof series, "%s_bucket", name);
    for (int b = 0; b <= GW_HIST_BUCKETS; b++) {
        cum += h->counts[b];
        if (b < GW_HIST_BUCKETS)
            snprintf(le, sizeof le, "%g", bounds[b]);
        else
            snprintf(le, sizeof le, "+Inf");
        gw_metric_value(out, series, label, value, "le", le, (double)cum);
    }
    snprintf(series, sizeof series, "%s_sum", name);
    gw_metric_value(out, series, label, value, NULL, NULL, h->sum);
    snprintf(series, sizeof series, "%s_count", name);
    gw_metric_value(out, series, label, value, NULL, NULL, (double)h->n);
}
