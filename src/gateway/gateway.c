/*
 * The gateway proper (include/synapse/gateway.h): routes HTTP requests, turns API requests into
 * jobs, and relays each job's token events back to its client. The request path:
 *
 *   handle_completion: auth -> parse/validate (openai.c) -> model -> headers (deadline,
 *   priority) -> capacity (pool hook or registry) -> admission (admission.c) -> XADD (redis.c)
 *   on_event: dedupe by attempt and position -> SSE chunk (sse.c) or gathered text
 *   -> finish: the response, or an error in the API's shape; deadline and disconnect cancel.
 *
 * Every API error goes out through respond_error, the one place that shapes them. Each request
 * in flight is a struct gw_req (malloc'ed, freed by req_end) found by job id in a hash table.
 */
#include "synapse/gateway.h"

#include "gateway/admission.h"
#include "gateway/auth.h"
#include "gateway/http.h"
#include "gateway/metrics.h"
#include "gateway/openai.h"
#include "gateway/redis.h"
#include "gateway/sse.h"

#include "synapse/error.h"
#include "synapse/log.h"
#include "synapse/queue.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define LOG "gateway"

struct syn_gateway_params syn_gateway_default_params(void)
{
    struct syn_gateway_params p = {
        .host = "127.0.0.1",
        .port = 8080,
        .max_queue = 256,
        .default_deadline_ms = 60000,
        .max_deadline_ms = 3600000,
        .max_body_bytes = 1024 * 1024,
        .max_header_bytes = 16 * 1024,
        .max_connections = 16384,
        .read_timeout_ms = 10000,
        .write_timeout_ms = 30000,
        .max_tokens_limit = 1 << 20,
        .default_max_tokens_chat = 4096,
        .poll_interval_ms = 200,
        .handle_signals = 1,
        .shutdown_grace_ms = 10000,
    };
    return p;
}

/* ---- state ---- */

struct gw_model {
    char name[101];
    struct gw_adm adm;          /* the bounded queue */
    int in_flight;              /* requests admitted and not yet answered */
    uint64_t status[600];       /* responses by HTTP status */
    uint64_t tokens;            /* completion tokens relayed */
    uint64_t cancel_disconnect; /* jobs cancelled because the client went away */
    uint64_t cancel_deadline;   /* jobs cancelled because their deadline passed */
    uint64_t duplicates;        /* token events dropped as already delivered */
    uint64_t prompt_tokens;     /* prompt tokens of completed requests (finishing events) */
    struct gw_hist ttft;        /* admission to first token */
    struct gw_hist itl;         /* between consecutive tokens of a request, per token */
    struct gw_hist e2e;         /* admission to the end of the response */
};

enum req_state {
    R_SUBMITTING, /* XADD sent, not answered */
    R_WAITING,    /* in the stream, no event yet */
    R_RUNNING,    /* events arriving */
};

struct gw_req {
    struct syn_gateway *g;
    struct gw_http_req *http; /* NULL once the client is gone */
    struct gw_model *model;
    struct gw_req *hnext; /* hash chain */
    enum req_state state;
    int in_queue; /* counted in the model's waiting jobs */
    int stream;   /* SSE response */
    int include_usage;
    int headers_sent;        /* the SSE head went out */
    int role_sent;           /* the chat chunk with the role went out */
    struct gw_oai_meta meta; /* id, model, created: strings point into this struct */
    char id[101];
    struct syn_job job;     /* owned strings, released by req_end */
    struct event *deadline; /* owned */
    int64_t t0_us;          /* monotonic, admission */
    int64_t last_tok_us;    /* monotonic, when the latest new token arrived (for ITL) */
    /* exactly-once: what reached the client, in tokens and text bytes, and the attempt whose
     * events are being read with how many text bytes it produced so far */
    int next_pos;
    size_t sent_bytes;
    int attempt;
    size_t attempt_bytes;
    int lp_pos; /* tokens whose logprobs were relayed */
    /* the response being gathered (non-streaming) or a held-back partial UTF-8 (streaming) */
    char *text; /* malloc'ed */
    size_t text_len, text_cap;
    json_t *lp;            /* the worker's per-token logprob objects, relayed ones */
    size_t lp_text_offset; /* completions: text offset of the next logprob token */
};

struct syn_gateway {
    struct syn_gateway_params p;
    char **model_names;      /* owned copies */
    struct gw_model *models; /* n_models */
    int n_models;
    char id[101];
    char reply_key[128];
    struct event_base *base;
    int own_base;
    struct gw_http *http;
    struct gw_redis *redis;
    struct gw_auth *auth;
    struct gw_oai_limits limits;
    struct event *sigint, *sigterm, *grace;
    int stopping;
    struct gw_req **table; /* by job id */
    size_t table_cap;      /* power of two */
    size_t n_reqs;
    int64_t started;         /* unix s, for /v1/models */
    uint64_t responses[600]; /* every HTTP response by status */
    uint64_t submit_errors;
};

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void fill_random_os(void *buf, size_t n)
{
    unsigned char *p = buf;
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(p + got, n - got, 0);
        if (r <= 0) {
            if (r < 0 && errno == EINTR) continue;
            break;
        }
        got += (size_t)r;
    }
    if (got < n) { /* no getrandom: mix the clock in, good enough for ids */
        uint64_t x = (uint64_t)mono_us() ^ ((uint64_t)getpid() << 32);
        for (; got < n; got++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            p[got] = (unsigned char)x;
        }
    }
}

/* Request ids and seeds need to be unique, not secret: a per-thread xoshiro256** seeded once
 * from the OS, instead of a getrandom(2) call (two per request, a fifth of the loop's system
 * calls under load). */
static void fill_random(void *buf, size_t n)
{
    static _Thread_local uint64_t st[4];
    static _Thread_local int seeded;
    if (!seeded) {
        fill_random_os(st, sizeof st);
        if (!(st[0] | st[1] | st[2] | st[3])) st[0] = 1;
        seeded = 1;
    }
    unsigned char *p = buf;
    while (n > 0) {
        uint64_t r = st[1] * 5, t = st[1] << 17;
        r = ((r << 7) | (r >> 57)) * 9;
        st[2] ^= st[0], st[3] ^= st[1], st[1] ^= st[2], st[0] ^= st[3], st[2] ^= t;
        st[3] = (st[3] << 45) | (st[3] >> 19);
        size_t k = n < sizeof r ? n : sizeof r;
        memcpy(p, &r, k);
        p += k, n -= k;
    }
}

