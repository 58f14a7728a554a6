/*
 * `synapse worker`: one worker process (see include/synapse/worker.h). SIGTERM and SIGINT drain;
 * SIGKILL loses nothing (the jobs are reclaimed by other workers).
 */
#include "cli.h"

#include "synapse/error.h"
#include "synapse/queue.h"
#include "synapse/worker.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(
        f,
        "Usage: synapse worker --model PATH --redis URL [options]\n\n"
        "Loads a model, takes jobs for it from Redis, runs them with continuous batching and\n"
        "streams the tokens back. Exits by itself after --idle-timeout seconds without work.\n"
        "SIGTERM drains: running sequences finish (within --drain-timeout), the rest go back\n"
        "to the queue.\n\n"
        "Options (each also from the environment variable shown):\n"
        "  -m, --model PATH            GGUF file or HF directory          SYNAPSE_MODEL\n"
        "  -r, --redis URL             unix:///path or redis://host:port  SYNAPSE_REDIS\n"
        "      --name NAME             model name clients use (default: file name)\n"
        "                                                                 SYNAPSE_MODEL_NAME\n"
        "      --id ID                 worker id (default: host-pid)      SYNAPSE_WORKER_ID\n"
        "      --max-seqs N            sequences per batch (default 16)   SYNAPSE_MAX_SEQS\n"
        "      --max-batched-tokens N  tokens per engine step (default 256)\n"
        "                                                     SYNAPSE_MAX_BATCHED_TOKENS\n"
        "      --max-queue-delay-ms N  from idle, wait this long to gather a first batch\n"
        "                              (default 0)            SYNAPSE_MAX_QUEUE_DELAY_MS\n"
        "      --kv-cache-mb N         KV cache size (default: engine's)  SYNAPSE_KV_CACHE_MB\n"
        "      --ctx N                 context per sequence (default: model's, <= 4096)\n"
        "      --idle-timeout S        exit after S seconds idle; 0 = stay (default 60)\n"
        "                                                           SYNAPSE_IDLE_TIMEOUT\n"
        "      --heartbeat-ms N        registry heartbeat (default 1000)\n"
        "      --reclaim-ms N          take over jobs of workers silent this long (default 5000)\n"
        "      --max-attempts N        deliveries before dead-lettering (default 3)\n"
        "      --drain-timeout S       grace period on SIGTERM (default 30)\n"
        "      --chat-template NAME    override the model's chat template\n"
        "                              (the names: synapse generate --help)\n"
        "  -t, --threads N             engine threads (default: all)      SYNAPSE_THREADS\n"
        "      --backend NAME          cpu or cuda (a CUDA=1 build; without a GPU it logs why\n"
        "                              and runs on the CPU) (default cpu) SYNAPSE_BACKEND\n"
        "      --weights MODE          resident: read the model into memory on 2 MiB pages\n"
        "                              (default on the CPU); mapped: mmap it, shared with\n"
        "                              other workers through the page cache (default on CUDA)\n"
        "                                                                 SYNAPSE_WEIGHTS\n"
        "      --metrics-port N        serve Prometheus metrics on GET /metrics at this port\n"
        "                              (0 = any free port, printed)   SYNAPSE_METRICS_PORT\n"
        "      --metrics-host ADDR     bind address for it (default 127.0.0.1)\n"
        "      --pushgateway URL       push metrics to this Prometheus Pushgateway every\n"
        "                              --push-interval and at exit; the group is deleted on\n"
        "                              a clean exit (docs/metrics.md)  SYNAPSE_PUSHGATEWAY\n"
        "      --push-interval S       seconds between pushes (default 10)\n"
        "  -h, --help                  show this help\n");
}

static void on_signal(int sig)
{
    (void)sig;
    syn_worker_request_drain();
}

