/* The load generator against the fake OpenAI server: every request accounted for, percentiles
 * in order, tokens counted from the stream, and errors counted by kind when the server answers
 * 429 or 500, closes without an answer or in the middle of a stream, is not there at all, or is
 * too slow. Also the two CLI commands end to end. Nothing here asserts on how fast anything is. */
#include "harness.h"

#include "bench/fake_server.h"
#include "bench/load.h"
#include "bench/trace.h"

#include <jansson.h>

static struct syn_fake_server *fake(const struct syn_fake_params *p)
{
    struct syn_fake_server *s = NULL;
    char err[256];
    if (syn_fake_start(p, &s, err, sizeof err)) FAIL("fake server: %s", err);
    return s;
}

/* n requests spread evenly over dur seconds. */
static struct syn_trace *even(size_t n, double dur, int prompt, int output)
{
    struct syn_trace *t = calloc(1, sizeof *t);
    t->reqs = calloc(n, sizeof *t->reqs);
    t->n = n;
    for (size_t i = 0; i < n; i++)
        t->reqs[i] = (struct syn_trace_req){dur * (double)i / (double)n, prompt, output};
    t->span_s = t->reqs[n - 1].t;
    return t;
}

static struct syn_load_report *run(const char *url, const struct syn_trace *t, double timeout)
{
    struct syn_load_params p = syn_load_default_params();
    p.url = url;
    p.trace = t;
    p.progress_s = 0;
    p.timeout_s = timeout;
    struct syn_load_report *r = NULL;
    char err[256];
    if (syn_load_run(&p, &r, err, sizeof err)) FAIL("load: %s", err);
    return r;
}

TEST(load_counts_tokens_and_orders_percentiles)
{
    struct syn_fake_params fp = syn_fake_default_params();
    fp.tokens = 6;
    fp.token_ms = 2; /* chunks spaced in time, so TPOT and ITL are not zero */
    struct syn_fake_server *s = fake(&fp);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", syn_fake_port(s));
    struct syn_trace *t = even(300, 1.0, 16, 64);
    struct syn_load_report *r = run(url, t, 30);
    CHECK_EQ_STR(r->model, "fake"); /* from GET /v1/models */
    CHECK_EQ_INT(r->n, 300);
    CHECK_EQ_INT(r->sent, 300);
    CHECK_EQ_INT(r->ok, 300);
    CHECK_EQ_INT(r->outcomes[SYN_LOAD_OK], 300);
    CHECK_EQ_INT(r->out_tokens, 300 * 6);
    CHECK_EQ_INT(syn_fake_requests(s), 301); /* and the model lookup */
    for (size_t i = 0; i < r->n; i++) {
        const struct syn_load_req *o = &r->reqs[i];
        CHECK_EQ_INT(o->tokens, 6);
        CHECK_EQ_INT(o->chunks, 6);
        CHECK_EQ_INT(o->status, 200);
        CHECK(o->ttft > 0 && o->ttft <= o->e2e);
        CHECK_NEAR(o->tpot, (o->e2e - o->ttft) / 5, 1e-9);
        /* zero when a loaded machine reads all six chunks in one go: only the median is held
         * to the server's spacing below */
        CHECK(o->tpot >= 0);
    }
    /* the server waits 2 ms between chunks: so does the median request (one request's first
     * chunk read late on a loaded machine brings its later ones closer) */
    CHECK(r->tpot.p50 >= 0.0015);
    const struct syn_load_dist *d[] = {&r->ttft, &r->tpot, &r->itl, &r->e2e};
    for (int k = 0; k < 4; k++) {
        CHECK(d[k]->p50 > 0);
        CHECK(d[k]->p50 <= d[k]->p90 && d[k]->p90 <= d[k]->p99 && d[k]->p99 <= d[k]->max);
    }
    CHECK_EQ_INT(r->ttft.n, 300);
    CHECK_EQ_INT(r->itl.n, 300 * 5);
    CHECK(r->good <= r->ok);
    CHECK(r->goodput <= r->rps + 1e-9);
    CHECK(r->attainment >= 0 && r->attainment <= 1);
    CHECK(r->tokens_per_s > r->rps);
    syn_load_report_free(r);
    syn_trace_free(t);
    syn_fake_stop(s);
}

