/* `synapse gateway` against hostile and malformed HTTP, with a real redis-server behind it and
 * no worker (or a fake registry entry where a test needs one): every request gets the right
 * status and an OpenAI-shaped error, the server keeps serving after each, and limits hold
 * (body, head, connections, slow clients, the queue, deadlines, keys). */
#include "harness.h"

#include "gateway_test.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <strings.h>

#include "synapse/gateway.h"

#define MODEL "stories260K"

struct gw {
    struct syn_test_redis redis;
    pid_t pid;
    int port;
    char log[600];
};

/* Starts redis and a gateway with extra flags (NULL-terminated list). */
static void gw_start(struct gw *g, const char *const *extra)
{
    syn_test_redis_start(&g->redis, 0);
    snprintf(g->log, sizeof g->log, "%s/gateway.log", syn_test_tmpdir());
    const char *args[48] = {
        "gateway",           "--redis", g->redis.url,       "--model", MODEL,       "--port", "0",
        "--read-timeout-ms", "1500",    "--max-body-bytes", "65536",   "--poll-ms", "50"};
    int n = 13;
    for (int i = 0; extra && extra[i] && n < 46; i++) args[n++] = extra[i];
    args[n] = NULL;
    g->pid = gwt_spawn(g->log, args);
    g->port = gwt_wait_port(g->pid, g->log, 10);
    gwt_wait_redis(g->port, 10);
}

/* Registers a fake ready worker for the model, so that requests are queued (and wait). */
static void fake_worker(struct gw *g)
{
    char *out = NULL;
    int rc =
        syn_test_sh(&out,
                    "redis-cli -s '%s' HSET 'syn:worker:{fake}' id fake model %s state 1 pid 1 "
                    "max_seqs 4 running 0 free_slots 4 >/dev/null && "
                    "redis-cli -s '%s' ZADD 'syn:{%s}:workers' 1 fake >/dev/null",
                    g->redis.sock, MODEL, g->redis.sock, MODEL);
    free(out);
    CHECK_EQ_INT(rc, 0);
    /* wait until the gateway's poll has seen it */
    double end = gwt_now() + 5;
    while (gwt_now() < end) {
        struct gwt_resp h = gwt_request(g->port, "GET", "/readyz", "", NULL, 2000);
        int st = h.status;
        gwt_resp_free(&h);
        if (st == 200) return;
        gwt_sleep_ms(20);
    }
    FAIL("the fake worker did not make the gateway ready");
}

/* Sends raw bytes, expects status and an error shape; then /healthz must still answer. */
static void expect_raw(struct gw *g, const char *what, const char *req, size_t len, int status,
                       const char *code)
{
    struct gwt_resp r = gwt_raw(g->port, req, len, 8000);
    if (r.status != status)
        FAIL("%s: status %d, expected %d: %s", what, r.status, status, r.body ? r.body : "(none)");
    const char *c = gwt_check_error(&r, what);
    if (code && strcmp(c, code) != 0) FAIL("%s: code '%s', expected '%s'", what, c, code);
    gwt_resp_free(&r);
    gwt_expect_healthy(g->port, what);
}

static void expect_post(struct gw *g, const char *what, const char *path, const char *body,
                        const char *extra, int status, const char *code)
{
    struct gwt_resp r = gwt_post(g->port, path, body, extra);
    if (r.status != status)
        FAIL("%s: status %d, expected %d: %s", what, r.status, status, r.body ? r.body : "(none)");
    const char *c = gwt_check_error(&r, what);
    if (code && strcmp(c, code) != 0) FAIL("%s: code '%s', expected '%s'", what, c, code);
    gwt_resp_free(&r);
    gwt_expect_healthy(g->port, what);
}

#define CHAT_PATH "/v1/chat/completions"
#define TEXT_PATH "/v1/completions"
#define MSGS      "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