/* Every connection is a descriptor. Raises the soft open-file limit towards max_connections plus
 * a reserve (Redis, the pool, logs); where the hard limit is lower, serves fewer connections so
 * that the listener pauses at the limit (clients wait in the backlog) instead of accept failing
 * with EMFILE, and says so once. Process-wide: `synapse up` runs the gateway in-process. */
static int fit_fd_limit(int max_connections)
{
    enum { RESERVE = 256 };
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return max_connections;
    rlim_t want = (rlim_t)max_connections + RESERVE;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || getrlimit(RLIMIT_NOFILE, &rl) != 0)
            return max_connections;
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= want) return max_connections;
    int fit = rl.rlim_cur > 2 * RESERVE ? (int)(rl.rlim_cur - RESERVE) : (int)(rl.rlim_cur / 2);
    if (fit < 1) fit = 1;
    syn_warn(LOG,
             "the open-file limit is %llu (hard %llu): serving at most %d connections at "
             "once, not %d",
             (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max, fit,
             max_connections);
    return fit;
}

static void random_name(char *out, size_t len)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char r[64];
    if (len > sizeof r) len = sizeof r;
    fill_random(r, len);
    for (size_t i = 0; i < len; i++) out[i] = al[r[i] % (sizeof al - 1)];
    out[len] = 0;
}

/* ---- the request table ---- */

static size_t hash_id(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return (size_t)h;
}

static int table_grow(struct syn_gateway *g)
{
    size_t cap = g->table_cap ? g->table_cap * 2 : 1024;
    struct gw_req **t = calloc(cap, sizeof *t);
    if (!t) return -1;
    for (size_t i = 0; i < g->table_cap; i++) {
        struct gw_req *r = g->table[i];
        while (r) {
            struct gw_req *next = r->hnext;
            size_t b = hash_id(r->id) & (cap - 1);
            r->hnext = t[b];
            t[b] = r;
            r = next;
        }
    }
    free(g->table);
    g->table = t;
    g->table_cap = cap;
    return 0;
}

static int table_add(struct syn_gateway *g, struct gw_req *r)
{
    if (g->n_reqs + 1 > g->table_cap && table_grow(g)) return -1;
    size_t b = hash_id(r->id) & (g->table_cap - 1);
    r->hnext = g->table[b];
    g->table[b] = r;
    g->n_reqs++;
    return 0;
}

static struct gw_req *table_find(struct syn_gateway *g, const char *id)
{
    if (!g->table_cap) return NULL;
    for (struct gw_req *r = g->table[hash_id(id) & (g->table_cap - 1)]; r; r = r->hnext)
        if (strcmp(r->id, id) == 0) return r;
    return NULL;
}

static void table_remove(struct syn_gateway *g, struct gw_req *r)
{
    if (!g->table_cap) return;
    struct gw_req **pp = &g->table[hash_id(r->id) & (g->table_cap - 1)];
    for (; *pp; pp = &(*pp)->hnext)
        if (*pp == r) {
            *pp = r->hnext;
            g->n_reqs--;
            return;
        }
}

/* ---- responses ---- */

static void count(struct syn_gateway *g, struct gw_model *m, int status)
{
    if (status < 0 || status >= 600) status = 599;
    g->responses[status]++;
    if (m) m->status[status]++;
}

static void respond_json(struct syn_gateway *g, struct gw_http_req *h, struct gw_model *m,
                         int status, const char *extra, char *json)
{
    count(g, m, status);
    if (!json) {
        static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":"
                                  "\"server_error\",\"param\":null,\"code\":null}}";
        gw_http_respond(h, 500, "application/json", extra, oom, sizeof oom - 1);
        return;
    }
    gw_http_respond(h, status, "application/json", extra, json, strlen(json));
    free(json);
}

/* The one place where errors take the API's shape. */
static void respond_error(struct syn_gateway *g, struct gw_http_req *h, struct gw_model *m,
                          const struct gw_oai_error *e, const char *extra)
{
    respond_json(g, h, m, e->status, extra, gw_oai_error_json(e));
}

static void error_simple(struct syn_gateway *g, struct gw_http_req *h, struct gw_model *m,
                         int status, const char *type, const char *code, const char *param,
                         const char *msg, const char *extra)
{
    struct gw_oai_error e;
    gw_oai_set_error(&e, status, type, code, param, "%s", msg);
    respond_error(g, h, m, &e, extra);
}

/* ---- request lifecycle ---- */

static void maybe_finish_stop(struct syn_gateway *g);

/* Ends a request: out of the table and the queue counts, and freed. The HTTP side must have
 * been answered (or be gone) already. */
static void req_end(struct gw_req *r)
{
    struct syn_gateway *g = r->g;
    struct gw_model *m = r->model;
    table_remove(g, r);
    if (r->in_queue) gw_adm_left_queue(&m->adm);
    if (r->state == R_RUNNING) gw_adm_finished(&m->adm, (int64_t)time(NULL));
    m->in_flight--;
    gw_hist_observe(&m->e2e, (double)(mono_us() - r->t0_us) / 1e6);
    if (r->deadline) event_free(r->deadline);
    if (r->http) gw_http_req_on_gone(r->http, NULL, NULL);
    syn_job_release(&r->job);
    free(r->text);
    json_decref(r->lp);
    free(r);
    maybe_finish_stop(g);
}

/* Marks the job cancelled. Sent on the connection that sent its XADD, so it lands after it
 * even while the XADD is unanswered. */
static void cancel_job(struct gw_req *r)
{
    if (gw_redis_cancel(r->g->redis, r->id) != SYN_OK)
        syn_warn(LOG, "%s: cannot mark the job cancelled: Redis is unavailable", r->id);
}

/* An error for a request in flight: an HTTP error before anything was sent, or an SSE error
 * frame and [DONE] after the stream began. Ends the request. */
static void req_fail(struct gw_req *r, const struct gw_oai_error *e)
{
    struct syn_gateway *g = r->g;
    if (r->http) {
        if (r->headers_sent) {
            /* the status (200) is out already: the error goes in the stream */
            char *json = gw_oai_error_json(e);
            if (json) gw_sse_data(r->http, json);
            free(json);
            gw_sse_done(r->http);
        } else {
            char hdr[160];
            snprintf(hdr, sizeof hdr, "X-Request-Id: %s\r\n", r->id);
            respond_error(g, r->http, r->model, e, hdr);
        }
        r->http = NULL;
    }
    req_end(r);
}