TEST(load_leaves_the_warmup_out)
{
    struct syn_fake_params fp = syn_fake_default_params();
    fp.tokens = 6;
    struct syn_fake_server *s = fake(&fp);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", syn_fake_port(s));
    struct syn_trace *t = even(300, 1.0, 16, 64); /* offsets 0, 1/300, ... 299/300 s */
    struct syn_load_params p = syn_load_default_params();
    p.url = url;
    p.trace = t;
    p.progress_s = 0;
    p.warmup_s = 0.5; /* the first 150 */
    struct syn_load_report *r = NULL;
    char err[256];
    if (syn_load_run(&p, &r, err, sizeof err)) FAIL("load: %s", err);
    CHECK_EQ_INT(r->n, 300);
    CHECK_EQ_INT(r->n_warmup, 150);
    CHECK_EQ_INT(syn_fake_requests(s), 301); /* the warm-up's went out too */
    for (size_t i = 0; i < r->n; i++) CHECK_EQ_INT(r->reqs[i].outcome, SYN_LOAD_OK);
    /* every count and distribution is over the other 150 */
    CHECK_EQ_INT(r->sent, 150);
    CHECK_EQ_INT(r->ok, 150);
    CHECK_EQ_INT(r->outcomes[SYN_LOAD_OK], 150);
    CHECK_EQ_INT(r->out_tokens, 150 * 6);
    CHECK_EQ_INT(r->ttft.n, 150);
    CHECK_EQ_INT(r->tpot.n, 150);
    CHECK_EQ_INT(r->e2e.n, 150);
    CHECK_EQ_INT(r->itl.n, 150 * 5);
    CHECK(r->good <= 150);
    CHECK(r->attainment >= 0 && r->attainment <= 1);
    /* over the 0.497 s from the warm-up's end to the last arrival */
    CHECK_NEAR(r->offered_rps, 150 / (299.0 / 300 - 0.5), 1e-6);
    CHECK(r->wall_s > 0.45 && r->wall_s < 30);
    syn_load_report_free(r);
    syn_trace_free(t);
    syn_fake_stop(s);
}

TEST(load_counts_errors_by_kind)
{
    struct syn_fake_params fp = syn_fake_default_params();
    fp.every_500 = 7;
    fp.every_429 = 5;
    fp.every_cut = 3;
    struct syn_fake_server *s = fake(&fp);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", syn_fake_port(s));
    /* the model is given: the server's request numbers are then exactly ours */
    struct syn_trace *t = even(210, 0.5, 8, 8);
    struct syn_load_params p = syn_load_default_params();
    p.url = url;
    p.model = "m";
    p.trace = t;
    p.progress_s = 0;
    struct syn_load_report *r = NULL;
    char err[256];
    CHECK_EQ_INT(syn_load_run(&p, &r, err, sizeof err), 0);
    /* the fake's precedence: 500, then 429, then a cut stream */
    size_t e500 = 0, e429 = 0, cut = 0;
    for (int k = 1; k <= 210; k++) {
        if (k % 7 == 0)
            e500++;
        else if (k % 5 == 0)
            e429++;
        else if (k % 3 == 0)
            cut++;
    }
    CHECK_EQ_INT(r->outcomes[SYN_LOAD_HTTP], e500 + e429);
    CHECK_EQ_INT(r->n_http, 2);
    for (int j = 0; j < r->n_http; j++) {
        if (r->http_status[j] == 500)
            CHECK_EQ_INT(r->http_count[j], e500);
        else if (r->http_status[j] == 429)
            CHECK_EQ_INT(r->http_count[j], e429);
        else
            FAIL("unexpected status %d", r->http_status[j]);
    }
    CHECK_EQ_INT(r->outcomes[SYN_LOAD_CLOSED], cut);
    CHECK_EQ_INT(r->ok, 210 - e500 - e429 - cut);
    CHECK_EQ_INT(r->ttft.n, r->ok); /* latencies only over the requests that worked */
    CHECK(r->attainment <= (double)r->ok / 210 + 1e-12);
    syn_load_report_free(r);
    syn_trace_free(t);
    syn_fake_stop(s);
}

