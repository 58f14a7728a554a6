/*
 * The worker's metrics and their exporter thread (see metrics.h). The text format and the
 * histograms are the gateway's (gateway/metrics.h), the /metrics server is the gateway's HTTP
 * server on an event loop of this thread's own, and pushes go through the libcurl client of the
 * AWS code (aws/http.h). Nothing here runs on the scheduler's thread except the short updates.
 */
#include "worker/metrics.h"

#include "aws/http.h"
#include "gateway/http.h"
#include "gateway/metrics.h"

#include "synapse/error.h"
#include "synapse/log.h"
#include "synapse/queue.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOG "worker-metrics"

/* Everything that is rendered, copied whole under the lock. */
struct wm_data {
    struct gw_hist step_seqs;   /* sequences per engine step (the batch size) */
    struct gw_hist step_tokens; /* tokens per engine step (decode + prefill) */
    struct gw_hist step_secs;   /* wall time of one engine step */
    struct gw_hist queue_wait;  /* gateway acceptance to the job's first engine sequence */
    uint64_t steps;
    uint64_t prompt_tokens; /* of admitted jobs (first admission only) */
    uint64_t tokens_out;    /* generated tokens */
    uint64_t jobs[5];       /* by outcome: stop, length, cancelled, error, requeued */
    uint64_t preemptions;
    int state; /* enum syn_worker_state */
    int max_seqs, running, waiting, kv_free, kv_total;
    double cold_start_s;
    uint64_t redis_errors, redis_reconnects;
    int redis_up;
    uint64_t push_failures;
};

static const char *const outcomes[5] = {"stop", "length", "cancelled", "error", "requeued"};

struct wmetrics {
    pthread_mutex_t mu;
    struct wm_data d; /* under mu */
    char model[101];
    char id[101];
    char push_url[1200]; /* the group's URL, "" without a Pushgateway */
    double push_interval_s;
    struct event_base *base;        /* the exporter thread's loop */
    struct event *tick;             /* every 100 ms: stop flag and push schedule */
    struct gw_http *http;           /* the /metrics server, or NULL */
    struct syn_http_client *client; /* pushes, or NULL */
    pthread_t thread;
    int started;
    atomic_int stop;
    double next_push; /* monotonic seconds */
};

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- updates ---- */

void wmetrics_step(struct wmetrics *m, int n_seqs, int n_tokens, double seconds)
{
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    m->d.steps++;
    gw_hist_observe(&m->d.step_seqs, n_seqs);
    gw_hist_observe(&m->d.step_tokens, n_tokens);
    gw_hist_observe(&m->d.step_secs, seconds);
    pthread_mutex_unlock(&m->mu);
}

void wmetrics_admitted(struct wmetrics *m, double queue_wait_s, int prompt_tokens)
{
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    gw_hist_observe(&m->d.queue_wait, queue_wait_s < 0 ? 0 : queue_wait_s);
    m->d.prompt_tokens += prompt_tokens > 0 ? (uint64_t)prompt_tokens : 0;
    pthread_mutex_unlock(&m->mu);
}

void wmetrics_job_done(struct wmetrics *m, const char *outcome)
{
    if (!m) return;
    int k = 3; /* anything unknown counts as an error */
    for (int i = 0; i < 5; i++)
        if (outcome && !strcmp(outcome, outcomes[i])) k = i;
    pthread_mutex_lock(&m->mu);
    m->d.jobs[k]++;
    pthread_mutex_unlock(&m->mu);
}

void wmetrics_preempted(struct wmetrics *m)
{
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    m->d.preemptions++;
    pthread_mutex_unlock(&m->mu);
}

void wmetrics_state(struct wmetrics *m, int state, int max_seqs, int running, int waiting,
                    int kv_free, int kv_total, uint64_t tokens_out)
{
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    m->d.state = state;
    m->d.max_seqs = max_seqs;
    m->d.running = running;
    m->d.waiting = waiting;
    m->d.kv_free = kv_free;
    m->d.kv_total = kv_total;
    m->d.tokens_out = tokens_out;
    pthread_mutex_unlock(&m->mu);
}

