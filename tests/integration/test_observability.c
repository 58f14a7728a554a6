/*
 * Observability against the real tools: the gateway's and a worker's /metrics pass
 * `promtool check metrics` and count what was sent; a worker's Pushgateway group appears and is
 * deleted when it exits cleanly; the rules pass `promtool check rules` and their unit tests; the
 * Grafana dashboards are well-formed; and `synapse up --observability` on stories260K, driven
 * with curl, gives a real Prometheus data for every recording rule and every dashboard query,
 * histogram counts equal to the requests sent, and the "waiting with no ready worker" alert
 * firing once the workers are killed and cannot be restarted.
 *
 * Skipped (with the reason) only when the Prometheus packages are not installed.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#define MODEL "stories260K"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *root(void)
{
    const char *r = getenv("SYNAPSE_ROOT");
    return r && *r ? r : ".";
}

static void need_tools(int stack)
{
    const char *tools[] = {"promtool", "prometheus", "prometheus-pushgateway",
                           "prometheus-redis-exporter"};
    for (int i = 0; i < (stack ? 4 : 1); i++)
        if (syn_test_sh(NULL, "command -v %s >/dev/null 2>&1", tools[i]) != 0)
            SKIP("%s is not installed (scripts/install-deps.sh installs it)", tools[i]);
}

/* A loopback port free now. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* Starts `sh -c "exec CMD"` in the background; returns its pid. */
static pid_t start_sh(const char *cmd)
{
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Waits for "PREFIX<number>" to appear in a file; returns the number. */
static int wait_number_after(const char *path, const char *prefix, double timeout_s)
{
    double t0 = now_s();
    while (now_s() - t0 < timeout_s) {
        char *s = syn_test_read_file(path, NULL);
        char *p = s ? strstr(s, prefix) : NULL;
        if (p) {
            int v = atoi(p + strlen(prefix));
            free(s);
            return v;
        }
        free(s);
        usleep(20000);
    }
    char *s = syn_test_read_file(path, NULL);
    FAIL("'%s' never appeared in %s:\n%s", prefix, path, s ? s : "");
}

/* Signals pid and waits for it; returns 1 when it exited with status 0 (under the sanitizers a
 * leak or an error at exit makes that fail). */
static int stop_pid(pid_t pid, int sig)
{
    kill(pid, sig);
    int st;
    double t0 = now_s();
    while (waitpid(pid, &st, WNOHANG) != pid) {
        if (now_s() - t0 > 30) FAIL("process %d did not stop within 30 s", (int)pid);
        usleep(20000);
    }
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* curl a URL into a file in the scratch directory; returns the file's path (static). */
static const char *fetch(const char *url, const char *name)
{
    static char path[600];
    snprintf(path, sizeof path, "%s/%s", syn_test_tmpdir(), name);
    CHECK_EQ_INT(syn_test_sh(NULL, "curl -sf -o %s '%s'", path, url), 0);
    return path;
}

static void promtool_metrics_ok(const char *path)
{
    char *out = NULL;
    int rc = syn_test_sh(&out, "promtool check metrics < %s 2>&1", path);
    if (rc != 0) FAIL("promtool check metrics %s:\n%s", path, out ? out : "");
    free(out);
}

/* The value of one series line "NAME{LABELS} V" (the exact prefix up to the space) in a file. */
static double series_value(const char *path, const char *series)
{
    char *s = syn_test_read_file(path, NULL);
    CHECK(s);
    char key[512];
    snprintf(key, sizeof key, "\n%s ", series);
    char *p = strstr(s, key);
    if (!p) FAIL("no series %s in %s", series, path);
    double v = strtod(p + strlen(key), NULL);
    free(s);
    return v;
}

static int complete(int port, int stream, int max_tokens, const char *seed)
{
    char *out = NULL;
    int rc =
        syn_test_sh(&out,
                    "curl -s -o /dev/null -w '%%{http_code}' http://127.0.0.1:%d/v1/completions "
                    "-H 'Content-Type: application/json' -d '{\"model\":\"" MODEL "\","
                    "\"prompt\":\"Once upon a time\",\"max_tokens\":%d,\"stream\":%s,"
                    "\"seed\":%s}'",
                    port, max_tokens, stream ? "true" : "false", seed);
    int code = rc == 0 && out ? atoi(out) : -1;
    free(out);
    return code;
}

/* ---- promtool on the gateway's and a worker's own /metrics ---- */

TEST_TIMEOUT(observability_gateway_and_worker_metrics_pass_promtool, 60)
{
    need_tools(0);
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    char cmd[2048], glog[600], wlog[600];
    snprintf(glog, sizeof glog, "%s/gateway.log", syn_test_tmpdir());
    snprintf(wlog, sizeof wlog, "%s/worker.log", syn_test_tmpdir());
    snprintf(cmd, sizeof cmd, "exec %s gateway --redis %s --model " MODEL " --port 0 >%s 2>&1",
             syn_test_bin(), r.url, glog);
    pid_t gw = start_sh(cmd);
    snprintf(cmd, sizeof cmd,
             "exec %s worker --model %s --redis %s --id wm1 --threads 1 --heartbeat-ms 100 "
             "--metrics-port 0 >%s 2>&1",
             syn_test_bin(), syn_test_shared("models/" MODEL ".gguf"), r.url, wlog);
    pid_t wk = start_sh(cmd);
    int gport = wait_number_after(glog, "listening on 127.0.0.1:", 10);
    int wport = wait_number_after(wlog, "metrics on http://127.0.0.1:", 10);
    /* the worker is registered when the gateway accepts requests for it */
    double t0 = now_s();
    while (syn_test_sh(NULL, "curl -sf http://127.0.0.1:%d/readyz >/dev/null", gport) != 0) {
        if (now_s() - t0 > 10) FAIL("the gateway never became ready");
        usleep(50000);
    }
    CHECK_EQ_INT(complete(gport, 0, 8, "1"), 200);
    CHECK_EQ_INT(complete(gport, 1, 8, "2"), 200);
    CHECK_EQ_INT(complete(gport, 1, 8, "3"), 200);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", gport);
    const char *gm = fetch(url, "gateway.prom");
    promtool_metrics_ok(gm);
    CHECK_EQ_INT(
        series_value(gm, "synapse_gateway_requests_total{model=\"" MODEL "\",status=\"200\"}"), 3);
    CHECK_EQ_INT(
        series_value(gm, "synapse_gateway_time_to_first_token_seconds_count{model=\"" MODEL "\"}"),
        3);
    CHECK_EQ_INT(
        series_value(gm, "synapse_gateway_request_duration_seconds_count{model=\"" MODEL "\"}"), 3);
    /* three requests of up to 8 tokens: the inter-token gaps are the tokens after each first */
    double itl =
        series_value(gm, "synapse_gateway_inter_token_latency_seconds_count{model=\"" MODEL "\"}");
    double toks = series_value(gm, "synapse_gateway_completion_tokens_total{model=\"" MODEL "\"}");
    CHECK(toks >= 3 && itl == toks - 3);
    CHECK(series_value(gm, "synapse_gateway_prompt_tokens_total{model=\"" MODEL "\"}") >= 3);
    CHECK(series_value(gm, "process_resident_memory_bytes") > 0);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", wport);
    const char *wm = fetch(url, "worker.prom");
    promtool_metrics_ok(wm);
    CHECK(series_value(wm, "synapse_worker_steps_total{model=\"" MODEL "\"}") >= 8);
    CHECK_EQ_INT(series_value(wm, "synapse_worker_generated_tokens_total{model=\"" MODEL "\"}"),
                 toks);
    CHECK_EQ_INT(series_value(wm, "synapse_worker_queue_wait_seconds_count{model=\"" MODEL "\"}"),
                 3);
    CHECK_EQ_INT(series_value(wm, "synapse_worker_state{model=\"" MODEL "\",state=\"ready\"}"), 1);
    CHECK_EQ_INT(series_value(wm, "synapse_worker_redis_up{model=\"" MODEL "\"}"), 1);
    CHECK(series_value(wm, "synapse_worker_kv_cache_blocks{model=\"" MODEL "\",state=\"free\"}") >
          0);
    /* a scrape while the worker is busy does not wait for a step, and other paths are 404 */
    CHECK_EQ_INT(syn_test_sh(NULL,
                             "curl -s -o /dev/null -w '%%{http_code}' "
                             "http://127.0.0.1:%d/nope | grep -qx 404",
                             wport),
                 0);
    CHECK(stop_pid(wk, SIGTERM));
    CHECK(stop_pid(gw, SIGTERM));
}

/* ---- the Pushgateway: a group per worker, deleted on a clean exit ---- */

TEST_TIMEOUT(observability_worker_pushes_and_deletes_its_group, 60)
{
    need_tools(1);
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    int pg_port = free_port();
    char cmd[2048], wlog[600], pglog[600];
    snprintf(pglog, sizeof pglog, "%s/pushgateway.log", syn_test_tmpdir());
    snprintf(cmd, sizeof cmd,
             "exec prometheus-pushgateway --web.listen-address=127.0.0.1:%d "
             "--persistence.file=%s/pg.data >%s 2>&1",
             pg_port, syn_test_tmpdir(), pglog);
    pid_t pg = start_sh(cmd);
    double t0 = now_s();
    while (syn_test_sh(NULL, "curl -sf http://127.0.0.1:%d/-/ready >/dev/null", pg_port) != 0) {
        if (now_s() - t0 > 10) FAIL("the Pushgateway did not start");
        usleep(50000);
    }
    snprintf(wlog, sizeof wlog, "%s/worker.log", syn_test_tmpdir());
    snprintf(cmd, sizeof cmd,
             "exec %s worker --model %s --redis %s --id wpush-1 --threads 1 "
             "--pushgateway http://127.0.0.1:%d/ --push-interval 0.2 >%s 2>&1",
             syn_test_bin(), syn_test_shared("models/" MODEL ".gguf"), r.url, pg_port, wlog);
    pid_t wk = start_sh(cmd);
    /* the group carries job, model and instance, and every series of the worker */
    const char *want =
        "synapse_worker_state{instance=\"wpush-1\",job=\"synapse-worker\",model=\"" MODEL
        "\",state=\"ready\"} 1";
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", pg_port);
    t0 = now_s();
    for (;;) {
        const char *path = fetch(url, "pg.prom");
        char *s = syn_test_read_file(path, NULL);
        int found = s && strstr(s, want);
        free(s);
        if (found) break;
        if (now_s() - t0 > 10) FAIL("the worker's group never reached the Pushgateway");
        usleep(100000);
    }
    promtool_metrics_ok(fetch(url, "pg.prom"));
    CHECK(stop_pid(wk, SIGTERM)); /* drains, pushes once more, deletes its group, exits 0 */
    const char *path = fetch(url, "pg-after.prom");
    char *s = syn_test_read_file(path, NULL);
    CHECK(s && !strstr(s, "instance=\"wpush-1\""));
    free(s);
    stop_pid(pg, SIGTERM);
}

/* ---- rules and dashboards, offline ---- */

TEST(observability_rules_pass_promtool_and_their_tests)
{
    need_tools(0);
    char *out = NULL;
    int rc = syn_test_sh(&out,
                         "cd %s/deploy/prometheus && promtool check config prometheus.yml 2>&1 && "
                         "promtool check rules rules/*.yml 2>&1 && "
                         "promtool test rules tests/*.yml 2>&1",
                         root());
    if (rc != 0) FAIL("promtool:\n%s", out ? out : "");
    CHECK(strstr(out, "SUCCESS"));
    free(out);
    /* the unit tests can fail: a rule file with a broken alert threshold is caught */
    char dir[600];
    snprintf(dir, sizeof dir, "%s/broken", syn_test_tmpdir());
    rc = syn_test_sh(&out,
                     "mkdir -p %s/rules %s/tests && cp %s/deploy/prometheus/tests/*.yml %s/tests/ "
                     "&& cp %s/deploy/prometheus/rules/*.yml %s/rules/ && "
                     "sed -i 's/> 0.05$/> 0.5/' %s/rules/synapse-alerts.yml && "
                     "cd %s && promtool test rules tests/*.yml 2>&1",
                     dir, dir, root(), dir, root(), dir, dir, dir);
    CHECK(rc != 0);
    CHECK(strstr(out, "SynapseHighErrorRatio"));
    free(out);
}

/* Every dashboard file: valid JSON, a unique uid, panels with unique ids, a grid position inside
 * the 24 columns, the provisioned datasource, and targets with a query. Returns the number of
 * queries, and appends each (with its panel's title) to q. */
static int load_dashboards(json_t *q)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/deploy/grafana/dashboards", root());
    DIR *d = opendir(dir);
    CHECK(d);
    json_t *uids = json_object();
    int files = 0, queries = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 5, ".json") != 0) continue;
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        json_error_t je;
        json_t *dash = json_load_file(path, 0, &je);
        if (!dash) FAIL("%s: not JSON: %s (line %d)", e->d_name, je.text, je.line);
        files++;
        const char *uid = json_string_value(json_object_get(dash, "uid"));
        if (!uid || !*uid) FAIL("%s: no uid", e->d_name);
        if (json_object_get(uids, uid)) FAIL("%s: uid %s is used twice", e->d_name, uid);
        json_object_set_new(uids, uid, json_true());
        CHECK(json_string_value(json_object_get(dash, "title")));
        json_t *panels = json_object_get(dash, "panels");
        if (!json_is_array(panels) || json_array_size(panels) == 0)
            FAIL("%s: no panels", e->d_name);
        json_t *ids = json_object();
        size_t i;
        json_t *p;
        json_array_foreach(panels, i, p)
        {
            const char *title = json_string_value(json_object_get(p, "title"));
            const char *type = json_string_value(json_object_get(p, "type"));
            json_t *id = json_object_get(p, "id");
            if (!title || !type || !json_is_integer(id))
                FAIL("%s: panel %zu lacks a title, type or integer id", e->d_name, i);
            char key[32];
            snprintf(key, sizeof key, "%lld", (long long)json_integer_value(id));
            if (json_object_get(ids, key)) FAIL("%s: panel id %s is used twice", e->d_name, key);
            json_object_set_new(ids, key, json_true());
            json_t *gp = json_object_get(p, "gridPos");
            json_int_t h = json_integer_value(json_object_get(gp, "h"));
            json_int_t w = json_integer_value(json_object_get(gp, "w"));
            json_int_t x = json_integer_value(json_object_get(gp, "x"));
            json_t *y = json_object_get(gp, "y");
            if (!json_is_integer(y) || h <= 0 || w <= 0 || x < 0 || x + w > 24)
                FAIL("%s: panel '%s' has a bad gridPos", e->d_name, title);
            if (!strcmp(type, "row")) continue;
            const char *ds =
                json_string_value(json_object_get(json_object_get(p, "datasource"), "uid"));
            if (!ds || strcmp(ds, "synapse-prometheus") != 0)
                FAIL("%s: panel '%s' does not use the synapse-prometheus datasource", e->d_name,
                     title);
            json_t *targets = json_object_get(p, "targets");
            if (!json_is_array(targets) || json_array_size(targets) == 0)
                FAIL("%s: panel '%s' has no targets", e->d_name, title);
            size_t k;
            json_t *t;
            json_array_foreach(targets, k, t)
            {
                const char *expr = json_string_value(json_object_get(t, "expr"));
                if (!expr || !*expr || !json_string_value(json_object_get(t, "refId")))
                    FAIL("%s: panel '%s' target %zu lacks expr or refId", e->d_name, title, k);
                json_array_append_new(
                    q, json_pack("{s:s,s:s,s:s}", "file", e->d_name, "panel", title, "expr", expr));
                queries++;
            }
        }
        json_decref(ids);
        json_decref(dash);
    }
    closedir(d);
    json_decref(uids);
    CHECK(files >= 2);
    return queries;
}

