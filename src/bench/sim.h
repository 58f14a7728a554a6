/*
 * The pool simulator behind `synapse bench sim`: a discrete-event simulation of one model's
 * worker pool replaying a trace, to price autoscaling policies before running them.
 *
 * What is modelled, and how it mirrors the real thing:
 *   - the policy: every tick (200 ms, as the pool's timer) the simulator builds the same
 *     struct syn_scale_state the pool manager builds and calls the gateway's own
 *     syn_autoscale_decide() (src/gateway/autoscale.c); an arrival that finds no ready worker
 *     runs a tick at once, as syn_workpool_poke does. Running sequences and free slots reach the
 *     policy through heartbeats (every heartbeat_s), so the policy sees them as late as it does
 *     in the pool. The arrival rate is smoothed the pool's way (0.7 old + 0.3 new per tick).
 *     The phases of ticks and heartbeats are fixed (first tick at 0, heartbeats from each
 *     worker's ready time) unless phase_seed draws them.
 *   - workers: a started worker is ready cold_start_s later; the first min_warm run without an
 *     idle timeout, the others exit after idle_timeout_s without work and are reaped at the
 *     next tick (a worker is paid for from its start to its reaping). When the policy asks
 *     for a drain (a surplus that lasted idle_timeout_s), the ready worker beyond min_warm
 *     with the fewest running sequences claims nothing more and exits once its sequences
 *     finish, as a worker does on the pool's SIGTERM.
 *   - the scheduler: continuous batching as src/worker/worker.c does it: max_seqs sequences, at
 *     every step one decode token for each running sequence, then prefill chunks in admission
 *     order with what is left of max_batched_tokens; a sequence's first token comes at the end
 *     of the step that finishes its prompt. Queued jobs go to an idle ready worker at once, to
 *     a busy one at its next step (they are claimed while the step runs).
 *   - service time: from `synapse bench engine --json`: decode at each batch size gives the
 *     decode curve (b, b / tokens_per_s), prefill runs give the prefill curve (P, P /
 *     prefill_tokens_per_s); a step with d decode and p prefill rows takes the sum of the two,
 *     less the one pass over the weights they share (see syn_sim_step_time), plus a fixed
 *     per-step overhead; the gateway/Redis round trip adds hop_s to every first and last token.
 *     With cpu_cores set, workers on one machine share it: a step is slowed by (busy workers x
 *     threads per worker / cores) when that exceeds 1, and by corun_slowdown in proportion to
 *     the other cores busy below that.
 *
 * Not modelled: preemption when the KV cache is full, EOS before max_tokens, crashes and
 * reclaims, gateway admission (429s).
 */
#ifndef SYNAPSE_BENCH_SIM_H
#define SYNAPSE_BENCH_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "bench/trace.h"
#include "synapse/autoscale.h"

#define SYN_SIM_MAX_POINTS 32

/* A measured curve: x ascending, y its time in seconds. */
struct syn_sim_curve {
    int n;
    double x[SYN_SIM_MAX_POINTS];
    double y[SYN_SIM_MAX_POINTS];
};

/* The service-time model of one worker. Decode and prefill rows are priced apart: a decode row
 * also computes a row of logits (for the stories15m shape the output matrix is a third of the
 * weights), a prefill row computes none unless it ends its prompt. */
struct syn_sim_model {
    struct syn_sim_curve decode;  /* batch b -> seconds of one decode step (b / tokens_per_s) */
    struct syn_sim_curve prefill; /* P tokens of one prompt -> seconds (P / prefill_tokens_per_s) */
    double step_overhead_s;       /* added to every step (events, scheduling) */
    double sample_s_per_row;      /* added per sampled row: each decode row, and each prompt
                                     that ends in the step (its first token) */
    double hop_s;                 /* gateway -> Redis -> worker -> gateway, per first/last token */
    double cold_start_s;          /* start to ready */
    int max_batched_tokens;       /* rows per step at most (the worker's default 256) */
    int threads;                  /* engine threads per worker (for cpu_cores sharing) */
};

/* A model for the stories15m shape in F16 on one thread, for when no measurement is given
 * (tests). Its numbers are round figures, not a measurement. */
struct syn_sim_model syn_sim_default_model(void);

/* Fits the model from `synapse bench engine --json` output: the decode points, the prefill
 * point, and first_token_s as the cold start (start to ready is map + first token plus process
 * start, which the caller may override). Returns 0, or SYN_EFORMAT with a message. */
int syn_sim_model_from_json(const char *json, struct syn_sim_model *m, char *err, size_t errlen);

/* Adds the points of another `bench engine --json` run (e.g. with a longer --prompt) to m;
 * the cold start and threads stay. Returns 0 or SYN_EFORMAT. */
