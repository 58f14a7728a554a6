/* End to end: a real redis-server, `synapse gateway` and `synapse worker` on stories260K, over
 * raw HTTP and through the official `openai` npm package: chat and completions, streamed and
 * not, usage, stop, seeded determinism, finish reasons, logprobs, errors, and a client that
 * disconnects mid-stream cancelling its job on the worker. */
#include "harness.h"

#include "gateway_test.h"

#include <strings.h>
#include <sys/stat.h>

#define MODEL     "stories260K"
#define GW_ID     "gw-e2e"
#define WORKER_ID "w-e2e"

struct stack {
    struct syn_test_redis redis;
    pid_t gw, worker;
    int port;
    char gw_log[600], worker_log[600];
};

static void stack_start(struct stack *s)
{
    const char *model = syn_test_shared("models/stories260K.gguf");
    struct stat st;
    if (stat(model, &st) != 0) SKIP("%s is missing", model);
    if (syn_test_sh(NULL, "'%s' worker --help >/dev/null 2>&1", syn_test_bin()) != 0)
        SKIP("synapse worker is not available in this build");
    syn_test_redis_start(&s->redis, 0);
    snprintf(s->gw_log, sizeof s->gw_log, "%s/gateway.log", syn_test_tmpdir());
    snprintf(s->worker_log, sizeof s->worker_log, "%s/worker.log", syn_test_tmpdir());
    const char *gargs[] = {"gateway", "--redis", s->redis.url, "--model",   MODEL, "--port",
                           "0",       "--id",    GW_ID,        "--poll-ms", "50",  NULL};
    s->gw = gwt_spawn(s->gw_log, gargs);
    s->port = gwt_wait_port(s->gw, s->gw_log, 10);
    const char *wargs[] = {"worker",     "--model",         model,    "--redis",
                           s->redis.url, "--name",          MODEL,    "--id",
                           WORKER_ID,    "--chat-template", "chatml", "--idle-timeout",
                           "0",          "--max-seqs",      "8",      "--heartbeat-ms",
                           "100",        "--threads",       "1",      NULL};
    s->worker = gwt_spawn(s->worker_log, wargs);
    double end = gwt_now() + 20;
    while (gwt_now() < end) {
        struct gwt_resp h = gwt_request(s->port, "GET", "/readyz", "", NULL, 2000);
        int st2 = h.status;
        gwt_resp_free(&h);
        if (st2 == 200) return;
        int wst;
        if (waitpid(s->worker, &wst, WNOHANG) == s->worker) {
            char *l = syn_test_read_file(s->worker_log, NULL);
            FAIL("the worker exited (status %d):\n%s", wst, l ? l : "");
        }
        gwt_sleep_ms(50);
    }
    char *l = syn_test_read_file(s->worker_log, NULL);
    FAIL("the stack did not become ready within 20 s; worker log:\n%s", l ? l : "");
}

static json_t *json_of(const struct gwt_resp *r, const char *what)
{
    json_error_t je;
    json_t *j = r->body ? json_loads(r->body, 0, &je) : NULL;
    if (!j) FAIL("%s: status %d, body is not JSON: %s", what, r->status, r->body ? r->body : "");
    return j;
}

static const char *jstr(json_t *o, const char *path)
{
    /* "a.b.0.c": objects by key, arrays by index */
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *cur = o;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ".", &save); tok && cur; tok = strtok_r(NULL, ".", &save))
        cur =
            json_is_array(cur) ? json_array_get(cur, (size_t)atoi(tok)) : json_object_get(cur, tok);
    return json_is_string(cur) ? json_string_value(cur) : NULL;
}

static long long jint(json_t *o, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *cur = o;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ".", &save); tok && cur; tok = strtok_r(NULL, ".", &save))
        cur =
            json_is_array(cur) ? json_array_get(cur, (size_t)atoi(tok)) : json_object_get(cur, tok);
    if (!json_is_integer(cur)) FAIL("%s is not an integer", path);
    return json_integer_value(cur);
}

