/*
 * Traces (trace.h): the CSV reader, Poisson arrivals and scaling.
 */
#include "bench/trace.h"

#include "synapse/error.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- small helpers ---- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double uniform(uint64_t *s)
{
    return (double)(splitmix64(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static long days_from_civil(long y, long m, long d)
{
    y -= m <= 2;
    long era = (y >= 0 ? y : y - 399) / 400;
    long yoe = y - era * 400;
    long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* "YYYY-MM-DD HH:MM:SS[.frac]" (or 'T' between) or a plain number of seconds. */
static int parse_time(const char *s, size_t n, double *out)
{
    char buf[64];
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, s, n);
    buf[n] = 0;
    int y, mo, d, h, mi, consumed = 0;
    double sec;
    if (sscanf(buf, "%4d-%2d-%2d%*1[ T]%2d:%2d:%lf%n", &y, &mo, &d, &h, &mi, &sec, &consumed) ==
            6 &&
        buf[consumed] == 0) {
        if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec < 0 || sec >= 61)
            return -1;
        *out = (double)days_from_civil(y, mo, d) * 86400.0 + h * 3600.0 + mi * 60.0 + sec;
        return 0;
    }
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (end == buf || *end || errno || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

static int parse_count(const char *s, size_t n, long *out)
{
    char buf[32];
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, s, n);
    buf[n] = 0;
    char *end;
    errno = 0;
    long v = strtol(buf, &end, 10);
    if (end == buf || *end || errno || v < 0 || v > 100000000L) return -1;
    *out = v;
    return 0;
}

static int name_is(const char *s, size_t n, const char *const *names)
{
    for (; *names; names++)
        if (strlen(*names) == n && !strncasecmp(s, *names, n)) return 1;
    return 0;
}

static int cmp_req(const void *a, const void *b)
{
    double x = ((const struct syn_trace_req *)a)->t, y = ((const struct syn_trace_req *)b)->t;
    return (x > y) - (x < y);
}

/* Makes offsets start at 0 and sets span_s. */
static void rebase(struct syn_trace *t)
{
    if (t->n == 0) {
        t->span_s = 0;
        return;
    }
    double t0 = t->reqs[0].t;
    for (size_t i = 0; i < t->n; i++) t->reqs[i].t -= t0;
    t->span_s = t->reqs[t->n - 1].t;
}

/* ---- CSV ---- */

#define MAX_COLS 32

int syn_trace_parse(const char *buf, size_t len, const char *name, struct syn_trace **out,
                    char *err, size_t errlen)
{
    static const char *const time_names[] = {"TIMESTAMP", "time", "time_s", "arrival", NULL};
    static const char *const prompt_names[] = {"ContextTokens", "prompt_tokens", "input_tokens",
                                               "prompt", NULL};
    static const char *const output_names[] = {"GeneratedTokens", "output_tokens",
                                               "completion_tokens", "output", NULL};
    *out = NULL;
    struct syn_trace *t = calloc(1, sizeof *t);
    if (!t) return syn_seterr(err, errlen, SYN_ENOMEM, "trace: out of memory");
    size_t cap = 0;
    int rc = SYN_OK;
    const char *p = buf, *end = buf + len;
    if (len >= 3 && !memcmp(p, "\xEF\xBB\xBF", 3)) p += 3; /* UTF-8 byte-order mark */
    int col_time = -1, col_prompt = -1, col_output = -1, n_cols = 0;
    long line = 0;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *next = eol ? eol + 1 : end;
        if (!eol) eol = end;
        const char *le = eol;
        if (le > p && le[-1] == '\r') le--;
        line++;
        /* split into fields */
        const char *fs[MAX_COLS];
        size_t fl[MAX_COLS];
        int nf = 0;
        const char *q = p;
        for (;;) {
            const char *c = memchr(q, ',', (size_t)(le - q));
            const char *fe = c ? c : le;
            const char *a = q, *b = fe;
            while (a < b && (*a == ' ' || *a == '\t')) a++;
            while (b > a && (b[-1] == ' ' || b[-1] == '\t')) b--;
            if (nf < MAX_COLS) {
                fs[nf] = a;
                fl[nf] = (size_t)(b - a);
                nf++;
            }
            if (!c) break;
            q = c + 1;
        }
        p = next;
        if (nf == 1 && fl[0] == 0) continue; /* blank line */
        if (col_time < 0) {
            /* the header */
            n_cols = nf;
            for (int i = 0; i < nf; i++) {
                if (name_is(fs[i], fl[i], time_names))
                    col_time = i;
                else if (name_is(fs[i], fl[i], prompt_names))
                    col_prompt = i;
                else if (name_is(fs[i], fl[i], output_names))
                    col_output = i;
            }
            if (col_time < 0 || col_prompt < 0 || col_output < 0) {
                rc = syn_seterr(err, errlen, SYN_EFORMAT,
                                "trace: %s line %ld: expected a header naming TIMESTAMP, "
                                "ContextTokens and GeneratedTokens columns, found '%.*s'",
                                name, line, (int)(le - fs[0] < 120 ? le - fs[0] : 120), fs[0]);
                goto out;
            }
            continue;
        }
        if (nf != n_cols) {
            rc = syn_seterr(err, errlen, SYN_EFORMAT,
                            "trace: %s line %ld: expected %d fields, found %d", name, line, n_cols,
                            nf);
            goto out;
        }
        double ts;
        long pr, ou;
        if (parse_time(fs[col_time], fl[col_time], &ts)) {
            rc = syn_seterr(err, errlen, SYN_EFORMAT,
                            "trace: %s line %ld: expected a time like 2023-11-16 18:17:03.97 "
                            "or seconds, found '%.*s'",
                            name, line, (int)(fl[col_time] < 64 ? fl[col_time] : 64), fs[col_time]);
            goto out;
        }
        if (parse_count(fs[col_prompt], fl[col_prompt], &pr) ||
            parse_count(fs[col_output], fl[col_output], &ou)) {
            rc = syn_seterr(err, errlen, SYN_EFORMAT,
                            "trace: %s line %ld: expected whole token counts, found '%.*s' and "
                            "'%.*s'",
                            name, line, (int)(fl[col_prompt] < 32 ? fl[col_prompt] : 32),
                            fs[col_prompt], (int)(fl[col_output] < 32 ? fl[col_output] : 32),
                            fs[col_output]);
            goto out;
        }
        if (t->n == cap) {
            size_t nc = cap ? cap * 2 : 1024;
            struct syn_trace_req *nr = realloc(t->reqs, nc * sizeof *nr);
            if (!nr) {
                rc = syn_seterr(err, errlen, SYN_ENOMEM, "trace: out of memory");
                goto out;
            }
            t->reqs = nr;
            cap = nc;
        }
        t->reqs[t->n++] = (struct syn_trace_req){ts, pr < 1 ? 1 : (int)pr, ou < 1 ? 1 : (int)ou};
    }
    if (col_time < 0) {
        rc = syn_seterr(err, errlen, SYN_EFORMAT, "trace: %s is empty (no header)", name);
        goto out;
    }
    /* stable enough: the Azure traces are sorted already; others get sorted by time */
    qsort(t->reqs, t->n, sizeof *t->reqs, cmp_req);
    rebase(t);
out:
    if (rc)
        syn_trace_free(t);
    else
        *out = t;
    return rc;
}

int syn_trace_load(const char *path, struct syn_trace **out, char *err, size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return syn_seterr(err, errlen, SYN_EIO, "trace: cannot open %s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = SYN_OK;
    for (;;) {
        if (len == cap) {
            size_t nc = cap ? cap * 2 : 1 << 16;
            char *nb = realloc(buf, nc);
            if (!nb) {
                rc = syn_seterr(err, errlen, SYN_ENOMEM, "trace: out of memory");
                goto out;
            }
            buf = nb;
            cap = nc;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        rc = syn_seterr(err, errlen, SYN_EIO, "trace: cannot read %s", path);
        goto out;
    }
    rc = syn_trace_parse(buf, len, path, out, err, errlen);
out:
    free(buf);
    fclose(f);
    return rc;
}

/* ---- synthetic arrivals ---- */

int syn_trace_poisson(double rate, double duration_s, int prompt_tokens, int output_tokens,
                      uint64_t seed, struct syn_trace **out)
{
    *out = NULL;
    if (!(rate > 0) || !(duration_s > 0) || prompt_tokens < 1 || output_tokens < 1)
        return SYN_EINVAL;
    struct syn_trace *t = calloc(1, sizeof *t);
    if (!t) return SYN_ENOMEM;
    size_t cap = (size_t)(rate * duration_s * 1.2) + 16;
    t->reqs = malloc(cap * sizeof *t->reqs);
    if (!t->reqs) {
        free(t);
        return SYN_ENOMEM;
    }
    uint64_t s = seed ^ 0x5eed5eed5eedULL;
    double at = 0;
    for (;;) {
        at += -log(1.0 - uniform(&s)) / rate;
        if (at >= duration_s) break;
        if (t->n == cap) {
            size_t nc = cap * 2;
            struct syn_trace_req *nr = realloc(t->reqs, nc * sizeof *nr);
            if (!nr) {
                syn_trace_free(t);
                return SYN_ENOMEM;
            }
            t->reqs = nr;
            cap = nc;
        }
        t->reqs[t->n++] = (struct syn_trace_req){at, prompt_tokens, output_tokens};
    }
    t->span_s = t->n ? t->reqs[t->n - 1].t : 0;
    *out = t;
    return SYN_OK;
}

/* ---- scaling ---- */

static int scale_tokens(int v, double k)
{
    double s = floor((double)v * k + 0.5);
    if (s < 1) s = 1;
    if (s > 1e8) s = 1e8;
    return (int)s;
}

void syn_trace_scale(struct syn_trace *t, const struct syn_trace_scaling *s)
{
    double ts = s->time_scale > 0 ? s->time_scale : 1.0;
    double ks = s->token_scale > 0 ? s->token_scale : 1.0;
    size_t w = 0;
    /* offsets are relative to the trace's first arrival; start_s cuts in the trace's own time */
    for (size_t i = 0; i < t->n; i++) {
        struct syn_trace_req r = t->reqs[i];
        if (r.t < s->start_s) continue;
        r.t = (r.t - s->start_s) * ts;
        t->reqs[w++] = r;
    }
    t->n = w;
    /* keep the gap before the first kept arrival out of the replay */
    rebase(t);
    if (s->duration_s > 0) {
        w = 0;
        while (w < t->n && t->reqs[w].t < s->duration_s) w++;
        t->n = w;
    }
    for (size_t i = 0; i < t->n; i++) {
        struct syn_trace_req *r = &t->reqs[i];
        r->prompt_tokens = scale_tokens(r->prompt_tokens, ks);
        r->output_tokens = scale_tokens(r->output_tokens, ks);
        if (s->max_context >= 2 && r->prompt_tokens + r->output_tokens > s->max_context) {
            if (r->output_tokens > s->max_context - 1) r->output_tokens = s->max_context - 1;
            r->prompt_tokens = s->max_context - r->output_tokens;
        }
    }
    t->span_s = t->n ? t->reqs[t->n - 1].t : 0;
}

void syn_trace_free(struct syn_trace *t)
{
    if (!t) return;
    free(t->reqs);
    free(t);
}