static void on_gone(struct gw_http_req *h, void *ctx)
{
    (void)h;
    struct gw_req *r = ctx;
    r->http = NULL;
    r->model->cancel_disconnect++;
    syn_info(LOG, "%s: the client went away: cancelling the job", r->id);
    cancel_job(r);
    req_end(r);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct gw_req *r = arg;
    r->model->cancel_deadline++;
    cancel_job(r);
    struct gw_oai_error e;
    gw_oai_set_error(&e, 504, "server_error", "deadline_exceeded", NULL,
                     "The request's deadline passed before the response was complete%s.",
                     r->state == R_RUNNING ? "" : " (it was still waiting for a worker)");
    req_fail(r, &e);
}

/* ---- relaying events ---- */

static int reserve(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap : 256;
    while (n < need) n *= 2;
    char *b = realloc(*buf, n);
    if (!b) return -1;
    *buf = b;
    *cap = n;
    return 0;
}

static int append_text(struct gw_req *r, const char *s, size_t n)
{
    if (reserve(&r->text, &r->text_cap, r->text_len + n + 1)) return -1;
    memcpy(r->text + r->text_len, s, n);
    r->text_len += n;
    r->text[r->text_len] = 0;
    return 0;
}

static int stream_chunk(struct gw_req *r, const char *text, size_t len, const char *finish,
                        json_t *lp)
{
    if (!r->http) return -1;
    if (!r->headers_sent) {
        char hdr[160];
        snprintf(hdr, sizeof hdr, "X-Request-Id: %s\r\n", r->id);
        gw_sse_begin(r->http, hdr);
        r->headers_sent = 1;
        count(r->g, r->model, 200);
    }
    char *json;
    if (r->meta.kind == GW_OAI_CHAT && !r->role_sent) {
        /* as the reference API does: a first chunk with the role and empty content */
        json = gw_oai_chunk_json(&r->meta, 1, "", 0, NULL, NULL, r->include_usage);
        if (!json) return -1;
        r->role_sent = 1;
        int rc = gw_sse_data(r->http, json);
        free(json);
        if (rc) return rc;
        if (!len && !finish && !lp) return 0;
    }
    json = gw_oai_chunk_json(&r->meta, 0, text, len, finish, lp, r->include_usage);
    if (!json) return -1;
    int rc = gw_sse_data(r->http, json);
    free(json);
    return rc;
}

/* Relays the new text of an event (already deduplicated): gathered, or streamed as a chunk.
 * While streaming, r->text holds back a UTF-8 sequence cut at the end of an event until the
 * rest of it arrives, so that every chunk is valid text. */
static void relay(struct gw_req *r, const char *text, size_t len, json_t *lp)
{
    if (len && append_text(r, text, len)) return;
    if (!r->stream) return;
    size_t n = gw_utf8_complete_prefix(r->text ? r->text : "", r->text_len);
    if (n == 0 && !lp) return;
    stream_chunk(r, r->text ? r->text : "", n, NULL, lp);
    memmove(r->text, r->text + n, r->text_len - n);
    r->text_len -= n;
}

static void finish_ok(struct gw_req *r, const struct syn_event *ev)
{
    struct syn_gateway *g = r->g;
    if (!r->http) {
        req_end(r);
        return;
    }
    if (r->stream) {
        if (r->text_len) stream_chunk(r, r->text, r->text_len, NULL, NULL);
        r->text_len = 0;
        if (r->http) stream_chunk(r, "", 0, ev->finish, NULL);
        if (r->http && r->include_usage) {
            char *json =
                gw_oai_usage_chunk_json(&r->meta, ev->prompt_tokens, ev->completion_tokens);
            if (json) gw_sse_data(r->http, json);
            free(json);
        }
        if (r->http) gw_sse_done(r->http);
    } else {
        json_t *lp = r->lp ? gw_oai_logprobs(r->meta.kind, r->lp, 0) : NULL;
        if (!lp && r->job.logprobs) lp = gw_oai_logprobs(r->meta.kind, json_array(), 0);
        char *json =
            gw_oai_completion_json(&r->meta, r->text ? r->text : "", r->text_len, ev->finish, lp,
                                   ev->prompt_tokens, ev->completion_tokens);
        json_decref(lp);
        char hdr[160];
        snprintf(hdr, sizeof hdr, "X-Request-Id: %s\r\n", r->id);
        respond_json(g, r->http, r->model, 200, hdr, json);
    }
    r->http = NULL;
    req_end(r);
}

static void finish_error(struct gw_req *r, const struct syn_event *ev)
{
    struct gw_oai_error e;
    const char *code = ev->error_code ? ev->error_code : "";
    const char *msg = ev->error && *ev->error ? ev->error : "the job failed";
    if (!strcmp(ev->finish, "cancelled"))
        gw_oai_set_error(&e, 500, "server_error", "cancelled", NULL,
                         "The job was cancelled before it finished.");
    else if (!strcmp(code, "deadline"))
        gw_oai_set_error(&e, 504, "server_error", "deadline_exceeded", NULL, "%s", msg);
    else if (!strcmp(code, "bad_request"))
        gw_oai_set_error(&e, 400, "invalid_request_error", "invalid_request", NULL, "%s", msg);
    else
        gw_oai_set_error(&e, 500, "server_error", *code ? code : NULL, NULL, "%s", msg);
    req_fail(r, &e);
}

