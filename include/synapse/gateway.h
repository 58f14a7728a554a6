/*
 * The gateway: the OpenAI-compatible HTTP front door (docs/api.md). It validates requests,
 * checks API keys and admission limits, writes each request as one job to the model's Redis
 * stream (include/synapse/queue.h), and relays the tokens that workers append to its reply
 * stream back to the client, streamed (SSE) or gathered.
 *
 * It runs on a libevent loop, its own or the embedder's, and owns no threads. `synapse gateway`
 * runs it alone; `synapse up` embeds it next to a worker pool and tells it, through the pool
 * hooks, when a model can be served by starting a worker.
 *
 *   struct syn_gateway_params p = syn_gateway_default_params();
 *   p.redis_url = "unix:///tmp/redis.sock"; p.models = names; p.n_models = 1; p.port = 0;
 *   struct syn_gateway *g;
 *   if (syn_gateway_new(&p, &g, err, sizeof err) == 0) { syn_gateway_run(g); syn_gateway_free(g); }
 */
#ifndef SYNAPSE_GATEWAY_H
#define SYNAPSE_GATEWAY_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct syn_gateway;

/* Hooks for the embedder's worker pool. Without them (both NULL) a model is servable when the
 * Redis registry lists a live worker for it; with no live worker at all a request is refused
 * with 503 at once. With them, the gateway asks instead. Both are called on the loop thread
 * and must not block. */
struct syn_gateway_pool_hooks {
    /* A request for model arrived (called once per admitted request, once its job is in the
     * stream, so that a scaler reading the backlog sees it), so that a scaler can start a
     * worker from zero; the request then waits for it within its deadline. May be NULL. */
    void (*on_demand)(void *ud, const char *model);
    /* 1 if model has a worker or the pool could start one; 0 means 503 for new requests and
     * not ready in /readyz. May be NULL (then the registry decides, as without hooks). */
    int (*can_serve)(void *ud, const char *model);
    /* Appends the pool's own metrics to the gateway's /metrics: writes Prometheus text (format
     * 0.0.4: whole families with their # HELP and # TYPE lines, names the gateway does not use)
     * into buf, at most cap bytes, and returns the length of the whole text, like snprintf; when
     * that is cap or more, the gateway calls again with a larger buffer. Called on the loop
     * thread once per scrape. May be NULL. */
    size_t (*metrics)(void *ud, char *buf, size_t cap);
    void *ud;
};

struct syn_gateway_params {
    const char *redis_url;     /* "redis://host:port[/db]", "unix:///path", "host:port" */
    const char *const *models; /* served model names (valid key names, [A-Za-z0-9._-]) */
    int n_models;
    const char *host;            /* bind address (default "127.0.0.1") */
    int port;                    /* default 8080; 0 = any free port (see syn_gateway_port) */
    const char *id;              /* gateway id for the reply stream; NULL = "gw-" + random */
    const char *api_keys_file;   /* one key per line; NULL = none */
    const char *api_keys;        /* comma-separated keys; NULL = none. With neither, no auth */
    int max_queue;               /* per model: queued, not yet started jobs (default 256) */
    int64_t default_deadline_ms; /* when the request has no X-Synapse-Deadline-Ms (60000) */
    int64_t max_deadline_ms;     /* the largest deadline a client may ask for (3600000) */
    size_t max_body_bytes;       /* default 1 MiB; larger bodies get 413 */
    size_t max_header_bytes;     /* default 16 KiB; a larger head gets 431 */
    int max_connections;         /* default 16384 (the fd limit must allow them) */
    int read_timeout_ms;         /* a request must arrive in full within this (10000) */
    int write_timeout_ms;        /* a response write stalled this long closes (30000) */
    int max_tokens_limit;        /* largest max_tokens accepted (default 1048576) */
    int default_max_tokens_chat; /* chat requests without max_tokens (default 4096) */
    int poll_interval_ms;        /* registry and backlog polling (default 200) */
    struct syn_gateway_pool_hooks hooks;
    struct event_base *base; /* run on this loop (not owned); NULL = the gateway's own */
    int handle_signals;      /* own loop only: SIGINT/SIGTERM stop it (default 1) */
    int shutdown_grace_ms;   /* on stop, requests in flight get this long (10000) */
};

struct syn_gateway_params syn_gateway_default_params(void);

/* Creates the gateway: binds the port, starts connecting to Redis (a Redis that is down is not
 * an error here: /readyz says so and requests get 503 until it is back). Returns 0, SYN_EINVAL
 * (bad params: no models, a bad model name or id, an unreadable key file, a bad URL) or SYN_EIO
 * (the port cannot be bound), with a message in err. */
int syn_gateway_new(const struct syn_gateway_params *p, struct syn_gateway **out, char *err,
                    size_t errlen);

/* Runs the gateway's own loop until syn_gateway_stop or a signal. With an embedder's base,
 * returns at once (the embedder runs its loop). Returns 0 or a negative syn_err. */
int syn_gateway_run(struct syn_gateway *g);

/* Stops accepting connections, lets the requests in flight finish (up to shutdown_grace_ms),
 * then ends syn_gateway_run (own loop). Call on the loop thread. */
void syn_gateway_stop(struct syn_gateway *g);

/* Closes every connection (cancelling their jobs), disconnects from Redis, frees g. */
void syn_gateway_free(struct syn_gateway *g);

/* The bound port and the gateway id. */
int syn_gateway_port(const struct syn_gateway *g);
const char *syn_gateway_id(const struct syn_gateway *g);

#endif
