/*
 * The load generator (load.h): a timer walks the trace and sends every request that is due, the
 * HTTP client streams the answers back through callbacks that timestamp each event, and a
 * second timer prints progress. Everything runs on one libevent loop, so no locks and no
 * per-request threads; at a few thousand requests per second the loop spends its time in
 * send/recv, not in our code.
 */
#include "bench/load.h"

#include "bench/http_client.h"
#include "bench/stats.h"

#include <event2/event.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct syn_load_params syn_load_default_params(void)
{
    struct syn_load_params p = {
        .slo_ttft_s = 0.2,
        .slo_tpot_s = 0.05,
        .timeout_s = 300,
        .max_conns = 8192,
        .progress_s = 1,
        .seed = 1,
    };
    return p;
}

const char *syn_load_outcome_name(int outcome)
{
    static const char *const names[] = {"ok",      "http",     "connect",      "closed",
                                        "timeout", "protocol", "stream_error", "unsent"};
    return outcome >= 0 && outcome < SYN_LOAD_N_OUTCOMES ? names[outcome] : "unknown";
}

/* ---- the run's state ---- */

struct run;

struct rq {
    struct run *run;
    size_t i;          /* index in the trace and in report->reqs */
    double sent;       /* seconds since start */
    double last_chunk; /* time of the previous text chunk, -1 before the first */
    int usage_tokens;  /* from the usage chunk, -1 without one */
    int usage_prompt;  /* the prompt's tokens as the server counted them, -1 unknown */
    int done_marker;   /* [DONE] seen */
    int stream_error;  /* an error object came in the stream */
    int event_stream;
};

struct run {
    const struct syn_load_params *p;
    struct syn_load_report *r;
    struct event_base *base;
    struct hc_client *http;
    struct event *arrivals, *tick;
    struct timespec t0;
    size_t next; /* next request to send */
    size_t in_flight;
    size_t done;
    struct rq *rqs; /* (n) */
    struct syn_samples itl;
    double last_send, last_done;
    char auth[600]; /* extra header lines */
    /* progress over the last interval */
    size_t tick_sent, tick_done;
    struct syn_samples tick_ttft;
    double last_tick;
    int fatal;
};

/* Whether a request is counted: scheduled after the warm-up. */
static int counted(const struct run *s, const struct syn_load_req *o)
{
    return o->t_sched >= s->p->warmup_s;
}

static double since(const struct run *s)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)(ts.tv_sec - s->t0.tv_sec) + (double)(ts.tv_nsec - s->t0.tv_nsec) * 1e-9;
}

/* ---- prompts ---- */

/* Short common words that are one token each in the Llama and GPT-2 vocabularies, and in the
 * vocab `synapse model random` synthesises (which has every word of up to three letters below
 * "v"), so that a prompt of N words is N tokens on the random-weight benchmark models too. */
static const char *const words[] = {"the", "cat", "dog", "sun", "man", "red", "big", "day",
                                    "run", "sky", "sea", "boy", "box", "car", "cup", "hat"};

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

/* The request body: a prompt of about prompt_tokens tokens (that many words, less one for the
 * BOS most servers add), no two prompts alike from their first word (so no prefix cache can
 * make a later one cheaper). From malloc. */
static char *make_body(const struct run *s, size_t i, const struct syn_trace_req *q, size_t *len)
{
    int nw = q->prompt_tokens > 1 ? q->prompt_tokens - 1 : 1;
    size_t cap = (size_t)nw * 6 + strlen(s->r->model) + 256;
    char *b = malloc(cap);
    if (!b) return NULL;
    int n = snprintf(b, cap, "{\"model\":\"%s\",\"prompt\":\"", s->r->model);
    uint64_t h = mix(s->p->seed * 0x9e3779b97f4a7c15ULL + i);
    for (int w = 0; w < nw; w++) {
        if ((w & 7) == 0) h = mix(h + (uint64_t)w);
        const char *word = words[(h >> ((w & 7) * 4)) & 15];
        n += snprintf(b + n, cap - (size_t)n, "%s%s", w ? " " : "", word);
    }
    n += snprintf(b + n, cap - (size_t)n,
                  "\",\"max_tokens\":%d,\"stream\":true,"
                  "\"stream_options\":{\"include_usage\":true}}",
                  q->output_tokens);
    *len = (size_t)n;
    return b;
}