static void on_event(void *ud, const struct syn_event *ev)
{
    struct syn_gateway *g = ud;
    struct gw_req *r = table_find(g, ev->job);
    if (!r) return; /* finished, cancelled, or not ours */
    /* a later attempt (the job was re-run after a worker died) replaces the earlier one; it
     * regenerates the same text from the start, so its bytes line up with what was sent */
    if (ev->attempt < r->attempt) {
        r->model->duplicates++;
        return;
    }
    if (ev->attempt > r->attempt) {
        r->attempt = ev->attempt;
        r->attempt_bytes = ev->pos == 0 ? 0 : r->sent_bytes;
    }
    if (r->state != R_RUNNING) {
        if (r->in_queue) gw_adm_left_queue(&r->model->adm);
        r->in_queue = 0;
        r->state = R_RUNNING;
        r->last_tok_us = mono_us();
        gw_hist_observe(&r->model->ttft, (double)(r->last_tok_us - r->t0_us) / 1e6);
    }
    /* text bytes of this attempt: [attempt_bytes, attempt_bytes + len) */
    size_t skip = 0;
    if (r->sent_bytes > r->attempt_bytes) {
        skip = r->sent_bytes - r->attempt_bytes;
        if (skip > ev->text_len) skip = ev->text_len;
    }
    r->attempt_bytes += ev->text_len;
    const char *text = ev->text + skip;
    size_t len = ev->text_len - skip;
    r->sent_bytes += len;
    int end = ev->pos + ev->n_tokens;
    if (end > r->next_pos) {
        uint64_t fresh_toks = (uint64_t)(end - (ev->pos > r->next_pos ? ev->pos : r->next_pos));
        r->model->tokens += fresh_toks;
        /* inter-token latency: the gap since the previous new tokens, shared by the new ones
         * (the first token of a request is its TTFT, not an inter-token gap) */
        int64_t now = mono_us();
        if (r->next_pos > 0)
            gw_hist_observe_n(&r->model->itl,
                              (double)(now - r->last_tok_us) / 1e6 / (double)fresh_toks,
                              fresh_toks);
        r->last_tok_us = now;
        r->next_pos = end;
    } else if (ev->n_tokens > 0) {
        r->model->duplicates++;
    }
    /* logprobs: one entry per token from ev->pos; relay those not relayed yet */
    json_t *fresh = NULL;
    if (ev->logprobs && r->job.logprobs) {
        json_t *arr = json_loads(ev->logprobs, 0, NULL);
        if (json_is_array(arr)) {
            fresh = json_array();
            for (size_t i = 0; i < json_array_size(arr); i++) {
                if (ev->pos + (int)i < r->lp_pos) continue;
                json_array_append(fresh, json_array_get(arr, i));
            }
            if (ev->pos + (int)json_array_size(arr) > r->lp_pos)
                r->lp_pos = ev->pos + (int)json_array_size(arr);
            if (json_array_size(fresh) == 0) {
                json_decref(fresh);
                fresh = NULL;
            }
        }
        json_decref(arr);
    }
    if (fresh && !r->stream) {
        if (!r->lp) r->lp = json_array();
        json_array_extend(r->lp, fresh);
    }
    if (len || (fresh && r->stream)) {
        json_t *api_lp = NULL;
        if (fresh && r->stream) {
            api_lp = gw_oai_logprobs(r->meta.kind, fresh, r->lp_text_offset);
            for (size_t i = 0; i < json_array_size(fresh); i++) {
                json_t *t = json_object_get(json_array_get(fresh, i), "token");
                r->lp_text_offset += json_is_string(t) ? json_string_length(t) : 0;
            }
        }
        relay(r, text, len, api_lp);
        json_decref(api_lp);
    }
    json_decref(fresh);
    if (!ev->finish) return;
    if (!strcmp(ev->finish, "stop") || !strcmp(ev->finish, "length")) {
        if (ev->prompt_tokens > 0) r->model->prompt_tokens += (uint64_t)ev->prompt_tokens;
        finish_ok(r, ev);
    } else {
        finish_error(r, ev);
    }
}

static void on_submitted(void *ud, const char *job_id, int ok, const char *entry, const char *err)
{
    struct syn_gateway *g = ud;
    struct gw_req *r = table_find(g, job_id);
    if (!r) {
        /* gone before the XADD was answered: on_gone already sent the cancellation */
        return;
    }
    if (ok) {
        if (r->state == R_SUBMITTING) r->state = R_WAITING;
        snprintf(r->job.entry, sizeof r->job.entry, "%s", entry ? entry : "");
        syn_debug(LOG, "%s: in the stream as %s", job_id, r->job.entry);
        /* told only now that the job is in the stream: a scaler that looks at the backlog at
         * once (the pool, from zero) must find it there, or it waits for its next tick (200 ms
         * of cold start, measured by bench/gateway.sh) */
        if (g->p.hooks.on_demand) g->p.hooks.on_demand(g->p.hooks.ud, r->job.model);
        return;
    }
    g->submit_errors++;
    syn_warn(LOG, "%s: XADD failed: %s", job_id, err ? err : "?");
    struct gw_oai_error e;
    gw_oai_set_error(&e, 503, "server_error", "queue_unavailable", NULL,
                     "The job queue is unavailable (%s); retry shortly.", err ? err : "?");
    cancel_job(r);
    req_fail(r, &e);
}

static void on_backlog(void *ud, int model, int64_t waiting, int64_t pending)
{
    struct syn_gateway *g = ud;
    gw_adm_backlog(&g->models[model].adm, waiting, pending);
}

static void on_poll_sent(void *ud, int model)
{
    struct syn_gateway *g = ud;
    gw_adm_poll_sent(&g->models[model].adm);
}

static void on_workers(void *ud, int model, int live, int ready, int running)
{
    struct syn_gateway *g = ud;
    struct gw_adm *a = &g->models[model].adm;
    a->workers = live;
    a->ready_workers = ready;
    a->running = running;
    a->registry_known = 1;
}

/* ---- routes ---- */

static struct gw_model *find_model(struct syn_gateway *g, const char *name)
{
    for (int i = 0; i < g->n_models; i++)
        if (!strcmp(g->models[i].name, name)) return &g->models[i];
    return NULL;
}

/* 1 if the model can be served now or once a worker starts. */
static int servable(struct syn_gateway *g, struct gw_model *m)
{
    if (g->p.hooks.can_serve) return g->p.hooks.can_serve(g->p.hooks.ud, m->name) != 0;
    return m->adm.ready_workers > 0;
}

static int read_deadline(struct syn_gateway *g, struct gw_http_req *h, int64_t *ms,
                         struct gw_oai_error *e)
{
    const char *v = gw_http_req_header(h, "X-Synapse-Deadline-Ms");
    *ms = g->p.default_deadline_ms;
    if (!v) return 0;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || errno || x < 1 || x > g->p.max_deadline_ms) {
        gw_oai_set_error(e, 400, "invalid_request_error", "invalid_value", "X-Synapse-Deadline-Ms",
                         "Invalid header 'X-Synapse-Deadline-Ms': expected milliseconds from "
                         "now between 1 and %" PRId64 ", got '%.40s'.",
                         g->p.max_deadline_ms, v);
        return -1;
    }
    *ms = x;
    return 0;
}

static int read_priority(struct gw_http_req *h, int *prio, struct gw_oai_error *e)
{
    const char *v = gw_http_req_header(h, "X-Synapse-Priority");
    *prio = SYN_PRIO_NORMAL;
    if (!v) return 0;
    if (!strcasecmp(v, "high") || !strcmp(v, "1"))
        *prio = SYN_PRIO_HIGH;
    else if (!strcasecmp(v, "normal") || !strcmp(v, "0"))
        *prio = SYN_PRIO_NORMAL;
    else {
        gw_oai_set_error(e, 400, "invalid_request_error", "invalid_value", "X-Synapse-Priority",
                         "Invalid header 'X-Synapse-Priority': expected high, normal, 1 or 0, "
                         "got '%.40s'.",
                         v);
        return -1;
    }
    return 0;
}

