/*
 * `synapse lambda` against a Runtime API of ours (tests/http_server.c) that follows the
 * documented contract: GET /2018-06-01/runtime/invocation/next blocks until there is an event
 * and answers it with Lambda-Runtime-Aws-Request-Id, -Deadline-Ms, -Invoked-Function-Arn and
 * -Trace-Id; POST .../invocation/{id}/response and .../invocation/{id}/error answer 202 for the
 * invocation in flight and 400 for any other id; POST .../init/error answers 202.
 *
 * What is checked: batches give the text `synapse generate` gives, buffered and streamed (the
 * streamed one really arrives in several chunks, in NDJSON, with the streaming mode header); a
 * model that cannot load is an init error; bad payloads are invocation errors after which the
 * loop goes on; an engine failure mid-stream goes into the error trailers; a refused response is
 * reported; drain events run a worker on Redis until it is idle, and stop it in time before the
 * invocation's deadline when work keeps coming.
 */
#include "harness.h"
#include "http_server.h"
#include "synapse/queue.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

/* ---- the Runtime API ---- */

#define MAX_EV    16
#define MAX_POSTS 32

struct posted {
    char path[256];
    char *body;
    char error_type[128]; /* Lambda-Runtime-Function-Error-Type header */
    char mode[32];        /* Lambda-Runtime-Function-Response-Mode header */
    char content_type[64];
    int chunked, n_chunks;
    double first_chunk, last_chunk;
    char trailer_type[128];
    char trailer_body[4096];
    int64_t at_ms; /* unix ms it arrived */
};

struct rtapi {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct {
        char id[64];
        char *payload;
        int64_t deadline_ms;
    } ev[MAX_EV];
    int n_ev, served;
    char in_flight[64]; /* the request id of the invocation being handled */
    struct posted posts[MAX_POSTS];
    int n_posts;
    int refuse_responses; /* answer /response with 413 */
};

static void rt_handler(void *ctx, const struct th_request *rq, struct th_response *resp)
{
    struct rtapi *a = ctx;
    pthread_mutex_lock(&a->mu);
    if (!strcmp(rq->method, "GET") && !strcmp(rq->target, "/2018-06-01/runtime/invocation/next")) {
        while (a->served >= a->n_ev) pthread_cond_wait(&a->cv, &a->mu);
        int i = a->served++;
        snprintf(a->in_flight, sizeof a->in_flight, "%s", a->ev[i].id);
        snprintf(resp->headers, sizeof resp->headers,
                 "Content-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: %s\r\n"
                 "Lambda-Runtime-Deadline-Ms: %lld\r\n"
                 "Lambda-Runtime-Invoked-Function-Arn: "
                 "arn:aws:lambda:us-east-1:123456789012:function:synapse-worker\r\n"
                 "Lambda-Runtime-Trace-Id: Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Sampled=1\r\n",
                 a->ev[i].id, (long long)a->ev[i].deadline_ms);
        th_body(resp, "%s", a->ev[i].payload);
    } else if (!strcmp(rq->method, "POST") && !strncmp(rq->target, "/2018-06-01/runtime/", 20)) {
        const char *rest = rq->target + 20;
        char id[64] = "", kind[32] = "";
        int init = !strcmp(rest, "init/error");
        if (!init && sscanf(rest, "invocation/%63[^/]/%31s", id, kind) != 2) {
            resp->status = 404;
        } else if (!init && (strcmp(id, a->in_flight) ||
                             (strcmp(kind, "response") && strcmp(kind, "error")))) {
            resp->status = 400;
            th_body(resp, "{\"errorMessage\":\"Invalid request ID\",\"errorType\":"
                          "\"InvalidRequestID\"}");
        } else if (!init && !strcmp(kind, "response") && a->refuse_responses) {
            resp->status = 413;
            th_body(resp, "{\"errorMessage\":\"Exceeded maximum allowed payload size\","
                          "\"errorType\":\"RequestEntityTooLarge\"}");
        } else if (a->n_posts < MAX_POSTS) {
            struct posted *p = &a->posts[a->n_posts++];
            snprintf(p->path, sizeof p->path, "%s", rest);
            p->body = strdup(rq->body);
            const char *v;
            if ((v = th_header(rq, "Lambda-Runtime-Function-Error-Type")))
                snprintf(p->error_type, sizeof p->error_type, "%s", v);
            if ((v = th_header(rq, "Lambda-Runtime-Function-Response-Mode")))
                snprintf(p->mode, sizeof p->mode, "%s", v);
            if ((v = th_header(rq, "Content-Type")))
                snprintf(p->content_type, sizeof p->content_type, "%s", v);
            if ((v = th_trailer(rq, "Lambda-Runtime-Function-Error-Type")))
                snprintf(p->trailer_type, sizeof p->trailer_type, "%s", v);
            if ((v = th_trailer(rq, "Lambda-Runtime-Function-Error-Body")))
                snprintf(p->trailer_body, sizeof p->trailer_body, "%s", v);
            p->chunked = rq->chunked;
            p->n_chunks = rq->n_chunks;
            p->first_chunk = rq->first_chunk_s;
            p->last_chunk = rq->last_chunk_s;
            p->at_ms = syn_unix_ms();
            if (!init) a->in_flight[0] = 0;
            resp->status = 202;
            th_body(resp, "{\"status\":\"OK\"}");
            pthread_cond_broadcast(&a->cv);
        } else {
            resp->status = 500;
        }
    } else {
        resp->status = 404;
    }
    pthread_mutex_unlock(&a->mu);
}

