/* Traces (parsing, scaling) and the pool simulator's invariants: always-on costs N x duration,
 * scale to zero with nothing to do costs nothing, a burst after idle pays a cold start, the
 * policy's backlog rule decides how many workers start, batching beats one at a time. */
#include "harness.h"

#include "bench/sim.h"
#include "bench/stats.h"
#include "bench/trace.h"
#include "synapse/error.h"

#include <math.h>

/* ---- traces ---- */

static struct syn_trace *parse(const char *text)
{
    struct syn_trace *t = NULL;
    char err[256];
    int rc = syn_trace_parse(text, strlen(text), "test.csv", &t, err, sizeof err);
    if (rc) FAIL("parse failed: %s", err);
    return t;
}

TEST(trace_parses_bom_crlf_and_azure_timestamps)
{
    struct syn_trace *t = parse("\xEF\xBB\xBFTIMESTAMP,ContextTokens,GeneratedTokens\r\n"
                                "2023-11-16 18:17:03.9799600,4808,10\r\n"
                                "2023-11-16 18:17:04.0319600,3180,8\r\n"
                                "2023-11-16 18:18:04.5000000,110,0\r\n");
    CHECK_EQ_INT(t->n, 3);
    CHECK_NEAR(t->reqs[0].t, 0, 1e-9);
    CHECK_NEAR(t->reqs[1].t, 0.052, 1e-6);
    CHECK_NEAR(t->reqs[2].t, 60.52004, 1e-6);
    CHECK_NEAR(t->span_s, 60.52004, 1e-6);
    CHECK_EQ_INT(t->reqs[0].prompt_tokens, 4808);
    CHECK_EQ_INT(t->reqs[1].output_tokens, 8);
    CHECK_EQ_INT(t->reqs[2].output_tokens, 1); /* at least one token is always asked for */
    syn_trace_free(t);
}

TEST(trace_parses_seconds_any_column_order_and_sorts)
{
    struct syn_trace *t = parse("output_tokens,time,prompt_tokens\n"
                                "5,10.5,100\n"
                                "7,2.5,200\n"
                                "\n");
    CHECK_EQ_INT(t->n, 2);
    CHECK_NEAR(t->reqs[0].t, 0, 1e-9);
    CHECK_EQ_INT(t->reqs[0].prompt_tokens, 200);
    CHECK_EQ_INT(t->reqs[0].output_tokens, 7);
    CHECK_NEAR(t->reqs[1].t, 8.0, 1e-9);
    syn_trace_free(t);
}

TEST(trace_rejects_bad_input_with_the_line)
{
    struct syn_trace *t = NULL;
    char err[256];
    const char *no_col = "TIMESTAMP,ContextTokens\n1,2\n";
    CHECK(syn_trace_parse(no_col, strlen(no_col), "a.csv", &t, err, sizeof err) == SYN_EFORMAT);
    CHECK(strstr(err, "GeneratedTokens") != NULL);
    CHECK(t == NULL);
    const char *bad_time = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                           "2023-11-16 18:17:03,1,2\n"
                           "yesterday,1,2\n";
    CHECK(syn_trace_parse(bad_time, strlen(bad_time), "b.csv", &t, err, sizeof err) == SYN_EFORMAT);
    CHECK(strstr(err, "b.csv line 3") != NULL);
    const char *bad_count = "TIMESTAMP,ContextTokens,GeneratedTokens\n1,-4,2\n";
    CHECK(syn_trace_parse(bad_count, strlen(bad_count), "c.csv", &t, err, sizeof err) ==
          SYN_EFORMAT);
    const char *short_row = "TIMESTAMP,ContextTokens,GeneratedTokens\n1,4\n";
    CHECK(syn_trace_parse(short_row, strlen(short_row), "d.csv", &t, err, sizeof err) ==
          SYN_EFORMAT);
    CHECK(syn_trace_parse("", 0, "e.csv", &t, err, sizeof err) == SYN_EFORMAT);
    CHECK(syn_trace_load("/nonexistent/trace.csv", &t, err, sizeof err) == SYN_EIO);
}