/* A non-streamed request that must succeed; returns its JSON. */
static json_t *ok(struct stack *s, const char *path, const char *body)
{
    struct gwt_resp r = gwt_post(s->port, path, body, "");
    if (r.status != 200) FAIL("%s %s: status %d: %s", path, body, r.status, r.body ? r.body : "");
    json_t *j = json_of(&r, path);
    gwt_resp_free(&r);
    return j;
}

/* The SSE frames of a streamed response: the JSON of every data line before [DONE]. */
static json_t *sse_frames(struct stack *s, const char *path, const char *body)
{
    struct gwt_resp r = gwt_post(s->port, path, body, "");
    if (r.status != 200) FAIL("stream %s: status %d: %s", body, r.status, r.body ? r.body : "");
    CHECK(strstr(gwt_header(&r, "Content-Type"), "text/event-stream"));
    CHECK(strstr(gwt_header(&r, "Transfer-Encoding"), "chunked"));
    json_t *frames = json_array();
    int done = 0;
    for (char *p = r.body; p && *p;) {
        char *end = strstr(p, "\n\n");
        if (!end) FAIL("an SSE frame is not terminated: %s", p);
        *end = 0;
        if (strncmp(p, "data: ", 6) != 0) FAIL("not a data line: %s", p);
        CHECK(!done);
        if (!strcmp(p + 6, "[DONE]")) {
            done = 1;
        } else {
            json_error_t je;
            json_t *j = json_loads(p + 6, 0, &je);
            if (!j) FAIL("a frame is not JSON: %s", p + 6);
            json_array_append_new(frames, j);
        }
        p = end + 2;
    }
    CHECK(done);
    gwt_resp_free(&r);
    return frames;
}