static struct rtapi *rt_new(void)
{
    struct rtapi *a = calloc(1, sizeof *a);
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    return a;
}

/* Queues an event; deadline_ms 0 = 60 s from now. */
static void rt_event(struct rtapi *a, const char *id, const char *payload, int64_t deadline_ms)
{
    pthread_mutex_lock(&a->mu);
    snprintf(a->ev[a->n_ev].id, sizeof a->ev[0].id, "%s", id);
    a->ev[a->n_ev].payload = strdup(payload);
    a->ev[a->n_ev].deadline_ms = deadline_ms ? deadline_ms : syn_unix_ms() + 60000;
    a->n_ev++;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

/* Waits for n posts (timeout_s at most); returns how many there are. */
static int rt_wait_posts(struct rtapi *a, int n, double timeout_s)
{
    double until = th_now() + timeout_s;
    pthread_mutex_lock(&a->mu);
    while (a->n_posts < n && th_now() < until) {
        pthread_mutex_unlock(&a->mu);
        usleep(10000);
        pthread_mutex_lock(&a->mu);
    }
    int got = a->n_posts;
    pthread_mutex_unlock(&a->mu);
    return got;
}

/* ---- running `synapse lambda` ---- */

static const char *stories(void)
{
    return syn_test_shared("models/stories260K.gguf");
}

/* Starts the runtime against server s with environment assignments env (may be "") and flags. */
static pid_t start_runtime(const struct th_server *s, const char *env, const char *flags)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "AWS_LAMBDA_RUNTIME_API=127.0.0.1:%d SYNAPSE_MODEL=%s SYNAPSE_THREADS=1 %s "
             "exec %s lambda %s >>%s/lambda.log 2>&1",
             th_port(s), stories(), env, syn_test_bin(), flags, syn_test_tmpdir());
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Waits for the runtime to exit; its exit status, or -1 after timeout_s (then it is killed). */
static int wait_exit(pid_t pid, double timeout_s)
{
    double until = th_now() + timeout_s;
    int st;
    while (th_now() < until) {
        if (waitpid(pid, &st, WNOHANG) == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    char path[1100];
    snprintf(path, sizeof path, "%s/lambda.log", syn_test_tmpdir());
    char *log = syn_test_read_file(path, NULL);
    fprintf(stderr, "  the runtime did not exit; its log:\n%s\n", log ? log : "");
    free(log);
    return -1;
}

static char *generate_text(const char *prompt, int n)
{
    char *out = NULL;
    int rc = syn_test_sh(&out, "%s generate -m %s -p '%s' -n %d --temp 0 -t 1", syn_test_bin(),
                         stories(), prompt, n);
    CHECK_EQ_INT(rc, 0);
    size_t l = strlen(out);
    if (l && out[l - 1] == '\n') out[l - 1] = 0;
    return out;
}

/* The result of job id in a buffered batch answer. */
static json_t *result_of(json_t *doc, const char *id)
{
    json_t *rs = json_object_get(doc, "results");
    for (size_t i = 0; i < json_array_size(rs); i++) {
        json_t *r = json_array_get(rs, i);
        if (!strcmp(json_string_value(json_object_get(r, "id")), id)) return r;
    }
    FAIL("no result for job %s", id);
}

/* ---- batches ---- */

TEST(lambda_batch_buffered_matches_generate)
{
    struct rtapi *a = rt_new();
    struct th_server *s = th_start(rt_handler, a);
    rt_event(a, "req-1",
             "{\"jobs\":[{\"id\":\"a\",\"prompt\":\"Once upon a time\",\"max_tokens\":24,"
             "\"temperature\":0},{\"id\":\"b\",\"prompt\":\"The little dog\",\"max_tokens\":9,"
             "\"temperature\":0},{\"id\":\"c\",\"prompt\":\"Lily and Ben\",\"max_tokens\":30,"
             "\"temperature\":0,\"stop\":[\".\"]},{\"prompt\":\"One day\",\"max_tokens\":200000}]}",
             0);
    pid_t pid = start_runtime(s, "", "--max-invocations 1");
    CHECK_EQ_INT(wait_exit(pid, 30), 0);
    CHECK_EQ_INT(a->n_posts, 1);
    struct posted *p = &a->posts[0];
    CHECK_EQ_STR(p->path, "invocation/req-1/response");
    CHECK_EQ_STR(p->content_type, "application/json");
    CHECK_EQ_STR(p->mode, "");
    json_error_t je;
    json_t *doc = json_loads(p->body, 0, &je);
    if (!doc) FAIL("response is not JSON (%s): %s", je.text, p->body);
    char *want = generate_text("Once upon a time", 24);
    json_t *ra = result_of(doc, "a");
    CHECK_EQ_STR(json_string_value(json_object_get(ra, "text")), want);
    CHECK_EQ_STR(json_string_value(json_object_get(ra, "finish_reason")), "length");
    json_t *ua = json_object_get(ra, "usage");
    CHECK_EQ_INT(json_integer_value(json_object_get(ua, "completion_tokens")), 24);
    CHECK(json_integer_value(json_object_get(ua, "prompt_tokens")) > 1);
    free(want);
    want = generate_text("The little dog", 9);
    CHECK_EQ_STR(json_string_value(json_object_get(result_of(doc, "b"), "text")), want);
    free(want);
    /* a stop string ends the text before it */
    json_t *rc = result_of(doc, "c");
    want = generate_text("Lily and Ben", 30);
    const char *ct = json_string_value(json_object_get(rc, "text"));
    if (strchr(want, '.')) {
        CHECK_EQ_STR(json_string_value(json_object_get(rc, "finish_reason")), "stop");
        CHECK(strncmp(want, ct, strlen(ct)) == 0 && want[strlen(ct)] == '.');
    }
    free(want);
    /* a job without an id gets one; max_tokens beyond the context stops at the context */
    json_t *rd = result_of(doc, "job-3");
    CHECK_EQ_STR(json_string_value(json_object_get(rd, "finish_reason")), "length");
    json_decref(doc);
    th_stop(s);
}

TEST(lambda_batch_streams_ndjson_in_chunks)
{
    struct rtapi *a = rt_new();
    struct th_server *s = th_start(rt_handler, a);
    rt_event(a, "req-s",
             "{\"stream\":true,\"jobs\":[{\"id\":\"a\",\"prompt\":\"Once upon a time\","
             "\"max_tokens\":40,\"temperature\":0},{\"id\":\"b\",\"prompt\":\"Tim had a\","
             "\"max_tokens\":40,\"temperature\":0}]}",
             0);
    pid_t pid = start_runtime(s, "", "--max-invocations 1");
    CHECK_EQ_INT(wait_exit(pid, 30), 0);
    CHECK_EQ_INT(a->n_posts, 1);
    struct posted *p = &a->posts[0];
    CHECK_EQ_STR(p->path, "invocation/req-s/response");
    CHECK_EQ_STR(p->mode, "streaming");
    CHECK_EQ_STR(p->content_type, "application/x-ndjson");
    CHECK(p->chunked);
    /* streamed, not buffered: one chunk per step with news */
    if (p->n_chunks < 10) FAIL("the response came in %d chunk(s)", p->n_chunks);
    CHECK_EQ_STR(p->trailer_type, "");
    /* the deltas add up to generate's text; every line is JSON; the last says done */
    char text_a[4096] = "", text_b[4096] = "", last[256] = "";
    int finishes = 0;
    for (char *save = NULL, *line = strtok_r(p->body, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        json_t *j = json_loads(line, 0, NULL);
        if (!j) FAIL("not a JSON line: %s", line);
        const char *id = json_string_value(json_object_get(j, "id"));
        const char *d = json_string_value(json_object_get(j, "delta"));
        if (id && d) strcat(!strcmp(id, "a") ? text_a : text_b, d);
        if (json_object_get(j, "finish_reason")) finishes++;
        snprintf(last, sizeof last, "%s", line);
        json_decref(j);
    }
    CHECK_EQ_INT(finishes, 2);
    CHECK_EQ_STR(last, "{\"done\":true,\"jobs\":2}");
    char *want = generate_text("Once upon a time", 40);
    CHECK_EQ_STR(text_a, want);
    free(want);
    want = generate_text("Tim had a", 40);
    CHECK_EQ_STR(text_b, want);
    free(want);
    th_stop(s);
}

/* ---- error paths ---- */

TEST(lambda_init_error_when_the_model_cannot_load)
{
    struct rtapi *a = rt_new();
    struct th_server *s = th_start(rt_handler, a);
    rt_event(a, "req-never", "{\"jobs\":[{\"prompt\":\"x\"}]}", 0);
    pid_t pid = start_runtime(s, "SYNAPSE_MODEL=/nonexistent/model.gguf", "");
    CHECK_EQ_INT(wait_exit(pid, 20), 1);
    CHECK_EQ_INT(a->n_posts, 1);
    CHECK_EQ_INT(a->served, 0); /* it never asked for an invocation */
    struct posted *p = &a->posts[0];
    CHECK_EQ_STR(p->path, "init/error");
    CHECK_EQ_STR(p->error_type, "Runtime.InitError");
    json_t *j = json_loads(p->body, 0, NULL);
    CHECK_EQ_STR(json_string_value(json_object_get(j, "errorType")), "Runtime.InitError");
    const char *m = json_string_value(json_object_get(j, "errorMessage"));
    CHECK(m && strstr(m, "/nonexistent/model.gguf"));
    CHECK(json_is_array(json_object_get(j, "stackTrace")));
    json_decref(j);
    th_stop(s);
}

TEST(lambda_bad_payloads_are_invocation_errors_and_the_loop_goes_on)
{
    struct rtapi *a = rt_new();
    struct th_server *s = th_start(rt_handler, a);
    rt_event(a, "bad-1", "this is not json", 0);
    rt_event(a, "bad-2", "{\"jobs\":\"all of them\"}", 0);
    rt_event(a, "bad-3", "{\"jobs\":[{\"prompt\":42}]}", 0);
    rt_event(a, "bad-4", "{\"jobs\":[{\"prompt\":\"x\",\"temperature\":-1}]}", 0);
    rt_event(a, "bad-5", "{\"mode\":\"dance\"}", 0);
    rt_event(a, "bad-6", "{\"mode\":\"drain\"}", 0); /* no Redis configured */
    rt_event(a, "good", "{\"jobs\":[{\"prompt\":\"One day\",\"max_tokens\":4}]}", 0);
    pid_t pid = start_runtime(s, "", "--max-invocations 7");
    CHECK_EQ_INT(wait_exit(pid, 30), 0);
    CHECK_EQ_INT(a->n_posts, 7);
    const char *want_msg[] = {
        "not a JSON object", "\"jobs\" must be an array", "jobs[0].prompt must be a string",
        "temperature",       "must be {\"jobs\": [...]}", "needs Redis"};
    for (int i = 0; i < 6; i++) {
        struct posted *p = &a->posts[i];
        char path[64];
        snprintf(path, sizeof path, "invocation/bad-%d/error", i + 1);
        CHECK_EQ_STR(p->path, path);
        CHECK_EQ_STR(p->error_type, "Synapse.BadPayload");
        json_t *j = json_loads(p->body, 0, NULL);
        const char *m = json_string_value(json_object_get(j, "errorMessage"));
        if (!m || !strstr(m, want_msg[i]))
            FAIL("error %d says '%s', expected '%s'", i + 1, m ? m : "(none)", want_msg[i]);
        CHECK_EQ_STR(json_string_value(json_object_get(j, "errorType")), "Synapse.BadPayload");
        json_decref(j);
    }
    CHECK_EQ_STR(a->posts[6].path, "invocation/good/response");
    CHECK(strstr(a->posts[6].body, "\"finish_reason\":\"length\"") != NULL);
    th_stop(s);
}

static char *b64decode(const char *in)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(in);
    char *out = calloc(1, n + 1);
    size_t o = 0;
    unsigned v = 0;
    int bits = 0;
    for (size_t i = 0; i < n && in[i] != '='; i++) {
        const char *c = strchr(tbl, in[i]);
        if (!c) continue;
        v = (v << 6) | (unsigned)(c - tbl);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)((v >> bits) & 0xff);
        }
    }
    return out;
}