TEST(trace_scaling_time_tokens_context_start_and_duration)
{
    struct syn_trace *t = parse("time,prompt_tokens,output_tokens\n"
                                "100,1000,10\n"
                                "101,3,1\n"
                                "103,200,300\n"
                                "110,50,50\n");
    struct syn_trace_scaling s = {
        .start_s = 1, .time_scale = 2, .token_scale = 0.1, .duration_s = 10, .max_context = 25};
    syn_trace_scale(t, &s);
    /* the first arrival is cut by start_s, the last by the duration (18 s after scaling) */
    CHECK_EQ_INT(t->n, 2);
    CHECK_NEAR(t->reqs[0].t, 0, 1e-9);
    CHECK_NEAR(t->reqs[1].t, 4, 1e-9);
    CHECK_EQ_INT(t->reqs[0].prompt_tokens, 1); /* 0.3 rounds to 0, and at least 1 */
    CHECK_EQ_INT(t->reqs[0].output_tokens, 1);
    /* 20 + 30 > 25: the prompt is shortened first */
    CHECK_EQ_INT(t->reqs[1].output_tokens, 24);
    CHECK_EQ_INT(t->reqs[1].prompt_tokens, 1);
    CHECK_NEAR(t->span_s, 4, 1e-9);
    syn_trace_free(t);
}

TEST(trace_poisson_rate_and_determinism)
{
    struct syn_trace *a = NULL, *b = NULL;
    CHECK_EQ_INT(syn_trace_poisson(100, 100, 64, 32, 7, &a), 0);
    CHECK_EQ_INT(syn_trace_poisson(100, 100, 64, 32, 7, &b), 0);
    CHECK_EQ_INT(a->n, b->n);
    CHECK(a->n > 9500 && a->n < 10500); /* 10000 expected, sd 100 */
    for (size_t i = 1; i < a->n; i++) CHECK(a->reqs[i].t >= a->reqs[i - 1].t);
    CHECK(a->reqs[a->n - 1].t < 100);
    CHECK_NEAR(a->reqs[17].t, b->reqs[17].t, 0);
    CHECK_EQ_INT(a->reqs[5].prompt_tokens, 64);
    syn_trace_free(a);
    syn_trace_free(b);
}

TEST(trace_reads_the_azure_traces)
{
    struct syn_trace *t = NULL;
    char err[256];
    const char *path = syn_test_shared("traces/azure-llm-2023/AzureLLMInferenceTrace_code.csv");
    if (access(path, R_OK) != 0) SKIP("no %s", path);
    CHECK_EQ_INT(syn_trace_load(path, &t, err, sizeof err), 0);
    CHECK(t->n > 8000);
    CHECK(t->span_s > 3000 && t->span_s < 4000); /* about an hour */
    syn_trace_free(t);
}

TEST(stats_quantiles_interpolate)
{
    double v[] = {5, 1, 4, 2, 3};
    syn_stats_sort(v, 5);
    CHECK_NEAR(syn_stats_quantile(v, 5, 0.5), 3, 1e-12);
    CHECK_NEAR(syn_stats_quantile(v, 5, 0.9), 4.6, 1e-12);
    CHECK_NEAR(syn_stats_quantile(v, 5, 0), 1, 1e-12);
    CHECK_NEAR(syn_stats_quantile(v, 5, 1), 5, 1e-12);
    CHECK_NEAR(syn_stats_quantile(v, 0, 0.5), 0, 0);
}

/* ---- the service model and policies ---- */

TEST(sim_model_from_engine_json)
{
    const char *json = "{\"model\":\"x\",\"threads\":2,\"prompt_tokens\":128,"
                       "\"prefill_tokens_per_s\":3200.0,\"first_token_s\":0.25,"
                       "\"decode\":[{\"batch\":1,\"tokens_per_s\":500},"
                       "{\"batch\":16,\"tokens_per_s\":2000}]}";
    struct syn_sim_model m;
    char err[256];
    CHECK_EQ_INT(syn_sim_model_from_json(json, &m, err, sizeof err), 0);
    CHECK_EQ_INT(m.decode.n, 2);
    CHECK_EQ_INT(m.prefill.n, 1);
    CHECK_EQ_INT(m.threads, 2);
    CHECK_NEAR(m.cold_start_s, 0.25, 1e-12);
    /* at the measured points: the measurement */
    CHECK_NEAR(syn_sim_step_time(&m, 1, 0), 0.002, 1e-12);
    CHECK_NEAR(syn_sim_step_time(&m, 16, 0), 0.008, 1e-12);
    CHECK_NEAR(syn_sim_step_time(&m, 0, 128), 0.04, 1e-12);
    /* a short prefill still reads every weight once */
    CHECK_NEAR(syn_sim_step_time(&m, 0, 2), 0.002, 1e-12);
    /* decode and prefill in one step: the weights are read once, not twice */
    CHECK_NEAR(syn_sim_step_time(&m, 16, 128), 0.008 + 0.04 - 0.002, 1e-12);
    /* more rows of either kind never cost less */
    double prev = 0;
    for (int r = 1; r <= 512; r++) {
        double s = syn_sim_step_time(&m, r, 0), t = syn_sim_step_time(&m, 4, r);
        CHECK(s >= prev);
        CHECK(t >= syn_sim_step_time(&m, 4, r - 1));
        prev = s;
    }
    /* a second run adds its points */
    const char *more = "{\"prompt_tokens\":512,\"prefill_tokens_per_s\":2560.0,"
                       "\"decode\":[{\"batch\":32,\"tokens_per_s\":2000}]}";
    CHECK_EQ_INT(syn_sim_model_add_json(more, &m, err, sizeof err), 0);
    CHECK_EQ_INT(m.prefill.n, 2);
    CHECK_NEAR(syn_sim_step_time(&m, 0, 512), 0.2, 1e-12);
    CHECK_NEAR(syn_sim_step_time(&m, 32, 0), 0.016, 1e-12);
    CHECK(syn_sim_model_from_json("{\"decode\":[]}", &m, err, sizeof err) == SYN_EFORMAT);
    CHECK(syn_sim_model_from_json("not json", &m, err, sizeof err) == SYN_EFORMAT);
}