/* ---- events of one request ---- */

/* The number after "key": in s, or -1. */
static long json_int_after(const char *s, const char *key)
{
    const char *k = strstr(s, key);
    if (!k) return -1;
    k += strlen(key);
    while (*k == ' ' || *k == ':') k++;
    if (*k < '0' || *k > '9') return -1;
    return strtol(k, NULL, 10);
}

/* A chunk carries text when its "text" (completions) or "content" (chat) is not empty. */
static int has_text(const char *d)
{
    const char *t = strstr(d, "\"text\":\"");
    if (t) return t[8] != '"';
    t = strstr(d, "\"content\":\"");
    return t && t[11] != '"';
}

static void on_head(void *ud, int status, int event_stream)
{
    struct rq *q = ud;
    q->event_stream = event_stream;
    q->run->r->reqs[q->i].status = status;
}

static void on_event(void *ud, const char *data, size_t len)
{
    struct rq *q = ud;
    struct run *s = q->run;
    struct syn_load_req *o = &s->r->reqs[q->i];
    if (len == 6 && !memcmp(data, "[DONE]", 6)) {
        q->done_marker = 1;
        return;
    }
    if (!strstr(data, "\"choices\"") && strstr(data, "\"error\"")) {
        q->stream_error = 1;
        return;
    }
    long u = json_int_after(data, "\"completion_tokens\"");
    if (u >= 0) q->usage_tokens = (int)u;
    u = json_int_after(data, "\"prompt_tokens\"");
    if (u >= 0) q->usage_prompt = (int)u;
    if (!has_text(data)) return;
    double now = since(s);
    if (q->last_chunk < 0) {
        o->ttft = now - o->t_sched;
        syn_samples_add(&s->tick_ttft, o->ttft);
    } else if (counted(s, o)) {
        syn_samples_add(&s->itl, now - q->last_chunk);
    }
    q->last_chunk = now;
    o->chunks++;
}

static void maybe_finish(struct run *s)
{
    if (s->next >= s->r->n && s->in_flight == 0) event_base_loopbreak(s->base);
}

static void on_done(void *ud, int err, int status, const char *body, size_t len)
{
    (void)body;
    (void)len;
    struct rq *q = ud;
    struct run *s = q->run;
    struct syn_load_req *o = &s->r->reqs[q->i];
    double now = since(s);
    o->status = status;
    if (err == HC_OK) {
        if (status != 200)
            o->outcome = SYN_LOAD_HTTP;
        else if (q->stream_error)
            o->outcome = SYN_LOAD_STREAM;
        else if (!q->event_stream || !q->done_marker)
            o->outcome = SYN_LOAD_PROTO;
        else
            o->outcome = SYN_LOAD_OK;
    } else if (err == HC_ECONNECT) {
        o->outcome = SYN_LOAD_CONNECT;
    } else if (err == HC_ECLOSED) {
        o->outcome = SYN_LOAD_CLOSED;
    } else if (err == HC_ETIMEOUT) {
        o->outcome = SYN_LOAD_TIMEOUT;
    } else if (err == HC_ECANCELED) {
        o->outcome = SYN_LOAD_UNSENT;
    } else {
        o->outcome = SYN_LOAD_PROTO;
    }
    o->tokens = q->usage_tokens >= 0 ? q->usage_tokens : o->chunks;
    if (q->usage_prompt > 0) o->prompt_tokens = q->usage_prompt;
    if (o->outcome == SYN_LOAD_OK) {
        o->e2e = now - o->t_sched;
        if (o->ttft < 0) o->ttft = o->e2e; /* an empty completion: its first byte is its end */
        if (o->tokens >= 2) o->tpot = (o->e2e - o->ttft) / (o->tokens - 1);
        o->good = o->ttft <= s->p->slo_ttft_s && (o->tpot < 0 || o->tpot <= s->p->slo_tpot_s);
    }
    s->in_flight--;
    s->done++;
    s->tick_done++;
    s->last_done = now;
    maybe_finish(s);
}