TEST(lambda_engine_failure_mid_stream_goes_into_trailers)
{
    struct rtapi *a = rt_new();
    struct th_server *s = th_start(rt_handler, a);
    rt_event(a, "req-t",
             "{\"stream\":true,\"jobs\":[{\"prompt\":\"Once upon a time\",\"max_tokens\":30}]}", 0);
    rt_event(a, "req-u", "{\"jobs\":[{\"prompt\":\"Once upon a time\",\"max_tokens\":30}]}", 0);
    pid_t pid = start_runtime(s, "SYNAPSE_FAULT_LAMBDA_STEP=5", "--max-invocations 2");
    CHECK_EQ_INT(wait_exit(pid, 30), 0);
    CHECK_EQ_INT(a->n_posts, 2);
    struct posted *p = &a->posts[0];
    CHECK_EQ_STR(p->path, "invocation/req-t/response");
    CHECK_EQ_STR(p->mode, "streaming");
    CHECK(strstr(p->body, "\"delta\"") != NULL); /* it had begun */
    CHECK_EQ_STR(p->trailer_type, "Synapse.EngineError");
    char *doc = b64decode(p->trailer_body);
    json_t *j = json_loads(doc, 0, NULL);
    if (!j) FAIL("the error trailer body is not base64 JSON: %s -> %s", p->trailer_body, doc);
    CHECK_EQ_STR(json_string_value(json_object_get(j, "errorType")), "Synapse.EngineError");
    CHECK(strstr(json_string_value(json_object_get(j, "errorMessage")), "step 5") != NULL);
    json_decref(j);
    free(doc);
    /* buffered, the same failure is the invocation's error */
    CHECK_EQ_STR(a->posts[1].path, "invocation/req-u/error");
    CHECK_EQ_STR(a->posts[1].error_type, "Synapse.EngineError");
    th_stop(s);
}

