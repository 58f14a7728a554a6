/*
 * The worker pool of one model, managed by the gateway: a thread that every tick (and at once
 * when a request finds no worker) reads the pool's state from Redis (registry, backlog), asks the
 * autoscaling policy (autoscale.h) what to do, and starts workers through a backend:
 *
 *   local     fork/exec `synapse worker` processes on this machine; reaped when they exit;
 *             min_warm of them run without an idle timeout, the rest with one (scale to zero)
 *   external  workers are started by someone else (KEDA, an operator); observe only
 *
 * Every decision that starts a worker is logged with its reason and counted.
 */
#ifndef SYNAPSE_WORKPOOL_H
#define SYNAPSE_WORKPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "synapse/autoscale.h"

struct syn_workpool_params {
    const char *backend;     /* "local" (default) or "external" */
    const char *synapse_bin; /* the binary to exec for workers (local); default /proc/self/exe */
    const char *model_path;  /* passed to workers (local) */
    const char *model_name;  /* the model's name in keys and requests (required) */
    const char *redis_url;   /* (required) */
    struct syn_scale_policy policy;
    int worker_threads;      /* --threads for each worker; 0 = all CPUs */
    int tick_ms;             /* how often the policy runs (default 200) */
    int heartbeat_ms;        /* workers' --heartbeat-ms (default 1000) */
    const char *worker_args; /* extra arguments for workers, space-separated; may be NULL */
    const char *log_dir;     /* where worker logs go (local); NULL = inherit stderr */
    double price_per_hour;   /* $ per worker-hour for cost accounting (default 0) */
};

struct syn_workpool_params syn_workpool_default_params(void);

/* Upper bounds (seconds, ascending) of the cold-start histogram's buckets; +Inf follows. From a
 * warm page cache on one machine (tens of ms) to a cloud instance booting (minutes). */
#define SYN_COLD_START_BUCKETS 14
extern const double syn_cold_start_bounds[SYN_COLD_START_BUCKETS];

/* Counters and gauges for metrics and tests (a snapshot). */
struct syn_workpool_stats {
    int alive;                /* registered workers */
    int ready;                /* of those, ready */
    int starting;             /* started, not yet registered */
    int children;             /* local processes alive */
    int64_t waiting;          /* queue backlog */
    int64_t running;          /* sequences running */
    uint64_t started_total;   /* workers started */
    uint64_t exited_total;    /* local workers that exited (any reason) */
    uint64_t crashed_total;   /* of those, killed by a signal or exit status != 0 */
    uint64_t decisions[6];    /* starts by enum syn_scale_reason */
    uint64_t drained_total;   /* local workers sent SIGTERM to scale in (a surplus) */
    double last_cold_start_s; /* spawn to registered, most recent */
    /* every local start that registered: per bucket of syn_cold_start_bounds (not cumulative;
     * the last is +Inf), their sum and count */
    uint64_t cold_start_counts[SYN_COLD_START_BUCKETS + 1];
    double cold_start_sum_s;
    uint64_t cold_starts_seen;
    double worker_seconds; /* local worker-seconds so far (for cost) */
    double cost_dollars;   /* worker_seconds * price_per_hour / 3600 */
    int redis_ok;          /* the last tick reached Redis */
};

struct syn_workpool;

int syn_workpool_new(const struct syn_workpool_params *p, struct syn_workpool **out, char *err,
                     size_t errlen);
/* Stops the thread; local workers get SIGTERM (drain) and, after grace_s, SIGKILL. */
void syn_workpool_free(struct syn_workpool *wp, double grace_s);

/* A request arrived for this model: counted for the arrival rate, and when no worker is ready a
 * tick runs at once (scale from zero without waiting for the timer). Thread-safe, cheap, never
 * blocks. */
void syn_workpool_poke(struct syn_workpool *wp);

/* 1 if the model can be served: a worker is alive, or the backend can start one. */
int syn_workpool_can_serve(struct syn_workpool *wp);

void syn_workpool_stats(struct syn_workpool *wp, struct syn_workpool_stats *out);

#endif