/* ---- sending ---- */

static const struct hc_handlers handlers = {on_head, on_event, on_done};

static void send_one(struct run *s, size_t i, double now)
{
    const struct syn_trace_req *q = &s->p->trace->reqs[i];
    struct syn_load_req *o = &s->r->reqs[i];
    struct rq *k = &s->rqs[i];
    k->run = s;
    k->i = i;
    k->sent = now;
    k->last_chunk = -1;
    k->usage_tokens = -1;
    k->usage_prompt = -1;
    o->lag = now - o->t_sched;
    size_t len;
    char *body = make_body(s, i, q, &len);
    if (!body || hc_request(s->http, "POST", "/v1/completions", s->auth, body, len, s->p->timeout_s,
                            &handlers, k) != HC_OK) {
        o->outcome = SYN_LOAD_PROTO;
        s->done++;
        free(body);
        return;
    }
    free(body);
    if (counted(s, o)) s->r->sent++;
    s->in_flight++;
    int conns = hc_client_open_conns(s->http);
    if (conns > s->r->max_conns_open) s->r->max_conns_open = conns;
    s->tick_sent++;
    s->last_send = now;
}

static void arm_arrivals(struct run *s)
{
    if (s->next >= s->r->n) return;
    double wait = s->p->trace->reqs[s->next].t - since(s);
    if (wait < 0) wait = 0;
    struct timeval tv = {(time_t)wait, (suseconds_t)((wait - floor(wait)) * 1e6)};
    evtimer_add(s->arrivals, &tv);
}

static void on_arrivals(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct run *s = arg;
    double now = since(s);
    /* everything due (a late timer sends the backlog at once: the lag shows it) */
    while (s->next < s->r->n && s->p->trace->reqs[s->next].t <= now + 50e-6) {
        send_one(s, s->next, now);
        s->next++;
    }
    arm_arrivals(s);
    maybe_finish(s);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct run *s = arg;
    double now = since(s), dt = now - s->last_tick;
    if (dt <= 0) return;
    syn_stats_sort(s->tick_ttft.v, s->tick_ttft.n);
    size_t errs = 0;
    for (size_t i = 0; i < s->next; i++)
        errs += s->r->reqs[i].outcome != SYN_LOAD_OK && s->r->reqs[i].outcome != SYN_LOAD_UNSENT;
    fprintf(s->p->progress ? s->p->progress : stderr,
            "[%6.1fs] sent %zu/%zu (%.0f/s)  done %zu (%.0f/s)  in flight %zu  conns %d  "
            "errors %zu  ttft p50 %.1f ms p99 %.1f ms\n",
            now, s->next, s->r->n, (double)s->tick_sent / dt, s->done, (double)s->tick_done / dt,
            s->in_flight, hc_client_open_conns(s->http), errs,
            1e3 * syn_stats_quantile(s->tick_ttft.v, s->tick_ttft.n, 0.5),
            1e3 * syn_stats_quantile(s->tick_ttft.v, s->tick_ttft.n, 0.99));
    s->tick_sent = s->tick_done = 0;
    s->tick_ttft.n = 0;
    s->last_tick = now;
}

/* ---- finding the model ---- */

struct models_ctx {
    struct run *s;
    int done;
    char err[256];
};

static void models_done(void *ud, int err, int status, const char *body, size_t len)
{
    (void)len;
    struct models_ctx *m = ud;
    m->done = 1;
    event_base_loopbreak(m->s->base);
    if (err != HC_OK || status != 200 || !body) {
        snprintf(m->err, sizeof m->err,
                 "GET /v1/models failed (%s, HTTP %d): pass --model to name the model",
                 err != HC_OK ? hc_strerror(err) : "status", status);
        return;
    }
    json_error_t je;
    json_t *root = json_loads(body, 0, &je);
    const char *id =
        json_string_value(json_object_get(json_array_get(json_object_get(root, "data"), 0), "id"));
    if (id && strlen(id) < sizeof m->s->r->model && !strpbrk(id, "\"\\"))
        snprintf(m->s->r->model, sizeof m->s->r->model, "%s", id);
    else
        snprintf(m->err, sizeof m->err, "GET /v1/models named no model: pass --model");
    json_decref(root);
}