TEST_TIMEOUT(gateway_e2e_chat_and_completions, 120)
{
    struct stack s;
    stack_start(&s);
    int64_t now = (int64_t)time(NULL);

    /* chat, not streamed: the shape and the usage */
    json_t *c = ok(&s, "/v1/chat/completions",
                   "{\"model\":\"" MODEL "\",\"messages\":[{\"role\":\"system\",\"content\":\"Be "
                   "kind.\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Tell a "
                   "story\"}]}],\"max_tokens\":20,\"seed\":11}");
    CHECK(!strncmp(jstr(c, "id"), "chatcmpl-", 9));
    CHECK_EQ_STR(jstr(c, "object"), "chat.completion");
    CHECK(llabs(jint(c, "created") - now) < 30);
    CHECK_EQ_STR(jstr(c, "model"), MODEL);
    CHECK_EQ_INT(jint(c, "choices.0.index"), 0);
    CHECK_EQ_STR(jstr(c, "choices.0.message.role"), "assistant");
    const char *chat_text = jstr(c, "choices.0.message.content");
    CHECK(chat_text);
    const char *fin = jstr(c, "choices.0.finish_reason");
    CHECK(!strcmp(fin, "stop") || !strcmp(fin, "length"));
    long long pt = jint(c, "usage.prompt_tokens"), ct = jint(c, "usage.completion_tokens");
    CHECK(pt > 0 && ct > 0 && ct <= 20);
    CHECK_EQ_INT(jint(c, "usage.total_tokens"), pt + ct);
    CHECK(json_is_null(
        json_object_get(json_array_get(json_object_get(c, "choices"), 0), "logprobs")));

    /* the same request streamed gives the same text, chunk by chunk */
    json_t *f =
        sse_frames(&s, "/v1/chat/completions",
                   "{\"model\":\"" MODEL "\",\"messages\":[{\"role\":\"system\",\"content\":"
                   "\"Be kind.\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\","
                   "\"text\":\"Tell a story\"}]}],\"max_tokens\":20,\"seed\":11,"
                   "\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
    size_t nf = json_array_size(f);
    CHECK(nf >= 3);
    json_t *first = json_array_get(f, 0);
    CHECK_EQ_STR(jstr(first, "object"), "chat.completion.chunk");
    CHECK_EQ_STR(jstr(first, "choices.0.delta.role"), "assistant");
    CHECK_EQ_STR(jstr(first, "choices.0.delta.content"), "");
    char text[4096] = "";
    const char *id = jstr(first, "id");
    for (size_t i = 0; i + 1 < nf; i++) {
        json_t *fr = json_array_get(f, i);
        CHECK_EQ_STR(jstr(fr, "id"), id);
        CHECK(json_is_null(json_object_get(fr, "usage")));
        const char *d = jstr(fr, "choices.0.delta.content");
        if (d) strncat(text, d, sizeof text - strlen(text) - 1);
    }
    CHECK_EQ_STR(text, chat_text);
    json_t *fin_frame = json_array_get(f, nf - 2);
    CHECK_EQ_STR(jstr(fin_frame, "choices.0.finish_reason"), fin);
    json_t *usage = json_array_get(f, nf - 1);
    CHECK_EQ_INT(json_array_size(json_object_get(usage, "choices")), 0);
    CHECK_EQ_INT(jint(usage, "usage.completion_tokens"), ct);
    CHECK_EQ_INT(jint(usage, "usage.prompt_tokens"), pt);
    json_decref(f);
    json_decref(c);

    /* completions: seeded determinism, length, streamed == gathered */
    const char *req = "{\"model\":\"" MODEL "\",\"prompt\":\"Once upon a time\",\"max_tokens\":24,"
                      "\"seed\":42,\"temperature\":1.0}";
    json_t *a = ok(&s, "/v1/completions", req), *b = ok(&s, "/v1/completions", req);
    CHECK_EQ_STR(jstr(a, "object"), "text_completion");
    CHECK(!strncmp(jstr(a, "id"), "cmpl-", 5));
    CHECK(strcmp(jstr(a, "id"), jstr(b, "id")) != 0);
    CHECK_EQ_STR(jstr(a, "choices.0.text"), jstr(b, "choices.0.text"));
    char gathered[4096];
    snprintf(gathered, sizeof gathered, "%s", jstr(a, "choices.0.text"));
    CHECK(strlen(gathered) > 10);
    if (!strcmp(jstr(a, "choices.0.finish_reason"), "length"))
        CHECK_EQ_INT(jint(a, "usage.completion_tokens"), 24);
    json_t *other = ok(&s, "/v1/completions",
                       "{\"model\":\"" MODEL "\",\"prompt\":\"Once upon a time\",\"max_tokens\":24,"
                       "\"seed\":43,\"temperature\":1.0}");
    CHECK(strcmp(jstr(other, "choices.0.text"), gathered) != 0); /* another seed, another story */
    json_decref(other);
    json_decref(a);
    json_decref(b);
    f = sse_frames(&s, "/v1/completions",
                   "{\"model\":\"" MODEL "\",\"prompt\":\"Once upon a time\",\"max_tokens\":24,"
                   "\"seed\":42,\"temperature\":1.0,\"stream\":true}");
    text[0] = 0;
    for (size_t i = 0; i < json_array_size(f); i++) {
        json_t *fr = json_array_get(f, i);
        CHECK_EQ_STR(jstr(fr, "object"), "text_completion");
        CHECK(json_object_get(fr, "usage") == NULL); /* not asked for */
        strncat(text, jstr(fr, "choices.0.text"), sizeof text - strlen(text) - 1);
    }
    CHECK_EQ_STR(text, gathered);
    json_decref(f);

    /* max_tokens -> "length" with exactly that many tokens */
    json_t *l = ok(&s, "/v1/completions",
                   "{\"model\":\"" MODEL "\",\"prompt\":\"Once upon a time\",\"max_tokens\":5,"
                   "\"temperature\":0}");
    CHECK_EQ_STR(jstr(l, "choices.0.finish_reason"), "length");
    CHECK_EQ_INT(jint(l, "usage.completion_tokens"), 5);
    json_decref(l);

    /* stop: the text ends before the first stop string; finish_reason "stop" */
    json_t *g = ok(&s, "/v1/completions",
                   "{\"model\":\"" MODEL "\",\"prompt\":\"Once upon a time\",\"max_tokens\":40,"
                   "\"temperature\":0}");
    const char *full = jstr(g, "choices.0.text");
    CHECK(strlen(full) > 20);
    /* a word from the middle of the greedy text as the stop string */
    char word[32];
    const char *sp = strchr(full + 8, ' ');
    CHECK(sp);
    size_t wl = strcspn(sp + 1, " ,.");
    CHECK(wl > 0 && wl < sizeof word);
    memcpy(word, sp + 1, wl);
    word[wl] = 0;
    char sreq[512];
    snprintf(sreq, sizeof sreq,
             "{\"model\":\"" MODEL "\",\"prompt\":\"Once upon a time\",\"max_tokens\":40,"
             "\"temperature\":0,\"stop\":[\"zzzz\",\"%s\"]}",
             word);
    json_t *st = ok(&s, "/v1/completions", sreq);
    CHECK_EQ_STR(jstr(st, "choices.0.finish_reason"), "stop");
    /* greedy, so the same text up to the first place the stop string appears */
    const char *cut = jstr(st, "choices.0.text");
    size_t at = (size_t)(strstr(full, word) - full);
    CHECK_EQ_INT(strlen(cut), at);
    CHECK(!strncmp(full, cut, at));
    json_decref(st);
    json_decref(g);

    /* logprobs: one entry per completion token */
    json_t *lp = ok(&s, "/v1/completions",
                    "{\"model\":\"" MODEL "\",\"prompt\":\"Once\",\"max_tokens\":6,\"logprobs\":2,"
                    "\"temperature\":0}");
    json_t *lpo = json_object_get(json_array_get(json_object_get(lp, "choices"), 0), "logprobs");
    CHECK_EQ_INT(json_array_size(json_object_get(lpo, "tokens")),
                 jint(lp, "usage.completion_tokens"));
    CHECK_EQ_INT(json_array_size(json_object_get(lpo, "top_logprobs")),
                 jint(lp, "usage.completion_tokens"));
    json_decref(lp);
    json_t *clp =
        ok(&s, "/v1/chat/completions",
           "{\"model\":\"" MODEL "\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
           "\"max_tokens\":4,\"logprobs\":true,\"top_logprobs\":3}");
    json_t *content = json_object_get(
        json_object_get(json_array_get(json_object_get(clp, "choices"), 0), "logprobs"), "content");
    CHECK(json_array_size(content) >= 1);
    CHECK_EQ_INT(json_array_size(json_object_get(json_array_get(content, 0), "top_logprobs")), 3);
    json_decref(clp);

    /* token-id prompts and high priority go through too */
    struct gwt_resp r =
        gwt_post(s.port, "/v1/completions",
                 "{\"model\":\"" MODEL "\",\"prompt\":[1,403,407],\"max_tokens\":3}",
                 "X-Synapse-Priority: high\r\nX-Synapse-Deadline-Ms: 10000\r\n");
    CHECK_EQ_INT(r.status, 200);
    gwt_resp_free(&r);

    /* metrics saw the tokens */
    r = gwt_request(s.port, "GET", "/metrics", "", NULL, 5000);
    CHECK(strstr(r.body, "synapse_gateway_requests_total{model=\"" MODEL "\",status=\"200\"}"));
    CHECK(!strstr(r.body, "synapse_gateway_completion_tokens_total{model=\"" MODEL "\"} 0\n"));
    CHECK(strstr(r.body, "synapse_gateway_workers_ready{model=\"" MODEL "\"} 1\n"));
    gwt_resp_free(&r);
    gwt_stop(s.gw, s.gw_log, 15);
}

TEST_TIMEOUT(gateway_e2e_openai_npm_client, 300)
{
    struct stack s;
    char dir[1024];
    const char *root = getenv("SYNAPSE_ROOT");
    snprintf(dir, sizeof dir, "%s/tests/integration/node", root && *root ? root : ".");
    if (syn_test_sh(NULL, "command -v node >/dev/null && command -v npm >/dev/null") != 0)
        FAIL("node and npm are needed for the openai client test (scripts/install-deps.sh)");
    stack_start(&s);
    char *out = NULL;
    if (syn_test_sh(NULL, "test -d '%s/node_modules/openai'", dir) != 0) {
        int rc =
            syn_test_sh(&out, "cd '%s' && timeout 240 npm install --no-audit --no-fund 2>&1", dir);
        if (rc != 0)
            FAIL("npm install of the openai package failed (exit %d); is the npm registry "
                 "reachable?\n%s",
                 rc, out);
        free(out);
    }
    char base[128];
    snprintf(base, sizeof base, "http://127.0.0.1:%d/v1", s.port);
    int rc = syn_test_sh(&out, "cd '%s' && timeout 120 node openai_client.mjs '%s' '%s' 2>&1", dir,
                         base, MODEL);
    printf("%s", out);
    CHECK_EQ_INT(rc, 0);
    int seen = 0;
    char chat_text[4096] = "", ctext[4096] = "";
    char *save = NULL;
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        if (!j) FAIL("not a JSON line: %s", line);
        const char *cs = jstr(j, "case");
        CHECK(cs);
        if (!strcmp(cs, "chat")) {
            CHECK(!strncmp(jstr(j, "id"), "chatcmpl-", 9));
            CHECK_EQ_STR(jstr(j, "object"), "chat.completion");
            CHECK_EQ_STR(jstr(j, "role"), "assistant");
            CHECK(jint(j, "usage.completion_tokens") > 0);
            CHECK_EQ_INT(jint(j, "usage.total_tokens"),
                         jint(j, "usage.prompt_tokens") + jint(j, "usage.completion_tokens"));
            snprintf(chat_text, sizeof chat_text, "%s", jstr(j, "text"));
        } else if (!strcmp(cs, "chat_stream")) {
            CHECK_EQ_STR(jstr(j, "text"), chat_text); /* same seed, same text */
            CHECK_EQ_STR(jstr(j, "role"), "assistant");
            CHECK(jint(j, "chunks") >= 3);
            CHECK(jstr(j, "finish_reason"));
            CHECK(jint(j, "usage.completion_tokens") > 0);
        } else if (!strcmp(cs, "completion")) {
            CHECK_EQ_STR(jstr(j, "object"), "text_completion");
            snprintf(ctext, sizeof ctext, "%s", jstr(j, "text"));
            CHECK(strlen(ctext) > 0);
        } else if (!strcmp(cs, "completion_stream")) {
            CHECK_EQ_STR(jstr(j, "text"), ctext);
        } else if (!strcmp(cs, "models")) {
            CHECK_EQ_STR(jstr(j, "models.0"), MODEL);
        } else if (!strcmp(cs, "unknown_model")) {
            CHECK_EQ_INT(jint(j, "status"), 404);
            CHECK_EQ_STR(jstr(j, "code"), "model_not_found");
            CHECK_EQ_STR(jstr(j, "type"), "invalid_request_error");
        } else if (!strcmp(cs, "n2")) {
            CHECK_EQ_INT(jint(j, "status"), 400);
            CHECK_EQ_STR(jstr(j, "param"), "n");
        } else {
            FAIL("unexpected case: %s", line);
        }
        seen++;
        json_decref(j);
    }
    free(out);
    CHECK_EQ_INT(seen, 7);
    gwt_stop(s.gw, s.gw_log, 15);
}