TEST(lambda_refused_response_is_reported_as_an_error)
{
    struct rtapi *a = rt_new();
    a->refuse_responses = 1;
    struct th_server *s = th_start(rt_handler, a);
    rt_event(a, "req-big", "{\"jobs\":[{\"prompt\":\"One day\",\"max_tokens\":4}]}", 0);
    pid_t pid = start_runtime(s, "", "--max-invocations 1");
    CHECK_EQ_INT(wait_exit(pid, 30), 0);
    CHECK_EQ_INT(a->n_posts, 1);
    CHECK_EQ_STR(a->posts[0].path, "invocation/req-big/error");
    CHECK_EQ_STR(a->posts[0].error_type, "Runtime.ResponseRejected");
    CHECK(strstr(a->posts[0].body, "413") != NULL);
    th_stop(s);
}

/* ---- drain events: a worker on Redis ---- */

static void submit(struct syn_qclient *q, const char *id, const char *prompt, int max_tokens)
{
    struct syn_job j;
    syn_job_init(&j);
    snprintf(j.id, sizeof j.id, "%s", id);
    snprintf(j.model, sizeof j.model, "stories");
    syn_q_key_reply(j.reply, sizeof j.reply, "gw1");
    j.prompt = strdup(prompt);
    j.max_tokens = max_tokens;
    j.sampling.temperature = 0;
    j.created_ms = syn_unix_ms();
    if (syn_q_submit(q, &j)) FAIL("submit %s", id);
    syn_job_release(&j);
}