/* ---- the report ---- */

static void dist(struct syn_load_dist *d, double *v, size_t n)
{
    syn_stats_sort(v, n);
    d->n = n;
    d->mean = syn_stats_mean(v, n);
    d->p50 = syn_stats_quantile(v, n, 0.50);
    d->p90 = syn_stats_quantile(v, n, 0.90);
    d->p99 = syn_stats_quantile(v, n, 0.99);
    d->max = n ? v[n - 1] : 0;
}

static int summarize(struct run *s)
{
    struct syn_load_report *r = s->r;
    size_t n = r->n;
    double *tmp = malloc((n ? n : 1) * sizeof *tmp);
    if (!tmp) return -1;
    size_t k;
    const double w0 = s->p->warmup_s;
    r->warmup_s = w0;
    r->n_warmup = 0;
    for (size_t i = 0; i < n; i++) r->n_warmup += !counted(s, &r->reqs[i]);
    const size_t n_counted = n - r->n_warmup;
    double end = s->last_done > s->last_send ? s->last_done : s->last_send;
    r->wall_s = end > w0 ? end - w0 : 0;
    double wall = r->wall_s > 0 ? r->wall_s : 1e-9;
    double span = s->p->trace->span_s - w0;
    r->offered_rps = span > 0 ? (double)n_counted / span : 0;
    r->send_rps = s->last_send > w0 ? (double)r->sent / (s->last_send - w0) : 0;
    for (size_t i = 0; i < n; i++) {
        struct syn_load_req *o = &r->reqs[i];
        if (!counted(s, o)) continue;
        r->outcomes[o->outcome]++;
        if (o->outcome == SYN_LOAD_HTTP) {
            int j = 0;
            while (j < r->n_http && r->http_status[j] != o->status) j++;
            if (j == r->n_http && r->n_http < 16) r->http_status[r->n_http++] = o->status;
            if (j < r->n_http) r->http_count[j]++;
        }
        if (o->outcome == SYN_LOAD_OK) {
            r->ok++;
            r->out_tokens += (uint64_t)o->tokens;
        }
        r->good += o->good != 0;
    }
    r->rps = (double)r->ok / wall;
    r->tokens_per_s = (double)r->out_tokens / wall;
    r->goodput = (double)r->good / wall;
    r->attainment = n_counted ? (double)r->good / (double)n_counted : 0;
    k = 0;
    for (size_t i = 0; i < n; i++)
        if (r->reqs[i].outcome != SYN_LOAD_UNSENT && counted(s, &r->reqs[i]))
            tmp[k++] = r->reqs[i].lag;
    syn_stats_sort(tmp, k);
    r->lag_p50 = syn_stats_quantile(tmp, k, 0.5);
    r->lag_p99 = syn_stats_quantile(tmp, k, 0.99);
    r->lag_max = k ? tmp[k - 1] : 0;
    k = 0;
    for (size_t i = 0; i < n; i++)
        if (r->reqs[i].outcome == SYN_LOAD_OK && counted(s, &r->reqs[i]))
            tmp[k++] = r->reqs[i].ttft;
    dist(&r->ttft, tmp, k);
    k = 0;
    for (size_t i = 0; i < n; i++)
        if (r->reqs[i].outcome == SYN_LOAD_OK && r->reqs[i].tpot >= 0 && counted(s, &r->reqs[i]))
            tmp[k++] = r->reqs[i].tpot;
    dist(&r->tpot, tmp, k);
    k = 0;
    for (size_t i = 0; i < n; i++)
        if (r->reqs[i].outcome == SYN_LOAD_OK && counted(s, &r->reqs[i])) tmp[k++] = r->reqs[i].e2e;
    dist(&r->e2e, tmp, k);
    dist(&r->itl, s->itl.v, s->itl.n);
    free(tmp);
    return 0;
}