static struct syn_load_report *run_model(const char *url, const struct syn_trace *t)
{
    struct syn_load_params p = syn_load_default_params();
    p.url = url;
    p.model = "m";
    p.trace = t;
    p.progress_s = 0;
    struct syn_load_report *r = NULL;
    char err[256];
    if (syn_load_run(&p, &r, err, sizeof err)) FAIL("load: %s", err);
    return r;
}

TEST(load_counts_closes_without_an_answer)
{
    /* every 4th request: the connection closes with no response at all */
    struct syn_fake_params fp = syn_fake_default_params();
    fp.every_close = 4;
    fp.no_keepalive = 1; /* a fresh connection per request: a close is the server's doing */
    struct syn_fake_server *s = fake(&fp);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", syn_fake_port(s));
    struct syn_trace *t = even(100, 0.5, 8, 8);
    struct syn_load_report *r = run_model(url, t);
    CHECK_EQ_INT(r->outcomes[SYN_LOAD_CLOSED], 25);
    CHECK_EQ_INT(r->ok, 75);
    CHECK_EQ_INT(syn_fake_requests(s), 100);
    syn_load_report_free(r);
    syn_fake_stop(s);

    /* On a reused keep-alive connection a close before any byte of the answer is the race
     * every keep-alive client has (the server may have closed it idle just then): the request
     * is retried once on a fresh connection. Each close is then either retried (one more
     * request at the server) or counted, never lost. */
    fp.no_keepalive = 0;
    s = fake(&fp);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", syn_fake_port(s));
    r = run_model(url, t);
    uint64_t seen = syn_fake_requests(s), closes = seen / 4, retried = seen - 100;
    CHECK_EQ_INT(r->ok + r->outcomes[SYN_LOAD_CLOSED], 100);
    CHECK_EQ_INT(closes, retried + r->outcomes[SYN_LOAD_CLOSED]);
    syn_load_report_free(r);
    syn_trace_free(t);
    syn_fake_stop(s);
}

TEST(load_counts_refused_connections_and_timeouts)
{
    /* a port nobody listens on: take one from the fake server, then stop it */
    struct syn_fake_params fp = syn_fake_default_params();
    struct syn_fake_server *s = fake(&fp);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", syn_fake_port(s));
    syn_fake_stop(s);
    struct syn_trace *t = even(20, 0.2, 8, 8);
    struct syn_load_params p = syn_load_default_params();
    p.url = url;
    p.model = "m";
    p.trace = t;
    p.progress_s = 0;
    struct syn_load_report *r = NULL;
    char err[256];
    CHECK_EQ_INT(syn_load_run(&p, &r, err, sizeof err), 0);
    CHECK_EQ_INT(r->outcomes[SYN_LOAD_CONNECT], 20);
    CHECK_EQ_INT(r->ok, 0);
    CHECK_NEAR(r->goodput, 0, 0);
    syn_load_report_free(r);

    /* without --model the generator asks GET /v1/models first, and says so when it cannot */
    p.model = NULL;
    CHECK(syn_load_run(&p, &r, err, sizeof err) != 0);
    CHECK(strstr(err, "--model") != NULL);

    /* a server slower than the timeout */
    fp.first_ms = 3000;
    s = fake(&fp);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", syn_fake_port(s));
    p.model = "m";
    p.timeout_s = 0.3;
    CHECK_EQ_INT(syn_load_run(&p, &r, err, sizeof err), 0);
    CHECK_EQ_INT(r->outcomes[SYN_LOAD_TIMEOUT], 20);
    syn_load_report_free(r);
    syn_fake_stop(s);
    syn_trace_free(t);
}