TEST(observability_grafana_dashboards_are_well_formed)
{
    json_t *q = json_array();
    int n = load_dashboards(q);
    CHECK(n >= 30);
    json_decref(q);
    /* provisioning: the datasource with the uid the panels use, and a file provider */
    char *ds = NULL, *prov = NULL;
    char path[600];
    snprintf(path, sizeof path, "%s/deploy/grafana/provisioning/datasources/prometheus.yml",
             root());
    ds = syn_test_read_file(path, NULL);
    snprintf(path, sizeof path, "%s/deploy/grafana/provisioning/dashboards/synapse.yml", root());
    prov = syn_test_read_file(path, NULL);
    CHECK(ds && strstr(ds, "uid: synapse-prometheus") && strstr(ds, "type: prometheus"));
    CHECK(prov && strstr(prov, "type: file") && strstr(prov, "path:"));
    free(ds);
    free(prov);
}

/* ---- the whole stack ---- */

/* Runs an instant query; returns the result array (new reference) or NULL on an API error, with
 * the error in *why. */
static json_t *prom_query(int port, const char *expr, char **why)
{
    char qf[600];
    snprintf(qf, sizeof qf, "%s/query.txt", syn_test_tmpdir());
    FILE *f = fopen(qf, "w");
    CHECK(f);
    fputs(expr, f);
    fclose(f);
    char *out = NULL;
    int rc = syn_test_sh(&out, "curl -s http://127.0.0.1:%d/api/v1/query --data-urlencode query@%s",
                         port, qf);
    json_t *root_ = rc == 0 && out ? json_loads(out, 0, NULL) : NULL;
    json_t *res = NULL;
    const char *status = json_string_value(json_object_get(root_, "status"));
    if (status && !strcmp(status, "success")) {
        res = json_object_get(json_object_get(root_, "data"), "result");
        if (json_is_array(res))
            json_incref(res);
        else
            res = json_array(); /* a scalar result: one value */
    } else if (why) {
        *why = strdup(out ? out : "no answer");
    }
    json_decref(root_);
    free(out);
    return res;
}

