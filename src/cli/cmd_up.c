/*
 * `synapse up`: the whole stack on one machine. A private redis-server (unix socket in a
 * temporary directory) unless --redis names one, the gateway on the port, and a local worker
 * pool for the model driven by the autoscaler: min_warm workers always up, more when the backlog
 * needs them, the extra ones gone after --idle-timeout (scale to zero). Ctrl-C or SIGTERM stops
 * everything it started (workers drain first) and removes the temporary directory. With
 * --observability it also runs Prometheus, a Pushgateway the workers push to, and
 * redis_exporter (up_observe.h); the pool's metrics join the gateway's /metrics.
 */
#include "cli.h"
#include "up_observe.h"

#include "synapse/chat.h"
#include "synapse/error.h"
#include "synapse/gguf.h"
#include "synapse/gateway.h"
#include "synapse/log.h"
#include "synapse/queue.h"
#include "synapse/workpool.h"
#include "common/proc.h"
#include "gateway/metrics.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LOG "up"

static void usage(FILE *f)
{
    fprintf(
        f,
        "Usage: synapse up [--model PATH] [--port N] [--redis URL] [options]\n\n"
        "Starts the whole stack: a private redis-server (unless --redis is given), the\n"
        "OpenAI-compatible gateway, and an autoscaled pool of local workers for the model.\n"
        "Prints the URL and a curl example. Ctrl-C or SIGTERM stops every process it started.\n\n"
        "Options (each also from SYNAPSE_<NAME> in the environment, e.g. SYNAPSE_MAX_WORKERS,\n"
        "or from a config file of 'name = value' lines; flags win over the environment, which\n"
        "wins over the file):\n"
        "  -m, --model PATH         GGUF file or HF directory\n"
        "                           (default ../shared/models/stories260K.gguf)\n"
        "      --name NAME          the model's name in requests (default: file name)\n"
        "  -p, --port N             gateway port (default 8080; 0 = any free port)\n"
        "      --host ADDR          bind address (default 127.0.0.1)\n"
        "      --redis URL          use this Redis instead of a private one\n"
        "      --backend NAME       where workers run: local (default: child processes),\n"
        "                           external (started by someone else, e.g. KEDA), lambda or\n"
        "                           asg (AWS; configured from the environment, see\n"
        "                           docs/deploy-aws.md)\n"
        "      --min-warm N         workers always up (default 1; 0 = scale to zero)\n"
        "      --max-workers N      at most this many workers (default 2)\n"
        "      --idle-timeout S     extra workers exit after S idle seconds (default 30);\n"
        "                           one the load no longer needs for S s is drained\n"
        "      --max-seqs N         sequences batched per worker (default 16)\n"
        "      --worker-threads N   engine threads per worker (default: all CPUs)\n"
        "      --max-queue N        waiting requests per model before 429 (default 256)\n"
        "      --api-keys FILE      require one of these Bearer keys (one per line)\n"
        "      --chat-template NAME use this chat template (for models without one; the\n"
        "                           names: synapse generate --help)\n"
        "      --price-per-hour D   $ per worker-hour, for cost accounting (default 0)\n"
        "      --log-dir DIR        worker logs (default: the temporary directory)\n"
        "      --observability      also run prometheus, prometheus-pushgateway (the workers\n"
        "                           push to it) and prometheus-redis-exporter on loopback,\n"
        "                           with deploy/prometheus's rules; prints their URLs\n"
        "      --scrape-interval S  their scrape, push and rule interval (default 5)\n"
        "      --rules-dir DIR      Prometheus rule files (default: deploy/prometheus/rules\n"
        "                           next to the binary or in the working directory)\n"
        "      --config FILE        read settings from FILE\n"
        "  -h, --help               show this help\n");
}