int syn_load_run(const struct syn_load_params *p, struct syn_load_report **out, char *err,
                 size_t errlen)
{
    *out = NULL;
    int rc = -1;
    struct run s;
    memset(&s, 0, sizeof s);
    s.p = p;
    if (!p->url || !p->trace) {
        snprintf(err, errlen, "a URL and a trace are required");
        return -1;
    }
    struct syn_load_report *r = calloc(1, sizeof *r);
    s.r = r;
    size_t n = p->trace->n;
    if (!r || !(r->reqs = calloc(n ? n : 1, sizeof *r->reqs)) ||
        !(s.rqs = calloc(n ? n : 1, sizeof *s.rqs))) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    r->n = n;
    r->slo_ttft_s = p->slo_ttft_s;
    r->slo_tpot_s = p->slo_tpot_s;
    for (size_t i = 0; i < n; i++) {
        struct syn_load_req *o = &r->reqs[i];
        o->t_sched = p->trace->reqs[i].t;
        o->prompt_tokens = p->trace->reqs[i].prompt_tokens;
        o->max_tokens = p->trace->reqs[i].output_tokens;
        o->ttft = o->tpot = o->e2e = -1;
        o->outcome = SYN_LOAD_UNSENT;
    }
    if (p->api_key) {
        if (strlen(p->api_key) > 500 || strpbrk(p->api_key, "\r\n")) {
            snprintf(err, errlen, "the API key is not a single line of at most 500 bytes");
            goto out;
        }
        snprintf(s.auth, sizeof s.auth, "Authorization: Bearer %s\r\n", p->api_key);
    }
    snprintf(s.auth + strlen(s.auth), sizeof s.auth - strlen(s.auth),
             "Accept: text/event-stream\r\n");
    struct event_config *cfg = event_config_new();
    if (cfg) event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    s.base = cfg ? event_base_new_with_config(cfg) : NULL;
    if (cfg) event_config_free(cfg);
    if (!s.base) {
        snprintf(err, errlen, "cannot make an event loop");
        goto out;
    }
    if (hc_client_new(s.base, p->url, p->max_conns, &s.http, err, errlen)) goto out;
    if (p->model) {
        if (strlen(p->model) >= sizeof r->model || strpbrk(p->model, "\"\\")) {
            snprintf(err, errlen, "the model name is too long or has quotes");
            goto out;
        }
        snprintf(r->model, sizeof r->model, "%s", p->model);
    } else {
        struct models_ctx m = {&s, 0, ""};
        static const struct hc_handlers mh = {NULL, NULL, models_done};
        clock_gettime(CLOCK_MONOTONIC, &s.t0);
        if (hc_request(s.http, "GET", "/v1/models", s.auth, NULL, 0, 10, &mh, &m) != HC_OK) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        while (!m.done) event_base_loop(s.base, EVLOOP_ONCE);
        if (m.err[0]) {
            snprintf(err, errlen, "%s", m.err);
            goto out;
        }
    }
    s.arrivals = evtimer_new(s.base, on_arrivals, &s);
    s.tick = event_new(s.base, -1, EV_PERSIST, on_tick, &s);
    if (!s.arrivals || !s.tick) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    clock_gettime(CLOCK_MONOTONIC, &s.t0);
    if (p->progress_s > 0) {
        struct timeval tv = {(time_t)p->progress_s,
                             (suseconds_t)((p->progress_s - floor(p->progress_s)) * 1e6)};
        event_add(s.tick, &tv);
    }
    arm_arrivals(&s);
    if (n > 0) event_base_dispatch(s.base);
    /* whatever is still out (only when stopped early) counts as unsent or cancelled */
    hc_client_free(s.http);
    s.http = NULL;
    if (summarize(&s)) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    *out = r;
    r = NULL;
    rc = 0;
out:
    if (s.http) hc_client_free(s.http);
    if (s.arrivals) event_free(s.arrivals);
    if (s.tick) event_free(s.tick);
    if (s.base) event_base_free(s.base);
    syn_samples_release(&s.itl);
    syn_samples_release(&s.tick_ttft);
    free(s.rqs);
    syn_load_report_free(r);
    return rc;
}

