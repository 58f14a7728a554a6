/*
 * The Lambda custom runtime loop (lambda.h): init, then next → handle → response/error, over the
 * Runtime API with the HTTP client of http.h. Batches run in this process on the engine loaded at
 * init; drain invocations run `synapse worker` as a child process and stop it before the
 * deadline.
 */
#include "aws/lambda.h"

#include "aws/http.h"
#include "aws/sbuf.h"
#include "synapse/chat.h"
#include "synapse/engine.h"
#include "synapse/error.h"
#include "synapse/log.h"
#include "synapse/queue.h"
#include "common/proc.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LOG "lambda"
#define API "/2018-06-01/runtime"

static volatile sig_atomic_t g_stop;

void syn_lambda_request_stop(void)
{
    g_stop = 1;
}

struct syn_lambda_params syn_lambda_default_params(void)
{
    struct syn_lambda_params p = {
        .max_seqs = 16,
        .max_batched_tokens = 256,
        .deadline_margin_ms = 2000,
        .idle_timeout_s = 30,
        .drain_timeout_s = 10,
    };
    return p;
}

struct rt {
    const struct syn_lambda_params *p;
    char base[600]; /* "http://{runtime api}/2018-06-01/runtime" */
    struct syn_http_client *http;
    struct syn_engine *e; /* for batches; NULL while a drain has it unloaded */
    int chat_id;
    char chat_err[512];
    char model[101];
    char bin[4096];
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- Runtime API calls ---- */

/* POSTs body to path (under base); 0 when the Runtime API accepted it (202). */
static int post(struct rt *r, const char *path, const char *const *hdr, int nh, const char *body,
                size_t len, char *err, size_t errlen)
{
    char url[1200];
    snprintf(url, sizeof url, "%s%s", r->base, path);
    struct syn_http_req rq = {.method = "POST",
                              .url = url,
                              .headers = hdr,
                              .n_headers = nh,
                              .body = body,
                              .body_len = len,
                              .timeout_ms = 30000};
    struct syn_http_resp resp = {0};
    int rc = syn_http_do(r->http, &rq, &resp, err, errlen);
    if (rc == SYN_OK && resp.status != 202)
        rc = syn_seterr(err, errlen, SYN_EIO, "runtime API: POST %s: HTTP %ld: %.300s", path,
                        resp.status, resp.body ? resp.body : "");
    syn_http_resp_free(&resp);
    return rc;
}

/* The error document Lambda expects: {"errorMessage", "errorType", "stackTrace"}. */
static char *error_doc(const char *type, const char *msg)
{
    struct aws_sb b = {0};
    aws_sb_adds(&b, "{\"errorMessage\":\"");
    aws_sb_add_json(&b, msg, strlen(msg));
    aws_sb_adds(&b, "\",\"errorType\":\"");
    aws_sb_add_json(&b, type, strlen(type));
    aws_sb_adds(&b, "\",\"stackTrace\":[]}");
    return aws_sb_take(&b);
}

static int post_error(struct rt *r, const char *path, const char *type, const char *msg)
{
    char *doc = error_doc(type, msg);
    char th[200];
    snprintf(th, sizeof th, "Lambda-Runtime-Function-Error-Type: %s", type);
    const char *hdr[] = {"Content-Type: application/json", th};
    char err[512];
    int rc = doc ? post(r, path, hdr, 2, doc, strlen(doc), err, sizeof err) : SYN_ENOMEM;
    if (rc) syn_error(LOG, "cannot report %s (%s): %s", type, msg, doc ? err : "out of memory");
    free(doc);
    return rc;
}

static int invocation_error(struct rt *r, const char *id, const char *type, const char *msg)
{
    char path[300];
    snprintf(path, sizeof path, "/invocation/%s/error", id);
    syn_warn(LOG, "invocation %s failed: %s: %s", id, type, msg);
    return post_error(r, path, type, msg);
}

static int respond(struct rt *r, const char *id, const char *body)
{
    char path[300], err[512];
    snprintf(path, sizeof path, "/invocation/%s/response", id);
    const char *hdr[] = {"Content-Type: application/json"};
    int rc = post(r, path, hdr, 1, body, strlen(body), err, sizeof err);
    if (rc) {
        /* e.g. 413: the answer is larger than Lambda takes; say so as the invocation's error */
        syn_warn(LOG, "invocation %s: the response was refused: %s", id, err);
        invocation_error(r, id, "Runtime.ResponseRejected", err);
    }
    return rc;
}

/* ---- batches ---- */

struct streamer {
    struct lb_batch *b;
    struct aws_sb buf; /* lines generated and not yet handed to curl */
    size_t off;        /* of buf, already handed */
    int done;          /* the batch has ended (or failed) */
    char err[512];     /* a failure after the stream began */
    char trailer[2][2048];
};

static long stream_read(void *ctx, char *out, size_t cap)
{
    struct streamer *s = ctx;
    while (s->off == s->buf.len && !s->done) {
        s->buf.len = 0;
        s->off = 0;
        int rc = lb_batch_pump(s->b, 1, &s->buf, s->err, sizeof s->err);
        if (rc <= 0) s->done = 1;
        if (rc < 0) {
            /* the body ends normally and the error goes into the trailers */
            syn_warn(LOG, "streamed batch failed: %s", s->err);
            char *doc = error_doc("Synapse.EngineError", s->err);
            size_t dl = doc ? strlen(doc) : 0;
            static const char b64[] =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            char enc[1500];
            size_t n = 0;
            for (size_t i = 0; doc && i < dl && n + 5 < sizeof enc; i += 3) {
                unsigned v = (unsigned char)doc[i] << 16;
                if (i + 1 < dl) v |= (unsigned char)doc[i + 1] << 8;
                if (i + 2 < dl) v |= (unsigned char)doc[i + 2];
                enc[n++] = b64[(v >> 18) & 63];
                enc[n++] = b64[(v >> 12) & 63];
                enc[n++] = i + 1 < dl ? b64[(v >> 6) & 63] : '=';
                enc[n++] = i + 2 < dl ? b64[v & 63] : '=';
            }
            enc[n] = 0;
            free(doc);
            snprintf(s->trailer[0], sizeof s->trailer[0],
                     "Lambda-Runtime-Function-Error-Type: Synapse.EngineError");
            snprintf(s->trailer[1], sizeof s->trailer[1], "Lambda-Runtime-Function-Error-Body: %s",
                     enc);
        }
        if (s->buf.failed) return -1;
    }
    size_t n = s->buf.len - s->off < cap ? s->buf.len - s->off : cap;
    memcpy(out, s->buf.s + s->off, n);
    s->off += n;
    return (long)n;
}

static const char *stream_trailer(void *ctx, int i)
{
    struct streamer *s = ctx;
    return s->trailer[0][0] && i < 2 ? s->trailer[i] : NULL;
}

static int load_engine(struct rt *r, char *err, size_t errlen)
{
    const struct syn_lambda_params *p = r->p;
    struct syn_engine_params ep = syn_engine_default_params();
    ep.model_path = p->model_path;
    ep.n_threads = p->n_threads;
    ep.max_seqs = p->max_seqs;
    ep.max_batch_tokens = p->max_batched_tokens < p->max_seqs ? p->max_seqs : p->max_batched_tokens;
    ep.max_logit_rows = p->max_seqs;
    ep.n_ctx = p->n_ctx;
    ep.kv_cache_bytes = (size_t)p->kv_cache_mb << 20;
    ep.chat_template = p->chat_template;
    int rc = syn_engine_load(&ep, &r->e, err, errlen);
    if (rc) return rc;
    const char *jt = syn_engine_chat_template(r->e);
    r->chat_id = syn_chat_resolve(p->chat_template, jt, jt ? strlen(jt) : 0, r->chat_err,
                                  sizeof r->chat_err);
    return SYN_OK;
}

static void run_batch(struct rt *r, const char *id, json_t *ev, int64_t deadline_ms)
{
    char err[512];
    if (!r->e && load_engine(r, err, sizeof err)) {
        invocation_error(r, id, "Synapse.ModelError", err);
        return;
    }
    json_t *js = json_object_get(ev, "stream");
    int stream = js ? json_is_true(js) : r->p->stream;
    int64_t stop_at = deadline_ms > 0 ? deadline_ms - r->p->deadline_margin_ms : 0;
    struct lb_batch *b = NULL;
    if (lb_batch_new(r->e, r->chat_id, r->chat_err, json_object_get(ev, "jobs"), stop_at, &b, err,
                     sizeof err)) {
        invocation_error(r, id, "Synapse.BadPayload", err);
        return;
    }
    if (!stream) {
        struct aws_sb none = {0};
        int rc;
        while ((rc = lb_batch_pump(b, 0, &none, err, sizeof err)) > 0) {
        }
        aws_sb_free(&none);
        if (rc < 0) {
            invocation_error(r, id, "Synapse.EngineError", err);
        } else {
            char *res = lb_batch_result(b);
            if (res)
                respond(r, id, res);
            else
                invocation_error(r, id, "Synapse.EngineError", "out of memory");
            free(res);
        }
        lb_batch_free(b);
        return;
    }
    /* response streaming: chunked POST, one chunk per engine step with news */
    struct streamer s;
    memset(&s, 0, sizeof s);
    s.b = b;
    char url[1200];
    snprintf(url, sizeof url, "%s/invocation/%s/response", r->base, id);
    const char *hdr[] = {
        "Content-Type: application/x-ndjson", "Lambda-Runtime-Function-Response-Mode: streaming",
        "Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body"};
    struct syn_http_req rq = {.method = "POST",
                              .url = url,
                              .headers = hdr,
                              .n_headers = 3,
                              .read = stream_read,
                              .read_ctx = &s,
                              .trailer = stream_trailer};
    struct syn_http_resp resp = {0};
    int rc = syn_http_do(r->http, &rq, &resp, err, sizeof err);
    if (rc)
        syn_error(LOG, "invocation %s: streaming the response failed: %s", id, err);
    else if (resp.status != 202)
        syn_error(LOG, "invocation %s: streamed response refused: HTTP %ld: %.300s", id,
                  resp.status, resp.body ? resp.body : "");
    syn_http_resp_free(&resp);
    aws_sb_free(&s.buf);
    lb_batch_free(b);
}

/* ---- drain: be a worker until idle or the deadline ---- */

static void run_drain(struct rt *r, const char *id, json_t *ev, int64_t deadline_ms)
{
    const struct syn_lambda_params *p = r->p;
    if (!p->redis_url) {
        invocation_error(r, id, "Synapse.BadPayload",
                         "a drain event needs Redis: this function has no SYNAPSE_REDIS");
        return;
    }
    const char *model = json_string_value(json_object_get(ev, "model"));
    if (model && strcmp(model, r->model) != 0) {
        char m[400];
        snprintf(m, sizeof m, "this function serves model '%s', not '%.100s'", r->model, model);
        invocation_error(r, id, "Synapse.BadPayload", m);
        return;
    }
    const char *wid = json_string_value(json_object_get(ev, "worker_id"));
    char idbuf[101];
    if (!wid) {
        snprintf(idbuf, sizeof idbuf, "%.50s-lambda-%.40s", r->model, id);
        for (char *c = idbuf; *c; c++)
            if (!syn_q_name_ok((char[]){*c, 0})) *c = '_';
        wid = idbuf;
    }
    if (!syn_q_name_ok(wid)) {
        invocation_error(r, id, "Synapse.BadPayload",
                         "worker_id must be 1-100 characters of [A-Za-z0-9._-]");
        return;
    }
    double idle = p->idle_timeout_s;
    json_t *it = json_object_get(ev, "idle_timeout_s");
    if (it) {
        if (!json_is_number(it) || json_number_value(it) <= 0 || json_number_value(it) > 900) {
            invocation_error(r, id, "Synapse.BadPayload",
                             "idle_timeout_s must be a number of seconds from 0 to 900");
            return;
        }
        idle = json_number_value(it);
    }
    /* the time there is: the worker is told to go idle no later than the deadline allows, and is
     * drained (SIGTERM) early enough for its drain and our answer to fit */
    int64_t start = mono_ms();
    int64_t remain = deadline_ms > 0 ? deadline_ms - syn_unix_ms() - p->deadline_margin_ms : -1;
    double drain_s = p->drain_timeout_s;
    if (remain >= 0 && drain_s > remain / 4000.0) drain_s = remain / 4000.0;
    int64_t term_at = remain >= 0 ? start + remain - (int64_t)(drain_s * 1000) : -1;
    int64_t kill_at = remain >= 0 ? start + remain : -1;
    if (remain >= 0 && remain < 1000) {
        invocation_error(r, id, "Synapse.DeadlineTooNear",
                         "less than a second before the deadline: not starting a worker");
        return;
    }
    if (remain >= 0 && idle > (remain - drain_s * 1000) / 1000.0)
        idle = (remain - drain_s * 1000) / 1000.0;
    /* the batch engine's KV cache is not needed while a worker runs: give the memory back */
    syn_engine_free(r->e);
    r->e = NULL;

    char idle_s[32], drain_str[32], threads[16], seqs[16], tokens[16], ctx[16], kv[16];
    snprintf(idle_s, sizeof idle_s, "%.3f", idle);
    snprintf(drain_str, sizeof drain_str, "%.3f", drain_s);
    snprintf(threads, sizeof threads, "%d", p->n_threads);
    snprintf(seqs, sizeof seqs, "%d", p->max_seqs);
    snprintf(tokens, sizeof tokens, "%d", p->max_batched_tokens);
    snprintf(ctx, sizeof ctx, "%d", p->n_ctx);
    snprintf(kv, sizeof kv, "%d", p->kv_cache_mb);
    const char *argv[40];
    int n = 0;
    argv[n++] = r->bin;
    argv[n++] = "worker";
    argv[n++] = "--model";
    argv[n++] = p->model_path;
    argv[n++] = "--name";
    argv[n++] = r->model;
    argv[n++] = "--redis";
    argv[n++] = p->redis_url;
    argv[n++] = "--id";
    argv[n++] = wid;
    argv[n++] = "--idle-timeout";
    argv[n++] = idle_s;
    argv[n++] = "--drain-timeout";
    argv[n++] = drain_str;
    argv[n++] = "--threads";
    argv[n++] = threads;
    argv[n++] = "--max-seqs";
    argv[n++] = seqs;
    argv[n++] = "--max-batched-tokens";
    argv[n++] = tokens;
    argv[n++] = "--ctx";
    argv[n++] = ctx;
    argv[n++] = "--kv-cache-mb";
    argv[n++] = kv;
    if (p->chat_template) {
        argv[n++] = "--chat-template";
        argv[n++] = p->chat_template;
    }
    argv[n] = NULL;
    syn_info(LOG, "invocation %s: worker %s (idle timeout %.1f s, %s)", id, wid, idle,
             remain >= 0 ? "deadline-bound" : "no deadline");
    pid_t pid = fork();
    if (pid < 0) {
        invocation_error(r, id, "Synapse.WorkerFailed", strerror(errno));
        return;
    }
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        syn_close_inherited_fds();
        execv(r->bin, (char *const *)argv);
        _exit(127);
    }
    int status = 0, termed = 0, killed = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) break;
        int64_t now = mono_ms();
        if (!termed && ((term_at >= 0 && now >= term_at) || g_stop)) {
            syn_info(LOG, "invocation %s: %s: draining worker %s", id,
                     g_stop ? "stop requested" : "deadline near", wid);
            kill(pid, SIGTERM);
            termed = 1;
        }
        if (!killed && kill_at >= 0 && now >= kill_at) {
            syn_warn(LOG, "invocation %s: worker %s did not drain in time: killing it", id, wid);
            kill(pid, SIGKILL);
            killed = 1;
        }
        struct timespec nap = {0, 20 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    double secs = (double)(mono_ms() - start) / 1000.0;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (!termed && code != 0) {
        char m[300];
        if (WIFSIGNALED(status))
            snprintf(m, sizeof m, "worker %s was killed by signal %d after %.1f s", wid,
                     WTERMSIG(status), secs);
        else
            snprintf(m, sizeof m, "worker %s exited with status %d after %.1f s (see its log)", wid,
                     code, secs);
        invocation_error(r, id, "Synapse.WorkerFailed", m);
        return;
    }
    char body[600];
    snprintf(body, sizeof body,
             "{\"mode\":\"drain\",\"worker_id\":\"%s\",\"stopped\":\"%s\",\"exit_status\":%d,"
             "\"seconds\":%.3f}",
             wid, termed ? "deadline" : "idle", code, secs);
    respond(r, id, body);
}

