/*
 * The Prometheus text exposition (src/gateway/metrics.c) and the worker's metrics
 * (src/worker/metrics.c): numbers, escaping, cumulative histogram buckets, the process
 * collector, and the whole worker exposition through `promtool check metrics` (the linter
 * Prometheus ships) when it is installed.
 */
#include "harness.h"

#include "gateway/metrics.h"
#include "worker/metrics.h"

#include "synapse/queue.h"

#include <event2/buffer.h>
#include <math.h>

/* The buffer's text, NUL-terminated, malloc'ed. */
static char *text_of(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    evbuffer_copyout(b, s, n);
    s[n] = 0;
    return s;
}

/* Writes s to a file in the scratch directory and runs promtool check metrics on it. Returns
 * promtool's exit status (0 = no problems, no lint findings), or 77 when promtool is missing. */
static int promtool_check(const char *s, char **report)
{
    if (syn_test_sh(NULL, "command -v promtool >/dev/null") != 0) return 77;
    char path[600];
    snprintf(path, sizeof path, "%s/exposition.txt", syn_test_tmpdir());
    FILE *f = fopen(path, "w");
    CHECK(f);
    fputs(s, f);
    fclose(f);
    return syn_test_sh(report, "promtool check metrics < %s 2>&1", path);
}

TEST(metrics_numbers_in_text_format)
{
    char b[40];
    gw_metric_number(b, sizeof b, 0);
    CHECK_EQ_STR(b, "0");
    gw_metric_number(b, sizeof b, 42);
    CHECK_EQ_STR(b, "42");
    gw_metric_number(b, sizeof b, -3);
    CHECK_EQ_STR(b, "-3");
    gw_metric_number(b, sizeof b, 0.25);
    CHECK_EQ_STR(b, "0.25");
    gw_metric_number(b, sizeof b, 1e20);
    CHECK_EQ_STR(b, "1e+20");
    gw_metric_number(b, sizeof b, NAN);
    CHECK_EQ_STR(b, "NaN");
    gw_metric_number(b, sizeof b, INFINITY);
    CHECK_EQ_STR(b, "+Inf");
    gw_metric_number(b, sizeof b, -INFINITY);
    CHECK_EQ_STR(b, "-Inf");
    gw_metric_number(b, sizeof b, 18446744073709551615.0); /* large counters stay exact-ish */
    CHECK(strtod(b, NULL) == 18446744073709551615.0);
}

TEST(metrics_labels_escaped_and_headers)
{
    struct evbuffer *o = evbuffer_new();
    gw_metric_header(o, "synapse_test_total", "counter", "A test counter.");
    gw_metric_value(o, "synapse_test_total", "model", "a\"b\\c\nd", "status", "200", 7);
    gw_metric_value(o, "synapse_test_total", NULL, NULL, "status", "500", 1);
    gw_metric_value(o, "synapse_test_total", NULL, NULL, NULL, NULL, 3);
    char *s = text_of(o);
    CHECK_EQ_STR(s, "# HELP synapse_test_total A test counter.\n"
                    "# TYPE synapse_test_total counter\n"
                    "synapse_test_total{model=\"a\\\"b\\\\c\\nd\",status=\"200\"} 7\n"
                    "synapse_test_total{status=\"500\"} 1\n"
                    "synapse_test_total 3\n");
    free(s);
    evbuffer_free(o);
}