static void handle_completion(struct syn_gateway *g, struct gw_http_req *h, enum gw_oai_kind kind)
{
    struct gw_oai_error e;
    struct gw_oai_request q;
    size_t blen;
    const char *body = gw_http_req_body(h, &blen);
    if (gw_oai_parse(kind, body, blen, &g->limits, &q, &e)) {
        respond_error(g, h, NULL, &e, "");
        return;
    }
    struct gw_model *m = q.model_cut ? NULL : find_model(g, q.model);
    if (!m) {
        gw_oai_set_error(&e, 404, "invalid_request_error", "model_not_found", "model",
                         "The model '%s%s' does not exist or you do not have access to it.",
                         q.model, q.model_cut ? "..." : "");
        goto refuse;
    }
    int64_t deadline_ms;
    int prio;
    if (read_deadline(g, h, &deadline_ms, &e) || read_priority(h, &prio, &e)) goto refuse;
    if (g->stopping) {
        gw_oai_set_error(&e, 503, "server_error", "shutting_down", NULL,
                         "The gateway is shutting down; retry on another instance.");
        goto refuse;
    }
    if (!gw_redis_up(g->redis)) {
        gw_oai_set_error(&e, 503, "server_error", "queue_unavailable", NULL,
                         "The job queue (Redis) is unreachable; retry shortly.");
        goto refuse;
    }
    if (g->p.hooks.can_serve ? !servable(g, m) : (m->adm.registry_known && m->adm.workers == 0)) {
        gw_oai_set_error(&e, 503, "server_error", "no_capacity", NULL,
                         "No worker is serving model '%s' and none can be started; retry "
                         "later.",
                         m->name);
        goto refuse;
    }
    int retry = 0;
    if (gw_adm_admit(&m->adm, g->p.max_queue, (int64_t)time(NULL), &retry)) {
        char hdr[64];
        snprintf(hdr, sizeof hdr, "Retry-After: %d\r\n", retry);
        gw_oai_set_error(&e, 429, "rate_limit_error", "queue_full", NULL,
                         "Too many requests are queued for model '%s' (%d); retry after %d s.",
                         m->name, g->p.max_queue, retry);
        respond_error(g, h, m, &e, hdr);
        gw_oai_request_release(&q);
        return;
    }
    struct gw_req *r = calloc(1, sizeof *r);
    if (!r) {
        gw_adm_left_queue(&m->adm);
        gw_oai_set_error(&e, 500, "server_error", NULL, NULL, "out of memory");
        goto refuse;
    }
    r->g = g;
    r->http = h;
    r->model = m;
    r->in_queue = 1;
    r->stream = q.stream;
    r->include_usage = q.include_usage;
    r->t0_us = mono_us();
    r->job = q.job; /* ownership moves */
    memset(&q.job, 0, sizeof q.job);
    char rnd[32];
    random_name(rnd, 24);
    snprintf(r->id, sizeof r->id, "%s%s", kind == GW_OAI_CHAT ? "chatcmpl-" : "cmpl-", rnd);
    r->meta.kind = kind;
    r->meta.id = r->id;
    r->meta.model = m->name;
    r->meta.created = (int64_t)time(NULL);
    snprintf(r->job.id, sizeof r->job.id, "%s", r->id);
    snprintf(r->job.model, sizeof r->job.model, "%s", m->name);
    snprintf(r->job.reply, sizeof r->job.reply, "%s", g->reply_key);
    if (!q.seed_set) {
        /* fixed here, so that a re-run of the job regenerates the same tokens */
        uint64_t s;
        fill_random(&s, sizeof s);
        r->job.sampling.seed = s & INT64_MAX;
    }
    r->job.created_ms = syn_unix_ms();
    r->job.deadline_ms = r->job.created_ms + deadline_ms;
    r->job.priority = prio;
    m->in_flight++;
    r->deadline = event_new(g->base, -1, 0, on_deadline, r);
    if (!r->deadline || table_add(g, r)) {
        gw_oai_set_error(&e, 500, "server_error", NULL, NULL, "out of memory");
        r->http = NULL;
        respond_error(g, h, m, &e, "");
        req_end(r);
        return;
    }
    struct timeval tv = {(time_t)(deadline_ms / 1000), (suseconds_t)((deadline_ms % 1000) * 1000)};
    event_add(r->deadline, &tv);
    int rc = gw_redis_submit(g->redis, &r->job);
    if (rc) {
        g->submit_errors++;
        if (rc == SYN_EINVAL)
            gw_oai_set_error(&e, 400, "invalid_request_error", NULL, NULL,
                             "The request cannot be encoded as a job.");
        else
            gw_oai_set_error(&e, 503, "server_error", "queue_unavailable", NULL,
                             "The job queue (Redis) is unreachable; retry shortly.");
        req_fail(r, &e);
        return;
    }
    gw_http_req_on_gone(h, on_gone, r);
    syn_debug(LOG, "%s: queued for %s (deadline %" PRId64 " ms, priority %d, seed %" PRIu64 ")",
              r->id, m->name, deadline_ms, prio, r->job.sampling.seed);
    return;
refuse:
    respond_error(g, h, m, &e, "");
    gw_oai_request_release(&q);
}

static void handle_models(struct syn_gateway *g, struct gw_http_req *h, const char *rest)
{
    if (!rest) {
        respond_json(
            g, h, NULL, 200, "",
            gw_oai_models_json((const char *const *)g->model_names, g->n_models, g->started));
        return;
    }
    struct gw_model *m = find_model(g, rest);
    if (!m) {
        char msg[300];
        snprintf(msg, sizeof msg,
                 "The model '%.200s' does not exist or you do not have access "
                 "to it.",
                 rest);
        error_simple(g, h, NULL, 404, "invalid_request_error", "model_not_found", "model", msg, "");
        return;
    }
    respond_json(g, h, NULL, 200, "", gw_oai_model_json(m->name, g->started));
}

static void handle_readyz(struct syn_gateway *g, struct gw_http_req *h)
{
    int redis = gw_redis_up(g->redis);
    int any = 0;
    json_t *models = json_object();
    for (int i = 0; i < g->n_models; i++) {
        struct gw_model *m = &g->models[i];
        int s = servable(g, m);
        any |= s;
        json_object_set_new(models, m->name,
                            json_pack("{s:b,s:i,s:i,s:I}", "servable", s, "workers", m->adm.workers,
                                      "ready_workers", m->adm.ready_workers, "queued",
                                      (json_int_t)gw_adm_depth(&m->adm)));
    }
    int ready = redis && any;
    json_t *root = json_pack("{s:s,s:b,s:o}", "status", ready ? "ready" : "not ready", "redis",
                             redis, "models", models);
    char *json = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    respond_json(g, h, NULL, ready ? 200 : 503, "", json);
}