/* HGET of the worker's registry field `running`; -1 if absent. */
static int worker_running(struct stack *s)
{
    char *o = NULL;
    syn_test_sh(&o, "redis-cli -s '%s' HGET 'syn:worker:{" WORKER_ID "}' running", s->redis.sock);
    int v = o && *o && *o != '\n' ? atoi(o) : -1;
    free(o);
    return v;
}

TEST_TIMEOUT(gateway_e2e_disconnect_cancels_the_job, 60)
{
    struct stack s;
    stack_start(&s);
    CHECK_EQ_INT(worker_running(&s), 0);
    const char *body = "{\"model\":\"" MODEL "\",\"prompt\":\"Once upon a time\",\"max_tokens\":"
                       "2000,\"stream\":true}";
    char req[512];
    int n = snprintf(req, sizeof req,
                     "POST /v1/completions HTTP/1.1\r\nHost: t\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     strlen(body), body);
    int fd = gwt_connect(s.port);
    gwt_send(fd, req, (size_t)n);
    /* read until the first chunk names the job */
    char buf[8192];
    size_t got = 0;
    char id[128] = "";
    double end = gwt_now() + 10;
    while (!id[0] && gwt_now() < end) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 1000) <= 0) continue;
        ssize_t k = recv(fd, buf + got, sizeof buf - 1 - got, 0);
        CHECK(k > 0);
        got += (size_t)k;
        buf[got] = 0;
        char *q = strstr(buf, "\"id\":\"cmpl-");
        if (q && strchr(q + 6, '"')) {
            size_t len = (size_t)(strchr(q + 6, '"') - (q + 6));
            CHECK(len < sizeof id);
            memcpy(id, q + 6, len);
            id[len] = 0;
        }
    }
    CHECK(id[0]);
    /* the worker is running it (its heartbeat says so) */
    end = gwt_now() + 5;
    while (worker_running(&s) != 1 && gwt_now() < end) gwt_sleep_ms(20);
    CHECK_EQ_INT(worker_running(&s), 1);
    double t0 = gwt_now();
    close(fd);
    /* the cancellation is marked, and the worker drops the sequence within a few steps */
    char *o = NULL;
    int marked = 0;
    end = gwt_now() + 3;
    while (!marked && gwt_now() < end) {
        syn_test_sh(&o, "redis-cli -s '%s' EXISTS 'syn:cancel:{%s}'", s.redis.sock, id);
        marked = atoi(o) == 1;
        free(o);
        if (!marked) gwt_sleep_ms(10);
    }
    CHECK(marked);
    while (worker_running(&s) != 0 && gwt_now() < end) gwt_sleep_ms(20);
    CHECK_EQ_INT(worker_running(&s), 0);
    double took = gwt_now() - t0;
    printf("cancelled %s; the worker's running count dropped after %.3f s\n", id, took);
    /* the job ended as cancelled, well short of its 2000 tokens */
    syn_test_sh(&o, "redis-cli -s '%s' XREVRANGE 'syn:reply:{" GW_ID "}' + - COUNT 20",
                s.redis.sock);
    CHECK(strstr(o, "cancelled"));
    free(o);
    struct gwt_resp r = gwt_request(s.port, "GET", "/metrics", "", NULL, 5000);
    CHECK(strstr(r.body, "synapse_gateway_cancellations_total{model=\"" MODEL
                         "\",reason=\"disconnect\"} 1\n"));
    CHECK(strstr(r.body, "synapse_gateway_requests_in_flight{model=\"" MODEL "\"} 0\n"));
    gwt_resp_free(&r);
    gwt_stop(s.gw, s.gw_log, 15);
}