TEST(metrics_histogram_buckets_are_cumulative)
{
    struct gw_hist h;
    gw_hist_init(&h, GW_BUCKETS_COUNT_SEQ); /* 1 2 4 8 ... 512 */
    gw_hist_observe(&h, 1);                 /* le=1 (bounds are inclusive) */
    gw_hist_observe(&h, 3);                 /* le=4 */
    gw_hist_observe_n(&h, 16, 2);           /* le=16, twice */
    gw_hist_observe(&h, 1000);              /* +Inf only */
    gw_hist_observe(&h, NAN);               /* ignored */
    CHECK_EQ_INT(h.n, 5);
    CHECK_NEAR(h.sum, 1 + 3 + 32 + 1000, 1e-9);
    struct evbuffer *o = evbuffer_new();
    gw_metric_hist(o, "synapse_x", "model", "m", &h);
    char *s = text_of(o);
    CHECK(strstr(s, "synapse_x_bucket{model=\"m\",le=\"1\"} 1\n"));
    CHECK(strstr(s, "synapse_x_bucket{model=\"m\",le=\"2\"} 1\n"));
    CHECK(strstr(s, "synapse_x_bucket{model=\"m\",le=\"4\"} 2\n"));
    CHECK(strstr(s, "synapse_x_bucket{model=\"m\",le=\"16\"} 4\n"));
    CHECK(strstr(s, "synapse_x_bucket{model=\"m\",le=\"512\"} 4\n"));
    CHECK(strstr(s, "synapse_x_bucket{model=\"m\",le=\"+Inf\"} 5\n"));
    CHECK(strstr(s, "synapse_x_sum{model=\"m\"} 1036\n"));
    CHECK(strstr(s, "synapse_x_count{model=\"m\"} 5\n"));
    /* every bucket set is ascending and fits */
    for (int set = GW_BUCKETS_TTFT; set <= GW_BUCKETS_COUNT_TOK; set++) {
        gw_hist_init(&h, (enum gw_buckets)set);
        CHECK(h.n_bounds >= 8 && h.n_bounds <= GW_HIST_MAX_BUCKETS);
        for (int i = 1; i < h.n_bounds; i++) CHECK(h.bounds[i] > h.bounds[i - 1]);
    }
    /* LLM ranges: TTFT reaches a minute, end-to-end ten, inter-token starts at a millisecond */
    gw_hist_init(&h, GW_BUCKETS_TTFT);
    CHECK(h.bounds[h.n_bounds - 1] >= 60);
    gw_hist_init(&h, GW_BUCKETS_E2E);
    CHECK(h.bounds[h.n_bounds - 1] >= 600);
    gw_hist_init(&h, GW_BUCKETS_ITL);
    CHECK(h.bounds[0] <= 0.001);
    free(s);
    evbuffer_free(o);
}

TEST(metrics_process_collector_reads_proc_self)
{
    struct evbuffer *o = evbuffer_new();
    gw_metric_process(o);
    char *s = text_of(o);
    const char *names[] = {"\nprocess_cpu_seconds_total ", "\nprocess_resident_memory_bytes ",
                           "\nprocess_open_fds ", "\nprocess_max_fds ",
                           "\nprocess_start_time_seconds "};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char *p = strstr(s, names[i]);
        if (!p) FAIL("no %s in:\n%s", names[i], s);
        char *end;
        double v = strtod(p + strlen(names[i]), &end);
        CHECK(end > p + strlen(names[i]) && *end == '\n');
        CHECK(v >= 0);
    }
    double rss = strtod(strstr(s, "\nprocess_resident_memory_bytes ") + 31, NULL);
    CHECK(rss > 1e5); /* a process has at least a few hundred KiB resident */
    double start = strtod(strstr(s, "\nprocess_start_time_seconds ") + 28, NULL);
    double now = (double)syn_unix_ms() / 1000;
    CHECK(start <= now + 1 && start > now - 3600); /* this test process started just now */
    int rc = promtool_check(s, NULL);
    CHECK(rc == 0 || rc == 77);
    free(s);
    evbuffer_free(o);
}

