/*
 * The `lambda` pool backend (pool_backend.h): one asynchronous Lambda invocation per worker.
 *
 * Invoke with InvocationType Event returns 202 as soon as Lambda has queued the event; nothing
 * tells us when the invocation ends. So every invocation carries the worker id it must register
 * under, and is counted from the Invoke until that id has appeared in the registry and gone
 * again (the worker went idle, or the runtime stopped it before the deadline), with two
 * timeouts for the cases where it never shows up (lost or throttled inside Lambda) or never
 * leaves (the function's own timeout is a hard upper bound). That count is what the concurrency
 * limit and the cost accounting use.
 */
#include "synapse/pool_backend.h"

#include "aws/creds.h"
#include "aws/http.h"
#include "aws/sbuf.h"
#include "synapse/error.h"
#include "synapse/log.h"
#include "synapse/queue.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG     "pool-lambda"
#define MAX_INV 1024

struct inv {
    char id[101];     /* the worker id the invocation registers under; "" = free slot */
    double started_s; /* monotonic, when Invoke returned 202 */
    int registered;   /* seen in the registry */
};

struct lambda_backend {
    struct syn_pool_backend base; /* first: the interface */
    struct syn_pool_lambda_params p;
    char function[256], qualifier[128], region[64], endpoint[512], model[101];
    struct syn_http_client *http;
    struct syn_aws_credsrc credsrc;
    struct inv inv[MAX_INV];
    unsigned long long seq; /* for worker ids */
    double last_observe_s;
    unsigned long long throttled; /* 429s from Invoke */
    unsigned long long lost;      /* never registered */
};

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *lambda_name(const struct syn_pool_backend *b)
{
    (void)b;
    return "lambda";
}

static int count_active(const struct lambda_backend *lb)
{
    int n = 0;
    for (int i = 0; i < MAX_INV; i++) n += lb->inv[i].id[0] != 0;
    return n;
}

/* The error message AWS put in a JSON error body ("message" or "Message"), or the body. */
static void aws_json_error(const struct syn_http_resp *r, char *out, size_t cap)
{
    char type[128];
    const char *t = syn_http_header(r, "x-amzn-ErrorType", type, sizeof type);
    json_t *j = json_loads(r->body ? r->body : "", 0, NULL);
    const char *m = json_string_value(json_object_get(j, "message"));
    if (!m) m = json_string_value(json_object_get(j, "Message"));
    snprintf(out, cap, "%s%s%.300s", t ? t : "", t ? ": " : "", m ? m : (r->body ? r->body : ""));
    json_decref(j);
}

/* One Invoke (Event). Returns 1 started, 0 throttled, or a negative syn_err. */
static int invoke_one(struct lambda_backend *lb, const struct syn_aws_creds *creds,
                      const char *worker_id, char *err, size_t errlen)
{
    struct aws_sb url = {0}, body = {0};
    aws_sb_adds(&url, lb->endpoint);
    aws_sb_adds(&url, "/2015-03-31/functions/");
    aws_sb_add_uri(&url, lb->function, strlen(lb->function), 0);
    aws_sb_adds(&url, "/invocations");
    if (lb->qualifier[0]) {
        aws_sb_adds(&url, "?Qualifier=");
        aws_sb_add_uri(&url, lb->qualifier, strlen(lb->qualifier), 0);
    }
    aws_sb_adds(&body, "{\"mode\":\"drain\",\"model\":\"");
    aws_sb_add_json(&body, lb->model, strlen(lb->model));
    aws_sb_adds(&body, "\",\"worker_id\":\"");
    aws_sb_add_json(&body, worker_id, strlen(worker_id));
    aws_sb_addf(&body, "\",\"idle_timeout_s\":%g}", lb->p.idle_timeout_s);
    int rc;
    if (url.failed || body.failed) {
        rc = syn_seterr(err, errlen, SYN_ENOMEM, "lambda: out of memory");
        goto out;
    }
    const char *hdr[] = {"Content-Type: application/json", "X-Amz-Invocation-Type: Event"};
    struct syn_http_req rq = {.method = "POST",
                              .url = url.s,
                              .headers = hdr,
                              .n_headers = 2,
                              .body = body.s,
                              .body_len = body.len,
                              .timeout_ms = 10000,
                              .creds = creds,
                              .region = lb->region,
                              .service = "lambda"};
    struct syn_http_resp r = {0};
    rc = syn_http_do(lb->http, &rq, &r, err, errlen);
    if (rc == SYN_OK) {
        if (r.status == 202) {
            rc = 1;
        } else if (r.status == 429) {
            lb->throttled++;
            rc = 0;
        } else {
            char m[512];
            aws_json_error(&r, m, sizeof m);
            rc = syn_seterr(err, errlen, SYN_EIO, "lambda: Invoke %s: HTTP %ld: %s", lb->function,
                            r.status, m);
        }
    }
    syn_http_resp_free(&r);
out:
    aws_sb_free(&url);
    aws_sb_free(&body);
    return rc;
}

