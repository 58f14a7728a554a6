/*
 * `synapse bench sim`: the pool simulator (src/bench/sim.h) over a trace, for one or more
 * autoscaling policies, priced per worker-hour.
 */
#include "cli.h"

#include "bench/sim.h"
#include "bench/trace.h"
#include "synapse/autoscale.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_POLICIES 16

static void usage(FILE *f)
{
    fprintf(
        f,
        "Usage: synapse bench sim (--trace FILE | --rate R --duration S) --policy SPEC\n"
        "                         [--policy SPEC ...] [--price-per-hour P] [--slo-ttft-ms A]\n"
        "                         [--time-scale X] [--token-scale Y] [--model-json FILE]\n"
        "                         [--json FILE]\n\n"
        "Discrete-event simulation of one model's worker pool over a trace: the gateway's own\n"
        "autoscaling policy (syn_autoscale_decide) every 200 ms tick, workers that take\n"
        "cold-start seconds to be ready and exit after their idle timeout (or are drained\n"
        "when the policy finds them surplus for as long), and continuous batching in each\n"
        "worker with step times fitted from `synapse bench engine --json`.\n"
        "Reports, per policy: workers started, worker-seconds, cost, $ per million tokens, SLO\n"
        "attainment, TTFT p50/p99 and TPOT p99.\n\n"
        "Policies (SPEC):\n"
        "  always-on:N        N workers up all the time (min_warm = max_workers = N)\n"
        "  scale-to-zero:T    no worker without work; extra workers exit after T idle seconds\n"
        "  min-warm:K:T       K workers always up, the others exit after T idle seconds\n"
        "  predictive:K:T     min-warm:K:T, and the policy also scales on arrival rate x mean\n"
        "                     service time (Little's law), before a backlog builds\n\n"
        "Options:\n"
        "      --trace FILE          CSV trace (TIMESTAMP,ContextTokens,GeneratedTokens)\n"
        "      --time-scale X        multiply the trace's time offsets by X\n"
        "      --token-scale Y       multiply its lengths by Y\n"
        "      --trace-start S       skip the trace's first S seconds (before scaling)\n"
        "      --duration S          keep the first S seconds (after scaling)\n"
        "      --max-context N       shorten prompts (then outputs) to fit N tokens\n"
        "      --rate R              Poisson arrivals instead of a trace (with --duration,\n"
        "                            --prompt-tokens, --output-tokens; default 64 each)\n"
        "      --max-workers W       workers at most (default 4)\n"
        "      --max-seqs Q          slots per worker (default 16)\n"
        "      --target-util U       the policy's target slot use (default 0.8)\n"
        "      --model-json FILE     `synapse bench engine --json` output (default: round\n"
        "                            figures for stories15m F16 on 2 cores); repeat it to\n"
        "                            add points (e.g. runs with other --prompt lengths)\n"
        "      --cold-start S        start-to-ready seconds (default: the model's first_token_s)\n"
        "      --hop-ms MS           gateway/Redis round trip per first and last token\n"
        "      --step-overhead-ms MS time added to every engine step\n"
        "      --sample-us US        time added per sampled row (default: the model JSON's\n"
        "                            sample_us_per_row, else 0)\n"
        "      --max-batched-tokens N  rows per step (default 256)\n"
        "      --cpu-cores C         workers share C cores (default 0: a machine each)\n"
        "      --worker-threads T    engine threads per worker, with --cpu-cores\n"
        "      --corun-slowdown X    with --cpu-cores: a step's time with every core running\n"
        "                            an engine thread over its time alone (measure it with\n"
        "                            `bench engine` on every core at once); steps slow in\n"
        "                            proportion to the other cores busy, starting workers\n"
        "                            included (default 1: not at all)\n"
        "      --price-per-hour P    $ per worker-hour (default 1)\n"
        "      --slo-ttft-ms A       (default 200)    --slo-tpot-ms B  (default 50)\n"
        "      --tick-ms N           policy tick (default 200)  --heartbeat-ms N (default 1000)\n"
        "      --phase-seed S        draw the first tick's and each worker's heartbeat phase\n"
        "                            from seed S (default 0: tick at 0, heartbeats from ready);\n"
        "                            a real pool's phases are jitter, so runs over several\n"
        "                            seeds show the spread a real run falls in\n"
        "      --json FILE           results as JSON ('-' = stdout)\n"
        "      --timeline FILE       CSV of the pool at every tick (policy,t,alive,starting,\n"
        "                            running,waiting,arrivals,started)\n"
        "      --requests-csv FILE   CSV per request (policy,t,ttft,tpot,e2e)\n"
        "  -h, --help                show this help\n");
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, len = 0;
    char *b = malloc(cap);
    while (b) {
        size_t got = fread(b + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) break;
        if (len + 1 == cap) {
            char *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (b) b[len] = 0;
    return b;
}

int cmd_bench_sim(int argc, char **argv)
{
    enum {
        O_TRACE = 256,
        O_TSCALE,
        O_KSCALE,
        O_TSTART,
        O_DURATION,
        O_MAXCTX,
        O_RATE,
        O_PROMPT,
        O_OUTPUT,
        O_POLICY,
        O_MAXW,
        O_SEQS,
        O_UTIL,
        O_MODEL,
        O_COLD,
        O_HOP,
        O_OVER,
        O_SAMPLE,
        O_MBT,
        O_CORES,
        O_CORUN,
        O_WTHREADS,
        O_PRICE,
        O_TTFT,
        O_TPOT,
        O_TICK,
        O_HB,
        O_PHASE,
        O_JSON,
        O_TIMELINE,
        O_REQS,
    };
    static const struct option opts[] = {
        {"trace", required_argument, 0, O_TRACE},
        {"time-scale", required_argument, 0, O_TSCALE},
        {"token-scale", required_argument, 0, O_KSCALE},
        {"trace-start", required_argument, 0, O_TSTART},
        {"duration", required_argument, 0, O_DURATION},
        {"max-context", required_argument, 0, O_MAXCTX},
        {"rate", required_argument, 0, O_RATE},
        {"prompt-tokens", required_argument, 0, O_PROMPT},
        {"output-tokens", required_argument, 0, O_OUTPUT},
        {"policy", required_argument, 0, O_POLICY},
        {"max-workers", required_argument, 0, O_MAXW},
        {"max-seqs", required_argument, 0, O_SEQS},
        {"target-util", required_argument, 0, O_UTIL},
        {"model-json", required_argument, 0, O_MODEL},
        {"cold-start", required_argument, 0, O_COLD},
        {"hop-ms", required_argument, 0, O_HOP},
        {"step-overhead-ms", required_argument, 0, O_OVER},
        {"sample-us", required_argument, 0, O_SAMPLE},
        {"max-batched-tokens", required_argument, 0, O_MBT},
        {"cpu-cores", required_argument, 0, O_CORES},
        {"corun-slowdown", required_argument, 0, O_CORUN},
        {"worker-threads", required_argument, 0, O_WTHREADS},
        {"price-per-hour", required_argument, 0, O_PRICE},
        {"slo-ttft-ms", required_argument, 0, O_TTFT},
        {"slo-tpot-ms", required_argument, 0, O_TPOT},
        {"tick-ms", required_argument, 0, O_TICK},
        {"heartbeat-ms", required_argument, 0, O_HB},
        {"phase-seed", required_argument, 0, O_PHASE},
        {"json", required_argument, 0, O_JSON},
        {"timeline", required_argument, 0, O_TIMELINE},
        {"requests-csv", required_argument, 0, O_REQS},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *cmd = "bench sim", *trace_path = NULL, *json_path = NULL, *timeline_path = NULL,
               *reqs_path = NULL, *specs[MAX_POLICIES], *model_paths[8];
    int n_specs = 0, n_models = 0, c;
    struct syn_trace_scaling sc = {0, 1, 1, 0, 0};
    struct syn_sim_params p = syn_sim_default_params();
    struct syn_scale_policy base = syn_scale_default_policy();
    double rate = 0, duration = 0, d, cold = -1, hop = -1, over = -1, sample_us = -1;
    long prompt = 64, output = 64, v, mbt = 0, threads = 0;
    p.price_per_hour = 1.0;
    while ((c = cli_getopt(cmd, argc, argv, "h", opts)) != -1) {
        switch (c) {
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
        case O_DURATION:
            if (cli_parse_double(cmd, "--duration", optarg, 1e-3, 1e8, &duration)) return 2;
            break;
        case O_MAXCTX:
            if (cli_parse_long(cmd, "--max-context", optarg, 2, 1 << 24, &v)) return 2;
            sc.max_context = (int)v;
            break;
        case O_RATE:
            if (cli_parse_double(cmd, "--rate", optarg, 1e-6, 1e6, &rate)) return 2;
            break;
        case O_PROMPT:
            if (cli_parse_long(cmd, "--prompt-tokens", optarg, 1, 1 << 20, &prompt)) return 2;
            break;
        case O_OUTPUT:
            if (cli_parse_long(cmd, "--output-tokens", optarg, 1, 1 << 20, &output)) return 2;
            break;
        case O_POLICY:
            if (n_specs == MAX_POLICIES)
                return cli_usage_error(cmd, "at most %d --policy flags", MAX_POLICIES);
            specs[n_specs++] = optarg;
            break;
        case O_MAXW:
            if (cli_parse_long(cmd, "--max-workers", optarg, 1, 100000, &v)) return 2;
            base.max_workers = (int)v;
            break;
        case O_SEQS:
            if (cli_parse_long(cmd, "--max-seqs", optarg, 1, 4096, &v)) return 2;
            base.slots_per_worker = (int)v;
            break;
        case O_UTIL:
            if (cli_parse_double(cmd, "--target-util", optarg, 0.01, 1, &base.target_util))
                return 2;
            break;
        case O_MODEL:
            if (n_models == 8) return cli_usage_error(cmd, "at most 8 --model-json flags");
            model_paths[n_models++] = optarg;
            break;
        case O_COLD:
            if (cli_parse_double(cmd, "--cold-start", optarg, 0, 3600, &cold)) return 2;
            break;
        case O_HOP:
            if (cli_parse_double(cmd, "--hop-ms", optarg, 0, 1e6, &hop)) return 2;
            break;
        case O_OVER:
            if (cli_parse_double(cmd, "--step-overhead-ms", optarg, 0, 1e6, &over)) return 2;
            break;
        case O_SAMPLE:
            if (cli_parse_double(cmd, "--sample-us", optarg, 0, 1e9, &sample_us)) return 2;
            break;
        case O_MBT:
            if (cli_parse_long(cmd, "--max-batched-tokens", optarg, 1, 1 << 20, &mbt)) return 2;
            break;
        case O_CORUN:
            if (cli_parse_double(cmd, "--corun-slowdown", optarg, 1, 100, &p.corun_slowdown))
                return 2;
            break;
        case O_CORES:
            if (cli_parse_long(cmd, "--cpu-cores", optarg, 0, 4096, &v)) return 2;
            p.cpu_cores = (int)v;
            break;
        case O_WTHREADS:
            if (cli_parse_long(cmd, "--worker-threads", optarg, 1, 4096, &threads)) return 2;
            break;
        case O_PRICE:
            if (cli_parse_double(cmd, "--price-per-hour", optarg, 0, 1e9, &p.price_per_hour))
                return 2;
            break;
        case O_TTFT:
            if (cli_parse_double(cmd, "--slo-ttft-ms", optarg, 0, 1e9, &d)) return 2;
            p.slo_ttft_s = d / 1e3;
            break;
        case O_TPOT:
            if (cli_parse_double(cmd, "--slo-tpot-ms", optarg, 0, 1e9, &d)) return 2;
            p.slo_tpot_s = d / 1e3;
            break;
        case O_TICK:
            if (cli_parse_double(cmd, "--tick-ms", optarg, 1, 1e6, &d)) return 2;
            p.tick_s = d / 1e3;
            break;
        case O_HB:
            if (cli_parse_double(cmd, "--heartbeat-ms", optarg, 1, 1e6, &d)) return 2;
            p.heartbeat_s = d / 1e3;
            break;
        case O_PHASE:
            if (cli_parse_long(cmd, "--phase-seed", optarg, 0, LONG_MAX, &v)) return 2;
            p.phase_seed = (uint64_t)v;
            break;
        case O_JSON:
            json_path = optarg;
            break;
        case O_TIMELINE:
            timeline_path = optarg;
            break;
        case O_REQS:
            reqs_path = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            return 2;
        }
    }
    if (optind < argc) return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!trace_path && rate <= 0) return cli_usage_error(cmd, "--trace or --rate is required");
    if (trace_path && rate > 0)
        return cli_usage_error(cmd, "--rate and --trace exclude each other");
    if (n_specs == 0) return cli_usage_error(cmd, "at least one --policy is required");

    char err[512];
    for (int i = 0; i < n_models; i++) {
        char *text = read_all(model_paths[i]);
        if (!text) {
            fprintf(stderr, "synapse bench sim: cannot read %s\n", model_paths[i]);
            return 1;
        }
        int rc = i == 0 ? syn_sim_model_from_json(text, &p.model, err, sizeof err)
                        : syn_sim_model_add_json(text, &p.model, err, sizeof err);
        free(text);
        if (rc) {
            fprintf(stderr, "synapse bench sim: %s: %s\n", model_paths[i], err);
            return 1;
        }
    }
    if (cold >= 0) p.model.cold_start_s = cold;
    if (hop >= 0) p.model.hop_s = hop / 1e3;
    if (over >= 0) p.model.step_overhead_s = over / 1e3;
    if (sample_us >= 0) p.model.sample_s_per_row = sample_us / 1e6;
    if (mbt > 0) p.model.max_batched_tokens = (int)mbt;
    if (threads > 0) p.model.threads = (int)threads;
    base.cold_start_s = p.model.cold_start_s;

    struct syn_trace *t = NULL;
    if (trace_path) {
        if (syn_trace_load(trace_path, &t, err, sizeof err)) {
            fprintf(stderr, "synapse bench sim: %s\n", err);
            return 1;
        }
        sc.duration_s = duration;
        syn_trace_scale(t, &sc);
    } else {
        if (duration <= 0) duration = 60;
        if (syn_trace_poisson(rate, duration, (int)prompt, (int)output, 1, &t)) {
            fprintf(stderr, "synapse bench sim: out of memory\n");
            return 1;
        }
    }
    p.trace = t;
    p.timeline = timeline_path != NULL;

    FILE *fj = NULL, *ft = NULL, *fr = NULL;
    int rc = 1;
    if (json_path && !(fj = !strcmp(json_path, "-") ? stdout : fopen(json_path, "w"))) {
        fprintf(stderr, "synapse bench sim: cannot write %s\n", json_path);
        goto out;
    }
    if (timeline_path && !(ft = fopen(timeline_path, "w"))) {
        fprintf(stderr, "synapse bench sim: cannot write %s\n", timeline_path);
        goto out;
    }
    if (reqs_path && !(fr = fopen(reqs_path, "w"))) {
        fprintf(stderr, "synapse bench sim: cannot write %s\n", reqs_path);
        goto out;
    }
    if (ft) fprintf(ft, "policy,t,alive,starting,running,waiting,arrivals,started\n");
    if (fr) fprintf(fr, "policy,t,ttft_s,tpot_s,e2e_s\n");
    FILE *txt = fj == stdout ? stderr : stdout;
    fprintf(txt,
            "trace: %zu requests over %.1f s; model: %d decode + %d prefill points, cold start "
            "%.3f s, hop %.1f ms, step overhead %.2f ms, sampling %.1f us/row; "
            "%d slots/worker, at most %d workers; $%.4g per worker-hour; SLO TTFT %.0f ms, "
            "TPOT %.0f ms\n",
            t->n, t->span_s, p.model.decode.n, p.model.prefill.n, p.model.cold_start_s,
            1e3 * p.model.hop_s, 1e3 * p.model.step_overhead_s, 1e6 * p.model.sample_s_per_row,
            base.slots_per_worker, base.max_workers, p.price_per_hour, 1e3 * p.slo_ttft_s,
            1e3 * p.slo_tpot_s);
    fprintf(txt, "%-22s %7s %10s %10s %10s %7s %9s %9s %9s %7s\n", "policy", "starts", "worker-s",
            "cost $", "$/Mtok", "SLO %", "TTFT p50", "TTFT p99", "TPOT p99", "cold rq");
    if (fj)
        fprintf(fj, "{\"requests\":%zu,\"span_s\":%.3f,\"phase_seed\":%llu,\"policies\":[", t->n,
                t->span_s, (unsigned long long)p.phase_seed);
    for (int i = 0; i < n_specs; i++) {
        if (syn_sim_policy_parse(specs[i], &base, &p.policy, err, sizeof err)) {
            fprintf(stderr, "synapse bench sim: %s\n", err);
            goto out;
        }
        struct syn_sim_result *r = NULL;
        if (syn_sim_run(&p, &r, err, sizeof err)) {
            fprintf(stderr, "synapse bench sim: %s\n", err);
            goto out;
        }
        fprintf(txt, "%-22s %7d %10.1f %10.4f %10.4f %7.1f %7.1fms %7.1fms %7.1fms %7zu\n",
                p.policy.name, r->workers_started, r->worker_seconds, r->cost, r->cost_per_mtok,
                100 * r->attainment, 1e3 * r->ttft_p50, 1e3 * r->ttft_p99, 1e3 * r->tpot_p99,
                r->waited_cold);
        if (fj)
            fprintf(fj,
                    "%s{\"policy\":\"%s\",\"min_warm\":%d,\"max_workers\":%d,\"idle_timeout_s\":%g,"
                    "\"predictive\":%d,\"workers_started\":%d,\"peak_workers\":%d,"
                    "\"worker_seconds\":%.3f,\"end_s\":%.3f,\"cost\":%.6f,"
                    "\"cost_per_mtok\":%.6f,\"cost_per_mtok_output\":%.6f,"
                    "\"prompt_tokens\":%llu,\"output_tokens\":%llu,\"slo_attainment\":%.5f,"
                    "\"ttft_p50_ms\":%.3f,\"ttft_p90_ms\":%.3f,\"ttft_p99_ms\":%.3f,"
                    "\"ttft_max_ms\":%.3f,\"tpot_p50_ms\":%.3f,\"tpot_p99_ms\":%.3f,"
                    "\"e2e_p99_ms\":%.3f,\"waited_cold\":%zu,\"workers_drained\":%d}",
                    i ? "," : "", p.policy.name, p.policy.scale.min_warm,
                    p.policy.scale.max_workers, p.policy.scale.idle_timeout_s, p.policy.predictive,
                    r->workers_started, r->peak_workers, r->worker_seconds, r->end_s, r->cost,
                    r->cost_per_mtok, r->cost_per_mtok_out, (unsigned long long)r->prompt_tokens,
                    (unsigned long long)r->output_tokens, r->attainment, 1e3 * r->ttft_p50,
                    1e3 * r->ttft_p90, 1e3 * r->ttft_p99, 1e3 * r->ttft_max, 1e3 * r->tpot_p50,
                    1e3 * r->tpot_p99, 1e3 * r->e2e_p99, r->waited_cold, r->workers_drained);
        for (size_t k = 0; ft && k < r->n_ticks; k++) {
            const struct syn_sim_tick *tk = &r->ticks[k];
            fprintf(ft, "%s,%.3f,%d,%d,%d,%d,%d,%d\n", p.policy.name, tk->t, tk->alive,
                    tk->starting, tk->running, tk->waiting, tk->arrivals, tk->started);
        }
        for (size_t k = 0; fr && k < r->n; k++)
            fprintf(fr, "%s,%.6f,%.6f,%.6f,%.6f\n", p.policy.name, t->reqs[k].t, r->ttft[k],
                    r->tpot[k], r->e2e[k]);
        syn_sim_result_free(r);
    }
    if (fj) fprintf(fj, "]}\n");
    rc = 0;
out:
    if (fj && fj != stdout) fclose(fj);
    if (ft) fclose(ft);
    if (fr) fclose(fr);
    syn_trace_free(t);
    return rc;
}