/* The sum of every sample of a query (0 when empty). */
static double prom_sum(int port, const char *expr)
{
    json_t *res = prom_query(port, expr, NULL);
    double s = 0;
    size_t i;
    json_t *v;
    json_array_foreach(res, i, v) s +=
        atof(json_string_value(json_array_get(json_object_get(v, "value"), 1)));
    json_decref(res);
    return s;
}

/* Grafana's variables as the dashboards use them. */
static char *grafana_expand(const char *expr)
{
    static const char *from[] = {"$__rate_interval", "$model"};
    static const char *to[] = {"1m", ".*"};
    char *s = strdup(expr);
    for (int k = 0; k < 2; k++) {
        char *p;
        while ((p = strstr(s, from[k]))) {
            size_t a = (size_t)(p - s), fl = strlen(from[k]), tl = strlen(to[k]);
            char *n = malloc(strlen(s) - fl + tl + 1);
            memcpy(n, s, a);
            memcpy(n + a, to[k], tl);
            strcpy(n + a + tl, p + fl);
            free(s);
            s = n;
        }
    }
    return s;
}

/* Child processes of parent whose command line contains " worker " (the pool's workers). */
static int worker_pids(pid_t parent, pid_t *out, int cap)
{
    int n = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d)) && n < cap) {
        int pid = atoi(e->d_name);
        if (pid <= 0) continue;
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
        char *st = syn_test_read_file(path, NULL);
        if (!st) continue;
        char *rp = strrchr(st, ')');
        int ppid = 0;
        char state = 0;
        if (rp) sscanf(rp + 2, "%c %d", &state, &ppid);
        free(st);
        if (ppid != parent || state == 'Z') continue;
        snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
        size_t len = 0;
        char *cl = syn_test_read_file(path, &len);
        if (cl) {
            for (size_t i = 0; i + 1 < len; i++)
                if (!cl[i]) cl[i] = ' ';
            if (strstr(cl, " worker ")) out[n++] = pid;
            free(cl);
        }
    }
    if (d) closedir(d);
    return n;
}

