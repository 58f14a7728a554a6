/* Histograms, the Prometheus text format and the process collector (see metrics.h). */
#include "gateway/metrics.h"

#include <dirent.h>
#include <event2/buffer.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* ---- bucket sets ---- */

static const double b_ttft[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1,  1.5, 2,
                                2.5,   3,    5,     7.5,  10,  15,   20,  30,   45, 60};
static const double b_itl[] = {0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05,
                               0.075, 0.1,    0.15,  0.2,    0.3,  0.5,   0.75, 1,    2.5,  5};
static const double b_e2e[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,   2.5, 5,   10,  15,
                               20,   30,    45,   60,  90,   120, 180, 240, 300, 450, 600};
static const double b_queue[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                 2.5,   5,      10,    15,   20,    30,   60,  120,  300};
static const double b_step[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
static const double b_seq[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};
static const double b_tok[] = {1,   2,   4,    8,    16,   32,   64,   128,
                               256, 512, 1024, 2048, 4096, 8192, 16384};

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

void gw_hist_init(struct gw_hist *h, enum gw_buckets set)
{
    memset(h, 0, sizeof *h);
    switch (set) {
    case GW_BUCKETS_TTFT:
        h->bounds = b_ttft, h->n_bounds = N_OF(b_ttft);
        break;
    case GW_BUCKETS_ITL:
        h->bounds = b_itl, h->n_bounds = N_OF(b_itl);
        break;
    case GW_BUCKETS_E2E:
        h->bounds = b_e2e, h->n_bounds = N_OF(b_e2e);
        break;
    case GW_BUCKETS_QUEUE:
        h->bounds = b_queue, h->n_bounds = N_OF(b_queue);
        break;
    case GW_BUCKETS_STEP:
        h->bounds = b_step, h->n_bounds = N_OF(b_step);
        break;
    case GW_BUCKETS_COUNT_SEQ:
        h->bounds = b_seq, h->n_bounds = N_OF(b_seq);
        break;
    case GW_BUCKETS_COUNT_TOK:
        h->bounds = b_tok, h->n_bounds = N_OF(b_tok);
        break;
    }
}

void gw_hist_observe_n(struct gw_hist *h, double v, uint64_t k)
{
    if (!k || isnan(v)) return;
    int b = 0;
    while (b < h->n_bounds && v > h->bounds[b]) b++;
    h->counts[b] += k;
    h->sum += v * (double)k;
    h->n += k;
}

void gw_hist_observe(struct gw_hist *h, double v)
{
    gw_hist_observe_n(h, v, 1);
}

/* ---- the text format ---- */

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

int gw_metric_number(char *buf, size_t cap, double v)
{
    if (isnan(v)) return snprintf(buf, cap, "NaN");
    if (isinf(v)) return snprintf(buf, cap, v > 0 ? "+Inf" : "-Inf");
    if (v == floor(v) && fabs(v) < 1e15) return snprintf(buf, cap, "%.0f", v);
    /* the shortest form that reads back as the same double */
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(buf, cap, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    return n;
}

static void add_num(struct evbuffer *out, double v)
{
    char buf[40];
    int n = gw_metric_number(buf, sizeof buf, v);
    evbuffer_add(out, buf, (size_t)n);
}

static void labels(struct evbuffer *out, const char *label, const char *value, const char *label2,
                   const char *value2)
{
    if (!label && !label2) return;
    evbuffer_add(out, "{", 1);
    if (label) {
        evbuffer_add_printf(out, "%s=\"", label);
        add_escaped(out, value ? value : "");
        evbuffer_add(out, "\"", 1);
    }
    if (label2) {
        evbuffer_add_printf(out, "%s%s=\"", label ? "," : "", label2);
        add_escaped(out, value2 ? value2 : "");
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
    char series[160], le[40];
    uint64_t cum = 0;
    snprintf(series, sizeof series, "%s_bucket", name);
    for (int b = 0; b <= h->n_bounds; b++) {
        cum += h->counts[b];
        if (b < h->n_bounds)
            gw_metric_number(le, sizeof le, h->bounds[b]);
        else
            snprintf(le, sizeof le, "+Inf");
        gw_metric_value(out, series, label, value, "le", le, (double)cum);
    }
    snprintf(series, sizeof series, "%s_sum", name);
    gw_metric_value(out, series, label, value, NULL, NULL, h->sum);
    snprintf(series, sizeof series, "%s_count", name);
    gw_metric_value(out, series, label, value, NULL, NULL, (double)h->n);
}

/* ---- the process collector ---- */

/* Seconds since the epoch at boot, from /proc/stat's btime; 0 if unknown. */
static double boot_time(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return 0;
    char line[256];
    double bt = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "btime ", 6)) {
            bt = strtod(line + 6, NULL);
            break;
        }
    fclose(f);
    return bt;
}

void gw_metric_process(struct evbuffer *out)
{
    long ticks = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = 0;
    /* fields after the command name, which is in parentheses and may hold spaces */
    char *p = strrchr(buf, ')');
    unsigned long utime = 0, stime = 0, vsize = 0;
    unsigned long long start = 0;
    long rss = 0;
    int have = p && ticks > 0 &&
               sscanf(p + 2,
                      "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d "
                      "%*d %llu %lu %ld",
                      &utime, &stime, &start, &vsize, &rss) == 5;
    if (have) {
        gw_metric_header(out, "process_cpu_seconds_total", "counter",
                         "Total user and system CPU time spent in seconds.");
        gw_metric_value(out, "process_cpu_seconds_total", NULL, NULL, NULL, NULL,
                        (double)(utime + stime) / (double)ticks);
        gw_metric_header(out, "process_resident_memory_bytes", "gauge",
                         "Resident memory size in bytes.");
        gw_metric_value(out, "process_resident_memory_bytes", NULL, NULL, NULL, NULL,
                        (double)rss * (double)page);
        gw_metric_header(out, "process_virtual_memory_bytes", "gauge",
                         "Virtual memory size in bytes.");
        gw_metric_value(out, "process_virtual_memory_bytes", NULL, NULL, NULL, NULL, (double)vsize);
        double bt = boot_time();
        if (bt > 0) {
            gw_metric_header(out, "process_start_time_seconds", "gauge",
                             "Start time of the process since unix epoch in seconds.");
            gw_metric_value(out, "process_start_time_seconds", NULL, NULL, NULL, NULL,
                            bt + (double)start / (double)ticks);
        }
    }
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        long fds = 0;
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.') fds++;
        closedir(d);
        gw_metric_header(out, "process_open_fds", "gauge", "Number of open file descriptors.");
        gw_metric_value(out, "process_open_fds", NULL, NULL, NULL, NULL,
                        (double)(fds > 0 ? fds - 1 : 0)); /* less the one reading the dir */
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        gw_metric_header(out, "process_max_fds", "gauge",
                         "Maximum number of open file descriptors.");
        gw_metric_value(out, "process_max_fds", NULL, NULL, NULL, NULL,
                        rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur);
    }
}
