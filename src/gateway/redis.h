/*
 * The gateway's side of the queue protocol (include/synapse/queue.h), asynchronous on the
 * gateway's event loop through hiredis's libevent adapter:
 *
 *   - a command connection: XADD of jobs, cancellations (SET syn:cancel:{id} + PUBLISH), and
 *     every poll_ms the backlog (XINFO GROUPS + XLEN of both job streams, as syn_q_backlog
 *     computes it) and the registry (ZRANGE syn:{model}:workers, HMGET of each worker) of every
 *     model;
 *   - a reader connection: one XREAD BLOCK loop on this gateway's reply stream, whose entries
 *     are decoded (syn_event_decode) and handed to on_event in stream order.
 *
 * Both reconnect with backoff when Redis goes away; the reader resumes after the last entry it
 * delivered, so no event is lost across a reconnect. A connection that stops answering (no
 * reply for a while with commands outstanding) is dropped and reconnected.
 */
#ifndef SYN_GW_REDIS_H
#define SYN_GW_REDIS_H

#include <stdint.h>

#include "synapse/queue.h"

struct event_base;
struct gw_redis;

struct gw_redis_callbacks {
    /* One token event from the reply stream. */
    void (*on_event)(void *ud, const struct syn_event *ev);
    /* The XADD of a job was answered: ok 1 (entry id in entry) or 0 (err says why). */
    void (*on_submitted)(void *ud, const char *job_id, int ok, const char *entry, const char *err);
    /* A backlog poll of model i completed (waiting, pending as syn_q_backlog). */
    void (*on_backlog)(void *ud, int model, int64_t waiting, int64_t pending);
    /* A registry poll of model i completed: live workers, of which ready, running sequences. */
    void (*on_workers)(void *ud, int model, int live, int ready, int running);
    /* A backlog poll is about to be sent for model i. */
    void (*on_poll_sent)(void *ud, int model);
    void *ud;
};

/* Parses url and starts connecting (failures are retried; see gw_redis_up). SYN_EINVAL for a
 * URL that cannot be parsed. models: n names, copied. */
int gw_redis_new(struct event_base *base, const char *url, const char *reply_key,
                 const char *const *models, int n_models, int poll_ms,
                 const struct gw_redis_callbacks *cb, struct gw_redis **out, char *err,
                 size_t errlen);
/* Disconnects at once (pending callbacks are not called after this). */
void gw_redis_free(struct gw_redis *r);

/* 1 when jobs can be submitted and their events will be read. */
int gw_redis_up(const struct gw_redis *r);
/* Unix ms of the last completed poll round of any model (0: none yet). */
int64_t gw_redis_last_poll_ms(const struct gw_redis *r);

/* XADDs the job (the answer comes through on_submitted). 0, or SYN_EIO when not connected
 * (on_submitted is not called then), or SYN_EINVAL from the job encoder. */
int gw_redis_submit(struct gw_redis *r, const struct syn_job *j);
/* Marks a job cancelled. Best effort: 0 when sent, SYN_EIO when not connected. */
int gw_redis_cancel(struct gw_redis *r, const char *job_id);

struct gw_redis_stats {
    uint64_t errors;     /* connections lost or refused */
    uint64_t reconnects; /* connections re-established */
    uint64_t events;     /* reply entries delivered */
    uint64_t bad_events; /* reply entries that did not decode */
};
void gw_redis_get_stats(const struct gw_redis *r, struct gw_redis_stats *st);

/* For tests: parses a Redis URL. 0 or -1. host/path get "", port 0 when not applicable. */
int gw_redis_parse_url(const char *url, int *is_unix, char *host, size_t hostcap, int *port,
                       char *path, size_t pathcap, int *db, char *user, size_t usercap, char *pass,
                       size_t passcap);

#endif