TEST_TIMEOUT(gateway_hostile_api_requests, 120)
{
    struct gw g;
    gw_start(&g, NULL);
    int cases = 0;
    const struct {
        const char *what, *path, *body;
        int status;
        const char *code;
    } api[] = {
        {"bad JSON", CHAT_PATH, "{bad", 400, NULL},
        {"truncated JSON", CHAT_PATH, "{\"model\":\"" MODEL "\",", 400, NULL},
        {"empty body", CHAT_PATH, "", 400, NULL},
        {"JSON array body", CHAT_PATH, "[1,2,3]", 400, NULL},
        {"model wrong type", CHAT_PATH, "{\"model\":5," MSGS "}", 400, "invalid_type"},
        {"model missing", CHAT_PATH, "{" MSGS "}", 400, "missing_required_parameter"},
        {"messages empty", CHAT_PATH, "{\"model\":\"" MODEL "\",\"messages\":[]}", 400,
         "empty_array"},
        {"messages wrong type", CHAT_PATH, "{\"model\":\"" MODEL "\",\"messages\":\"hi\"}", 400,
         "invalid_type"},
        {"bad role", CHAT_PATH,
         "{\"model\":\"" MODEL "\",\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", 400,
         "invalid_value"},
        {"image content part", CHAT_PATH,
         "{\"model\":\"" MODEL "\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
         "\"image_url\",\"image_url\":{\"url\":\"http://x\"}}]}]}",
         400, "invalid_value"},
        {"negative max_tokens", CHAT_PATH, "{\"model\":\"" MODEL "\"," MSGS ",\"max_tokens\":-1}",
         400, "invalid_value"},
        {"huge max_tokens", CHAT_PATH, "{\"model\":\"" MODEL "\"," MSGS ",\"max_tokens\":1e30}",
         400, "invalid_type"},
        {"integer overflow", TEXT_PATH,
         "{\"model\":\"" MODEL "\",\"prompt\":\"x\",\"max_tokens\":123456789012345678901234567890}",
         400, NULL},
        {"max_tokens string", CHAT_PATH, "{\"model\":\"" MODEL "\"," MSGS ",\"max_tokens\":\"9\"}",
         400, "invalid_type"},
        {"temperature 5", CHAT_PATH, "{\"model\":\"" MODEL "\"," MSGS ",\"temperature\":5}", 400,
         "invalid_value"},
        {"n=2", CHAT_PATH, "{\"model\":\"" MODEL "\"," MSGS ",\"n\":2}", 400, "unsupported_value"},
        {"five stop strings", CHAT_PATH,
         "{\"model\":\"" MODEL "\"," MSGS ",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", 400,
         "invalid_value"},
        {"top_logprobs 21", CHAT_PATH,
         "{\"model\":\"" MODEL "\"," MSGS ",\"logprobs\":true,\"top_logprobs\":21}", 400,
         "invalid_value"},
        {"completions logprobs 6", TEXT_PATH,
         "{\"model\":\"" MODEL "\",\"prompt\":\"x\",\"logprobs\":6}", 400, "invalid_value"},
        {"invalid UTF-8", CHAT_PATH,
         "{\"model\":\"" MODEL "\",\"messages\":[{\"role\":\"user\",\"content\":\"\xc3\x28\"}]}",
         400, NULL},
        {"NUL escape", TEXT_PATH, "{\"model\":\"" MODEL "\",\"prompt\":\"a\\u0000b\"}", 400, NULL},
        {"batched prompts", TEXT_PATH, "{\"model\":\"" MODEL "\",\"prompt\":[\"a\",\"b\"]}", 400,
         "invalid_value"},
        {"negative token id", TEXT_PATH, "{\"model\":\"" MODEL "\",\"prompt\":[1,-2]}", 400,
         "invalid_value"},
        {"stream_options without stream", CHAT_PATH,
         "{\"model\":\"" MODEL "\"," MSGS ",\"stream_options\":{\"include_usage\":true}}", 400,
         "invalid_value"},
        {"unknown model", CHAT_PATH, "{\"model\":\"gpt-9\"," MSGS "}", 404, "model_not_found"},
        {"very long model name", TEXT_PATH,
         "{\"model\":"
         "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "\",\"prompt\":\"x\"}",
         404, "model_not_found"},
        {"no worker at all", CHAT_PATH, "{\"model\":\"" MODEL "\"," MSGS "}", 503, "no_capacity"},
        {"unknown route", "/v1/embeddings", "{}", 404, "unknown_url"},
        {"route outside /v1", "/admin", "{}", 404, "unknown_url"},
    };
    for (size_t i = 0; i < sizeof api / sizeof api[0]; i++, cases++)
        expect_post(&g, api[i].what, api[i].path, api[i].body, "", api[i].status, api[i].code);

    /* deeply nested JSON */
    char *deep = malloc(200002);
    memset(deep, '[', 100000);
    memset(deep + 100000, ']', 100000);
    deep[200000] = 0;
    char *deepbody = malloc(200100);
    snprintf(deepbody, 200100, "{\"model\":%s}", deep);
    struct gwt_resp r = gwt_post(g.port, CHAT_PATH, deepbody, "");
    CHECK(r.status == 400 || r.status == 413); /* 200 KB is over this gateway's 64 KiB limit */
    gwt_check_error(&r, "deep nesting");
    gwt_resp_free(&r);
    snprintf(deepbody, 200100, "{\"model\":%.20000s%.20000s}", deep, deep + 100000);
    expect_post(&g, "deeply nested JSON", CHAT_PATH, deepbody, "", 400, NULL);
    cases += 2;
    free(deep);
    free(deepbody);

    /* headers the gateway reads */
    expect_post(&g, "bad deadline header", CHAT_PATH, "{\"model\":\"" MODEL "\"," MSGS "}",
                "X-Synapse-Deadline-Ms: soon\r\n", 400, "invalid_value");
    expect_post(&g, "negative deadline", CHAT_PATH, "{\"model\":\"" MODEL "\"," MSGS "}",
                "X-Synapse-Deadline-Ms: -5\r\n", 400, "invalid_value");
    expect_post(&g, "bad priority header", CHAT_PATH, "{\"model\":\"" MODEL "\"," MSGS "}",
                "X-Synapse-Priority: urgent\r\n", 400, "invalid_value");
    cases += 3;

    /* methods */
    r = gwt_request(g.port, "GET", CHAT_PATH, "", NULL, 5000);
    CHECK_EQ_INT(r.status, 405);
    CHECK_EQ_STR(gwt_check_error(&r, "GET on a POST route"), "method_not_allowed");
    CHECK_EQ_STR(gwt_header(&r, "Allow"), "POST");
    gwt_resp_free(&r);
    r = gwt_request(g.port, "DELETE", "/v1/models", "", NULL, 5000);
    CHECK_EQ_INT(r.status, 405);
    gwt_resp_free(&r);
    r = gwt_request(g.port, "POST", "/healthz", "", "{}", 5000);
    CHECK_EQ_INT(r.status, 405);
    gwt_check_error(&r, "POST /healthz");
    gwt_resp_free(&r);
    cases += 3;
    printf("%d API cases\n", cases);
    CHECK(cases >= 30);

    /* the models list, and one model */
    r = gwt_request(g.port, "GET", "/v1/models", "", NULL, 5000);
    CHECK_EQ_INT(r.status, 200);
    CHECK(strstr(r.body, "\"object\":\"list\"") && strstr(r.body, "\"id\":\"" MODEL "\"") &&
          strstr(r.body, "\"owned_by\":\"synapse\""));
    gwt_resp_free(&r);
    r = gwt_request(g.port, "GET", "/v1/models/" MODEL, "", NULL, 5000);
    CHECK_EQ_INT(r.status, 200);
    gwt_resp_free(&r);
    r = gwt_request(g.port, "GET", "/v1/models/nope", "", NULL, 5000);
    CHECK_EQ_INT(r.status, 404);
    CHECK_EQ_STR(gwt_check_error(&r, "unknown model id"), "model_not_found");
    gwt_resp_free(&r);
    /* not ready without a worker; metrics count what happened */
    r = gwt_request(g.port, "GET", "/readyz", "", NULL, 5000);
    CHECK_EQ_INT(r.status, 503);
    CHECK(strstr(r.body, "\"redis\":true"));
    gwt_resp_free(&r);
    r = gwt_request(g.port, "GET", "/metrics", "", NULL, 5000);
    CHECK_EQ_INT(r.status, 200);
    CHECK(strstr(gwt_header(&r, "Content-Type"), "text/plain"));
    CHECK(strstr(r.body, "synapse_gateway_requests_total{model=\"" MODEL "\",status=\"503\"} 1\n"));
    CHECK(strstr(r.body, "synapse_gateway_http_responses_total{status=\"400\"}"));
    CHECK(strstr(r.body, "synapse_gateway_requests_in_flight{model=\"" MODEL "\"} 0\n"));
    CHECK(strstr(r.body, "synapse_gateway_queue_rejections_total{model=\"" MODEL "\"} 0\n"));
    CHECK(strstr(r.body, "synapse_gateway_redis_up 1\n"));
    gwt_resp_free(&r);
    gwt_stop(g.pid, g.log, 15);
}