void wmetrics_redis(struct wmetrics *m, uint64_t errors, uint64_t reconnects, int up)
{
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    m->d.redis_errors = errors;
    m->d.redis_reconnects = reconnects;
    m->d.redis_up = up;
    pthread_mutex_unlock(&m->mu);
}

void wmetrics_cold_start(struct wmetrics *m, double seconds)
{
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    m->d.cold_start_s = seconds;
    pthread_mutex_unlock(&m->mu);
}

/* ---- the exposition ---- */

void wmetrics_render(struct wmetrics *m, struct evbuffer *o)
{
    struct wm_data d;
    pthread_mutex_lock(&m->mu);
    d = m->d;
    pthread_mutex_unlock(&m->mu);
    const char *md = m->model;
#define ONE(NAME_, TYPE_, HELP_, V_)                                                               \
    do {                                                                                           \
        gw_metric_header(o, NAME_, TYPE_, HELP_);                                                  \
        gw_metric_value(o, NAME_, "model", md, NULL, NULL, (double)(V_));                          \
    } while (0)
    static const char *const states[3] = {"starting", "ready", "draining"};
    gw_metric_header(o, "synapse_worker_state", "gauge",
                     "1 for the worker's current state (starting, ready, draining), else 0.");
    for (int i = 0; i < 3; i++)
        gw_metric_value(o, "synapse_worker_state", "model", md, "state", states[i], d.state == i);
    ONE("synapse_worker_max_sequences", "gauge",
        "Sequences the worker batches at most (--max-seqs).", d.max_seqs);
    gw_metric_header(o, "synapse_worker_sequences", "gauge",
                     "Jobs held by the worker: running (in the batch) or waiting for a slot.");
    gw_metric_value(o, "synapse_worker_sequences", "model", md, "state", "running", d.running);
    gw_metric_value(o, "synapse_worker_sequences", "model", md, "state", "waiting", d.waiting);
    gw_metric_header(o, "synapse_worker_kv_cache_blocks", "gauge",
                     "Paged KV-cache blocks, used and free (their sum is the pool).");
    gw_metric_value(o, "synapse_worker_kv_cache_blocks", "model", md, "state", "used",
                    d.kv_total - d.kv_free);
    gw_metric_value(o, "synapse_worker_kv_cache_blocks", "model", md, "state", "free", d.kv_free);
    ONE("synapse_worker_steps_total", "counter", "Engine steps run.", d.steps);
    gw_metric_header(o, "synapse_worker_step_sequences", "histogram",
                     "Sequences in one engine step (the batch size).");
    gw_metric_hist(o, "synapse_worker_step_sequences", "model", md, &d.step_seqs);
    gw_metric_header(o, "synapse_worker_step_tokens", "histogram",
                     "Tokens in one engine step (decode tokens plus prefill chunks).");
    gw_metric_hist(o, "synapse_worker_step_tokens", "model", md, &d.step_tokens);
    gw_metric_header(o, "synapse_worker_step_duration_seconds", "histogram",
                     "Wall time of one engine step.");
    gw_metric_hist(o, "synapse_worker_step_duration_seconds", "model", md, &d.step_secs);
    gw_metric_header(o, "synapse_worker_queue_wait_seconds", "histogram",
                     "From the gateway accepting a job to its first engine sequence.");
    gw_metric_hist(o, "synapse_worker_queue_wait_seconds", "model", md, &d.queue_wait);
    ONE("synapse_worker_prompt_tokens_total", "counter", "Prompt tokens of jobs admitted.",
        d.prompt_tokens);
    ONE("synapse_worker_generated_tokens_total", "counter", "Tokens generated.", d.tokens_out);
    gw_metric_header(o, "synapse_worker_jobs_total", "counter",
                     "Jobs that left the worker, by outcome.");
    for (int i = 0; i < 5; i++)
        gw_metric_value(o, "synapse_worker_jobs_total", "model", md, "outcome", outcomes[i],
                        (double)d.jobs[i]);
    ONE("synapse_worker_preemptions_total", "counter",
        "Sequences preempted (KV cache full) to be recomputed later.", d.preemptions);
    ONE("synapse_worker_cold_start_seconds", "gauge",
        "This worker's cold start: process start to ready (model mapped and warmed).",
        d.cold_start_s);
    ONE("synapse_worker_redis_up", "gauge", "1 when the last Redis round trip succeeded.",
        d.redis_up);
    ONE("synapse_worker_redis_errors_total", "counter", "Redis connections lost or refused.",
        d.redis_errors);
    ONE("synapse_worker_redis_reconnects_total", "counter", "Redis reconnections.",
        d.redis_reconnects);
    ONE("synapse_worker_push_failures_total", "counter", "Pushes to the Pushgateway that failed.",
        d.push_failures);
#undef ONE
    gw_metric_process(o);
}