TEST_TIMEOUT(gateway_e2e_deadline_mid_stream, 60)
{
    struct stack s;
    stack_start(&s);
    /* a long stream with a short deadline: an error chunk, then [DONE] */
    struct gwt_resp r = gwt_post(s.port, "/v1/completions",
                                 "{\"model\":\"" MODEL "\",\"prompt\":\"Once\",\"max_tokens\":2000,"
                                 "\"stream\":true}",
                                 "X-Synapse-Deadline-Ms: 700\r\n");
    CHECK_EQ_INT(r.status, 200);
    CHECK(strstr(r.body, "data: {\"error\":{"));
    CHECK(strstr(r.body, "deadline"));
    const char *tail = r.body + r.body_len - 14;
    CHECK(r.body_len > 14 && !strcmp(tail, "data: [DONE]\n\n"));
    gwt_resp_free(&r);
    /* not streamed: 504 */
    r = gwt_post(s.port, "/v1/completions",
                 "{\"model\":\"" MODEL "\",\"prompt\":\"Once\",\"max_tokens\":2000}",
                 "X-Synapse-Deadline-Ms: 700\r\n");
    CHECK_EQ_INT(r.status, 504);
    CHECK_EQ_STR(gwt_check_error(&r, "deadline"), "deadline_exceeded");
    gwt_resp_free(&r);
    gwt_expect_healthy(s.port, "deadlines");
    gwt_stop(s.gw, s.gw_log, 15);
}
