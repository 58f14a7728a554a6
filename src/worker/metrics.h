/*
 * The worker's metrics (docs/metrics.md): counters, gauges and histograms that the scheduler and
 * the I/O thread update, and a third thread that exposes them, so that a scrape or a push never
 * waits on an engine step or on Redis, and a step never waits on a scrape:
 *
 *   --metrics-port N   that thread serves GET /metrics (the gateway's HTTP server on its own
 *                      event loop); N = 0 picks a free port, printed on stderr
 *   --pushgateway URL  it PUTs the same text to URL/metrics/job/synapse-worker/model/M/instance/ID
 *                      every push interval and once more at exit, then DELETEs that group on a
 *                      clean exit so that groups do not pile up (short-lived workers: Lambda)
 *
 * Updates take a mutex of this module only, held for a few additions; rendering copies the
 * numbers under it and formats them outside it.
 */
#ifndef SYN_WORKER_METRICS_H
#define SYN_WORKER_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct wmetrics;

struct wmetrics_params {
    const char *model;       /* the model name (label model) */
    const char *worker_id;   /* the worker id (the Pushgateway's instance grouping label) */
    const char *host;        /* bind address for /metrics (default 127.0.0.1) */
    int port;                /* -1: no server; 0: any free port */
    const char *pushgateway; /* base URL ("http://127.0.0.1:9091"), or NULL */
    double push_interval_s;  /* > 0 */
};

/* Starts the exporter thread when a port or a Pushgateway is given (otherwise only collects).
 * Returns 0, or SYN_EIO (the port cannot be bound) / SYN_EINVAL with a message. */
int wmetrics_new(const struct wmetrics_params *p, struct wmetrics **out, char *err, size_t errlen);
/* Stops the thread; with a Pushgateway, pushes the final numbers and, when clean, deletes the
 * worker's group. NULL is fine. */
void wmetrics_free(struct wmetrics *m, int clean);
/* The bound /metrics port, or -1. */
int wmetrics_port(const struct wmetrics *m);

/* ---- updates (any thread; NULL m is a no-op) ---- */

/* One engine step of n_seqs sequences and n_tokens tokens that took seconds. */
void wmetrics_step(struct wmetrics *m, int n_seqs, int n_tokens, double seconds);
/* A job got its first engine sequence: it waited queue_wait_s since the gateway accepted it
 * and brings prompt_tokens tokens. */
void wmetrics_admitted(struct wmetrics *m, double queue_wait_s, int prompt_tokens);
/* A job left the worker: outcome "stop", "length", "cancelled", "error" or "requeued". */
void wmetrics_job_done(struct wmetrics *m, const char *outcome);
void wmetrics_preempted(struct wmetrics *m);
/* The scheduler's state after a step. */
void wmetrics_state(struct wmetrics *m, int state, int max_seqs, int running, int waiting,
                    int kv_free, int kv_total, uint64_t tokens_out);
/* The I/O thread's Redis client: totals so far and whether the last round trip worked. */
void wmetrics_redis(struct wmetrics *m, uint64_t errors, uint64_t reconnects, int up);
/* Set once when ready: process start to ready. */
void wmetrics_cold_start(struct wmetrics *m, double seconds);

/* The exposition text (what /metrics serves and the Pushgateway gets). */
void wmetrics_render(struct wmetrics *m, struct evbuffer *out);

#endif
