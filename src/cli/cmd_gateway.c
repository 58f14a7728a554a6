/*
 * `synapse gateway`: the OpenAI-compatible HTTP gateway on its own (include/synapse/gateway.h,
 * docs/api.md). Workers are started by someone else (`synapse worker`, or the pool of
 * `synapse up`). Every flag can also come from the environment; flags win.
 */
#include "cli.h"

#include "synapse/gateway.h"
#include "synapse/log.h"

#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MODELS 64

static void usage(FILE *f)
{
    fprintf(
        f, "Usage: synapse gateway --redis URL --model NAME [--model NAME...] [options]\n\n"
           "Serves the OpenAI API (POST /v1/chat/completions, /v1/completions, GET /v1/models)\n"
           "plus /healthz, /readyz and /metrics, queueing each request as a job in Redis for\n"
           "the workers of its model. Prints 'listening on HOST:PORT' on stderr once bound.\n\n"
           "Options (each also from the environment variable shown):\n"
           "  -r, --redis URL            unix:///path, redis://host:port[/db] or host:port\n"
           "                                                         SYNAPSE_REDIS\n"
           "  -m, --model NAME           a model name to serve (repeatable)\n"
           "                                                         SYNAPSE_MODELS (a,b,...)\n"
           "  -p, --port N               port, 0 = any free one (default 8080)  SYNAPSE_PORT\n"
           "      --host ADDR            bind address (default 127.0.0.1)      SYNAPSE_HOST\n"
           "      --api-keys FILE        API keys, one per line (default: none)\n"
           "                                                         SYNAPSE_API_KEYS_FILE\n"
           "                             (SYNAPSE_API_KEYS=k1,k2 adds keys too)\n"
           "      --max-queue N          queued jobs per model before 429 (default 256)\n"
           "                                                         SYNAPSE_MAX_QUEUE\n"
           "      --default-deadline-ms N  deadline without X-Synapse-Deadline-Ms (default 60000)\n"
           "                                                   SYNAPSE_DEFAULT_DEADLINE_MS\n"
           "      --max-deadline-ms N    largest deadline a client may ask (default 3600000)\n"
           "                                                   SYNAPSE_MAX_DEADLINE_MS\n"
           "      --max-body-bytes N     larger request bodies get 413 (default 1048576)\n"
           "                                                   SYNAPSE_MAX_BODY_BYTES\n"
           "      --max-header-bytes N   larger request heads get 431 (default 16384)\n"
           "                                                   SYNAPSE_MAX_HEADER_BYTES\n"
           "      --max-connections N    open connections (default 16384)\n"
           "                                                   SYNAPSE_MAX_CONNECTIONS\n"
           "      --read-timeout-ms N    a request must arrive within this (default 10000)\n"
           "                                                   SYNAPSE_READ_TIMEOUT_MS\n"
           "      --write-timeout-ms N   a stalled response write is cut after (default 30000)\n"
           "                                                   SYNAPSE_WRITE_TIMEOUT_MS\n"
           "      --max-tokens-limit N   largest max_tokens accepted (default 1048576)\n"
           "                                                   SYNAPSE_MAX_TOKENS_LIMIT\n"
           "      --poll-ms N            registry/backlog polling period (default 200)\n"
           "                                                   SYNAPSE_POLL_MS\n"
           "      --id ID                gateway id, names the reply stream (default random)\n"
           "                                                   SYNAPSE_GATEWAY_ID\n"
           "  -h, --help                 show this help\n");
}

enum {
    O_HOST = 1000,
    O_KEYS,
    O_MAXQ,
    O_DDL,
    O_MDL,
    O_BODY,
    O_HEAD,
    O_CONN,
    O_RTO,
    O_WTO,
    O_MTL,
    O_POLL,
    O_ID
};

/* One numeric setting: its flag, environment variable, range and destination. */
struct num_opt {
    int code;
    const char *flag;
    const char *env;
    long lo, hi;
    long *dst;
};