TEST_TIMEOUT(observability_up_stack_feeds_prometheus_rules_dashboards_and_alerts, 150)
{
    need_tools(1);
    double t_start = now_s();
    const char *tmp = syn_test_tmpdir();
    /* the rules as shipped, with every `for:` cut to 0 s so that an alert fires in seconds
     * (the unit tests hold the real durations) */
    CHECK_EQ_INT(syn_test_sh(NULL,
                             "mkdir -p %s/rules && cp %s/deploy/prometheus/rules/*.yml %s/rules/ "
                             "&& sed -i 's/^\\( *\\)for: .*/\\1for: 0s/' %s/rules/*.yml && "
                             "cp %s %s/model.gguf",
                             tmp, root(), tmp, tmp, syn_test_shared("models/" MODEL ".gguf"), tmp),
                 0);
    char out[600], cmd[2048];
    snprintf(out, sizeof out, "%s/up.out", tmp);
    snprintf(cmd, sizeof cmd,
             "TMPDIR=%s exec %s up --model %s/model.gguf --name " MODEL " --port 0 "
             "--min-warm 1 --max-workers 1 --worker-threads 1 --observability "
             "--scrape-interval 1 --rules-dir %s/rules >%s 2>&1",
             tmp, syn_test_bin(), tmp, tmp, out);
    pid_t up = start_sh(cmd);
    int prom = wait_number_after(out, "Prometheus:     http://127.0.0.1:", 60);
    int port = wait_number_after(out, "at http://127.0.0.1:", 1);
    int pgw = wait_number_after(out, "Pushgateway:    http://127.0.0.1:", 1);
    CHECK(prom > 0 && port > 0 && pgw > 0);
    fprintf(stderr, "  stack up in %.1f s\n", now_s() - t_start);

    /* traffic: N requests, streamed and not, once the warm worker is ready */
    double t0 = now_s();
    while (syn_test_sh(NULL, "curl -s http://127.0.0.1:%d/readyz | grep -q '\"ready_workers\":1'",
                       port) != 0) {
        if (now_s() - t0 > 20) FAIL("no worker became ready");
        usleep(50000);
    }
    enum { N = 6 };
    for (int i = 0; i < N; i++) {
        char seed[16];
        snprintf(seed, sizeof seed, "%d", i + 1);
        CHECK_EQ_INT(complete(port, i % 2, 12, seed), 200);
    }
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", port);
    promtool_metrics_ok(fetch(url, "up.prom")); /* the gateway's families and the pool's */

    /* Prometheus has the counts once it scraped the gateway after the requests */
    const char *counts[] = {
        "sum(synapse_gateway_time_to_first_token_seconds_count)",
        "sum(synapse_gateway_request_duration_seconds_count)",
        "sum(synapse_gateway_requests_total{status=\"200\"})",
        "sum(synapse_worker_queue_wait_seconds_count)",
        "sum(synapse_worker_jobs_total{outcome=~\"stop|length\"})",
    };
    t0 = now_s();
    for (;;) {
        int ok = 1;
        for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++)
            ok &= prom_sum(prom, counts[i]) == N;
        if (ok) break;
        if (now_s() - t0 > 20) {
            for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++)
                fprintf(stderr, "  %s = %g\n", counts[i], prom_sum(prom, counts[i]));
            FAIL("Prometheus never saw the %d requests in every histogram and counter", N);
        }
        usleep(200000);
    }
    fprintf(stderr, "  counts scraped after %.1f s\n", now_s() - t_start);

    /* every recording rule (from Prometheus's own list) and every dashboard query: no error,
     * and data, polled while the rate windows fill */
    json_t *queries = json_array();
    load_dashboards(queries);
    {
        char *rules = NULL;
        CHECK_EQ_INT(syn_test_sh(&rules, "curl -s http://127.0.0.1:%d/api/v1/rules", prom), 0);
        json_t *r = json_loads(rules, 0, NULL);
        free(rules);
        json_t *groups = json_object_get(json_object_get(r, "data"), "groups");
        size_t gi, ri;
        json_t *g, *rule;
        int n_record = 0, n_alert = 0;
        json_array_foreach(groups, gi, g) json_array_foreach(json_object_get(g, "rules"), ri, rule)
        {
            const char *type = json_string_value(json_object_get(rule, "type"));
            const char *name = json_string_value(json_object_get(rule, "name"));
            const char *health = json_string_value(json_object_get(rule, "health"));
            if (health && !strcmp(health, "err"))
                FAIL("rule %s: %s", name, json_string_value(json_object_get(rule, "lastError")));
            if (type && !strcmp(type, "recording")) {
                n_record++;
                json_array_append_new(queries, json_pack("{s:s,s:s,s:s}", "file", "rules", "panel",
                                                         name, "expr", name));
            } else {
                n_alert++;
            }
        }
        json_decref(r);
        CHECK(n_record >= 20 && n_alert >= 6);
    }
    size_t n_q = json_array_size(queries);
    int *done = calloc(n_q, sizeof *done);
    t0 = now_s();
    for (;;) {
        size_t left = 0, i;
        json_t *qq;
        json_array_foreach(queries, i, qq)
        {
            if (done[i]) continue;
            char *expr = grafana_expand(json_string_value(json_object_get(qq, "expr")));
            char *why = NULL;
            json_t *res = prom_query(prom, expr, &why);
            if (!res)
                FAIL("%s / %s: the query failed:\n  %s\n  %s",
                     json_string_value(json_object_get(qq, "file")),
                     json_string_value(json_object_get(qq, "panel")), expr, why);
            done[i] = json_array_size(res) > 0;
            left += !done[i];
            json_decref(res);
            free(expr);
        }
        if (!left) break;
        if (now_s() - t0 > 25) {
            json_array_foreach(queries, i, qq) if (!done[i]) fprintf(
                stderr, "  no data: %s / %s: %s\n", json_string_value(json_object_get(qq, "file")),
                json_string_value(json_object_get(qq, "panel")),
                json_string_value(json_object_get(qq, "expr")));
            FAIL("%zu of %zu queries returned no data", left, n_q);
        }
        usleep(500000);
    }
    fprintf(stderr, "  %zu dashboard and recording-rule queries return data after %.1f s\n", n_q,
            now_s() - t_start);
    free(done);
    json_decref(queries);

    /* no worker can start any more (the model is gone) and the running one dies: a request
     * waits with no ready worker, and the alert for it fires */
    CHECK_EQ_INT(prom_sum(prom, "count(ALERTS{alertname=\"SynapseRequestsWaitingNoWorker\"})"), 0);
    CHECK_EQ_INT(syn_test_sh(NULL, "rm %s/model.gguf", tmp), 0);
    pid_t w[8];
    int nw = worker_pids(up, w, 8);
    CHECK(nw >= 1);
    for (int i = 0; i < nw; i++) kill(w[i], SIGKILL);
    char *pid_s = NULL;
    CHECK_EQ_INT(syn_test_sh(&pid_s,
                             "curl -s -o /dev/null -m 60 -H 'X-Synapse-Deadline-Ms: 50000' "
                             "http://127.0.0.1:%d/v1/completions -d '{\"model\":\"" MODEL
                             "\",\"prompt\":\"Once\",\"max_tokens\":4}' >/dev/null 2>&1 & echo $!",
                             port),
                 0);
    pid_t waiting = (pid_t)atoi(pid_s);
    free(pid_s);
    t0 = now_s();
    while (prom_sum(prom, "count(ALERTS{alertname=\"SynapseRequestsWaitingNoWorker\","
                          "alertstate=\"firing\",model=\"" MODEL "\"})") != 1) {
        if (now_s() - t0 > 30) {
            fprintf(stderr, "  queue depth %g, ready workers %g\n",
                    prom_sum(prom, "max(synapse_gateway_queue_depth)"),
                    prom_sum(prom, "max(synapse_gateway_workers_ready)"));
            FAIL("SynapseRequestsWaitingNoWorker did not fire");
        }
        usleep(200000);
    }
    fprintf(stderr, "  the alert fired %.1f s after the workers were killed\n", now_s() - t0);
    /* the failed starts are counted as crashed exits */
    CHECK(prom_sum(prom, "sum(synapse_pool_worker_exits_total{outcome=\"crashed\"})") >= 1 ||
          prom_sum(prom, "sum(synapse_pool_cold_starts_total)") >= 2);
    if (waiting > 0) kill(waiting, SIGKILL);

    /* Ctrl-C stops every process of the stack, Prometheus and its exporters included */
    CHECK(stop_pid(up, SIGINT));
    CHECK_EQ_INT(
        syn_test_sh(NULL, "curl -s -m 1 http://127.0.0.1:%d/-/ready >/dev/null", prom) != 0, 1);
    CHECK_EQ_INT(syn_test_sh(NULL, "curl -s -m 1 http://127.0.0.1:%d/-/ready >/dev/null", pgw) != 0,
                 1);
    fprintf(stderr, "  total %.1f s\n", now_s() - t_start);
}
