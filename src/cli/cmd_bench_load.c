/*
 * `synapse bench load`: the open-loop load generator (src/bench/load.h) against any
 * OpenAI-compatible server, at a Poisson rate or replaying a trace; and, with --fake-server, the
 * trivial server that shows what rate the generator itself can sustain.
 */
#include "cli.h"

#include "bench/fake_server.h"
#include "bench/load.h"
#include "bench/trace.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static void usage(FILE *f)
{
    fprintf(
        f,
        "Usage: synapse bench load --url URL [--model NAME]\n"
        "                          [--rate R | --trace FILE [--time-scale X] [--token-scale Y]]\n"
        "                          [--duration S] [--warmup S]\n"
        "                          [--prompt-tokens N --output-tokens N]\n"
        "                          [--slo-ttft-ms A --slo-tpot-ms B] [--api-key K] [--json FILE]\n"
        "       synapse bench load --fake-server PORT [--fake-tokens N] [...]\n\n"
        "Open-loop load: requests go out at their scheduled times (Poisson arrivals at --rate,\n"
        "or a trace's timestamps and token counts) whether or not earlier ones have finished,\n"
        "as streaming POST /v1/completions. Reports TTFT, TPOT ((e2e - TTFT) / (tokens - 1)),\n"
        "inter-token and end-to-end latency (p50/p90/p99, measured from the scheduled time),\n"
        "throughput, errors by kind, and goodput: requests/s meeting both objectives. Progress\n"
        "goes to stderr every second.\n\n"
        "Options:\n"
        "      --url URL           server base URL, http://host:port (required)\n"
        "      --model NAME        model field (default: the first of GET /v1/models)\n"
        "      --api-key K         send 'Authorization: Bearer K'\n"
        "      --rate R            Poisson arrivals, requests/s (default 10 without --trace)\n"
        "      --duration S        seconds of arrivals (default 10 with --rate; with --trace,\n"
        "                          cut the scaled trace after S seconds)\n"
        "      --warmup S          the first S seconds of arrivals are sent like the rest and\n"
        "                          left out of every figure (connections opening, caches and\n"
        "                          the pool warming up); --duration counts after them. With\n"
        "                          --rate the arrivals go on at the same rate through both\n"
        "                          (default 0). Per-request rows keep the warm-up's, with\n"
        "                          t_sched_s < S\n"
        "      --prompt-tokens N   prompt length with --rate, in words ~ tokens (default 64)\n"
        "      --output-tokens N   max_tokens with --rate (default 64)\n"
        "      --trace FILE        replay a CSV trace (TIMESTAMP,ContextTokens,GeneratedTokens,\n"
        "                          e.g. the Azure LLM inference traces)\n"
        "      --time-scale X      multiply the trace's time offsets by X (0.5 = twice as fast)\n"
        "      --token-scale Y     multiply its prompt and output lengths by Y (rounded, >= 1)\n"
        "      --trace-start S     skip the trace's first S seconds (before scaling)\n"
        "      --max-context N     shorten prompts (then outputs) so that both fit in N tokens\n"
        "      --slo-ttft-ms A     time-to-first-token objective (default 200)\n"
        "      --slo-tpot-ms B     time-per-output-token objective (default 50)\n"
        "      --timeout S         per-request timeout in seconds (default 300)\n"
        "      --max-conns N       connections open at once (default 8192)\n"
        "      --seed S            varies the prompts and the arrivals (default 1)\n"
        "      --json FILE         write the summary as JSON ('-' = stdout)\n"
        "      --requests          with --json: add one row per request\n"
        "      --csv FILE          write one CSV row per request\n"
        "  -q, --quiet             no progress lines\n\n"
        "The fake server (answers every POST with a short SSE stream; for measuring the\n"
        "generator itself and for tests; runs until SIGINT or SIGTERM):\n"
        "      --fake-server PORT  listen on 127.0.0.1:PORT\n"
        "      --fake-tokens N     chunks per answer (default 4)\n"
        "      --fake-first-ms N   delay before the first chunk\n"
        "      --fake-token-ms N   delay between chunks\n"
        "      --fake-every-429 N, --fake-every-500 N, --fake-every-close N, --fake-every-cut N\n"
        "                          every Nth request gets a 429, a 500, a close without an\n"
        "                          answer, or a close after the first chunk\n"
        "  -h, --help              show this help\n");
}

static int run_fake(const struct syn_fake_params *fp)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* the server's thread inherits the mask */
    struct syn_fake_server *s = NULL;
    char err[256];
    if (syn_fake_start(fp, &s, err, sizeof err)) {
        fprintf(stderr, "synapse bench load: %s\n", err);
        return 1;
    }
    fprintf(stderr, "fake server listening on %s:%d (Ctrl-C stops it)\n", fp->host,
            syn_fake_port(s));
    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "fake server: %llu requests answered\n",
            (unsigned long long)syn_fake_requests(s));
    syn_fake_stop(s);
    return 0;
}