TEST(bench_load_and_sim_commands)
{
    const char *bin = syn_test_bin();
    const char *dir = syn_test_tmpdir();
    char *out = NULL;
    /* the fake server as its own process, and the generator's JSON summary */
    int rc =
        syn_test_sh(&out,
                    "cd '%s' && ('%s' bench load --fake-server 0 2>fake.log & echo $! >fake.pid)"
                    " && for i in $(seq 50); do grep -q listening fake.log && break; sleep 0.1;"
                    " done && port=$(sed -n 's/.*127.0.0.1:\\([0-9]*\\).*/\\1/p' fake.log)"
                    " && '%s' bench load --url http://127.0.0.1:$port --rate 200 --duration 1"
                    " --warmup 0.5 --json out.json --csv out.csv -q >/dev/null 2>&1; st=$?;"
                    " kill $(cat fake.pid); echo $st",
                    dir, bin, bin);
    CHECK_EQ_INT(rc, 0);
    CHECK(out && atoi(out) == 0);
    free(out);
    char path[600];
    snprintf(path, sizeof path, "%s/out.json", dir);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    CHECK(j != NULL);
    json_int_t n = json_integer_value(json_object_get(j, "requests"));
    json_int_t n_warm = json_integer_value(json_object_get(j, "warmup_requests"));
    CHECK(n > 100);
    CHECK(n_warm > 40 && n_warm < n); /* 0.5 s of warm-up at 200/s, then 1 s counted */
    CHECK_NEAR(json_number_value(json_object_get(j, "warmup_s")), 0.5, 1e-9);
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "ok")), n);
    CHECK(json_number_value(json_object_get(json_object_get(j, "ttft"), "p99_ms")) > 0);
    json_decref(j);
    snprintf(path, sizeof path, "%s/out.csv", dir);
    size_t len = 0;
    char *csv = syn_test_read_file(path, &len);
    CHECK(csv && !strncmp(csv, "t_sched_s,", 10));
    size_t lines = 0;
    for (size_t i = 0; i < len; i++) lines += csv[i] == '\n';
    CHECK_EQ_INT(lines, n + n_warm + 1); /* rows for the warm-up's requests too */
    free(csv);

    /* the simulator: one row per policy, and JSON */
    rc = syn_test_sh(&out,
                     "'%s' bench sim --rate 4 --duration 120 --policy always-on:2"
                     " --policy scale-to-zero:10 --price-per-hour 2 --json -",
                     bin);
    CHECK_EQ_INT(rc, 0);
    j = json_loads(out, 0, &je);
    free(out);
    CHECK(j != NULL);
    json_t *pol = json_object_get(j, "policies");
    CHECK_EQ_INT(json_array_size(pol), 2);
    json_t *on = json_array_get(pol, 0);
    CHECK_NEAR(json_number_value(json_object_get(on, "worker_seconds")),
               2 * json_number_value(json_object_get(on, "end_s")), 1e-2);
    CHECK_NEAR(json_number_value(json_object_get(on, "cost")),
               json_number_value(json_object_get(on, "worker_seconds")) * 2 / 3600, 1e-5);
    json_decref(j);
    /* a bad policy is a usage error, not a crash */
    rc = syn_test_sh(NULL, "'%s' bench sim --rate 1 --policy sometimes 2>/dev/null", bin);
    CHECK_EQ_INT(rc, 1);
    rc = syn_test_sh(NULL, "'%s' bench load --rate 1 2>/dev/null", bin);
    CHECK_EQ_INT(rc, 2);
}