TEST(sim_policy_specs)
{
    struct syn_scale_policy base = syn_scale_default_policy();
    base.max_workers = 4;
    struct syn_sim_policy p;
    char err[256];
    CHECK_EQ_INT(syn_sim_policy_parse("always-on:3", &base, &p, err, sizeof err), 0);
    CHECK_EQ_INT(p.scale.min_warm, 3);
    CHECK_EQ_INT(p.scale.max_workers, 3);
    CHECK_EQ_INT(syn_sim_policy_parse("scale-to-zero:30", &base, &p, err, sizeof err), 0);
    CHECK_EQ_INT(p.scale.min_warm, 0);
    CHECK_NEAR(p.scale.idle_timeout_s, 30, 0);
    CHECK_EQ_INT(p.scale.max_workers, 4);
    CHECK_EQ_INT(syn_sim_policy_parse("min-warm:1:15", &base, &p, err, sizeof err), 0);
    CHECK_EQ_INT(p.scale.min_warm, 1);
    CHECK_EQ_INT(p.predictive, 0);
    CHECK_EQ_INT(syn_sim_policy_parse("predictive:0:10", &base, &p, err, sizeof err), 0);
    CHECK_EQ_INT(p.predictive, 1);
    const char *bad[] = {"always-on",  "always-on:0", "always-on:1.5",    "scale-to-zero:-1",
                         "min-warm:1", "sometimes:2", "scale-to-zero:5x", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (syn_sim_policy_parse(bad[i], &base, &p, err, sizeof err) != SYN_EINVAL)
            FAIL("'%s' was accepted", bad[i]);
}

/* ---- the simulation ---- */

static struct syn_trace *trace_of(const double *times, size_t n, int prompt, int output)
{
    struct syn_trace *t = calloc(1, sizeof *t);
    t->reqs = calloc(n ? n : 1, sizeof *t->reqs);
    t->n = n;
    for (size_t i = 0; i < n; i++) t->reqs[i] = (struct syn_trace_req){times[i], prompt, output};
    t->span_s = n ? times[n - 1] : 0;
    return t;
}

static struct syn_sim_result *simulate_seeded(const struct syn_trace *t, const char *spec,
                                              int max_workers, uint64_t phase_seed)
{
    struct syn_sim_params p = syn_sim_default_params();
    p.trace = t;
    p.phase_seed = phase_seed;
    p.price_per_hour = 3.6; /* $0.001 per worker-second */
    p.timeline = 1;
    struct syn_scale_policy base = syn_scale_default_policy();
    base.max_workers = max_workers;
    base.cold_start_s = p.model.cold_start_s;
    char err[256];
    if (syn_sim_policy_parse(spec, &base, &p.policy, err, sizeof err)) FAIL("%s", err);
    struct syn_sim_result *r = NULL;
    if (syn_sim_run(&p, &r, err, sizeof err)) FAIL("sim failed: %s", err);
    return r;
}

static struct syn_sim_result *simulate(const struct syn_trace *t, const char *spec, int max_workers)
{
    return simulate_seeded(t, spec, max_workers, 0);
}

TEST(sim_always_on_costs_n_times_duration)
{
    struct syn_trace *t = NULL;
    CHECK_EQ_INT(syn_trace_poisson(5, 120, 64, 32, 3, &t), 0);
    for (int n = 1; n <= 3; n++) {
        char spec[32];
        snprintf(spec, sizeof spec, "always-on:%d", n);
        struct syn_sim_result *r = simulate(t, spec, 8);
        CHECK(r->end_s >= t->span_s);
        CHECK_NEAR(r->worker_seconds, n * r->end_s, 1e-6);
        CHECK_NEAR(r->cost, n * r->end_s * 3.6 / 3600, 1e-9);
        CHECK_EQ_INT(r->workers_started, 0); /* the N were up before the trace began */
        CHECK_EQ_INT(r->completed, t->n);
        CHECK_EQ_INT(r->waited_cold, 0);
        uint64_t tokens = r->prompt_tokens + r->output_tokens;
        CHECK_NEAR(r->cost_per_mtok, r->cost / (double)tokens * 1e6, 1e-9);
        syn_sim_result_free(r);
    }
    syn_trace_free(t);
}

TEST(sim_scale_to_zero_without_arrivals_costs_nothing)
{
    struct syn_trace *t = trace_of(NULL, 0, 1, 1);
    struct syn_sim_result *r = simulate(t, "scale-to-zero:30", 4);
    CHECK_NEAR(r->worker_seconds, 0, 0);
    CHECK_NEAR(r->cost, 0, 0);
    CHECK_EQ_INT(r->workers_started, 0);
    CHECK_NEAR(r->attainment, 1, 0);
    syn_sim_result_free(r);
    syn_trace_free(t);
}

TEST(sim_burst_after_idle_pays_a_cold_start)
{
    /* one request, 100 s of nothing, then a burst of 8 */
    double times[] = {0, 100, 100.01, 100.02, 100.03, 100.04, 100.05, 100.06, 100.07};
    struct syn_trace *t = trace_of(times, 9, 32, 16);
    const double cold = syn_sim_default_model().cold_start_s;

    struct syn_sim_result *r = simulate(t, "scale-to-zero:10", 4);
    CHECK(r->ttft[0] >= cold); /* nobody was up for the first one */
    for (int i = 1; i < 9; i++)
        if (r->ttft[i] < cold - 0.07)
            FAIL("request %d: TTFT %.3f s without a cold start", i, r->ttft[i]);
    CHECK_EQ_INT(r->workers_started, 2); /* one for the first request, one for the burst */
    CHECK_EQ_INT(r->waited_cold, 9);
    /* paid: two workers, each from its start to its reaping after 10 idle seconds */
    CHECK(r->worker_seconds > 2 * (cold + 10));
    CHECK(r->worker_seconds < 2 * (cold + 10 + 1.0));
    syn_sim_result_free(r);

    /* with one worker kept warm, the burst finds it ready */
    r = simulate(t, "min-warm:1:10", 4);
    for (int i = 0; i < 9; i++)
        if (r->ttft[i] >= cold) FAIL("request %d: TTFT %.3f s with a warm worker", i, r->ttft[i]);
    CHECK_EQ_INT(r->workers_started, 0);
    CHECK_NEAR(r->worker_seconds, r->end_s, 1e-6);
    syn_sim_result_free(r);
    syn_trace_free(t);
}

TEST(sim_backlog_starts_workers_by_the_policy)
{
    /* 40 requests at once: 40 slots needed / (16 x 0.8) per worker = 4 workers, capped at 3 */
    double times[40];
    for (int i = 0; i < 40; i++) times[i] = 0.001 * i;
    struct syn_trace *t = trace_of(times, 40, 16, 64);
    struct syn_sim_result *r = simulate(t, "scale-to-zero:5", 3);
    CHECK_EQ_INT(r->peak_workers, 3);
    CHECK_EQ_INT(r->workers_started, 3);
    CHECK_EQ_INT(r->completed, 40);
    /* the pool size at every tick never passes the cap */
    for (size_t k = 0; k < r->n_ticks; k++) CHECK(r->ticks[k].alive + r->ticks[k].starting <= 3);
    syn_sim_result_free(r);
    r = simulate(t, "scale-to-zero:5", 8);
    CHECK_EQ_INT(r->peak_workers, 4);
    syn_sim_result_free(r);
    syn_trace_free(t);
}

TEST(sim_drains_workers_a_steady_trickle_keeps_busy)
{
    /* a burst that needs 3 workers, then 60 s of one request every 50 ms, each holding a slot
     * ~0.4 s: one worker carries it (~8 of 16 slots), but a job arriving while a worker is
     * mid-step goes to an idle one, so no worker idles for 5 s and only draining shrinks the
     * pool (without it: ~198 worker-seconds) */
    enum { BURST = 40, TRICKLE = 1200 };
    static double times[BURST + TRICKLE];
    for (int i = 0; i < BURST; i++) times[i] = 0.001 * i;
    for (int i = 0; i < TRICKLE; i++) times[BURST + i] = 1.0 + 0.05 * i;
    struct syn_trace *t = trace_of(times, BURST + TRICKLE, 16, 128);
    struct syn_sim_result *r = simulate(t, "scale-to-zero:5", 3);
    CHECK_EQ_INT(r->completed, BURST + TRICKLE);
    CHECK_EQ_INT(r->peak_workers, 3);
    CHECK_EQ_INT(r->workers_drained, 2);
    /* one worker for the last half of the trickle, and both drains at least 5 s apart */
    double first_one = -1;
    for (size_t k = 0; k < r->n_ticks; k++) {
        const struct syn_sim_tick *tk = &r->ticks[k];
        if (tk->t > 20 && tk->t < 60) CHECK_EQ_INT(tk->alive + tk->starting, 1);
        if (first_one < 0 && tk->alive == 1) first_one = tk->t;
    }
    CHECK(first_one >= 10); /* burst ends ~1 s, a surplus of 5 s, then another of 5 s */
    CHECK(r->worker_seconds < 61 + 2 * 15);
    syn_sim_result_free(r);
    syn_trace_free(t);
}

TEST(sim_batching_beats_one_at_a_time)
{
    double times[16] = {0};
    struct syn_trace *t = trace_of(times, 16, 32, 64);
    struct syn_sim_params p = syn_sim_default_params();
    p.trace = t;
    char err[256];
    struct syn_scale_policy base = syn_scale_default_policy();
    CHECK_EQ_INT(syn_sim_policy_parse("always-on:1", &base, &p.policy, err, sizeof err), 0);
    struct syn_sim_result *batched = NULL, *single = NULL;
    CHECK_EQ_INT(syn_sim_run(&p, &batched, err, sizeof err), 0);
    p.policy.scale.slots_per_worker = 1;
    CHECK_EQ_INT(syn_sim_run(&p, &single, err, sizeof err), 0);
    /* 16 sequences share each step: the last one ends far sooner than one after another */
    CHECK(batched->end_s * 2 < single->end_s);
    /* one at a time, the i-th waits for the i-1 before it: TTFT grows with i */
    for (int i = 1; i < 16; i++) CHECK(single->ttft[i] > single->ttft[i - 1]);
    /* TPOT: (e2e - ttft) / 63 */
    CHECK_NEAR(batched->tpot[3], (batched->e2e[3] - batched->ttft[3]) / 63, 1e-12);
    syn_sim_result_free(batched);
    syn_sim_result_free(single);
    syn_trace_free(t);
}

TEST(sim_sampling_cost_is_paid_per_row)
{
    /* 16 requests at once on one worker: every decode step samples 16 rows, so each output
     * token costs 16 x the per-row cost more; one request alone pays it once per token */
    double times[16] = {0};
    struct syn_trace *t = trace_of(times, 16, 32, 64);
    struct syn_sim_params p = syn_sim_default_params();
    p.trace = t;
    p.model.step_overhead_s = 0;
    char err[256];
    struct syn_scale_policy base = syn_scale_default_policy();
    CHECK_EQ_INT(syn_sim_policy_parse("always-on:1", &base, &p.policy, err, sizeof err), 0);
    struct syn_sim_result *free_rows = NULL, *paid = NULL;
    CHECK_EQ_INT(syn_sim_run(&p, &free_rows, err, sizeof err), 0);
    p.model.sample_s_per_row = 1e-4;
    CHECK_EQ_INT(syn_sim_run(&p, &paid, err, sizeof err), 0);
    /* after every prompt has ended, all 16 decode together: TPOT of the last up by 16 x 0.1 ms
     * (the decode steps only; prefill steps sample the rows whose prompts end there) */
    CHECK_NEAR(paid->tpot[15] - free_rows->tpot[15], 16 * 1e-4, 1e-4);
    CHECK(paid->ttft[15] > free_rows->ttft[15]);
    syn_sim_result_free(free_rows);
    syn_sim_result_free(paid);
    syn_trace_free(t);
    /* a model from `bench engine --json` takes the per-row cost it measured */
    struct syn_sim_model m;
    const char *json =
        "{\"prompt_tokens\":128,\"prefill_tokens_per_s\":3200.0,"
        "\"decode\":[{\"batch\":1,\"tokens_per_s\":500}],\"sample_us_per_row\":42.5}";
    CHECK_EQ_INT(syn_sim_model_from_json(json, &m, err, sizeof err), 0);
    CHECK_NEAR(m.sample_s_per_row, 42.5e-6, 1e-15);
}

/* Two warm workers on two cores, a 32-token prompt and one output token each: its TTFT is one
 * prefill step (no hop, no overhead). */
static double corun_ttft(size_t n_req, int cores, double corun)
{
    double times[2] = {0, 0};
    struct syn_trace *t = trace_of(times, n_req, 32, 1);
    struct syn_sim_params p = syn_sim_default_params();
    p.trace = t;
    p.model.step_overhead_s = 0;
    p.model.hop_s = 0;
    p.model.threads = 1;
    p.cpu_cores = cores;
    p.corun_slowdown = corun;
    char err[256];
    struct syn_scale_policy base = syn_scale_default_policy();
    base.max_workers = 2;
    if (syn_sim_policy_parse("always-on:2", &base, &p.policy, err, sizeof err)) FAIL("%s", err);
    struct syn_sim_result *r = NULL;
    if (syn_sim_run(&p, &r, err, sizeof err)) FAIL("sim failed: %s", err);
    double ttft = r->ttft[0];
    syn_sim_result_free(r);
    syn_trace_free(t);
    return ttft;
}

TEST(sim_corun_slowdown_slows_steps_while_other_cores_are_busy)
{
    const struct syn_sim_params d = syn_sim_default_params();
    double alone = corun_ttft(2, 2, 1); /* two requests, one per worker, stepping at once */
    CHECK_NEAR(alone, syn_sim_step_time(&d.model, 0, 32), 1e-12);
    CHECK_NEAR(corun_ttft(2, 2, 1.8), 1.8 * alone, 1e-9);           /* the other core is busy */
    CHECK_NEAR(corun_ttft(1, 2, 1.8), alone, 1e-12);                /* the other worker idles */
    CHECK_NEAR(corun_ttft(2, 4, 1.8), (1 + 0.8 / 3) * alone, 1e-9); /* one core of three */
    CHECK_NEAR(corun_ttft(2, 0, 1.8), alone, 1e-12); /* a machine each: nothing shared */
}

TEST(sim_phase_seed_moves_ticks_and_heartbeats_reproducibly)
{
    /* one warm worker and ten bursts of 14 jobs, 10 s apart, each holding its slots a few
     * hundred ms: a second worker starts only when a heartbeat lands inside a burst (14 > 16 x
     * 0.8 running), so how many start depends on the heartbeats' phase */
    double times[140];
    for (int b = 0; b < 10; b++)
        for (int i = 0; i < 14; i++) times[b * 14 + i] = 10.0 * (b + 1) + 0.0005 * i;
    struct syn_trace *t = trace_of(times, 140, 16, 64);

    struct syn_sim_result *r0 = simulate_seeded(t, "min-warm:1:2", 2, 0);
    CHECK(r0->n_ticks > 0);
    CHECK_NEAR(r0->ticks[0].t, 0, 0); /* seed 0: the first tick at t = 0, as before */
    int lo = 1 << 30, hi = -1;
    for (uint64_t seed = 1; seed <= 8; seed++) {
        struct syn_sim_result *a = simulate_seeded(t, "min-warm:1:2", 2, seed);
        struct syn_sim_result *b = simulate_seeded(t, "min-warm:1:2", 2, seed);
        CHECK(a->ticks[0].t > 0 && a->ticks[0].t <= 0.2 + 1e-12);
        /* the same seed, the same run */
        CHECK_EQ_INT(a->workers_started, b->workers_started);
        CHECK_NEAR(a->worker_seconds, b->worker_seconds, 0);
        CHECK_NEAR(a->ttft_p99, b->ttft_p99, 0);
        CHECK_EQ_INT(a->completed, 140);
        if (a->workers_started < lo) lo = a->workers_started;
        if (a->workers_started > hi) hi = a->workers_started;
        syn_sim_result_free(a);
        syn_sim_result_free(b);
    }
    /* some phases see bursts that others miss */
    if (lo == hi) FAIL("every seed started %d workers: the phase changed nothing", lo);
    syn_sim_result_free(r0);
    syn_trace_free(t);
}