static int add_models(const char *cmd, const char *list, char **names, int *n, char *store,
                      size_t cap, size_t *used)
{
    const char *s = list;
    for (;;) {
        const char *c = strchr(s, ',');
        size_t len = c ? (size_t)(c - s) : strlen(s);
        if (len) {
            if (*n >= MAX_MODELS) return cli_usage_error(cmd, "at most %d models", MAX_MODELS);
            if (*used + len + 1 > cap) return cli_usage_error(cmd, "model names are too long");
            memcpy(store + *used, s, len);
            store[*used + len] = 0;
            names[(*n)++] = store + *used;
            *used += len + 1;
        }
        if (!c) return 0;
        s = c + 1;
    }
}

int cmd_gateway(int argc, char **argv)
{
    const char *cmd = "gateway";
    static const struct option opts[] = {
        {"redis", required_argument, 0, 'r'},
        {"model", required_argument, 0, 'm'},
        {"port", required_argument, 0, 'p'},
        {"host", required_argument, 0, O_HOST},
        {"api-keys", required_argument, 0, O_KEYS},
        {"max-queue", required_argument, 0, O_MAXQ},
        {"default-deadline-ms", required_argument, 0, O_DDL},
        {"max-deadline-ms", required_argument, 0, O_MDL},
        {"max-body-bytes", required_argument, 0, O_BODY},
        {"max-header-bytes", required_argument, 0, O_HEAD},
        {"max-connections", required_argument, 0, O_CONN},
        {"read-timeout-ms", required_argument, 0, O_RTO},
        {"write-timeout-ms", required_argument, 0, O_WTO},
        {"max-tokens-limit", required_argument, 0, O_MTL},
        {"poll-ms", required_argument, 0, O_POLL},
        {"id", required_argument, 0, O_ID},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    struct syn_gateway_params p = syn_gateway_default_params();
    long port = p.port, maxq = p.max_queue, ddl = (long)p.default_deadline_ms,
         mdl = (long)p.max_deadline_ms, body = (long)p.max_body_bytes,
         head = (long)p.max_header_bytes, conns = p.max_connections, rto = p.read_timeout_ms,
         wto = p.write_timeout_ms, mtl = p.max_tokens_limit, poll = p.poll_interval_ms;
    const struct num_opt nums[] = {
        {'p', "--port", "SYNAPSE_PORT", 0, 65535, &port},
        {O_MAXQ, "--max-queue", "SYNAPSE_MAX_QUEUE", 0, 1L << 30, &maxq},
        {O_DDL, "--default-deadline-ms", "SYNAPSE_DEFAULT_DEADLINE_MS", 1, 86400000L * 7, &ddl},
        {O_MDL, "--max-deadline-ms", "SYNAPSE_MAX_DEADLINE_MS", 1, 86400000L * 7, &mdl},
        {O_BODY, "--max-body-bytes", "SYNAPSE_MAX_BODY_BYTES", 1, 1L << 30, &body},
        {O_HEAD, "--max-header-bytes", "SYNAPSE_MAX_HEADER_BYTES", 256, 1L << 20, &head},
        {O_CONN, "--max-connections", "SYNAPSE_MAX_CONNECTIONS", 1, 1L << 20, &conns},
        {O_RTO, "--read-timeout-ms", "SYNAPSE_READ_TIMEOUT_MS", 1, 86400000L, &rto},
        {O_WTO, "--write-timeout-ms", "SYNAPSE_WRITE_TIMEOUT_MS", 1, 86400000L, &wto},
        {O_MTL, "--max-tokens-limit", "SYNAPSE_MAX_TOKENS_LIMIT", 1, 1L << 30, &mtl},
        {O_POLL, "--poll-ms", "SYNAPSE_POLL_MS", 10, 60000, &poll},
    };
    const int n_nums = (int)(sizeof nums / sizeof nums[0]);
    char *names[MAX_MODELS];
    char store[MAX_MODELS * 104];
    size_t used = 0;
    int n_models = 0, env_models = 0, c;

    /* the environment first; flags override it */
    for (int i = 0; i < n_nums; i++) {
        const char *v = getenv(nums[i].env);
        if (v && *v && cli_parse_long(cmd, nums[i].env, v, nums[i].lo, nums[i].hi, nums[i].dst))
            return 2;
    }
    const char *e;
    if ((e = getenv("SYNAPSE_REDIS")) && *e) p.redis_url = e;
    if ((e = getenv("SYNAPSE_HOST")) && *e) p.host = e;
    if ((e = getenv("SYNAPSE_API_KEYS_FILE")) && *e) p.api_keys_file = e;
    if ((e = getenv("SYNAPSE_API_KEYS")) && *e) p.api_keys = e;
    if ((e = getenv("SYNAPSE_GATEWAY_ID")) && *e) p.id = e;
    if ((e = getenv("SYNAPSE_MODELS")) && *e) {
        if (add_models(cmd, e, names, &n_models, store, sizeof store, &used)) return 2;
        env_models = n_models;
    }

    while ((c = cli_getopt(cmd, argc, argv, "r:m:p:h", opts)) != -1) {
        int handled = 0;
        for (int i = 0; i < n_nums; i++)
            if (c == nums[i].code) {
                if (cli_parse_long(cmd, nums[i].flag, optarg, nums[i].lo, nums[i].hi, nums[i].dst))
                    return 2;
                handled = 1;
            }
        if (handled) continue;
        switch (c) {
        case 'r':
            p.redis_url = optarg;
            break;
        case 'm':
            if (env_models) { /* flags replace the environment's list */
                n_models = 0;
                used = 0;
                env_models = 0;
            }
            if (add_models(cmd, optarg, names, &n_models, store, sizeof store, &used)) return 2;
            break;
        case O_HOST:
            p.host = optarg;
            break;
        case O_KEYS:
            p.api_keys_file = optarg;
            break;
        case O_ID:
            p.id = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            return 2;
        }
    }
    if (optind < argc) return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!p.redis_url) return cli_usage_error(cmd, "--redis is required");
    if (n_models == 0) return cli_usage_error(cmd, "at least one --model NAME is required");
    if (ddl > mdl)
        return cli_usage_error(cmd, "--default-deadline-ms (%ld) exceeds --max-deadline-ms (%ld)",
                               ddl, mdl);
    p.models = (const char *const *)names;
    p.n_models = n_models;
    p.port = (int)port;
    p.max_queue = (int)maxq;
    p.default_deadline_ms = ddl;
    p.max_deadline_ms = mdl;
    p.max_body_bytes = (size_t)body;
    p.max_header_bytes = (size_t)head;
    p.max_connections = (int)conns;
    p.read_timeout_ms = (int)rto;
    p.write_timeout_ms = (int)wto;
    p.max_tokens_limit = (int)mtl;
    p.poll_interval_ms = (int)poll;

    signal(SIGPIPE, SIG_IGN);
    /* every connection is a descriptor: raise the soft limit towards what is configured */
    struct rlimit rl;
    rlim_t want = (rlim_t)conns + 256;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < want)
            fprintf(stderr,
                    "synapse gateway: warning: the open-file limit (%llu) is below "
                    "--max-connections (%ld) + 256\n",
                    (unsigned long long)rl.rlim_cur, conns);
    }
    char err[512];
    struct syn_gateway *g = NULL;
    if (syn_gateway_new(&p, &g, err, sizeof err) != 0) {
        fprintf(stderr, "synapse gateway: %s\n", err);
        return 1;
    }
    fprintf(stderr, "synapse gateway: listening on %s:%d (id %s, %d model%s)\n",
            p.host ? p.host : "127.0.0.1", syn_gateway_port(g), syn_gateway_id(g), n_models,
            n_models == 1 ? "" : "s");
    fflush(stderr);
    int rc = syn_gateway_run(g);
    syn_gateway_free(g);
    return rc == 0 ? 0 : 1;
}