/* ---- the exporter thread ---- */

static void on_http(struct gw_http_req *h, void *ud)
{
    struct wmetrics *m = ud;
    const char *method = gw_http_req_method(h);
    if (gw_http_req_error(h)) {
        gw_http_respond(h, gw_http_req_error(h), "text/plain", "", "bad request\n", 12);
        return;
    }
    if (strcmp(gw_http_req_path(h), "/metrics") != 0) {
        gw_http_respond(h, 404, "text/plain", "", "not found: try /metrics\n", 24);
        return;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        gw_http_respond(h, 405, "text/plain", "Allow: GET, HEAD\r\n", "method not allowed\n", 19);
        return;
    }
    struct evbuffer *o = evbuffer_new();
    if (!o) {
        gw_http_respond(h, 500, "text/plain", "", "out of memory\n", 14);
        return;
    }
    wmetrics_render(m, o);
    size_t n = evbuffer_get_length(o);
    gw_http_respond(h, 200, "text/plain; version=0.0.4; charset=utf-8", "",
                    (const char *)evbuffer_pullup(o, -1), n);
    evbuffer_free(o);
}

/* PUT of the exposition (or DELETE of the group). 0 when the Pushgateway accepted it. */
static int push(struct wmetrics *m, int del)
{
    struct evbuffer *o = evbuffer_new();
    if (!o) return -1;
    if (!del) wmetrics_render(m, o);
    static const char *const hdr[] = {"Content-Type: text/plain; version=0.0.4"};
    struct syn_http_req rq = {
        .method = del ? "DELETE" : "PUT",
        .url = m->push_url,
        .headers = hdr,
        .n_headers = del ? 0 : 1,
        .body = del ? NULL : evbuffer_pullup(o, -1),
        .body_len = del ? 0 : evbuffer_get_length(o),
        .timeout_ms = 2000,
        .connect_timeout_ms = 1000,
    };
    struct syn_http_resp resp;
    char err[256];
    int rc = syn_http_do(m->client, &rq, &resp, err, sizeof err);
    int ok = rc == 0 && resp.status >= 200 && resp.status < 300;
    if (!ok) {
        pthread_mutex_lock(&m->mu);
        uint64_t n = ++m->d.push_failures;
        pthread_mutex_unlock(&m->mu);
        if (n == 1 || n % 100 == 0)
            syn_warn(LOG, "%s %s failed (%llu so far): %s", rq.method, m->push_url,
                     (unsigned long long)n,
                     rc ? err : (resp.body && *resp.body ? resp.body : "error status"));
    }
    syn_http_resp_free(&resp);
    evbuffer_free(o);
    return ok ? 0 : -1;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct wmetrics *m = arg;
    if (atomic_load(&m->stop)) {
        event_base_loopbreak(m->base);
        return;
    }
    if (m->client && mono_s() >= m->next_push) {
        push(m, 0);
        m->next_push = mono_s() + m->push_interval_s;
    }
}

static void *exporter_main(void *arg)
{
    struct wmetrics *m = arg;
    event_base_dispatch(m->base);
    return NULL;
}