TEST_TIMEOUT(gateway_hostile_http_framing, 120)
{
    struct gw g;
    gw_start(&g, NULL);
    const char *ok_body = "{\"model\":\"nope\",\"prompt\":\"x\"}"; /* parses: 404 */
    char req[4096];
    int n;

    /* a body over --max-body-bytes, announced: refused before it is read */
    n = snprintf(req, sizeof req,
                 "POST " TEXT_PATH " HTTP/1.1\r\nHost: t\r\n"
                 "Content-Length: 10000000\r\n\r\n{");
    expect_raw(&g, "Content-Length over the limit", req, (size_t)n, 413, "request_too_large");
    n = snprintf(req, sizeof req,
                 "POST " TEXT_PATH " HTTP/1.1\r\nHost: t\r\n"
                 "Content-Length: 99999999999999999999999999\r\n\r\n");
    expect_raw(&g, "absurd Content-Length", req, (size_t)n, 413, "request_too_large");
    /* and a body over the limit actually sent */
    char *big = malloc(100000 + 200);
    memset(big, ' ', 100000);
    big[100000] = 0;
    expect_post(&g, "oversize body", TEXT_PATH, big, "", 413, "request_too_large");
    /* chunked bodies: a good one is read, bad ones are refused */
    n = snprintf(req, sizeof req,
                 "POST " TEXT_PATH " HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "5\r\n{\"mod\r\n%zx;ext=1\r\n%s\r\n0\r\nTrailer: x\r\n\r\n",
                 strlen(ok_body + 5), ok_body + 5);
    struct gwt_resp r = gwt_raw(g.port, req, (size_t)n, 5000);
    CHECK_EQ_INT(r.status, 404); /* the body arrived whole: the model is unknown */
    gwt_resp_free(&r);
    n = snprintf(req, sizeof req,
                 "POST " TEXT_PATH " HTTP/1.1\r\nHost: t\r\n"
                 "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n");
    expect_raw(&g, "bad chunk size", req, (size_t)n, 400, "bad_request");
    n = snprintf(req, sizeof req,
                 "POST " TEXT_PATH " HTTP/1.1\r\nHost: t\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n2\r\nabcdef\r\n0\r\n\r\n");
    expect_raw(&g, "chunk longer than its size", req, (size_t)n, 400, "bad_request");
    n = snprintf(req, sizeof req,
                 "POST " TEXT_PATH " HTTP/1.1\r\nHost: t\r\n"
                 "Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n");
    expect_raw(&g, "chunk size overflow", req, (size_t)n, 413, "request_too_large");
    n = snprintf(req, sizeof req,
                 "POST " TEXT_PATH " HTTP/1.1\r\nHost: t\r\n"
                 "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello");
    expect_raw(&g, "Transfer-Encoding with Content-Length", req, (size_t)n, 400, "bad_request");
    n = snprintf(req, sizeof req,
                 "POST " TEXT_PATH " HTTP/1.1\r\nHost: t\r\n"
                 "Transfer-Encoding: gzip\r\n\r\n");
    expect_raw(&g, "Transfer-Encoding gzip", req, (size_t)n, 501, "not_implemented");
    n = snprintf(req, sizeof req,
                 "POST " TEXT_PATH " HTTP/1.1\r\nHost: t\r\n"
                 "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!");
    expect_raw(&g, "conflicting Content-Length", req, (size_t)n, 400, "bad_request");
    n = snprintf(req, sizeof req,
                 "POST " TEXT_PATH " HTTP/1.1\r\nHost: t\r\n"
                 "Content-Length: -5\r\n\r\n");
    expect_raw(&g, "negative Content-Length", req, (size_t)n, 400, "bad_request");
    /* heads */
    expect_raw(&g, "garbage request line", "\x16\x03\x01 hello\r\n\r\n", 14, 400, "bad_request");
    expect_raw(&g, "HTTP/2 request line", "GET / HTTP/2.0\r\n\r\n", 18, 505,
               "http_version_not_supported");
    expect_raw(&g, "header without colon", "GET /healthz HTTP/1.1\r\nHost t\r\n\r\n", 33, 400,
               "bad_request");
    expect_raw(&g, "control character in a header", "GET /healthz HTTP/1.1\r\nX-A: a\x01z\r\n\r\n",
               36, 400, "bad_request");
    n = snprintf(req, sizeof req,
                 "POST " TEXT_PATH " HTTP/1.1\r\nHost: t\r\n"
                 "Expect: magic\r\nContent-Length: 2\r\n\r\n{}");
    expect_raw(&g, "unknown Expect", req, (size_t)n, 417, "expectation_failed");
    char *huge = malloc(40000);
    n = snprintf(huge, 40000, "GET /healthz HTTP/1.1\r\nX-Big: ");
    memset(huge + n, 'a', 30000);
    n += 30000;
    n += snprintf(huge + n, 40000 - (size_t)n, "\r\n\r\n");
    expect_raw(&g, "oversize head", huge, (size_t)n, 431, "headers_too_large");
    free(huge);
    char many[8192];
    n = snprintf(many, sizeof many, "GET /healthz HTTP/1.1\r\n");
    for (int i = 0; i < 150; i++) n += snprintf(many + n, sizeof many - (size_t)n, "X%d: y\r\n", i);
    n += snprintf(many + n, sizeof many - (size_t)n, "\r\n");
    expect_raw(&g, "too many headers", many, (size_t)n, 431, "headers_too_large");

    /* Expect: 100-continue is answered, then the body read */
    int fd = gwt_connect(g.port);
    n = snprintf(req, sizeof req,
                 "POST " TEXT_PATH " HTTP/1.1\r\nHost: t\r\n"
                 "Expect: 100-continue\r\nContent-Length: %zu\r\n\r\n",
                 strlen(ok_body));
    gwt_send(fd, req, (size_t)n);
    char buf[64] = {0};
    struct pollfd p = {fd, POLLIN, 0};
    CHECK(poll(&p, 1, 3000) == 1);
    CHECK(recv(fd, buf, sizeof buf - 1, 0) > 0);
    CHECK(!strncmp(buf, "HTTP/1.1 100 Continue\r\n\r\n", 25));
    gwt_send(fd, ok_body, strlen(ok_body));
    r = gwt_read(fd, 5000);
    CHECK_EQ_INT(r.status, 404);
    gwt_resp_free(&r);
    close(fd);

    /* pipelining and keep-alive: three requests in one write, three answers in order */
    n = snprintf(req, sizeof req,
                 "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
                 "POST " TEXT_PATH " HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n%s"
                 "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n",
                 strlen(ok_body), ok_body);
    fd = gwt_connect(g.port);
    gwt_send(fd, req, (size_t)n);
    struct gwt_resp rs[3];
    CHECK_EQ_INT(gwt_read_n(fd, rs, 3, 5000), 3);
    int want[3] = {200, 404, 404};
    for (int i = 0; i < 3; i++) {
        if (rs[i].status != want[i]) FAIL("pipelined answer %d: %d", i, rs[i].status);
        gwt_resp_free(&rs[i]);
    }
    close(fd);
    /* HEAD gets the head only; HTTP/1.0 closes */
    fd = gwt_connect(g.port);
    gwt_send(fd, "HEAD /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 54);
    char hb[1024];
    size_t hn = 0;
    for (;;) {
        struct pollfd hp = {fd, POLLIN, 0};
        if (poll(&hp, 1, 3000) <= 0) break;
        ssize_t k = recv(fd, hb + hn, sizeof hb - 1 - hn, 0);
        if (k <= 0) break;
        hn += (size_t)k;
    }
    hb[hn] = 0;
    close(fd);
    CHECK(!strncmp(hb, "HTTP/1.1 200 OK\r\n", 17));
    CHECK(strstr(hb, "Content-Length: 15\r\n"));
    CHECK(!strcmp(hb + hn - 4, "\r\n\r\n")); /* the head and nothing after it */
    r = gwt_raw(g.port, "GET /healthz HTTP/1.0\r\n\r\n", 25, 5000);
    CHECK_EQ_INT(r.status, 200);
    CHECK(r.closed);
    gwt_resp_free(&r);
    free(big);
    gwt_stop(g.pid, g.log, 15);
}

TEST_TIMEOUT(gateway_slow_clients_are_cut_off, 60)
{
    struct gw g;
    gw_start(&g, NULL); /* --read-timeout-ms 1500 */
    /* half a header, then nothing */
    int slow = gwt_connect(g.port);
    gwt_send(slow, "POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Le", 50);
    /* a body announced larger than sent */
    int short_body = gwt_connect(g.port);
    const char *sb =
        "POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{\"model\"";
    gwt_send(short_body, sb, strlen(sb));
    /* a client that dribbles a byte every 300 ms: the deadline is for the whole request */
    int drip = gwt_connect(g.port);
    double t0 = gwt_now();
    /* meanwhile others are served, without waiting */
    for (int i = 0; i < 5; i++) {
        double t = gwt_now();
        gwt_expect_healthy(g.port, "a stalled client");
        CHECK(gwt_now() - t < 0.5);
        gwt_send(drip, "G", 1);
        gwt_sleep_ms(300);
    }
    struct gwt_resp a = gwt_read(slow, 5000);
    struct gwt_resp b = gwt_read(short_body, 5000);
    struct gwt_resp c = gwt_read(drip, 5000);
    double took = gwt_now() - t0;
    CHECK_EQ_INT(a.status, 408);
    CHECK_EQ_STR(gwt_check_error(&a, "half a header"), "request_timeout");
    CHECK(a.closed);
    CHECK_EQ_INT(b.status, 408);
    gwt_check_error(&b, "short body");
    CHECK(b.closed);
    CHECK_EQ_INT(c.status, 408);
    CHECK(c.closed);
    CHECK(took < 4.0);
    gwt_resp_free(&a);
    gwt_resp_free(&b);
    gwt_resp_free(&c);
    close(slow);
    close(short_body);
    close(drip);
    /* an idle keep-alive connection is closed quietly */
    int idle = gwt_connect(g.port);
    struct gwt_resp d = gwt_read(idle, 4000);
    CHECK_EQ_INT(d.status, 0);
    CHECK(d.closed);
    gwt_resp_free(&d);
    close(idle);
    struct gwt_resp m = gwt_request(g.port, "GET", "/metrics", "", NULL, 5000);
    CHECK(strstr(m.body, "synapse_gateway_http_read_timeouts_total 3\n"));
    gwt_resp_free(&m);
    gwt_stop(g.pid, g.log, 15);
}

/* A client that pipelines requests and never reads the answers: the gateway stops taking its
 * requests once one answer waits for the socket (it buffers no more than that), cuts it off
 * after the write timeout (not the read timeout, which an earlier answer in the pipeline may
 * have armed), and serves others meanwhile. */
TEST_TIMEOUT(gateway_pipelining_reader_that_never_reads, 60)
{
    struct gw g;
    const char *extra[] = {"--write-timeout-ms", "3000", NULL};
    gw_start(&g, extra);
    /* a small receive window from the start: shrinking it after the handshake leaves answers
     * already in flight beyond it, and the kernel drops them and the ACKs they carry, which
     * stalls the client's own sending for seconds */
    int fd = gwt_connect_rcvbuf(g.port, 4096);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
    enum { BATCH = 1024, LIMIT = 64 << 20 };
    char *buf = malloc(sizeof req * BATCH);
    size_t blen = 0;
    for (int i = 0; i < BATCH; i++, blen += sizeof req - 1) memcpy(buf + blen, req, sizeof req - 1);
    /* send until the gateway stops reading (nothing goes for 500 ms) or LIMIT bytes went */
    size_t sent = 0, off = 0;
    double idle_since = gwt_now();
    while (sent < LIMIT && gwt_now() - idle_since < 0.5) {
        ssize_t w = send(fd, buf + off, blen - off, MSG_NOSIGNAL);
        if (w > 0) {
            sent += (size_t)w;
            off = (off + (size_t)w) % blen;
            idle_since = gwt_now();
        } else {
            gwt_sleep_ms(5);
        }
    }
    free(buf);
    /* kernel buffers on both sides and the gateway's read limit: a few MB at most */
    if (sent >= 16 << 20) FAIL("the gateway took %zu bytes of requests it could not answer", sent);
    /* others are served while it is stuck: it is still open when they have their answers */
    gwt_expect_healthy(g.port, "a client that does not read");
    struct gwt_resp m = gwt_request(g.port, "GET", "/metrics", "", NULL, 5000);
    CHECK(strstr(m.body, "synapse_gateway_http_write_timeouts_total 0\n"));
    CHECK(strstr(m.body, "synapse_gateway_http_read_timeouts_total 0\n"));
    gwt_resp_free(&m);
    /* the write timeout closes it, and nothing else does */
    double end = gwt_now() + 15;
    int cut = 0;
    while (!cut && gwt_now() < end) {
        gwt_sleep_ms(200);
        m = gwt_request(g.port, "GET", "/metrics", "", NULL, 5000);
        cut = strstr(m.body, "synapse_gateway_http_write_timeouts_total 1\n") != NULL;
        if (cut) CHECK(strstr(m.body, "synapse_gateway_http_read_timeouts_total 0\n"));
        gwt_resp_free(&m);
    }
    if (!cut) FAIL("the connection that does not read was not cut off by the write timeout");
    close(fd);
    gwt_stop(g.pid, g.log, 15);
}

TEST_TIMEOUT(gateway_connection_limit, 60)
{
    struct gw g;
    const char *extra[] = {"--max-connections", "3", "--read-timeout-ms", "20000", NULL};
    gw_start(&g, extra);
    /* the readiness polls above used connections that are closed by now, or soon */
    gwt_sleep_ms(200);
    int fds[3];
    for (int i = 0; i < 3; i++) fds[i] = gwt_connect(g.port);
    gwt_sleep_ms(200);
    /* a fourth waits in the backlog: no answer while the three are open */
    int fourth = gwt_connect(g.port);
    gwt_send(fourth, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", 34);
    struct gwt_resp r = gwt_read(fourth, 700);
    CHECK_EQ_INT(r.status, 0);
    gwt_resp_free(&r);
    /* one closes: the fourth is accepted and served */
    close(fds[0]);
    r = gwt_read(fourth, 5000);
    CHECK_EQ_INT(r.status, 200);
    gwt_resp_free(&r);
    close(fourth);
    close(fds[1]);
    close(fds[2]);
    gwt_sleep_ms(100);
    gwt_expect_healthy(g.port, "the connection limit");
    gwt_stop(g.pid, g.log, 15);
}

TEST_TIMEOUT(gateway_api_keys, 60)
{
    struct gw g;
    char keys[600];
    snprintf(keys, sizeof keys, "%s/keys", syn_test_tmpdir());
    FILE *f = fopen(keys, "w");
    CHECK(f);
    fprintf(f, "sk-file-key\n");
    fclose(f);
    setenv("SYNAPSE_API_KEYS", "sk-env-1,sk-env-2", 1);
    const char *extra[] = {"--api-keys", keys, NULL};
    gw_start(&g, extra);
    unsetenv("SYNAPSE_API_KEYS");
    const char *body = "{\"model\":\"" MODEL "\"," MSGS "}";
    struct gwt_resp r = gwt_post(g.port, CHAT_PATH, body, "");
    CHECK_EQ_INT(r.status, 401);
    gwt_check_error(&r, "missing key");
    CHECK(strstr(r.body, "API key"));
    CHECK_EQ_STR(gwt_header(&r, "WWW-Authenticate"), "Bearer");
    gwt_resp_free(&r);
    expect_post(&g, "wrong key", CHAT_PATH, body, "Authorization: Bearer sk-wrong\r\n", 401,
                "invalid_api_key");
    expect_post(&g, "key prefix", CHAT_PATH, body, "Authorization: Bearer sk-file-ke\r\n", 401,
                "invalid_api_key");
    expect_post(&g, "not bearer", CHAT_PATH, body, "Authorization: Basic sk-file-key\r\n", 401,
                NULL);
    r = gwt_request(g.port, "GET", "/v1/models", "", NULL, 5000);
    CHECK_EQ_INT(r.status, 401);
    gwt_resp_free(&r);
    /* right keys get past auth (to 503: no worker) */
    expect_post(&g, "file key", CHAT_PATH, body, "Authorization: Bearer sk-file-key\r\n", 503,
                "no_capacity");
    expect_post(&g, "env key", CHAT_PATH, body, "Authorization: Bearer sk-env-2\r\n", 503,
                "no_capacity");
    r = gwt_request(g.port, "GET", "/v1/models", "Authorization: Bearer sk-env-1\r\n", NULL, 5000);
    CHECK_EQ_INT(r.status, 200);
    gwt_resp_free(&r);
    /* health, readiness and metrics stay open */
    r = gwt_request(g.port, "GET", "/metrics", "", NULL, 5000);
    CHECK_EQ_INT(r.status, 200);
    gwt_resp_free(&r);
    gwt_stop(g.pid, g.log, 15);
}

/* Runs a request in a child process; its status goes to a file. */
static pid_t bg_request(struct gw *g, const char *body, const char *extra, const char *out)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        struct gwt_resp r = gwt_post(g->port, CHAT_PATH, body, extra);
        FILE *f = fopen(out, "w");
        if (f) {
            fprintf(f, "%d %s %s", r.status, gwt_header(&r, "Retry-After"), r.body ? r.body : "");
            fclose(f);
        }
        _exit(0);
    }
    return pid;
}

TEST_TIMEOUT(gateway_queue_full_deadline_and_disconnect, 90)
{
    struct gw g;
    const char *extra[] = {"--max-queue", "2", NULL};
    gw_start(&g, extra);
    fake_worker(&g); /* ready in the registry, but nobody takes the jobs */
    const char *body = "{\"model\":\"" MODEL "\"," MSGS "}";
    char out1[600], out2[600];
    snprintf(out1, sizeof out1, "%s/r1", syn_test_tmpdir());
    snprintf(out2, sizeof out2, "%s/r2", syn_test_tmpdir());
    double t0 = gwt_now();
    pid_t a = bg_request(&g, body, "X-Synapse-Deadline-Ms: 2500\r\n", out1);
    pid_t b =
        bg_request(&g, body, "X-Synapse-Deadline-Ms: 2500\r\nX-Synapse-Priority: high\r\n", out2);
    /* wait until both are queued */
    double end = gwt_now() + 5;
    for (;;) {
        struct gwt_resp m = gwt_request(g.port, "GET", "/metrics", "", NULL, 2000);
        int queued =
            m.body && strstr(m.body, "synapse_gateway_requests_in_flight{model=\"" MODEL "\"} 2\n");
        gwt_resp_free(&m);
        if (queued) break;
        if (gwt_now() > end) FAIL("the two requests were not queued");
        gwt_sleep_ms(20);
    }
    /* the third is refused with 429 and a Retry-After */
    struct gwt_resp r = gwt_post(g.port, CHAT_PATH, body, "");
    CHECK_EQ_INT(r.status, 429);
    CHECK_EQ_STR(gwt_check_error(&r, "queue full"), "queue_full");
    int retry = atoi(gwt_header(&r, "Retry-After"));
    CHECK(retry >= 1 && retry <= 60);
    gwt_resp_free(&r);
    /* the jobs are in the streams, the high one in its own */
    char *o = NULL;
    syn_test_sh(&o,
                "redis-cli -s '%s' XLEN 'syn:{%s}:jobs'; redis-cli -s '%s' XLEN 'syn:{%s}:jobs:hi'",
                g.redis.sock, MODEL, g.redis.sock, MODEL);
    CHECK_EQ_STR(o, "1\n1\n");
    free(o);
    /* both end with 504 at their deadline, and their jobs are cancelled */
    waitpid(a, NULL, 0);
    waitpid(b, NULL, 0);
    double took = gwt_now() - t0;
    CHECK(took >= 2.3 && took < 6);
    char *s1 = syn_test_read_file(out1, NULL), *s2 = syn_test_read_file(out2, NULL);
    CHECK(s1 && s2);
    if (strncmp(s1, "504 ", 4) || strncmp(s2, "504 ", 4)) FAIL("expected 504s: %s | %s", s1, s2);
    CHECK(strstr(s1, "deadline_exceeded"));
    free(s1);
    free(s2);
    syn_test_sh(&o, "redis-cli -s '%s' --scan --pattern 'syn:cancel:*' | wc -l", g.redis.sock);
    CHECK_EQ_INT(atoi(o), 2);
    free(o);

    /* cancelled jobs stay in the stream (and in the backlog) until a worker takes and drops
     * them; play that worker so the queue has room again */
    syn_test_sh(NULL, "redis-cli -s '%s' DEL 'syn:{%s}:jobs' 'syn:{%s}:jobs:hi' >/dev/null",
                g.redis.sock, MODEL, MODEL);
    gwt_sleep_ms(300);
    /* a client that disconnects while its job waits cancels it at once */
    int fd = gwt_connect(g.port);
    char req[512];
    int n = snprintf(req, sizeof req,
                     "POST " CHAT_PATH " HTTP/1.1\r\nHost: t\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     strlen(body), body);
    gwt_send(fd, req, (size_t)n);
    gwt_sleep_ms(300);
    close(fd);
    end = gwt_now() + 3;
    int cancelled = 0;
    while (gwt_now() < end && cancelled < 3) {
        syn_test_sh(&o, "redis-cli -s '%s' --scan --pattern 'syn:cancel:{chatcmpl-*' | wc -l",
                    g.redis.sock);
        cancelled = atoi(o);
        free(o);
        gwt_sleep_ms(20);
    }
    CHECK_EQ_INT(cancelled, 3);
    r = gwt_request(g.port, "GET", "/metrics", "", NULL, 5000);
    CHECK(strstr(r.body, "synapse_gateway_queue_rejections_total{model=\"" MODEL "\"} 1\n"));
    CHECK(strstr(r.body, "synapse_gateway_cancellations_total{model=\"" MODEL
                         "\",reason=\"deadline\"} 2\n"));
    CHECK(strstr(r.body, "synapse_gateway_cancellations_total{model=\"" MODEL
                         "\",reason=\"disconnect\"} 1\n"));
    CHECK(strstr(r.body, "synapse_gateway_requests_in_flight{model=\"" MODEL "\"} 0\n"));
    gwt_resp_free(&r);
    gwt_stop(g.pid, g.log, 15);
}

/* The id of the newest job in the model's normal stream that is not `not`, waiting up to 5 s. */
static void newest_job(struct gw *g, const char * not, char *id, size_t cap)
{
    double end = gwt_now() + 5;
    while (gwt_now() < end) {
        char *o = NULL;
        syn_test_sh(&o, "redis-cli -s '%s' --raw XREVRANGE 'syn:{%s}:jobs' + - COUNT 1",
                    g->redis.sock, MODEL);
        char *p = strstr(o, "\nid\n");
        if (p) {
            p += 4;
            size_t n = strcspn(p, "\n");
            if (n < cap) {
                memcpy(id, p, n);
                id[n] = 0;
                free(o);
                if (strcmp(id, not ) != 0) return;
            }
        } else {
            free(o);
        }
        gwt_sleep_ms(20);
    }
    FAIL("no new job appeared in the stream");
}

/* Plays a worker that dies after two tokens and a second worker that re-runs the job: the
 * events of both attempts reach the reply stream, the re-run's first event regrouped over old
 * and new tokens, plus a late event from the dead attempt. The client must see every token
 * once: "Once upon a time". */
static void replayed_job(struct gw *g, const char *gw_id, int stream, char *last_id)
{
    char body[256], req[512], id[128];
    snprintf(body, sizeof body,
             "{\"model\":\"" MODEL "\",\"prompt\":\"x\",\"max_tokens\":4,\"stream\":%s,"
             "\"stream_options\":%s}",
             stream ? "true" : "false", stream ? "{\"include_usage\":true}" : "null");
    int n = snprintf(req, sizeof req,
                     "POST " TEXT_PATH " HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n%s",
                     strlen(body), body);
    int fd = gwt_connect(g->port);
    gwt_send(fd, req, (size_t)n);
    newest_job(g, last_id, id, sizeof id);
    snprintf(last_id, 128, "%s", id);
    static const char *const events[] = {
        "pos 0 n 1 text 'Once' attempt 1",
        "pos 1 n 1 text ' upon' attempt 1",
        "pos 0 n 3 text 'Once upon a' attempt 2",
        "pos 2 n 1 text ' XXX' attempt 1",
        "pos 3 n 1 text ' time' finish length prompt_tokens 3 completion_tokens 4 attempt 2",
    };
    for (size_t i = 0; i < sizeof events / sizeof events[0]; i++)
        CHECK_EQ_INT(syn_test_sh(NULL,
                                 "redis-cli -s '%s' XADD 'syn:reply:{%s}' '*' job '%s' %s "
                                 ">/dev/null",
                                 g->redis.sock, gw_id, id, events[i]),
                     0);
    struct gwt_resp r = gwt_read(fd, 5000);
    close(fd);
    CHECK_EQ_INT(r.status, 200);
    if (!stream) {
        json_t *j = json_loads(r.body, 0, NULL);
        json_t *c = json_array_get(json_object_get(j, "choices"), 0);
        CHECK_EQ_STR(json_string_value(json_object_get(c, "text")), "Once upon a time");
        CHECK_EQ_STR(json_string_value(json_object_get(c, "finish_reason")), "length");
        CHECK_EQ_INT(
            json_integer_value(json_object_get(json_object_get(j, "usage"), "completion_tokens")),
            4);
        json_decref(j);
    } else {
        char text[256] = "";
        int frames = 0, done = 0, usage = 0;
        for (char *p = r.body; p && (p = strstr(p, "data: ")); p += 6) {
            if (!strncmp(p + 6, "[DONE]", 6)) {
                done = 1;
                continue;
            }
            json_t *j = json_loads(p + 6, JSON_DISABLE_EOF_CHECK, NULL);
            CHECK(j);
            json_t *c = json_array_get(json_object_get(j, "choices"), 0);
            if (c) strncat(text, json_string_value(json_object_get(c, "text")), 100);
            if (!c && json_is_object(json_object_get(j, "usage"))) usage = 1;
            frames++;
            json_decref(j);
        }
        CHECK_EQ_STR(text, "Once upon a time");
        CHECK(done && usage && frames == 6); /* 4 deltas, the finish, the usage */
    }
    gwt_resp_free(&r);
}

TEST_TIMEOUT(gateway_replayed_job_tokens_once, 60)
{
    struct gw g;
    const char *extra[] = {"--id", "gw-replay", NULL};
    gw_start(&g, extra);
    fake_worker(&g);
    char last[128] = "";
    replayed_job(&g, "gw-replay", 0, last);
    replayed_job(&g, "gw-replay", 1, last);
    struct gwt_resp r = gwt_request(g.port, "GET", "/metrics", "", NULL, 5000);
    CHECK(strstr(r.body, "synapse_gateway_duplicate_events_total{model=\"" MODEL "\"} 2\n"));
    CHECK(strstr(r.body, "synapse_gateway_completion_tokens_total{model=\"" MODEL "\"} 8\n"));
    gwt_resp_free(&r);
    gwt_stop(g.pid, g.log, 15);
}

TEST_TIMEOUT(gateway_redis_down_and_back, 60)
{
    struct gw g;
    const char *extra[] = {"--id", "gw-redis", NULL};
    gw_start(&g, extra);
    fake_worker(&g);
    syn_test_redis_stop(&g.redis);
    /* requests are refused with 503 while Redis is away, and the server keeps serving */
    double end = gwt_now() + 5;
    int st = 0;
    while (gwt_now() < end) {
        struct gwt_resp r = gwt_post(g.port, CHAT_PATH, "{\"model\":\"" MODEL "\"," MSGS "}",
                                     "X-Synapse-Deadline-Ms: 500\r\n");
        st = r.status;
        if (st == 503) CHECK_EQ_STR(gwt_check_error(&r, "redis down"), "queue_unavailable");
        gwt_resp_free(&r);
        if (st == 503) break;
        gwt_sleep_ms(50);
    }
    CHECK_EQ_INT(st, 503);
    struct gwt_resp r = gwt_request(g.port, "GET", "/readyz", "", NULL, 5000);
    CHECK_EQ_INT(r.status, 503);
    gwt_resp_free(&r);
    gwt_expect_healthy(g.port, "Redis going away");
    /* back: the gateway reconnects by itself, queues jobs and reads their events again */
    syn_test_redis_restart(&g.redis);
    gwt_wait_redis(g.port, 10);
    fake_worker(&g);
    char last[128] = "";
    replayed_job(&g, "gw-redis", 1, last);
    gwt_stop(g.pid, g.log, 15);
}

TEST(gateway_cli_usage)
{
    char *out = NULL;
    CHECK_EQ_INT(syn_test_sh(&out, "'%s' gateway --help", syn_test_bin()), 0);
    CHECK(strstr(out, "--max-queue") && strstr(out, "SYNAPSE_REDIS"));
    free(out);
    CHECK_EQ_INT(syn_test_sh(NULL, "'%s' gateway --model m 2>/dev/null", syn_test_bin()), 2);
    CHECK_EQ_INT(syn_test_sh(NULL, "'%s' gateway --redis x:1 2>/dev/null", syn_test_bin()), 2);
    CHECK_EQ_INT(syn_test_sh(NULL, "'%s' gateway --redis x:1 --model m --port 99999 2>/dev/null",
                             syn_test_bin()),
                 2);
    CHECK_EQ_INT(syn_test_sh(NULL, "'%s' gateway --redis x:1 --model 'a b' --port 0 2>/dev/null",
                             syn_test_bin()),
                 1);
    CHECK_EQ_INT(syn_test_sh(NULL,
                             "SYNAPSE_MAX_QUEUE=x '%s' gateway --redis x:1 --model m "
                             "2>/dev/null",
                             syn_test_bin()),
                 2);
    CHECK_EQ_INT(syn_test_sh(NULL, "'%s' gateway --redis bogus://x --model m --port 0 2>/dev/null",
                             syn_test_bin()),
                 1);
}

/* ---- embedded, with pool hooks (what `synapse up` does) ---- */

static atomic_int g_demand, g_can_serve;

static void hook_demand(void *ud, const char *model)
{
    (void)ud;
    if (!strcmp(model, MODEL)) atomic_fetch_add(&g_demand, 1);
}

static int hook_can_serve(void *ud, const char *model)
{
    (void)ud;
    return !strcmp(model, MODEL) && atomic_load(&g_can_serve);
}

static void *run_gateway(void *g)
{
    syn_gateway_run(g);
    return NULL;
}

TEST_TIMEOUT(gateway_embedded_pool_hooks, 60)
{
    struct syn_test_redis redis;
    syn_test_redis_start(&redis, 0);
    struct syn_gateway_params p = syn_gateway_default_params();
    const char *models[] = {MODEL, "other-model"};
    p.redis_url = redis.url;
    p.models = models;
    p.n_models = 2;
    p.port = 0;
    p.poll_interval_ms = 50;
    p.hooks.on_demand = hook_demand;
    p.hooks.can_serve = hook_can_serve;
    struct syn_gateway *g = NULL;
    char err[256];
    if (syn_gateway_new(&p, &g, err, sizeof err) != 0) FAIL("%s", err);
    int port = syn_gateway_port(g);
    CHECK(port > 0);
    CHECK(!strncmp(syn_gateway_id(g), "gw-", 3));
    pthread_t t;
    CHECK_EQ_INT(pthread_create(&t, NULL, run_gateway, g), 0);
    gwt_wait_redis(port, 10);
    const char *body = "{\"model\":\"" MODEL "\"," MSGS "}";
    /* the pool says it cannot serve: not ready, and 503 */
    struct gwt_resp r = gwt_request(port, "GET", "/readyz", "", NULL, 5000);
    CHECK_EQ_INT(r.status, 503);
    CHECK(strstr(r.body, "\"servable\":false"));
    gwt_resp_free(&r);
    r = gwt_post(port, CHAT_PATH, body, "");
    CHECK_EQ_INT(r.status, 503);
    CHECK_EQ_STR(gwt_check_error(&r, "pool cannot serve"), "no_capacity");
    gwt_resp_free(&r);
    CHECK_EQ_INT(atomic_load(&g_demand), 0);
    /* it can (a worker could be started): ready, and requests are queued, not refused, even
     * with no worker in the registry; on_demand hears of each; without a worker coming the
     * deadline ends it */
    atomic_store(&g_can_serve, 1);
    r = gwt_request(port, "GET", "/readyz", "", NULL, 5000);
    CHECK_EQ_INT(r.status, 200);
    CHECK(strstr(r.body, "\"" MODEL "\":{\"servable\":true"));
    CHECK(strstr(r.body, "\"other-model\":{\"servable\":false"));
    gwt_resp_free(&r);
    double t0 = gwt_now();
    r = gwt_post(port, CHAT_PATH, body, "X-Synapse-Deadline-Ms: 800\r\n");
    CHECK_EQ_INT(r.status, 504);
    CHECK(gwt_now() - t0 >= 0.75);
    gwt_resp_free(&r);
    CHECK_EQ_INT(atomic_load(&g_demand), 1);
    /* SIGTERM stops the gateway's own loop (its signal events) */
    kill(getpid(), SIGTERM);
    CHECK_EQ_INT(pthread_join(t, NULL), 0);
    syn_gateway_free(g);
}