/* ---- output ---- */

static void print_dist(FILE *f, const char *name, const struct syn_load_dist *d)
{
    fprintf(f, "  %-5s p50 %9.2f  p90 %9.2f  p99 %9.2f  mean %9.2f  max %9.2f ms  (n %zu)\n", name,
            1e3 * d->p50, 1e3 * d->p90, 1e3 * d->p99, 1e3 * d->mean, 1e3 * d->max, d->n);
}

void syn_load_print(const struct syn_load_report *r, FILE *f)
{
    const size_t n = r->n - r->n_warmup;
    if (r->n_warmup)
        fprintf(f,
                "warm-up      %zu requests in the first %.2f s, sent and left out of all below\n",
                r->n_warmup, r->warmup_s);
    fprintf(f, "requests     %zu scheduled, %zu sent, %zu ok, %zu failed\n", n, r->sent, r->ok,
            n - r->ok);
    fprintf(f,
            "rate         offered %.1f/s, sent %.1f/s (send lag p50 %.2f ms, p99 %.2f ms, "
            "max %.2f ms)\n",
            r->offered_rps, r->send_rps, 1e3 * r->lag_p50, 1e3 * r->lag_p99, 1e3 * r->lag_max);
    fprintf(f, "throughput   %.2f requests/s, %.1f output tokens/s over %.2f s (%llu tokens)\n",
            r->rps, r->tokens_per_s, r->wall_s, (unsigned long long)r->out_tokens);
    fprintf(f,
            "goodput      %.2f requests/s meeting TTFT <= %.0f ms and TPOT <= %.0f ms "
            "(attainment %.1f%%)\n",
            r->goodput, 1e3 * r->slo_ttft_s, 1e3 * r->slo_tpot_s, 100.0 * r->attainment);
    fprintf(f, "latency (ms, ok requests):\n");
    print_dist(f, "TTFT", &r->ttft);
    print_dist(f, "TPOT", &r->tpot);
    print_dist(f, "ITL", &r->itl);
    print_dist(f, "E2E", &r->e2e);
    if (n - r->ok) {
        fprintf(f, "errors      ");
        for (int o = 1; o < SYN_LOAD_N_OUTCOMES; o++) {
            if (!r->outcomes[o]) continue;
            if (o == SYN_LOAD_HTTP) {
                for (int j = 0; j < r->n_http; j++)
                    fprintf(f, " http_%d=%zu", r->http_status[j], r->http_count[j]);
            } else {
                fprintf(f, " %s=%zu", syn_load_outcome_name(o), r->outcomes[o]);
            }
        }
        fprintf(f, "\n");
    }
    fprintf(f, "connections  at most %d open\n", r->max_conns_open);
}

static json_t *dist_json(const struct syn_load_dist *d)
{
    return json_pack("{s:I,s:f,s:f,s:f,s:f,s:f}", "n", (json_int_t)d->n, "mean_ms", 1e3 * d->mean,
                     "p50_ms", 1e3 * d->p50, "p90_ms", 1e3 * d->p90, "p99_ms", 1e3 * d->p99,
                     "max_ms", 1e3 * d->max);
}