TEST(metrics_worker_exposition_passes_promtool)
{
    struct wmetrics_params p = {.model = "tiny", .worker_id = "w1", .port = -1};
    struct wmetrics *m = NULL;
    char err[256];
    CHECK_EQ_INT(wmetrics_new(&p, &m, err, sizeof err), 0);
    CHECK_EQ_INT(wmetrics_port(m), -1);
    wmetrics_state(m, SYN_WORKER_READY, 16, 3, 2, 100, 128, 77);
    wmetrics_step(m, 3, 40, 0.004);
    wmetrics_step(m, 3, 3, 0.002);
    wmetrics_admitted(m, 0.5, 12);
    wmetrics_job_done(m, "stop");
    wmetrics_job_done(m, "requeued");
    wmetrics_job_done(m, "something else"); /* counted as an error */
    wmetrics_preempted(m);
    wmetrics_redis(m, 2, 1, 1);
    wmetrics_cold_start(m, 1.25);
    struct evbuffer *o = evbuffer_new();
    wmetrics_render(m, o);
    char *s = text_of(o);
    CHECK(strstr(s, "synapse_worker_state{model=\"tiny\",state=\"ready\"} 1\n"));
    CHECK(strstr(s, "synapse_worker_state{model=\"tiny\",state=\"draining\"} 0\n"));
    CHECK(strstr(s, "synapse_worker_sequences{model=\"tiny\",state=\"running\"} 3\n"));
    CHECK(strstr(s, "synapse_worker_sequences{model=\"tiny\",state=\"waiting\"} 2\n"));
    CHECK(strstr(s, "synapse_worker_kv_cache_blocks{model=\"tiny\",state=\"used\"} 28\n"));
    CHECK(strstr(s, "synapse_worker_kv_cache_blocks{model=\"tiny\",state=\"free\"} 100\n"));
    CHECK(strstr(s, "synapse_worker_steps_total{model=\"tiny\"} 2\n"));
    CHECK(strstr(s, "synapse_worker_step_sequences_count{model=\"tiny\"} 2\n"));
    CHECK(strstr(s, "synapse_worker_step_sequences_sum{model=\"tiny\"} 6\n"));
    CHECK(strstr(s, "synapse_worker_step_tokens_sum{model=\"tiny\"} 43\n"));
    CHECK(strstr(s, "synapse_worker_queue_wait_seconds_bucket{model=\"tiny\",le=\"0.5\"} 1\n"));
    CHECK(strstr(s, "synapse_worker_prompt_tokens_total{model=\"tiny\"} 12\n"));
    CHECK(strstr(s, "synapse_worker_generated_tokens_total{model=\"tiny\"} 77\n"));
    CHECK(strstr(s, "synapse_worker_jobs_total{model=\"tiny\",outcome=\"stop\"} 1\n"));
    CHECK(strstr(s, "synapse_worker_jobs_total{model=\"tiny\",outcome=\"requeued\"} 1\n"));
    CHECK(strstr(s, "synapse_worker_jobs_total{model=\"tiny\",outcome=\"error\"} 1\n"));
    CHECK(strstr(s, "synapse_worker_preemptions_total{model=\"tiny\"} 1\n"));
    CHECK(strstr(s, "synapse_worker_redis_errors_total{model=\"tiny\"} 2\n"));
    CHECK(strstr(s, "synapse_worker_cold_start_seconds{model=\"tiny\"} 1.25\n"));
    CHECK(strstr(s, "process_open_fds "));
    char *report = NULL;
    int rc = promtool_check(s, &report);
    if (rc != 0 && rc != 77) FAIL("promtool check metrics: %s", report ? report : "");
    if (rc == 77) fprintf(stderr, "  (promtool not installed: lint not run)\n");
    free(report);
    free(s);
    evbuffer_free(o);
    wmetrics_free(m, 1);
}

TEST(metrics_worker_rejects_bad_pushgateway_url)
{
    struct wmetrics_params p = {.model = "tiny",
                                .worker_id = "w1",
                                .port = -1,
                                .pushgateway = "localhost:9091",
                                .push_interval_s = 1};
    struct wmetrics *m = NULL;
    char err[256] = "";
    CHECK(wmetrics_new(&p, &m, err, sizeof err) != 0);
    CHECK(m == NULL);
    CHECK(strstr(err, "http://"));
}
