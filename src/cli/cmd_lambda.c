/*
 * `synapse lambda`: the AWS Lambda custom runtime (src/aws/lambda.h). The container image's
 * entry point; every flag also comes from a SYNAPSE_* environment variable (the function's
 * configuration), e.g. --model is SYNAPSE_MODEL and --redis is SYNAPSE_REDIS.
 */
#include "cli.h"

#include "aws/lambda.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(
        f, "Usage: synapse lambda --model PATH [options]\n\n"
           "Runs as an AWS Lambda custom runtime against the Runtime API at\n"
           "$AWS_LAMBDA_RUNTIME_API: loads the model at init (a failure is reported as an init\n"
           "error), then answers each invocation. An event {\"jobs\": [...]} is a batch run\n"
           "here (buffered, or streamed as NDJSON in response streaming mode); an event\n"
           "{\"mode\": \"drain\", ...} runs a worker on the model's Redis streams until it is\n"
           "idle or the invocation's deadline nears. See docs/deploy-aws.md.\n\n"
           "Options (each also from SYNAPSE_<NAME>, e.g. SYNAPSE_MODEL, SYNAPSE_REDIS):\n"
           "  -m, --model PATH            GGUF file or HF directory (required)\n"
           "      --name NAME             model name in keys (default: file name; also\n"
           "                              SYNAPSE_MODEL_NAME)\n"
           "  -r, --redis URL             Redis for drain events (redis://host:port)\n"
           "      --stream                answer batches in response streaming mode\n"
           "      --max-seqs N            sequences batched at once (default 16)\n"
           "      --max-batched-tokens N  tokens per engine step (default 256)\n"
           "      --ctx N                 context per sequence (default: model's, <= 4096)\n"
           "      --kv-cache-mb N         KV cache size (default: engine's)\n"
           "      --chat-template NAME    override the model's chat template\n"
           "                              (the names: synapse generate --help)\n"
           "      --idle-timeout S        drain events: idle seconds before the worker exits\n"
           "                              (default 30; the event may say otherwise)\n"
           "      --drain-timeout S       drain events: grace period at the deadline (default 10)\n"
           "      --deadline-margin-ms N  time kept to answer before the deadline (default 2000)\n"
           "      --runtime-api HOST:PORT the Runtime API (default $AWS_LAMBDA_RUNTIME_API)\n"
           "      --max-invocations N     exit after N invocations (tests; default: never)\n"
           "  -t, --threads N             engine threads (default: all)\n"
           "  -h, --help                  show this help\n");
}

static void on_signal(int sig)
{
    (void)sig;
    syn_lambda_request_stop();
}

int cmd_lambda(int argc, char **argv)
{
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"name", required_argument, 0, 'N'},
                                         {"redis", required_argument, 0, 'r'},
                                         {"stream", no_argument, 0, 's'},
                                         {"max-seqs", required_argument, 0, 'S'},
                                         {"max-batched-tokens", required_argument, 0, 'B'},
                                         {"ctx", required_argument, 0, 'c'},
                                         {"kv-cache-mb", required_argument, 0, 'K'},
                                         {"chat-template", required_argument, 0, 'C'},
                                         {"idle-timeout", required_argument, 0, 'i'},
                                         {"drain-timeout", required_argument, 0, 'T'},
                                         {"deadline-margin-ms", required_argument, 0, 'M'},
                                         {"runtime-api", required_argument, 0, 'A'},
                                         {"max-invocations", required_argument, 0, 'X'},
                                         {"threads", required_argument, 0, 't'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *cmd = "lambda";
    int xargc;
    char **xargv;
    if (cli_expand_args(cmd, argc, argv, opts, NULL, &xargc, &xargv)) return 2;
    struct syn_lambda_params p = syn_lambda_default_params();
    const char *mn = getenv("SYNAPSE_MODEL_NAME");
    if (mn && *mn) p.model_name = mn;
    long v;
    double d;
    int c, rc = 2;
    optind = 1;
    while ((c = cli_getopt(cmd, xargc, xargv, "m:r:t:h", opts)) != -1) {
        switch (c) {
        case 'm':
            p.model_path = optarg;
            break;
        case 'N':
            p.model_name = optarg;
            break;
        case 'r':
            p.redis_url = optarg;
            break;
        case 's':
            p.stream = 1;
            break;
        case 'C':
            p.chat_template = optarg;
            break;
        case 'A':
            p.runtime_api = optarg;
            break;
        case 'S':
            if (cli_parse_long(cmd, "--max-seqs", optarg, 1, 4096, &v)) goto out;
            p.max_seqs = (int)v;
            break;
        case 'B':
            if (cli_parse_long(cmd, "--max-batched-tokens", optarg, 1, 65536, &v)) goto out;
            p.max_batched_tokens = (int)v;
            break;
        case 'c':
            if (cli_parse_long(cmd, "--ctx", optarg, 0, 1 << 20, &v)) goto out;
            p.n_ctx = (int)v;
            break;
        case 'K':
            if (cli_parse_long(cmd, "--kv-cache-mb", optarg, 0, 1 << 20, &v)) goto out;
            p.kv_cache_mb = (int)v;
            break;
        case 'i':
            if (cli_parse_double(cmd, "--idle-timeout", optarg, 0.01, 900, &d)) goto out;
            p.idle_timeout_s = d;
            break;
        case 'T':
            if (cli_parse_double(cmd, "--drain-timeout", optarg, 0, 900, &d)) goto out;
            p.drain_timeout_s = d;
            break;
        case 'M':
            if (cli_parse_long(cmd, "--deadline-margin-ms", optarg, 0, 600000, &v)) goto out;
            p.deadline_margin_ms = (int)v;
            break;
        case 'X':
            if (cli_parse_long(cmd, "--max-invocations", optarg, 0, 1L << 30, &v)) goto out;
            p.max_invocations = (int)v;
            break;
        case 't':
            if (cli_parse_long(cmd, "--threads", optarg, 0, 1024, &v)) goto out;
            p.n_threads = (int)v;
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
    /* no usage error for a missing model: inside Lambda that is an init error to report */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    char err[600];
    if (syn_lambda_run(&p, err, sizeof err)) {
        fprintf(stderr, "synapse lambda: %s\n", err);
        rc = 1;
    } else {
        rc = 0;
    }
out:
    cli_free_args(xargc, xargv);
    return rc;
}