int syn_sim_model_add_json(const char *json, struct syn_sim_model *m, char *err, size_t errlen);

/* Seconds one engine step takes (without the overhead) with decode_rows decode tokens and
 * prefill_rows prompt tokens: each curve interpolated (through the origin, extrapolated along
 * its last segment, never decreasing), summed, less one pass over the weights when a step has
 * both (they are read once), and never less than that one pass (the batch-1 decode time). */
double syn_sim_step_time(const struct syn_sim_model *m, int decode_rows, int prefill_rows);

struct syn_sim_policy {
    char name[64];                 /* the spec it came from, for reports */
    struct syn_scale_policy scale; /* what syn_autoscale_decide gets */
    int predictive;                /* 1: give the policy the mean service time, so that it
                                      also scales on the arrival rate (Little's law) */
};

/* Parses a policy spec on top of base (max_workers, slots_per_worker, target_util, cold start):
 *   always-on:N        min_warm = max_workers = N
 *   scale-to-zero:T    min_warm 0, idle timeout T seconds
 *   min-warm:K:T       K workers always up, the rest exit after T idle seconds
 *   predictive:K:T     as min-warm:K:T, and the policy also looks at arrivals x service time
 * Returns 0, or SYN_EINVAL with a message. */
int syn_sim_policy_parse(const char *spec, const struct syn_scale_policy *base,
                         struct syn_sim_policy *out, char *err, size_t errlen);

struct syn_sim_params {
    const struct syn_trace *trace; /* (required) */
    struct syn_sim_model model;
    struct syn_sim_policy policy;
    double tick_s;                 /* the pool's tick (default 0.2) */
    double heartbeat_s;            /* workers' heartbeat (default 1.0) */
    double price_per_hour;         /* $ per worker-hour */
    double slo_ttft_s, slo_tpot_s; /* objectives (default 0.2, 0.05) */
    int cpu_cores;                 /* 0: each worker has its own machine; else they share these */
    /* With cpu_cores: how much slower a step runs while the other cores also run engine
     * threads (they share memory bandwidth and caches, and on a VM perhaps physical cores):
     * the ratio of a step's time with every core busy to its time alone, measured by running
     * `bench engine` on every core at once. While it runs, a step goes at
     * 1 / (1 + (corun_slowdown - 1) x the share of the other cores busy), recomputed whenever
     * that share changes. A worker that is starting counts as busy (it reads its weights and
     * runs a warm-up step). 1 (default): no slowdown. */
    double corun_slowdown;
    /* 0: the first tick at t = 0 and each worker's heartbeats every heartbeat_s from its ready
     * time. Else the first tick and each worker's first heartbeat come at a phase drawn from
     * this seed, uniform over one period. In a real pool these phases are set by milliseconds
     * of start-up and loop jitter; whether a burst shorter than a heartbeat period is seen by
     * the policy (and starts a worker) turns on them, so one phase is one possible run among
     * many. Simulating several seeds gives the spread of outcomes a real run is drawn from. */
    uint64_t phase_seed;
    int timeline; /* record the pool at every tick */
};

struct syn_sim_params syn_sim_default_params(void);

/* One tick of the timeline. */
struct syn_sim_tick {
    double t;
    int alive, starting;  /* ready workers, workers starting */
    int running, waiting; /* sequences running, jobs queued */
    int arrivals;         /* arrivals since the previous tick */
    int started;          /* workers the policy started at this tick */
};

struct syn_sim_result {
    size_t n, completed;
    double end_s;          /* last arrival or completion, whichever is later */
    double worker_seconds; /* start to reaping of every worker (warm ones to end_s) */
    double cost;           /* worker_seconds x price / 3600 */
    uint64_t prompt_tokens, output_tokens;
    double cost_per_mtok;     /* $ per million tokens (prompt + output) */
    double cost_per_mtok_out; /* $ per million output tokens */
    double attainment;        /* share of requests meeting both objectives */
    double ttft_p50, ttft_p90, ttft_p99, ttft_max, tpot_p50, tpot_p99, e2e_p99; /* seconds */
    int workers_started; /* cold starts, the initial min_warm not counted */
    int workers_drained; /* told to drain by the policy (a lasting surplus) */
    size_t waited_cold;  /* requests that arrived when no worker was ready */
    int peak_workers;
    double *ttft, *tpot, *e2e;  /* (n) per request; -1 where undefined; owned */
    struct syn_sim_tick *ticks; /* (n_ticks) when asked; owned */
    size_t n_ticks;
};

/* Runs the simulation. Returns 0, or a negative syn_err with a message. */
int syn_sim_run(const struct syn_sim_params *p, struct syn_sim_result **out, char *err,
                size_t errlen);

void syn_sim_result_free(struct syn_sim_result *r);

#endif