/* The embedder's families (the pool's, under `synapse up`), after the gateway's own. */
static void append_hook_metrics(struct syn_gateway *g, struct evbuffer *o)
{
    size_t cap = 16384;
    for (int tries = 0; tries < 4; tries++) {
        char *buf = malloc(cap);
        if (!buf) return;
        size_t need = g->p.hooks.metrics(g->p.hooks.ud, buf, cap);
        if (need < cap) {
            evbuffer_add(o, buf, need);
            free(buf);
            return;
        }
        free(buf);
        cap = need + 1;
    }
}

static void handle_metrics(struct syn_gateway *g, struct gw_http_req *h)
{
    struct evbuffer *o = evbuffer_new();
    if (!o) {
        error_simple(g, h, NULL, 500, "server_error", NULL, NULL, "out of memory", "");
        return;
    }
    struct gw_http_stats hs;
    struct gw_redis_stats rs;
    gw_http_get_stats(g->http, &hs);
    gw_redis_get_stats(g->redis, &rs);
    int64_t now = (int64_t)time(NULL);

    gw_metric_header(o, "synapse_gateway_requests_total", "counter",
                     "API requests answered, by model and HTTP status.");
    for (int i = 0; i < g->n_models; i++)
        for (int s = 0; s < 600; s++)
            if (g->models[i].status[s]) {
                char st[16];
                snprintf(st, sizeof st, "%d", s);
                gw_metric_value(o, "synapse_gateway_requests_total", "model", g->models[i].name,
                                "status", st, (double)g->models[i].status[s]);
            }
    gw_metric_header(o, "synapse_gateway_http_responses_total", "counter",
                     "Every HTTP response, by status.");
    for (int s = 0; s < 600; s++)
        if (g->responses[s]) {
            char st[16];
            snprintf(st, sizeof st, "%d", s);
            gw_metric_value(o, "synapse_gateway_http_responses_total", "status", st, NULL, NULL,
                            (double)g->responses[s]);
        }
#define PER_MODEL(NAME_, TYPE_, HELP_, EXPR_)                                                      \
    do {                                                                                           \
        gw_metric_header(o, NAME_, TYPE_, HELP_);                                                  \
        for (int i = 0; i < g->n_models; i++) {                                                    \
            struct gw_model *m = &g->models[i];                                                    \
            gw_metric_value(o, NAME_, "model", m->name, NULL, NULL, (double)(EXPR_));              \
        }                                                                                          \
    } while (0)
    PER_MODEL("synapse_gateway_requests_in_flight", "gauge",
              "Requests admitted and not yet answered.", m->in_flight);
    PER_MODEL("synapse_gateway_queue_rejections_total", "counter",
              "Requests refused with 429 because the model's queue was full.", m->adm.rejected);
    PER_MODEL("synapse_gateway_queue_depth", "gauge",
              "Jobs queued and not started (this gateway's plus the polled backlog).",
              gw_adm_depth(&m->adm));
    PER_MODEL("synapse_gateway_queue_backlog", "gauge",
              "Undelivered jobs in the model's streams at the last poll.", m->adm.redis_waiting);
    PER_MODEL("synapse_gateway_queue_pending", "gauge",
              "Delivered, unacknowledged jobs at the last poll.", m->adm.redis_pending);
    PER_MODEL("synapse_gateway_drain_rate", "gauge", "Jobs finished per second over the last 10 s.",
              gw_adm_drain_rate(&m->adm, now));
    PER_MODEL("synapse_gateway_workers", "gauge", "Live workers in the registry.", m->adm.workers);
    PER_MODEL("synapse_gateway_workers_ready", "gauge", "Ready workers in the registry.",
              m->adm.ready_workers);
    PER_MODEL("synapse_gateway_completion_tokens_total", "counter",
              "Completion tokens relayed to clients.", m->tokens);
    PER_MODEL("synapse_gateway_prompt_tokens_total", "counter",
              "Prompt tokens of completed requests, as the worker counted them.", m->prompt_tokens);
    PER_MODEL("synapse_gateway_duplicate_events_total", "counter",
              "Token events dropped because their tokens were already delivered.", m->duplicates);
    gw_metric_header(o, "synapse_gateway_cancellations_total", "counter",
                     "Jobs cancelled by the gateway, by reason.");
    for (int i = 0; i < g->n_models; i++) {
        gw_metric_value(o, "synapse_gateway_cancellations_total", "model", g->models[i].name,
                        "reason", "disconnect", (double)g->models[i].cancel_disconnect);
        gw_metric_value(o, "synapse_gateway_cancellations_total", "model", g->models[i].name,
                        "reason", "deadline", (double)g->models[i].cancel_deadline);
    }
    gw_metric_header(o, "synapse_gateway_time_to_first_token_seconds", "histogram",
                     "From admission to the first token event.");
    for (int i = 0; i < g->n_models; i++)
        gw_metric_hist(o, "synapse_gateway_time_to_first_token_seconds", "model", g->models[i].name,
                       &g->models[i].ttft);
    gw_metric_header(o, "synapse_gateway_request_duration_seconds", "histogram",
                     "From admission to the end of the response.");
    for (int i = 0; i < g->n_models; i++)
        gw_metric_hist(o, "synapse_gateway_request_duration_seconds", "model", g->models[i].name,
                       &g->models[i].e2e);
    gw_metric_header(o, "synapse_gateway_inter_token_latency_seconds", "histogram",
                     "Time between consecutive tokens of a request, once per token.");
    for (int i = 0; i < g->n_models; i++)
        gw_metric_hist(o, "synapse_gateway_inter_token_latency_seconds", "model", g->models[i].name,
                       &g->models[i].itl);
    gw_metric_header(o, "synapse_gateway_registry_workers", "gauge",
                     "Live workers in the registry, by state.");
    for (int i = 0; i < g->n_models; i++) {
        const struct gw_adm *a = &g->models[i].adm;
        int draining = a->workers > a->ready_workers ? a->workers - a->ready_workers : 0;
        gw_metric_value(o, "synapse_gateway_registry_workers", "model", g->models[i].name, "state",
                        "ready", a->ready_workers);
        gw_metric_value(o, "synapse_gateway_registry_workers", "model", g->models[i].name, "state",
                        "draining", draining);
    }
#define SCALAR(NAME_, TYPE_, HELP_, V_)                                                            \
    do {                                                                                           \
        gw_metric_header(o, NAME_, TYPE_, HELP_);                                                  \
        gw_metric_value(o, NAME_, NULL, NULL, NULL, NULL, (double)(V_));                           \
    } while (0)
    SCALAR("synapse_gateway_connections", "gauge", "Open client connections.", hs.connections);
    SCALAR("synapse_gateway_connections_accepted_total", "counter", "Connections accepted.",
           hs.accepted);
    SCALAR("synapse_gateway_http_transport_errors_total", "counter",
           "Requests refused by the HTTP layer (malformed, too large).", hs.transport_errors);
    SCALAR("synapse_gateway_http_read_timeouts_total", "counter",
           "Connections cut off because a request did not arrive in time.", hs.read_timeouts);
    SCALAR("synapse_gateway_http_write_timeouts_total", "counter",
           "Connections cut off because the client did not read its response.", hs.write_timeouts);
    SCALAR("synapse_gateway_redis_up", "gauge", "1 when both Redis connections are up.",
           gw_redis_up(g->redis));
    SCALAR("synapse_gateway_redis_errors_total", "counter", "Redis connections lost or refused.",
           rs.errors);
    SCALAR("synapse_gateway_redis_reconnects_total", "counter", "Redis reconnections.",
           rs.reconnects);
    SCALAR("synapse_gateway_reply_events_total", "counter", "Token events read.", rs.events);
    SCALAR("synapse_gateway_submit_errors_total", "counter", "Jobs that could not be queued.",
           g->submit_errors);
    gw_metric_process(o);
    if (g->p.hooks.metrics) append_hook_metrics(g, o);
    size_t n = evbuffer_get_length(o);
    char *text = malloc(n + 1);
    if (text) evbuffer_remove(o, text, n);
    evbuffer_free(o);
    count(g, NULL, text ? 200 : 500);
    if (text)
        gw_http_respond(h, 200, "text/plain; version=0.0.4; charset=utf-8", "", text, n);
    else
        gw_http_respond(h, 500, "text/plain", "", "out of memory\n", 14);
    free(text);
}