static int lambda_start(struct syn_pool_backend *b, int n, char *err, size_t errlen)
{
    struct lambda_backend *lb = (struct lambda_backend *)b;
    struct syn_aws_creds creds;
    int rc;
    if (lb->p.creds)
        creds = *lb->p.creds;
    else if ((rc = syn_aws_creds_get(&lb->credsrc, &creds, err, errlen)))
        return rc;
    int started = 0;
    for (int k = 0; k < n; k++) {
        int active = count_active(lb);
        if (lb->p.max_concurrency > 0 && active >= lb->p.max_concurrency) break;
        struct inv *slot = NULL;
        for (int i = 0; i < MAX_INV && !slot; i++)
            if (!lb->inv[i].id[0]) slot = &lb->inv[i];
        if (!slot) break;
        char id[101];
        snprintf(id, sizeof id, "%.60s-lambda-%d-%llu", lb->model, (int)getpid(), ++lb->seq);
        rc = invoke_one(lb, &creds, id, err, errlen);
        if (rc < 0) {
            if (started == 0) return rc;
            syn_warn(LOG, "started %d of %d invocation(s): %s", started, n, err ? err : "");
            break;
        }
        if (rc == 0) {
            syn_warn(LOG, "Invoke throttled (HTTP 429) after %d of %d invocation(s)", started, n);
            break;
        }
        snprintf(slot->id, sizeof slot->id, "%s", id);
        slot->started_s = mono_s();
        slot->registered = 0;
        started++;
        syn_info(LOG, "invoked %s for worker %s", lb->function, id);
    }
    return started;
}

static int lambda_observe(struct syn_pool_backend *b, const struct syn_pool_worker_view *w, int n,
                          struct syn_pool_observation *out, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    struct lambda_backend *lb = (struct lambda_backend *)b;
    double now = mono_s();
    double since = lb->last_observe_s;
    memset(out, 0, sizeof *out);
    for (int i = 0; i < MAX_INV; i++) {
        struct inv *v = &lb->inv[i];
        if (!v->id[0]) continue;
        /* billed time in this interval, up to now (an invocation that ended since the last
         * observe is billed up to now: we cannot know better, and it errs on the high side) */
        double from = v->started_s > since ? v->started_s : since;
        if (since > 0 && now > from) out->unit_seconds += now - from;
        int seen = 0;
        for (int k = 0; k < n && !seen; k++) seen = w[k].id && !strcmp(w[k].id, v->id);
        if (seen && !v->registered) {
            v->registered = 1;
            syn_info(LOG, "worker %s registered %.2f s after its Invoke", v->id,
                     now - v->started_s);
        }
        if (v->registered && !seen) {
            syn_info(LOG, "invocation of worker %s ended after %.1f s", v->id, now - v->started_s);
            v->id[0] = 0;
        } else if (!v->registered && now - v->started_s > lb->p.register_timeout_s) {
            lb->lost++;
            syn_warn(LOG, "worker %s never registered in %.0f s: counting its invocation as lost",
                     v->id, lb->p.register_timeout_s);
            v->id[0] = 0;
        } else if (now - v->started_s > lb->p.invocation_timeout_s) {
            syn_warn(LOG, "invocation of worker %s passed the function timeout (%.0f s)", v->id,
                     lb->p.invocation_timeout_s);
            v->id[0] = 0;
        } else {
            out->active++;
            out->starting += !v->registered;
        }
    }
    out->limit = lb->p.max_concurrency > 0 ? lb->p.max_concurrency : -1;
    lb->last_observe_s = now;
    return SYN_OK;
}

static void lambda_free(struct syn_pool_backend *b)
{
    struct lambda_backend *lb = (struct lambda_backend *)b;
    if (!lb) return;
    syn_http_client_free(lb->http);
    free(lb);
}

int syn_pool_lambda_new(const struct syn_pool_lambda_params *p, struct syn_pool_backend **out,
                        char *err, size_t errlen)
{
    *out = NULL;
    if (!p->function || !*p->function)
        return syn_seterr(err, errlen, SYN_EINVAL, "lambda: the function name is required");
    if (!p->model_name || !syn_q_name_ok(p->model_name))
        return syn_seterr(err, errlen, SYN_EINVAL, "lambda: a valid model name is required");
    const char *region = p->region ? p->region : syn_aws_region();
    if (!region || !*region)
        return syn_seterr(err, errlen, SYN_EINVAL,
                          "lambda: no region (set AWS_REGION or pass one)");
    if (strlen(p->function) >= 256 || strlen(region) >= 64 ||
        (p->qualifier && strlen(p->qualifier) >= 128) ||
        (p->endpoint && strlen(p->endpoint) >= 512))
        return syn_seterr(err, errlen, SYN_EINVAL, "lambda: a parameter is too long");
    struct lambda_backend *lb = calloc(1, sizeof *lb);
    if (!lb || !(lb->http = syn_http_client_new())) {
        free(lb);
        return syn_seterr(err, errlen, SYN_ENOMEM, "lambda: out of memory");
    }
    lb->p = *p;
    snprintf(lb->function, sizeof lb->function, "%s", p->function);
    snprintf(lb->qualifier, sizeof lb->qualifier, "%s", p->qualifier ? p->qualifier : "");
    snprintf(lb->region, sizeof lb->region, "%s", region);
    snprintf(lb->model, sizeof lb->model, "%s", p->model_name);
    if (p->endpoint && *p->endpoint)
        snprintf(lb->endpoint, sizeof lb->endpoint, "%s", p->endpoint);
    else
        snprintf(lb->endpoint, sizeof lb->endpoint, "https://lambda.%s.amazonaws.com", region);
    size_t el = strlen(lb->endpoint);
    while (el > 0 && lb->endpoint[el - 1] == '/') lb->endpoint[--el] = 0;
    if (lb->p.idle_timeout_s <= 0) lb->p.idle_timeout_s = 30;
    if (lb->p.register_timeout_s <= 0) lb->p.register_timeout_s = 120;
    if (lb->p.invocation_timeout_s <= 0) lb->p.invocation_timeout_s = 900;
    lb->p.function = lb->p.qualifier = lb->p.region = lb->p.endpoint = lb->p.model_name = NULL;
    lb->base.name = lambda_name;
    lb->base.start = lambda_start;
    lb->base.observe = lambda_observe;
    lb->base.free = lambda_free;
    *out = &lb->base;
    return SYN_OK;
}