/* Starts redis-server in dir; returns its pid or -1. */
static pid_t start_redis(const char *dir, char *url, size_t cap)
{
    char sock[600], logf[600];
    snprintf(sock, sizeof sock, "%s/redis.sock", dir);
    snprintf(logf, sizeof logf, "%s/redis.log", dir);
    snprintf(url, cap, "unix://%s", sock);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) _exit(1);
        setpgid(0, 0); /* Ctrl-C goes to us; we stop redis last, after the workers drained */
        syn_close_inherited_fds();
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", sock,
               "--unixsocketperm", "700", "--dir", dir, "--save", "", "--appendonly", "yes",
               "--logfile", logf, (char *)NULL);
        _exit(127);
    }
    struct syn_qclient *q = NULL;
    char err[256];
    for (int i = 0; i < 500; i++) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) return -1;
        if (access(sock, F_OK) == 0 && syn_qclient_new(url, &q, err, sizeof err) == 0) {
            syn_qclient_free(q);
            return pid;
        }
        syn_qclient_free(q);
        q = NULL;
        struct timespec nap = {0, 10 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

static void rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char sub[4096];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            rm_rf(sub);
        }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* Whether the model carries a chat template (GGUF metadata; HF directories are assumed to). */
static int has_chat_template(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return 1;
    struct syn_gguf *g = NULL;
    char err[128];
    if (syn_gguf_open(path, &g, err, sizeof err) != 0) return 0;
    const char *s;
    size_t len;
    int yes = syn_gguf_get_str(g, "tokenizer.chat_template", &s, &len) == 0 && len > 0;
    syn_gguf_free(g);
    return yes;
}

/* What the gateway's pool hooks need. */
struct up_hooks {
    struct syn_workpool *pool;
    const char *model;
    const char *backend; /* the pool backend, the cost's label */
    double price;        /* $ per worker-hour */
};

static void hook_demand(void *ud, const char *model)
{
    (void)model;
    struct up_hooks *h = ud;
    syn_workpool_poke(h->pool);
}

static int hook_can_serve(void *ud, const char *model)
{
    (void)model;
    struct up_hooks *h = ud;
    return syn_workpool_can_serve(h->pool);
}