static void on_http(struct gw_http_req *h, void *ud)
{
    struct syn_gateway *g = ud;
    int err = gw_http_req_error(h);
    if (err) {
        static const struct {
            int status;
            const char *code;
        } codes[] = {{400, "bad_request"},
                     {408, "request_timeout"},
                     {413, "request_too_large"},
                     {417, "expectation_failed"},
                     {431, "headers_too_large"},
                     {501, "not_implemented"},
                     {505, "http_version_not_supported"}};
        const char *code = NULL;
        for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
            if (codes[i].status == err) code = codes[i].code;
        error_simple(g, h, NULL, err, err >= 500 ? "server_error" : "invalid_request_error", code,
                     NULL, gw_http_req_error_message(h), "");
        return;
    }
    const char *path = gw_http_req_path(h), *method = gw_http_req_method(h);
    int get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    int post = !strcmp(method, "POST");
    const char *allow = NULL;
    char msg[300];
    if (!strcmp(path, "/healthz")) {
        if (get) {
            static const char ok[] = "{\"status\":\"ok\"}";
            count(g, NULL, 200);
            gw_http_respond(h, 200, "application/json", "", ok, sizeof ok - 1);
            return;
        }
        allow = "GET, HEAD";
    } else if (!strcmp(path, "/readyz")) {
        if (get) {
            handle_readyz(g, h);
            return;
        }
        allow = "GET, HEAD";
    } else if (!strcmp(path, "/metrics")) {
        if (get) {
            handle_metrics(g, h);
            return;
        }
        allow = "GET, HEAD";
    } else if (!strncmp(path, "/v1/", 4)) {
        int chat = !strcmp(path, "/v1/chat/completions"), text = !strcmp(path, "/v1/completions");
        int models = !strcmp(path, "/v1/models");
        const char *one = !strncmp(path, "/v1/models/", 11) && path[11] ? path + 11 : NULL;
        if (chat || text || models || one) {
            struct gw_oai_error e;
            if (gw_auth_check(g->auth, gw_http_req_header(h, "Authorization"), &e)) {
                respond_error(g, h, NULL, &e, "WWW-Authenticate: Bearer\r\n");
                return;
            }
            if ((chat || text) && post) {
                handle_completion(g, h, chat ? GW_OAI_CHAT : GW_OAI_COMPLETIONS);
                return;
            }
            if ((models || one) && get) {
                handle_models(g, h, one);
                return;
            }
            allow = chat || text ? "POST" : "GET, HEAD";
        }
    }
    if (allow) {
        char hdr[64];
        snprintf(hdr, sizeof hdr, "Allow: %s\r\n", allow);
        snprintf(msg, sizeof msg, "Method %.20s is not allowed on %.200s (allowed: %s).", method,
                 path, allow);
        error_simple(g, h, NULL, 405, "invalid_request_error", "method_not_allowed", NULL, msg,
                     hdr);
        return;
    }
    snprintf(msg, sizeof msg, "Invalid URL (%.20s %.200s).", method, path);
    error_simple(g, h, NULL, 404, "invalid_request_error", "unknown_url", NULL, msg, "");
}

/* ---- lifecycle ---- */

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct syn_gateway *g = arg;
    syn_info(LOG, "signal %d: stopping", (int)sig);
    if (g->stopping) {
        event_base_loopexit(g->base, NULL); /* a second signal: now */
        return;
    }
    syn_gateway_stop(g);
}

static void on_grace(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct syn_gateway *g = arg;
    syn_warn(LOG, "stopping with %zu requests still in flight", g->n_reqs);
    if (g->own_base) event_base_loopexit(g->base, NULL);
}

static void maybe_finish_stop(struct syn_gateway *g)
{
    if (g->stopping && g->n_reqs == 0 && g->own_base) event_base_loopexit(g->base, NULL);
}

void syn_gateway_stop(struct syn_gateway *g)
{
    if (g->stopping) return;
    g->stopping = 1;
    gw_http_stop_accepting(g->http);
    if (g->grace) {
        struct timeval tv = {g->p.shutdown_grace_ms / 1000, (g->p.shutdown_grace_ms % 1000) * 1000};
        event_add(g->grace, &tv);
    }
    maybe_finish_stop(g);
}