int cmd_worker(int argc, char **argv)
{
    int64_t start_ms = syn_unix_ms();
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"redis", required_argument, 0, 'r'},
                                         {"name", required_argument, 0, 'N'},
                                         {"id", required_argument, 0, 'I'},
                                         {"max-seqs", required_argument, 0, 'S'},
                                         {"max-batched-tokens", required_argument, 0, 'B'},
                                         {"max-queue-delay-ms", required_argument, 0, 'D'},
                                         {"kv-cache-mb", required_argument, 0, 'K'},
                                         {"ctx", required_argument, 0, 'c'},
                                         {"idle-timeout", required_argument, 0, 'i'},
                                         {"heartbeat-ms", required_argument, 0, 'H'},
                                         {"reclaim-ms", required_argument, 0, 'R'},
                                         {"max-attempts", required_argument, 0, 'A'},
                                         {"drain-timeout", required_argument, 0, 'T'},
                                         {"chat-template", required_argument, 0, 'C'},
                                         {"threads", required_argument, 0, 't'},
                                         {"backend", required_argument, 0, 'G'},
                                         {"weights", required_argument, 0, 'W'},
                                         {"metrics-port", required_argument, 0, 'M'},
                                         {"metrics-host", required_argument, 0, 'O'},
                                         {"pushgateway", required_argument, 0, 'P'},
                                         {"push-interval", required_argument, 0, 'V'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *cmd = "worker";
    struct syn_worker_params p = syn_worker_default_params();
    p.start_ms = start_ms;
    /* environment first, flags override */
    const char *env;
    long v;
    double d;
    p.model_path = getenv("SYNAPSE_MODEL");
    p.redis_url = getenv("SYNAPSE_REDIS");
    p.model_name = getenv("SYNAPSE_MODEL_NAME");
    p.worker_id = getenv("SYNAPSE_WORKER_ID");
#define ENV_LONG(name, field, lo, hi)                                                              \
    if ((env = getenv(name)) && *env) {                                                            \
        if (cli_parse_long(cmd, name, env, lo, hi, &v)) return 2;                                  \
        field = (int)v;                                                                            \
    }
    ENV_LONG("SYNAPSE_MAX_SEQS", p.max_seqs, 1, 4096)
    ENV_LONG("SYNAPSE_MAX_BATCHED_TOKENS", p.max_batched_tokens, 1, 65536)
    ENV_LONG("SYNAPSE_MAX_QUEUE_DELAY_MS", p.max_queue_delay_ms, 0, 60000)
    ENV_LONG("SYNAPSE_KV_CACHE_MB", p.kv_cache_mb, 0, 1 << 20)
    ENV_LONG("SYNAPSE_THREADS", p.n_threads, 0, 1024)
    ENV_LONG("SYNAPSE_METRICS_PORT", p.metrics_port, 0, 65535)
#undef ENV_LONG
    if ((env = getenv("SYNAPSE_PUSHGATEWAY")) && *env) p.pushgateway = env;
    if ((env = getenv("SYNAPSE_IDLE_TIMEOUT")) && *env) {
        if (cli_parse_double(cmd, "SYNAPSE_IDLE_TIMEOUT", env, 0, 1e9, &d)) return 2;
        p.idle_timeout_s = d;
    }
    int c;
    while ((c = cli_getopt(cmd, argc, argv, "m:r:t:h", opts)) != -1) {
        switch (c) {
        case 'm':
            p.model_path = optarg;
            break;
        case 'r':
            p.redis_url = optarg;
            break;
        case 'N':
            p.model_name = optarg;
            break;
        case 'I':
            p.worker_id = optarg;
            break;
        case 'C':
            p.chat_template = optarg;
            break;
        case 'S':
            if (cli_parse_long(cmd, "--max-seqs", optarg, 1, 4096, &v)) return 2;
            p.max_seqs = (int)v;
            break;
        case 'B':
            if (cli_parse_long(cmd, "--max-batched-tokens", optarg, 1, 65536, &v)) return 2;
            p.max_batched_tokens = (int)v;
            break;
        case 'D':
            if (cli_parse_long(cmd, "--max-queue-delay-ms", optarg, 0, 60000, &v)) return 2;
            p.max_queue_delay_ms = (int)v;
            break;
        case 'K':
            if (cli_parse_long(cmd, "--kv-cache-mb", optarg, 0, 1 << 20, &v)) return 2;
            p.kv_cache_mb = (int)v;
            break;
        case 'c':
            if (cli_parse_long(cmd, "--ctx", optarg, 0, 1 << 20, &v)) return 2;
            p.n_ctx = (int)v;
            break;
        case 'i':
            if (cli_parse_double(cmd, "--idle-timeout", optarg, 0, 1e9, &d)) return 2;
            p.idle_timeout_s = d;
            break;
        case 'H':
            if (cli_parse_long(cmd, "--heartbeat-ms", optarg, 10, 600000, &v)) return 2;
            p.heartbeat_ms = (int)v;
            break;
        case 'R':
            if (cli_parse_long(cmd, "--reclaim-ms", optarg, 20, 3600000, &v)) return 2;
            p.reclaim_ms = (int)v;
            break;
        case 'A':
            if (cli_parse_long(cmd, "--max-attempts", optarg, 1, 1000, &v)) return 2;
            p.max_attempts = (int)v;
            break;
        case 'T':
            if (cli_parse_double(cmd, "--drain-timeout", optarg, 0, 86400, &d)) return 2;
            p.drain_timeout_s = d;
            break;
        case 't':
            if (cli_parse_long(cmd, "--threads", optarg, 0, 1024, &v)) return 2;
            p.n_threads = (int)v;
            break;
        case 'G':
            /* the worker's engine takes its backend from the environment (engine.h) */
            if (strcmp(optarg, "cpu") != 0 && strcmp(optarg, "cuda") != 0)
                return cli_usage_error(cmd, "--backend expects cpu or cuda, got '%s'", optarg);
            setenv("SYNAPSE_BACKEND", optarg, 1);
            break;
        case 'W':
            /* likewise the way it brings the weights into memory */
            if (strcmp(optarg, "resident") != 0 && strcmp(optarg, "mapped") != 0)
                return cli_usage_error(cmd, "--weights expects resident or mapped, got '%s'",
                                       optarg);
            setenv("SYNAPSE_WEIGHTS", optarg, 1);
            break;
        case 'M':
            if (cli_parse_long(cmd, "--metrics-port", optarg, 0, 65535, &v)) return 2;
            p.metrics_port = (int)v;
            break;
        case 'O':
            p.metrics_host = optarg;
            break;
        case 'P':
            p.pushgateway = optarg;
            break;
        case 'V':
            if (cli_parse_double(cmd, "--push-interval", optarg, 0.05, 86400, &d)) return 2;
            p.push_interval_s = d;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            return 2;
        }
    }
    if (optind < argc) return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!p.model_path) return cli_usage_error(cmd, "--model is required");
    if (!p.redis_url) return cli_usage_error(cmd, "--redis is required");

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    char err[512];
    int rc = syn_worker_run(&p, err, sizeof err);
    if (rc) {
        fprintf(stderr, "synapse worker: %s\n", err);
        return 1;
    }
    return 0;
}