int syn_load_write_json(const struct syn_load_report *r, int with_requests, FILE *f)
{
    json_t *errors = json_object();
    for (int o = 1; o < SYN_LOAD_N_OUTCOMES; o++)
        if (o != SYN_LOAD_HTTP)
            json_object_set_new(errors, syn_load_outcome_name(o),
                                json_integer((json_int_t)r->outcomes[o]));
    json_t *http = json_object();
    for (int j = 0; j < r->n_http; j++) {
        char k[16];
        snprintf(k, sizeof k, "%d", r->http_status[j]);
        json_object_set_new(http, k, json_integer((json_int_t)r->http_count[j]));
    }
    json_object_set_new(errors, "http", http);
    json_t *root = json_object();
    if (!root) return -1;
    json_object_set_new(root, "model", json_string(r->model));
    json_object_set_new(root, "requests", json_integer((json_int_t)(r->n - r->n_warmup)));
    json_object_set_new(root, "warmup_requests", json_integer((json_int_t)r->n_warmup));
    json_object_set_new(root, "warmup_s", json_real(r->warmup_s));
    json_object_set_new(root, "sent", json_integer((json_int_t)r->sent));
    json_object_set_new(root, "ok", json_integer((json_int_t)r->ok));
    json_object_set_new(root, "good", json_integer((json_int_t)r->good));
    json_object_set_new(root, "wall_s", json_real(r->wall_s));
    json_object_set_new(root, "offered_rps", json_real(r->offered_rps));
    json_object_set_new(root, "send_rps", json_real(r->send_rps));
    json_object_set_new(root, "send_lag_p50_ms", json_real(1e3 * r->lag_p50));
    json_object_set_new(root, "send_lag_p99_ms", json_real(1e3 * r->lag_p99));
    json_object_set_new(root, "send_lag_max_ms", json_real(1e3 * r->lag_max));
    json_object_set_new(root, "rps", json_real(r->rps));
    json_object_set_new(root, "output_tokens", json_integer((json_int_t)r->out_tokens));
    json_object_set_new(root, "output_tokens_per_s", json_real(r->tokens_per_s));
    json_object_set_new(root, "slo_ttft_ms", json_real(1e3 * r->slo_ttft_s));
    json_object_set_new(root, "slo_tpot_ms", json_real(1e3 * r->slo_tpot_s));
    json_object_set_new(root, "goodput_rps", json_real(r->goodput));
    json_object_set_new(root, "slo_attainment", json_real(r->attainment));
    json_object_set_new(root, "ttft", dist_json(&r->ttft));
    json_object_set_new(root, "tpot", dist_json(&r->tpot));
    json_object_set_new(root, "itl", dist_json(&r->itl));
    json_object_set_new(root, "e2e", dist_json(&r->e2e));
    json_object_set_new(root, "errors", errors);
    json_object_set_new(root, "max_connections", json_integer(r->max_conns_open));
    if (with_requests) {
        json_t *rows = json_array();
        for (size_t i = 0; i < r->n; i++) {
            const struct syn_load_req *o = &r->reqs[i];
            json_array_append_new(rows,
                                  json_pack("[f,f,i,s,i,i,i,f,f,f]", o->t_sched, o->lag, o->status,
                                            syn_load_outcome_name(o->outcome), o->prompt_tokens,
                                            o->max_tokens, o->tokens, o->ttft, o->tpot, o->e2e));
        }
        json_object_set_new(root, "request_columns",
                            json_pack("[s,s,s,s,s,s,s,s,s,s]", "t_sched_s", "lag_s", "status",
                                      "outcome", "prompt_tokens", "max_tokens", "tokens", "ttft_s",
                                      "tpot_s", "e2e_s"));
        json_object_set_new(root, "requests", rows);
    }
    int rc = json_dumpf(root, f, JSON_COMPACT | JSON_REAL_PRECISION(6)) == 0 ? 0 : -1;
    fputc('\n', f);
    json_decref(root);
    return rc;
}

int syn_load_write_csv(const struct syn_load_report *r, FILE *f)
{
    fprintf(f, "t_sched_s,lag_s,status,outcome,prompt_tokens,max_tokens,tokens,ttft_s,tpot_s,"
               "e2e_s\n");
    for (size_t i = 0; i < r->n; i++) {
        const struct syn_load_req *o = &r->reqs[i];
        fprintf(f, "%.6f,%.6f,%d,%s,%d,%d,%d,%.6f,%.6f,%.6f\n", o->t_sched, o->lag, o->status,
                syn_load_outcome_name(o->outcome), o->prompt_tokens, o->max_tokens, o->tokens,
                o->ttft, o->tpot, o->e2e);
    }
    return ferror(f) ? -1 : 0;
}

void syn_load_report_free(struct syn_load_report *r)
{
    if (!r) return;
    free(r->reqs);
    free(r);
}