int syn_gateway_new(const struct syn_gateway_params *p, struct syn_gateway **out, char *err,
                    size_t errlen)
{
    int rc;
    *out = NULL;
    if (!p->n_models || !p->models)
        return syn_seterr(err, errlen, SYN_EINVAL, "gateway: at least one model name is needed");
    for (int i = 0; i < p->n_models; i++) {
        if (!syn_q_name_ok(p->models[i]))
            return syn_seterr(err, errlen, SYN_EINVAL,
                              "gateway: model name '%s' must be 1..100 characters of "
                              "[A-Za-z0-9._-]",
                              p->models[i] ? p->models[i] : "");
        for (int k = 0; k < i; k++)
            if (!strcmp(p->models[k], p->models[i]))
                return syn_seterr(err, errlen, SYN_EINVAL, "gateway: model '%s' is listed twice",
                                  p->models[i]);
    }
    if (p->id && !syn_q_name_ok(p->id))
        return syn_seterr(err, errlen, SYN_EINVAL,
                          "gateway: id '%s' must be 1..100 characters of [A-Za-z0-9._-]", p->id);
    if (p->max_queue < 0 || p->default_deadline_ms < 1 || p->max_deadline_ms < 1 ||
        p->max_body_bytes < 1 || p->max_tokens_limit < 1)
        return syn_seterr(err, errlen, SYN_EINVAL, "gateway: a limit is out of range");

    struct syn_gateway *g = calloc(1, sizeof *g);
    if (!g) return syn_seterr(err, errlen, SYN_ENOMEM, "gateway: out of memory");
    g->p = *p;
    g->started = (int64_t)time(NULL);
    g->n_models = p->n_models;
    g->models = calloc((size_t)p->n_models, sizeof *g->models);
    g->model_names = calloc((size_t)p->n_models + 1, sizeof *g->model_names);
    if (!g->models || !g->model_names) {
        rc = syn_seterr(err, errlen, SYN_ENOMEM, "gateway: out of memory");
        goto fail;
    }
    for (int i = 0; i < p->n_models; i++) {
        snprintf(g->models[i].name, sizeof g->models[i].name, "%s", p->models[i]);
        g->model_names[i] = g->models[i].name;
        gw_hist_init(&g->models[i].ttft, GW_BUCKETS_TTFT);
        gw_hist_init(&g->models[i].itl, GW_BUCKETS_ITL);
        gw_hist_init(&g->models[i].e2e, GW_BUCKETS_E2E);
    }
    if (p->id) {
        snprintf(g->id, sizeof g->id, "%s", p->id);
    } else {
        char rnd[16];
        random_name(rnd, 10);
        snprintf(g->id, sizeof g->id, "gw-%s", rnd);
    }
    g->p.id = g->id;
    if (syn_q_key_reply(g->reply_key, sizeof g->reply_key, g->id) < 0) {
        rc = syn_seterr(err, errlen, SYN_EINVAL, "gateway: id '%s' does not make a key", g->id);
        goto fail;
    }
    g->limits = gw_oai_default_limits();
    g->limits.max_tokens_limit = p->max_tokens_limit;
    if (p->default_max_tokens_chat > 0)
        g->limits.default_max_tokens_chat = p->default_max_tokens_chat;
    if ((rc = gw_auth_new(p->api_keys_file, p->api_keys, &g->auth, err, errlen))) goto fail;

    if (p->base) {
        g->base = p->base;
    } else {
        g->base = event_base_new();
        g->own_base = 1;
        if (!g->base) {
            rc = syn_seterr(err, errlen, SYN_ENOMEM, "gateway: cannot create an event loop");
            goto fail;
        }
    }
    struct gw_http_config hc = gw_http_default_config();
    hc.host = p->host && *p->host ? p->host : "127.0.0.1";
    hc.port = p->port;
    hc.max_body_bytes = p->max_body_bytes;
    if (p->max_header_bytes) hc.max_header_bytes = p->max_header_bytes;
    if (p->max_connections > 0) hc.max_connections = p->max_connections;
    hc.max_connections = fit_fd_limit(hc.max_connections);
    if (p->read_timeout_ms > 0) hc.read_timeout_ms = p->read_timeout_ms;
    if (p->write_timeout_ms > 0) hc.write_timeout_ms = p->write_timeout_ms;
    if ((rc = gw_http_new(g->base, &hc, on_http, g, &g->http, err, errlen))) goto fail;
    struct gw_redis_callbacks cb = {
        .on_event = on_event,
        .on_submitted = on_submitted,
        .on_backlog = on_backlog,
        .on_workers = on_workers,
        .on_poll_sent = on_poll_sent,
        .ud = g,
    };
    if ((rc = gw_redis_new(g->base, p->redis_url, g->reply_key, (const char *const *)g->model_names,
                           g->n_models, p->poll_interval_ms, &cb, &g->redis, err, errlen)))
        goto fail;
    g->grace = event_new(g->base, -1, 0, on_grace, g);
    if (g->own_base && p->handle_signals) {
        g->sigint = evsignal_new(g->base, SIGINT, on_signal, g);
        g->sigterm = evsignal_new(g->base, SIGTERM, on_signal, g);
        if (g->sigint) evsignal_add(g->sigint, NULL);
        if (g->sigterm) evsignal_add(g->sigterm, NULL);
    }
    syn_info(LOG, "gateway %s on %s:%d for %d model(s), auth %s", g->id, hc.host,
             gw_http_port(g->http), g->n_models, gw_auth_count(g->auth) ? "on" : "off");
    *out = g;
    return SYN_OK;
fail:
    syn_gateway_free(g);
    return rc;
}

int syn_gateway_run(struct syn_gateway *g)
{
    if (!g->own_base) return SYN_OK;
    return event_base_dispatch(g->base) < 0 ? SYN_EIO : SYN_OK;
}

void syn_gateway_free(struct syn_gateway *g)
{
    if (!g) return;
    g->stopping = 1;
    /* closing the connections cancels their jobs (through on_gone), while Redis is still up */
    if (g->http) gw_http_free(g->http);
    g->http = NULL;
    /* requests whose client is already gone cannot remain; any left are ended here */
    for (size_t i = 0; g->table && i < g->table_cap; i++)
        while (g->table[i]) {
            struct gw_req *r = g->table[i];
            r->http = NULL;
            req_end(r);
        }
    gw_redis_free(g->redis);
    gw_auth_free(g->auth);
    if (g->sigint) event_free(g->sigint);
    if (g->sigterm) event_free(g->sigterm);
    if (g->grace) event_free(g->grace);
    if (g->own_base && g->base) event_base_free(g->base);
    free(g->table);
    free(g->models);
    free(g->model_names);
    free(g);
}

int syn_gateway_port(const struct syn_gateway *g)
{
    return gw_http_port(g->http);
}

const char *syn_gateway_id(const struct syn_gateway *g)
{
    return g->id;
}