/* snprintf that appends at *len and keeps counting past cap (the hook's contract). */
static void put(char *buf, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void put(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(*len < cap ? buf + *len : NULL, *len < cap ? cap - *len : 0, fmt, ap);
    va_end(ap);
    if (n > 0) *len += (size_t)n;
}

/* The pool's families on the gateway's /metrics (docs/metrics.md). Model names are
 * [A-Za-z0-9._-]: nothing to escape. */
static size_t hook_metrics(void *ud, char *buf, size_t cap)
{
    struct up_hooks *h = ud;
    struct syn_workpool_stats st;
    syn_workpool_stats(h->pool, &st);
    const char *m = h->model, *b = h->backend;
    size_t n = 0;
#define HEAD(NAME_, TYPE_, HELP_)                                                                  \
    put(buf, cap, &n, "# HELP " NAME_ " " HELP_ "\n# TYPE " NAME_ " " TYPE_ "\n")
    HEAD("synapse_pool_workers", "gauge",
         "Workers of the pool by state: starting (started, not registered yet) or ready.");
    put(buf, cap, &n, "synapse_pool_workers{model=\"%s\",state=\"starting\"} %d\n", m, st.starting);
    put(buf, cap, &n, "synapse_pool_workers{model=\"%s\",state=\"ready\"} %d\n", m, st.ready);
    HEAD("synapse_pool_processes", "gauge", "Local worker processes alive (any state).");
    put(buf, cap, &n, "synapse_pool_processes{model=\"%s\"} %d\n", m, st.children);
    HEAD("synapse_pool_cold_starts_total", "counter",
         "Workers the pool started (each one a cold start).");
    put(buf, cap, &n, "synapse_pool_cold_starts_total{model=\"%s\"} %llu\n", m,
        (unsigned long long)st.started_total);
    HEAD("synapse_pool_last_cold_start_seconds", "gauge",
         "From starting the most recent worker to seeing it registered.");
    put(buf, cap, &n, "synapse_pool_last_cold_start_seconds{model=\"%s\"} %.6f\n", m,
        st.last_cold_start_s);
    HEAD("synapse_pool_cold_start_seconds", "histogram",
         "From starting a local worker to seeing it registered, every start.");
    uint64_t cum = 0;
    for (int i = 0; i <= SYN_COLD_START_BUCKETS; i++) {
        cum += st.cold_start_counts[i];
        char le[40];
        gw_metric_number(le, sizeof le,
                         i < SYN_COLD_START_BUCKETS ? syn_cold_start_bounds[i] : INFINITY);
        put(buf, cap, &n, "synapse_pool_cold_start_seconds_bucket{model=\"%s\",le=\"%s\"} %llu\n",
            m, le, (unsigned long long)cum);
    }
    put(buf, cap, &n, "synapse_pool_cold_start_seconds_sum{model=\"%s\"} %.6f\n", m,
        st.cold_start_sum_s);
    put(buf, cap, &n, "synapse_pool_cold_start_seconds_count{model=\"%s\"} %llu\n", m,
        (unsigned long long)st.cold_starts_seen);
    HEAD("synapse_pool_worker_exits_total", "counter",
         "Local workers that exited: clean (exit 0) or crashed.");
    put(buf, cap, &n, "synapse_pool_worker_exits_total{model=\"%s\",outcome=\"clean\"} %llu\n", m,
        (unsigned long long)(st.exited_total - st.crashed_total));
    put(buf, cap, &n, "synapse_pool_worker_exits_total{model=\"%s\",outcome=\"crashed\"} %llu\n", m,
        (unsigned long long)st.crashed_total);
    HEAD("synapse_pool_scaling_decisions_total", "counter",
         "Workers started by the autoscaler, by the reason it gave.");
    for (int r = 0; r < (int)(sizeof st.decisions / sizeof st.decisions[0]); r++)
        put(buf, cap, &n, "synapse_pool_scaling_decisions_total{model=\"%s\",reason=\"%s\"} %llu\n",
            m, syn_scale_reason_name(r), (unsigned long long)st.decisions[r]);
    HEAD("synapse_pool_workers_drained_total", "counter",
         "Workers the pool drained (SIGTERM) because it had more than the load needed.");
    put(buf, cap, &n, "synapse_pool_workers_drained_total{model=\"%s\"} %llu\n", m,
        (unsigned long long)st.drained_total);
    HEAD("synapse_pool_worker_seconds_total", "counter",
         "Seconds of worker time used (each live worker process counts one per second).");
    put(buf, cap, &n, "synapse_pool_worker_seconds_total{backend=\"%s\",model=\"%s\"} %.6f\n", b, m,
        st.worker_seconds);
    HEAD("synapse_pool_cost_dollars_total", "counter",
         "Estimated cost of the worker time: worker-seconds times the price per worker-hour.");
    put(buf, cap, &n, "synapse_pool_cost_dollars_total{backend=\"%s\",model=\"%s\"} %.9f\n", b, m,
        st.cost_dollars);
    HEAD("synapse_pool_worker_price_dollars_per_hour", "gauge",
         "The configured price of one worker-hour.");
    put(buf, cap, &n,
        "synapse_pool_worker_price_dollars_per_hour{backend=\"%s\",model=\"%s\"} %g\n", b, m,
        h->price);
    HEAD("synapse_pool_redis_up", "gauge", "1 when the pool's last tick reached Redis.");
    put(buf, cap, &n, "synapse_pool_redis_up{model=\"%s\"} %d\n", m, st.redis_ok);
#undef HEAD
    return n;
}

static void model_name(const char *path, char *out, size_t cap)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    size_t l = strlen(tmp);
    while (l > 1 && tmp[l - 1] == '/') tmp[--l] = 0;
    const char *b = strrchr(tmp, '/');
    const char *base = b ? b + 1 : tmp;
    size_t n = strlen(base) < cap - 1 ? strlen(base) : cap - 1; /* names are cut, not refused */
    memcpy(out, base, n);
    out[n] = 0;
    char *dot = strrchr(out, '.');
    if (dot && dot != out) *dot = 0;
    for (char *c = out; *c; c++)
        if (!syn_q_name_ok((char[]){*c, 0})) *c = '_';
}