/* Finished jobs on the reply stream of gateway gw1. */
static int finished(const struct syn_test_redis *r)
{
    redisContext *c = redisConnectUnix(r->sock);
    if (!c || c->err) FAIL("redis");
    char key[128];
    syn_q_key_reply(key, sizeof key, "gw1");
    redisReply *rep = redisCommand(c, "XRANGE %s - +", key);
    int n = 0;
    for (size_t i = 0; rep && rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
        struct syn_event ev;
        char err[200];
        if (syn_event_decode(rep->element[i]->element[1], &ev, err, sizeof err) == 0 && ev.finish)
            n++;
    }
    if (rep) freeReplyObject(rep);
    redisFree(c);
    return n;
}

TEST_TIMEOUT(lambda_drain_runs_a_worker_until_idle, 60)
{
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    struct syn_qclient *q;
    char err[256];
    CHECK_EQ_INT(syn_qclient_new(r.url, &q, err, sizeof err), 0);
    CHECK_EQ_INT(syn_q_ensure_groups(q, "stories"), 0);
    for (int i = 0; i < 5; i++) {
        char id[32];
        snprintf(id, sizeof id, "job-%d", i);
        submit(q, id, "Once upon a time", 16);
    }
    struct rtapi *a = rt_new();
    struct th_server *s = th_start(rt_handler, a);
    rt_event(a, "req-d",
             "{\"mode\":\"drain\",\"model\":\"stories\",\"worker_id\":\"stories-lambda-t1\","
             "\"idle_timeout_s\":1}",
             0);
    rt_event(a, "req-w", "{\"mode\":\"drain\",\"model\":\"llama-70b\"}", 0);
    char env[700];
    snprintf(env, sizeof env, "SYNAPSE_REDIS=%s SYNAPSE_MODEL_NAME=stories", r.url);
    double t0 = th_now();
    pid_t pid = start_runtime(s, env, "--max-invocations 2");
    CHECK_EQ_INT(wait_exit(pid, 40), 0);
    CHECK_EQ_INT(a->n_posts, 2);
    struct posted *p = &a->posts[0];
    if (strcmp(p->path, "invocation/req-d/response")) FAIL("%s: %s", p->path, p->body);
    json_t *j = json_loads(p->body, 0, NULL);
    CHECK_EQ_STR(json_string_value(json_object_get(j, "mode")), "drain");
    CHECK_EQ_STR(json_string_value(json_object_get(j, "worker_id")), "stories-lambda-t1");
    CHECK_EQ_STR(json_string_value(json_object_get(j, "stopped")), "idle");
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "exit_status")), 0);
    json_decref(j);
    CHECK_EQ_INT(finished(&r), 5);
    CHECK(th_now() - t0 < 30);
    /* an event for another model is refused */
    CHECK_EQ_STR(a->posts[1].path, "invocation/req-w/error");
    CHECK(strstr(a->posts[1].body, "llama-70b") != NULL);
    syn_qclient_free(q);
    th_stop(s);
}

