/*
 * A worker: maps a model, takes jobs from the model's Redis streams, runs them with continuous
 * batching on one engine, streams tokens back to the gateways' reply streams, and exits by itself
 * when idle (scale to zero). See docs/protocol.md for the wire protocol and docs/ARCHITECTURE.md
 * for the scheduler.
 *
 * Two threads: the scheduler (the caller of syn_worker_run) owns the engine and never touches
 * Redis; an I/O thread owns the Redis connection and moves jobs in and events out through
 * mutex-protected queues, so a slow or restarting Redis costs latency, never a stalled step.
 */
#ifndef SYNAPSE_WORKER_H
#define SYNAPSE_WORKER_H

#include <stddef.h>
#include <stdint.h>

struct syn_worker_params {
    const char *model_path;    /* GGUF file or HF directory (required) */
    const char *model_name;    /* the name clients use; NULL = file name without extension */
    const char *redis_url;     /* "unix:///path", "redis://host:port" (required) */
    const char *worker_id;     /* NULL = "{host}-{pid}" */
    const char *chat_template; /* override the model's template by name; NULL = detect */
    int n_threads;             /* engine threads; 0 = all CPUs */
    int max_seqs;              /* sequences in the batch (default 16) */
    int max_batched_tokens;    /* tokens per engine step (default 256) */
    int max_queue_delay_ms;    /* from idle, wait this long to gather a first batch (default 0) */
    int kv_cache_mb;           /* KV pool; 0 = engine default */
    int n_ctx;                 /* context per sequence; 0 = model's (capped at 4096) */
    double idle_timeout_s;     /* exit after this long without work; 0 = stay up (default 60) */
    int heartbeat_ms;          /* registry heartbeat and job touch interval (default 1000) */
    int reclaim_ms;            /* take over jobs idle this long (dead worker) (default 5000) */
    int max_attempts;          /* deliveries before a job is dead-lettered (default 3) */
    double drain_timeout_s;    /* on SIGTERM: finish running sequences within this (default 30) */
    int64_t start_ms;          /* unix ms the process started (for cold-start time); 0 = now */
    /* metrics (docs/metrics.md), served and/or pushed by a thread of their own */
    int metrics_port;         /* serve GET /metrics here; 0 = any free port; -1 = no (default) */
    const char *metrics_host; /* bind address for it (default 127.0.0.1) */
    const char *pushgateway;  /* push to this Pushgateway ("http://host:9091"); NULL = no */
    double push_interval_s;   /* seconds between pushes (default 10) */
};

struct syn_worker_params syn_worker_default_params(void);

/* Runs until idle timeout, a drain (syn_worker_request_drain, e.g. from SIGTERM) completes, or a
 * fatal error. Returns 0 on a clean exit, or a negative syn_err with a message in err. */
int syn_worker_run(const struct syn_worker_params *p, char *err, size_t errlen);

/* Async-signal-safe: asks the running worker to drain and exit. */
void syn_worker_request_drain(void);

#endif