int cmd_up(int argc, char **argv)
{
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"name", required_argument, 0, 'N'},
                                         {"port", required_argument, 0, 'p'},
                                         {"host", required_argument, 0, 'H'},
                                         {"redis", required_argument, 0, 'r'},
                                         {"min-warm", required_argument, 0, 'w'},
                                         {"backend", required_argument, 0, 'b'},
                                         {"max-workers", required_argument, 0, 'x'},
                                         {"idle-timeout", required_argument, 0, 'i'},
                                         {"max-seqs", required_argument, 0, 's'},
                                         {"worker-threads", required_argument, 0, 't'},
                                         {"max-queue", required_argument, 0, 'q'},
                                         {"api-keys", required_argument, 0, 'k'},
                                         {"price-per-hour", required_argument, 0, 'P'},
                                         {"log-dir", required_argument, 0, 'L'},
                                         {"chat-template", required_argument, 0, 'C'},
                                         {"config", required_argument, 0, 'c'},
                                         {"observability", no_argument, 0, 'O'},
                                         {"scrape-interval", required_argument, 0, 'I'},
                                         {"rules-dir", required_argument, 0, 'R'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *cmd = "up";
    const char *config = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            config = argv[i + 1];
        else if (!strncmp(argv[i], "--config=", 9))
            config = argv[i] + 9;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        }
    }
    if (!config) config = getenv("SYNAPSE_CONFIG");
    int xargc;
    char **xargv;
    if (cli_expand_args(cmd, argc, argv, opts, config, &xargc, &xargv)) return 2;

    const char *model = "../shared/models/stories260K.gguf", *name = NULL, *host = "127.0.0.1";
    const char *redis = NULL, *backend = "local", *keys = NULL, *log_dir = NULL, *tmpl = NULL,
               *rules_dir = NULL;
    int observe = 0;
    double scrape = 5;
    long port = 8080, min_warm = 1, max_workers = 2, max_seqs = 16, threads = 0, max_queue = 256;
    double idle = 30, price = 0;
    int c, rc = 2;
    optind = 1;
    while ((c = cli_getopt(cmd, xargc, xargv, "m:p:h", opts)) != -1) {
        switch (c) {
        case 'm':
            model = optarg;
            break;
        case 'N':
            name = optarg;
            break;
        case 'H':
            host = optarg;
            break;
        case 'r':
            redis = optarg;
            break;
        case 'b':
            backend = optarg;
            break;
        case 'k':
            keys = optarg;
            break;
        case 'L':
            log_dir = optarg;
            break;
        case 'C':
            tmpl = optarg;
            break;
        case 'c':
            break;
        case 'O':
            observe = 1;
            break;
        case 'R':
            rules_dir = optarg;
            break;
        case 'I':
            if (cli_parse_double(cmd, "--scrape-interval", optarg, 0.1, 3600, &scrape)) goto out;
            break;
        case 'p':
            if (cli_parse_long(cmd, "--port", optarg, 0, 65535, &port)) goto out;
            break;
        case 'w':
            if (cli_parse_long(cmd, "--min-warm", optarg, 0, 256, &min_warm)) goto out;
            break;
        case 'x':
            if (cli_parse_long(cmd, "--max-workers", optarg, 0, 256, &max_workers)) goto out;
            break;
        case 's':
            if (cli_parse_long(cmd, "--max-seqs", optarg, 1, 4096, &max_seqs)) goto out;
            break;
        case 't':
            if (cli_parse_long(cmd, "--worker-threads", optarg, 0, 1024, &threads)) goto out;
            break;
        case 'q':
            if (cli_parse_long(cmd, "--max-queue", optarg, 1, 1 << 20, &max_queue)) goto out;
            break;
        case 'i':
            if (cli_parse_double(cmd, "--idle-timeout", optarg, 0, 1e9, &idle)) goto out;
            break;
        case 'P':
            if (cli_parse_double(cmd, "--price-per-hour", optarg, 0, 1e6, &price)) goto out;
            break;
        case 'h':
            usage(stdout);
            rc = 0;
            goto out;
        default:
            goto out;
        }
    }
    if (optind < xargc) {
        cli_usage_error(cmd, "unexpected argument '%s'", xargv[optind]);
        goto out;
    }
    if (strcmp(backend, "local") && strcmp(backend, "external") && strcmp(backend, "lambda") &&
        strcmp(backend, "asg")) {
        cli_usage_error(cmd, "--backend must be local, external, lambda or asg, got '%s'", backend);
        goto out;
    }
    if (min_warm > max_workers) {
        cli_usage_error(cmd, "--min-warm (%ld) cannot exceed --max-workers (%ld)", min_warm,
                        max_workers);
        goto out;
    }
    if (access(model, R_OK) != 0) {
        fprintf(stderr, "synapse up: cannot read model '%s': %s\n", model, strerror(errno));
        rc = 1;
        goto out;
    }
    char name_buf[101];
    if (!name) {
        model_name(model, name_buf, sizeof name_buf);
        name = name_buf;
    }
    if (!syn_q_name_ok(name)) {
        cli_usage_error(cmd, "--name '%s' must be 1-100 characters of [A-Za-z0-9._-]", name);
        goto out;
    }
    rc = 1;

    /* everything we start is stopped on the way out, in reverse order */
    char dir[256] = "", url[700] = "";
    pid_t redis_pid = -1;
    struct syn_workpool *pool = NULL;
    struct syn_gateway *gw = NULL;
    struct up_obs obs;
    memset(&obs, 0, sizeof obs);
    char err[512];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/synapse-up-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        fprintf(stderr, "synapse up: cannot create a temporary directory: %s\n", strerror(errno));
        dir[0] = 0;
        goto stop;
    }
    if (redis) {
        snprintf(url, sizeof url, "%s", redis);
    } else {
        redis_pid = start_redis(dir, url, sizeof url);
        if (redis_pid < 0) {
            fprintf(stderr, "synapse up: could not start redis-server (is it installed? "
                            "scripts/install-deps.sh installs it)\n");
            goto stop;
        }
    }
    struct syn_workpool_params wp = syn_workpool_default_params();
    wp.model_path = model;
    wp.backend = backend;
    wp.model_name = name;
    wp.redis_url = url;
    wp.policy.min_warm = (int)min_warm;
    wp.policy.max_workers = (int)max_workers;
    wp.policy.slots_per_worker = (int)max_seqs;
    wp.policy.idle_timeout_s = idle;
    wp.worker_threads = (int)threads;
    wp.log_dir = log_dir ? log_dir : dir;
    wp.price_per_hour = price;
    char wargs[512] = "";
    if (observe) {
        /* before the pool: its workers push to this Pushgateway */
        if (up_obs_start_exporters(&obs, dir, url, err, sizeof err)) {
            fprintf(stderr, "synapse up: %s\n", err);
            goto stop;
        }
        snprintf(wargs, sizeof wargs, "--pushgateway %s --push-interval %g ", obs.pushgateway_url,
                 scrape);
        wp.worker_args = wargs;
    }
    if (tmpl) {
        if (syn_chat_from_name(tmpl) < 0) {
            cli_usage_error(cmd, "--chat-template: unknown template '%s' (known: %s)", tmpl,
                            syn_chat_known_names());
            rc = 2;
            goto stop;
        }
        size_t used = strlen(wargs);
        snprintf(wargs + used, sizeof wargs - used, "--chat-template %s", tmpl);
        wp.worker_args = wargs;
    }
    if (syn_workpool_new(&wp, &pool, err, sizeof err)) {
        fprintf(stderr, "synapse up: %s\n", err);
        goto stop;
    }
    struct syn_gateway_params gp = syn_gateway_default_params();
    const char *models[1] = {name};
    gp.redis_url = url;
    gp.models = models;
    gp.n_models = 1;
    gp.host = host;
    gp.port = (int)port;
    gp.api_keys_file = keys;
    gp.max_queue = (int)max_queue;
    struct up_hooks hooks = {pool, name, wp.backend ? wp.backend : "local", price};
    gp.hooks.on_demand = hook_demand;
    gp.hooks.can_serve = hook_can_serve;
    gp.hooks.metrics = hook_metrics;
    gp.hooks.ud = &hooks;
    gp.handle_signals = 1;
    if (syn_gateway_new(&gp, &gw, err, sizeof err)) {
        fprintf(stderr, "synapse up: %s\n", err);
        goto stop;
    }
    int bound = syn_gateway_port(gw);
    if (observe &&
        up_obs_start_prometheus(&obs, dir, host, bound, scrape, rules_dir, err, sizeof err)) {
        fprintf(stderr, "synapse up: %s\n", err);
        goto stop;
    }
    printf("Synapse is up: model '%s' at http://%s:%d/v1 (Redis %s, %ld..%ld workers, "
           "logs in %s)\nTry:\n",
           name, host, bound, url, min_warm, max_workers, wp.log_dir);
    if (tmpl || has_chat_template(model))
        printf("  curl http://%s:%d/v1/chat/completions -H 'Content-Type: application/json' \\\n"
               "    -d '{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":"
               "\"Tell me a story\"}],\"max_tokens\":64}'\n",
               host, bound, name);
    else
        printf("  curl http://%s:%d/v1/completions -H 'Content-Type: application/json' \\\n"
               "    -d '{\"model\":\"%s\",\"prompt\":\"Once upon a time\",\"max_tokens\":64}'\n"
               "  (this model has no chat template: /v1/chat/completions needs "
               "--chat-template NAME)\n",
               host, bound, name);
    if (observe) {
        printf("Observability (every %g s):\n"
               "  Prometheus:     http://127.0.0.1:%d  (rules: %s)\n"
               "  Pushgateway:    http://127.0.0.1:%d  (the workers push here)\n"
               "  redis_exporter: http://127.0.0.1:%d/metrics\n"
               "  gateway and pool metrics: http://%s:%d/metrics\n"
               "  Grafana: provision deploy/grafana with this Prometheus (docs/metrics.md)\n",
               scrape, obs.prometheus_port, obs.rules[0] ? obs.rules : "none found",
               obs.pushgateway_port, obs.exporter_port, host, bound);
    }
    printf("Press Ctrl-C to stop.\n");
    fflush(stdout);
    rc = syn_gateway_run(gw) == 0 ? 0 : 1;
    syn_info(LOG, "stopping");
stop:
    if (gw) syn_gateway_free(gw);
    if (pool) syn_workpool_free(pool, 15.0);
    up_obs_stop(&obs); /* after the workers: their last push and group deletion went out */
    if (redis_pid > 0) {
        kill(redis_pid, SIGTERM);
        for (int i = 0; i < 300 && waitpid(redis_pid, NULL, WNOHANG) != redis_pid; i++) {
            struct timespec nap = {0, 10 * 1000 * 1000};
            nanosleep(&nap, NULL);
            if (i == 299) {
                kill(redis_pid, SIGKILL);
                waitpid(redis_pid, NULL, 0);
            }
        }
    }
    if (dir[0]) rm_rf(dir);
out:
    cli_free_args(xargc, xargv);
    return rc;
}