int wmetrics_new(const struct wmetrics_params *p, struct wmetrics **out, char *err, size_t errlen)
{
    *out = NULL;
    struct wmetrics *m = calloc(1, sizeof *m);
    if (!m) return syn_seterr(err, errlen, SYN_ENOMEM, "worker metrics: out of memory");
    pthread_mutex_init(&m->mu, NULL);
    snprintf(m->model, sizeof m->model, "%s", p->model ? p->model : "");
    snprintf(m->id, sizeof m->id, "%s", p->worker_id ? p->worker_id : "");
    gw_hist_init(&m->d.step_seqs, GW_BUCKETS_COUNT_SEQ);
    gw_hist_init(&m->d.step_tokens, GW_BUCKETS_COUNT_TOK);
    gw_hist_init(&m->d.step_secs, GW_BUCKETS_STEP);
    gw_hist_init(&m->d.queue_wait, GW_BUCKETS_QUEUE);
    m->push_interval_s = p->push_interval_s > 0 ? p->push_interval_s : 10;
    int rc = SYN_OK;
    if (p->port < 0 && !p->pushgateway) {
        *out = m; /* collect only */
        return SYN_OK;
    }
    if (p->pushgateway) {
        size_t n = strlen(p->pushgateway);
        while (n > 0 && p->pushgateway[n - 1] == '/') n--;
        if (strncmp(p->pushgateway, "http://", 7) != 0 && strncmp(p->pushgateway, "https://", 8)) {
            rc = syn_seterr(err, errlen, SYN_EINVAL,
                            "worker: --pushgateway must be an http:// or https:// URL, got '%s'",
                            p->pushgateway);
            goto fail;
        }
        /* model and id are [A-Za-z0-9._-]: nothing to escape in the path */
        if (!syn_q_name_ok(m->model) || !syn_q_name_ok(m->id) ||
            (size_t)snprintf(m->push_url, sizeof m->push_url,
                             "%.*s/metrics/job/synapse-worker/model/%s/instance/%s", (int)n,
                             p->pushgateway, m->model, m->id) >= sizeof m->push_url) {
            rc = syn_seterr(err, errlen, SYN_EINVAL, "worker: --pushgateway URL is too long");
            goto fail;
        }
        m->client = syn_http_client_new();
        if (!m->client) {
            rc = syn_seterr(err, errlen, SYN_EIO, "worker: cannot set up an HTTP client (curl)");
            goto fail;
        }
    }
    m->base = event_base_new();
    m->tick = m->base ? event_new(m->base, -1, EV_PERSIST, on_tick, m) : NULL;
    if (!m->tick) {
        rc = syn_seterr(err, errlen, SYN_ENOMEM, "worker metrics: cannot create an event loop");
        goto fail;
    }
    if (p->port >= 0) {
        struct gw_http_config hc = gw_http_default_config();
        hc.host = p->host && *p->host ? p->host : "127.0.0.1";
        hc.port = p->port;
        hc.max_connections = 64;
        hc.max_body_bytes = 1024;
        hc.read_timeout_ms = 5000;
        hc.write_timeout_ms = 5000;
        if ((rc = gw_http_new(m->base, &hc, on_http, m, &m->http, err, errlen))) goto fail;
    }
    struct timeval tv = {0, 100 * 1000};
    event_add(m->tick, &tv);
    m->next_push = mono_s(); /* the first push at once: the group exists while we live */
    if (pthread_create(&m->thread, NULL, exporter_main, m) != 0) {
        rc = syn_seterr(err, errlen, SYN_ENOMEM, "worker metrics: cannot start its thread");
        goto fail;
    }
    m->started = 1;
    *out = m;
    return SYN_OK;
fail:
    wmetrics_free(m, 0);
    return rc;
}

int wmetrics_port(const struct wmetrics *m)
{
    return m && m->http ? gw_http_port(m->http) : -1;
}

void wmetrics_free(struct wmetrics *m, int clean)
{
    if (!m) return;
    if (m->started) {
        atomic_store(&m->stop, 1);
        pthread_join(m->thread, NULL);
    }
    if (m->client && m->started) {
        /* the final numbers, then (clean exit) the group goes: the Pushgateway keeps a group
         * until it is deleted, and a worker id is never reused */
        push(m, 0);
        if (clean && push(m, 1) == 0)
            syn_info(LOG, "deleted the Pushgateway group %s", m->push_url);
    }
    if (m->http) gw_http_free(m->http);
    if (m->tick) event_free(m->tick);
    if (m->base) event_base_free(m->base);
    syn_http_client_free(m->client);
    pthread_mutex_destroy(&m->mu);
    free(m);
}