/* Open files for many connections: as many as the hard limit allows. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static FILE *open_out(const char *path)
{
    if (!strcmp(path, "-")) return stdout;
    FILE *f = fopen(path, "w");
    if (!f) fprintf(stderr, "synapse bench load: cannot write %s\n", path);
    return f;
}

int cmd_bench_load(int argc, char **argv)
{
    enum {
        O_URL = 256,
        O_MODEL,
        O_KEY,
        O_RATE,
        O_DURATION,
        O_WARMUP,
        O_PROMPT,
        O_OUTPUT,
        O_TRACE,
        O_TSCALE,
        O_KSCALE,
        O_TSTART,
        O_MAXCTX,
        O_TTFT,
        O_TPOT,
        O_TIMEOUT,
        O_CONNS,
        O_SEED,
        O_JSON,
        O_REQUESTS,
        O_CSV,
        O_FAKE,
        O_FTOK,
        O_FFIRST,
        O_FTOKMS,
        O_F429,
        O_F500,
        O_FCLOSE,
        O_FCUT,
    };
    static const struct option opts[] = {
        {"url", required_argument, 0, O_URL},
        {"model", required_argument, 0, O_MODEL},
        {"api-key", required_argument, 0, O_KEY},
        {"rate", required_argument, 0, O_RATE},
        {"duration", required_argument, 0, O_DURATION},
        {"warmup", required_argument, 0, O_WARMUP},
        {"prompt-tokens", required_argument, 0, O_PROMPT},
        {"output-tokens", required_argument, 0, O_OUTPUT},
        {"trace", required_argument, 0, O_TRACE},
        {"time-scale", required_argument, 0, O_TSCALE},
        {"token-scale", required_argument, 0, O_KSCALE},
        {"trace-start", required_argument, 0, O_TSTART},
        {"max-context", required_argument, 0, O_MAXCTX},
        {"slo-ttft-ms", required_argument, 0, O_TTFT},
        {"slo-tpot-ms", required_argument, 0, O_TPOT},
        {"timeout", required_argument, 0, O_TIMEOUT},
        {"max-conns", required_argument, 0, O_CONNS},
        {"seed", required_argument, 0, O_SEED},
        {"json", required_argument, 0, O_JSON},
        {"requests", no_argument, 0, O_REQUESTS},
        {"csv", required_argument, 0, O_CSV},
        {"quiet", no_argument, 0, 'q'},
        {"fake-server", required_argument, 0, O_FAKE},
        {"fake-tokens", required_argument, 0, O_FTOK},
        {"fake-first-ms", required_argument, 0, O_FFIRST},
        {"fake-token-ms", required_argument, 0, O_FTOKMS},
        {"fake-every-429", required_argument, 0, O_F429},
        {"fake-every-500", required_argument, 0, O_F500},
        {"fake-every-close", required_argument, 0, O_FCLOSE},
        {"fake-every-cut", required_argument, 0, O_FCUT},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *cmd = "bench load", *trace_path = NULL, *json_path = NULL, *csv_path = NULL;
    struct syn_load_params p = syn_load_default_params();
    struct syn_fake_params fp = syn_fake_default_params();
    struct syn_trace_scaling sc = {0, 1, 1, 0, 0};
    double rate = 0, duration = 0, d;
    long prompt = 64, output = 64, v, fake_port = -1;
    int with_requests = 0, quiet = 0, c;
    while ((c = cli_getopt(cmd, argc, argv, "qh", opts)) != -1) {
        switch (c) {
        case O_URL:
            p.url = optarg;
            break;
        case O_MODEL:
            p.model = optarg;
            break;
        case O_KEY:
            p.api_key = optarg;
            break;
        case O_RATE:
            if (cli_parse_double(cmd, "--rate", optarg, 1e-6, 1e6, &rate)) return 2;
            break;
        case O_DURATION:
            if (cli_parse_double(cmd, "--duration", optarg, 1e-3, 1e7, &duration)) return 2;
            break;
        case O_WARMUP:
            if (cli_parse_double(cmd, "--warmup", optarg, 0, 1e7, &p.warmup_s)) return 2;
            break;
        case O_PROMPT:
            if (cli_parse_long(cmd, "--prompt-tokens", optarg, 1, 1 << 20, &prompt)) return 2;
            break;
        case O_OUTPUT:
            if (cli_parse_long(cmd, "--output-tokens", optarg, 1, 1 << 20, &output)) return 2;
            break;
        case O_TRACE:
            trace_path = optarg;
            break;
        case O_TSCALE:
            if (cli_parse_double(cmd, "--time-scale", optarg, 1e-6, 1e6, &sc.time_scale)) return 2;
            break;
        case O_KSCALE:
            if (cli_parse_double(cmd, "--token-scale", optarg, 1e-6, 1e6, &sc.token_scale))
                return 2;
            break;
        case O_TSTART:
            if (cli_parse_double(cmd, "--trace-start", optarg, 0, 1e9, &sc.start_s)) return 2;
            break;
        case O_MAXCTX:
            if (cli_parse_long(cmd, "--max-context", optarg, 2, 1 << 24, &v)) return 2;
            sc.max_context = (int)v;
            break;
        case O_TTFT:
            if (cli_parse_double(cmd, "--slo-ttft-ms", optarg, 0, 1e9, &d)) return 2;
            p.slo_ttft_s = d / 1e3;
            break;
        case O_TPOT:
            if (cli_parse_double(cmd, "--slo-tpot-ms", optarg, 0, 1e9, &d)) return 2;
            p.slo_tpot_s = d / 1e3;
            break;
        case O_TIMEOUT:
            if (cli_parse_double(cmd, "--timeout", optarg, 1e-3, 1e6, &p.timeout_s)) return 2;
            break;
        case O_CONNS:
            if (cli_parse_long(cmd, "--max-conns", optarg, 1, 1 << 20, &v)) return 2;
            p.max_conns = (int)v;
            break;
        case O_SEED:
            if (cli_parse_long(cmd, "--seed", optarg, 0, 0x7fffffffL, &v)) return 2;
            p.seed = (uint64_t)v;
            break;
        case O_JSON:
            json_path = optarg;
            break;
        case O_REQUESTS:
            with_requests = 1;
            break;
        case O_CSV:
            csv_path = optarg;
            break;
        case 'q':
            quiet = 1;
            break;
        case O_FAKE:
            if (cli_parse_long(cmd, "--fake-server", optarg, 0, 65535, &fake_port)) return 2;
            break;
        case O_FTOK:
            if (cli_parse_long(cmd, "--fake-tokens", optarg, 1, 100000, &v)) return 2;
            fp.tokens = (int)v;
            break;
        case O_FFIRST:
            if (cli_parse_long(cmd, "--fake-first-ms", optarg, 0, 600000, &v)) return 2;
            fp.first_ms = (int)v;
            break;
        case O_FTOKMS:
            if (cli_parse_long(cmd, "--fake-token-ms", optarg, 0, 600000, &v)) return 2;
            fp.token_ms = (int)v;
            break;
        case O_F429:
        case O_F500:
        case O_FCLOSE:
        case O_FCUT:
            if (cli_parse_long(cmd, "--fake-every-*", optarg, 0, 1 << 30, &v)) return 2;
            if (c == O_F429)
                fp.every_429 = (int)v;
            else if (c == O_F500)
                fp.every_500 = (int)v;
            else if (c == O_FCLOSE)
                fp.every_close = (int)v;
            else
                fp.every_cut = (int)v;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            return 2;
        }
    }
    if (optind < argc) return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    raise_nofile();
    if (fake_port >= 0) {
        fp.port = (int)fake_port;
        return run_fake(&fp);
    }
    if (!p.url) return cli_usage_error(cmd, "--url is required");
    if (trace_path && rate > 0)
        return cli_usage_error(cmd, "--rate and --trace exclude each other");

    struct syn_trace *t = NULL;
    char err[512];
    int rc = 1;
    if (trace_path) {
        if (syn_trace_load(trace_path, &t, err, sizeof err)) {
            fprintf(stderr, "synapse bench load: %s\n", err);
            return 1;
        }
        sc.duration_s = duration > 0 ? p.warmup_s + duration : 0;
        syn_trace_scale(t, &sc);
        if (t->n == 0) {
            fprintf(stderr, "synapse bench load: no requests left in %s after scaling\n",
                    trace_path);
            syn_trace_free(t);
            return 1;
        }
    } else {
        if (rate <= 0) rate = 10;
        if (duration <= 0) duration = 10;
        if (syn_trace_poisson(rate, p.warmup_s + duration, (int)prompt, (int)output, p.seed, &t)) {
            fprintf(stderr, "synapse bench load: out of memory\n");
            return 1;
        }
    }
    p.trace = t;
    if (quiet) p.progress_s = 0;
    fprintf(stderr, "synapse bench load: %zu requests over %.1f s (%s) against %s\n", t->n,
            t->span_s, trace_path ? trace_path : "Poisson", p.url);
    struct syn_load_report *r = NULL;
    if (syn_load_run(&p, &r, err, sizeof err)) {
        fprintf(stderr, "synapse bench load: %s\n", err);
        goto out;
    }
    syn_load_print(r, json_path && !strcmp(json_path, "-") ? stderr : stdout);
    rc = 0;
    if (json_path) {
        FILE *f = open_out(json_path);
        if (!f || syn_load_write_json(r, with_requests, f)) rc = 1;
        if (f && f != stdout) fclose(f);
    }
    if (csv_path) {
        FILE *f = open_out(csv_path);
        if (!f || syn_load_write_csv(r, f)) rc = 1;
        if (f && f != stdout) fclose(f);
    }
out:
    syn_load_report_free(r);
    syn_trace_free(t);
    return rc;
}