TEST_TIMEOUT(lambda_drain_stops_the_worker_before_the_deadline, 60)
{
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    struct syn_qclient *q;
    char err[256];
    CHECK_EQ_INT(syn_qclient_new(r.url, &q, err, sizeof err), 0);
    CHECK_EQ_INT(syn_q_ensure_groups(q, "stories"), 0);
    struct rtapi *a = rt_new();
    struct th_server *s = th_start(rt_handler, a);
    /* the deadline is 5 s away and the worker would idle for 60: work keeps arriving, so only
     * the deadline can end it, and the answer must come before the deadline */
    int64_t deadline = syn_unix_ms() + 5000;
    rt_event(a, "req-dl",
             "{\"mode\":\"drain\",\"worker_id\":\"stories-lambda-t2\",\"idle_timeout_s\":60}",
             deadline);
    char env[700];
    snprintf(env, sizeof env, "SYNAPSE_REDIS=%s SYNAPSE_MODEL_NAME=stories", r.url);
    pid_t pid = start_runtime(s, env, "--max-invocations 1 --deadline-margin-ms 1000");
    int k = 0;
    while (rt_wait_posts(a, 1, 0.05) == 0 && syn_unix_ms() < deadline + 3000) {
        char id[32];
        snprintf(id, sizeof id, "steady-%d", k++);
        submit(q, id, "The little dog", 8);
    }
    CHECK_EQ_INT(wait_exit(pid, 20), 0);
    CHECK_EQ_INT(a->n_posts, 1);
    struct posted *p = &a->posts[0];
    CHECK_EQ_STR(p->path, "invocation/req-dl/response");
    if (p->at_ms >= deadline)
        FAIL("answered %lld ms after the deadline", (long long)(p->at_ms - deadline));
    json_t *j = json_loads(p->body, 0, NULL);
    CHECK_EQ_STR(json_string_value(json_object_get(j, "stopped")), "deadline");
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "exit_status")), 0);
    json_decref(j);
    /* nothing was lost: every job submitted has finished, or is still in the stream (waiting,
     * or pending for the worker's reclaim: the worker may have claimed one as it stopped) */
    int64_t waiting = 0, pending = 0;
    CHECK_EQ_INT(syn_q_backlog(q, "stories", &waiting, &pending), 0);
    int done = finished(&r);
    CHECK(done > 0);
    CHECK(pending <= 1);
    CHECK_EQ_INT(done + waiting + pending, k);
    syn_qclient_free(q);
    th_stop(s);
}