/* ---- the loop ---- */

static void model_name_from_path(const char *path, char *out, size_t cap)
{
    const char *base = strrchr(path, '/');
    base = base && base[1] ? base + 1 : path;
    snprintf(out, cap, "%s", base);
    char *dot = strrchr(out, '.');
    if (dot && dot != out) *dot = 0;
    for (char *c = out; *c; c++)
        if (!syn_q_name_ok((char[]){*c, 0})) *c = '_';
}

int syn_lambda_run(const struct syn_lambda_params *p, char *err, size_t errlen)
{
    struct rt r;
    memset(&r, 0, sizeof r);
    r.p = p;
    r.chat_id = -1;
    const char *api = p->runtime_api ? p->runtime_api : getenv("AWS_LAMBDA_RUNTIME_API");
    if (!api || !*api)
        return syn_seterr(err, errlen, SYN_EINVAL,
                          "lambda: AWS_LAMBDA_RUNTIME_API is not set (this runs inside AWS "
                          "Lambda, or against --runtime-api HOST:PORT)");
    snprintf(r.base, sizeof r.base, "http://%s%s", api, API);
    if (!(r.http = syn_http_client_new()))
        return syn_seterr(err, errlen, SYN_ENOMEM, "lambda: cannot initialise libcurl");
    int rc = SYN_OK;
    /* init: everything that can fail before the first invocation is an init error */
    char ierr[512] = "";
    if (!p->model_path) {
        snprintf(ierr, sizeof ierr, "no model: set SYNAPSE_MODEL (or --model)");
        rc = SYN_EINVAL;
    } else {
        if (p->model_name)
            snprintf(r.model, sizeof r.model, "%s", p->model_name);
        else
            model_name_from_path(p->model_path, r.model, sizeof r.model);
        if (!syn_q_name_ok(r.model)) {
            snprintf(ierr, sizeof ierr,
                     "model name '%s' must be 1-100 characters of "
                     "[A-Za-z0-9._-]",
                     r.model);
            rc = SYN_EINVAL;
        }
    }
    if (rc == SYN_OK) {
        if (p->synapse_bin) {
            snprintf(r.bin, sizeof r.bin, "%s", p->synapse_bin);
        } else {
            ssize_t n = readlink("/proc/self/exe", r.bin, sizeof r.bin - 1);
            if (n > 0) r.bin[n] = 0;
        }
        int64_t t0 = mono_ms();
        rc = load_engine(&r, ierr, sizeof ierr);
        if (rc == SYN_OK)
            syn_info(LOG, "model %s loaded in %.3f s", r.model, (double)(mono_ms() - t0) / 1e3);
    }
    if (rc) {
        syn_error(LOG, "init failed: %s", ierr);
        post_error(&r, "/init/error", "Runtime.InitError", ierr);
        syn_seterr(err, errlen, rc, "lambda: init failed: %s", ierr);
        goto out;
    }
    for (int done = 0; !g_stop && (p->max_invocations <= 0 || done < p->max_invocations); done++) {
        char url[800];
        snprintf(url, sizeof url, "%s/invocation/next", r.base);
        struct syn_http_req rq = {.method = "GET", .url = url}; /* no timeout: a long poll */
        struct syn_http_resp resp = {0};
        if ((rc = syn_http_do(r.http, &rq, &resp, err, errlen))) {
            syn_http_resp_free(&resp);
            goto out;
        }
        char id[256], dl[64];
        if (resp.status != 200 ||
            !syn_http_header(&resp, "Lambda-Runtime-Aws-Request-Id", id, sizeof id) || !*id) {
            rc = syn_seterr(err, errlen, SYN_EIO,
                            "lambda: GET invocation/next: HTTP %ld without a request id: %.300s",
                            resp.status, resp.body ? resp.body : "");
            syn_http_resp_free(&resp);
            goto out;
        }
        int64_t deadline = 0;
        if (syn_http_header(&resp, "Lambda-Runtime-Deadline-Ms", dl, sizeof dl))
            deadline = strtoll(dl, NULL, 10);
        char tr[512];
        if (syn_http_header(&resp, "Lambda-Runtime-Trace-Id", tr, sizeof tr))
            setenv("_X_AMZN_TRACE_ID", tr, 1);
        for (const char *c = id; *c; c++) /* it goes into a URL path */
            if (!syn_q_name_ok((char[]){*c, 0}) && *c != ':') {
                rc = syn_seterr(err, errlen, SYN_EIO, "lambda: request id '%s' has odd characters",
                                id);
                syn_http_resp_free(&resp);
                goto out;
            }
        json_error_t je;
        json_t *ev = json_loadb(resp.body, resp.body_len, 0, &je);
        syn_http_resp_free(&resp);
        if (!json_is_object(ev)) {
            char m[400];
            snprintf(m, sizeof m, "the event is not a JSON object%s%s", ev ? "" : ": ",
                     ev ? "" : je.text);
            invocation_error(&r, id, "Synapse.BadPayload", m);
        } else {
            const char *mode = json_string_value(json_object_get(ev, "mode"));
            if (mode && !strcmp(mode, "drain")) {
                run_drain(&r, id, ev, deadline);
            } else if ((!mode || !strcmp(mode, "batch")) && json_object_get(ev, "jobs")) {
                run_batch(&r, id, ev, deadline);
            } else {
                invocation_error(&r, id, "Synapse.BadPayload",
                                 "the event must be {\"jobs\": [...]} or {\"mode\": \"drain\"}");
            }
        }
        json_decref(ev);
    }
    rc = SYN_OK;
out:
    syn_engine_free(r.e);
    syn_http_client_free(r.http);
    return rc;
}
