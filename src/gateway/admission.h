/*
 * Admission control: a bounded queue per model. The depth of a model's queue is what this
 * gateway admitted and has not seen start (no first event yet) plus the backlog that other
 * gateways put in the model's streams, as last polled from Redis (XINFO GROUPS lag, or XLEN
 * minus pending where Redis cannot say the lag). Past max_queue a request is refused with 429
 * and a Retry-After computed from the measured drain rate: jobs of the model finished per
 * second over the last GW_ADM_WINDOW seconds.
 *
 * Pure bookkeeping, no I/O: the gateway feeds it events and poll results.
 */
#ifndef SYN_GW_ADMISSION_H
#define SYN_GW_ADMISSION_H

#include <stdint.h>

#define GW_ADM_WINDOW     10 /* seconds of finish history behind the drain rate */
#define GW_ADM_RETRY_MIN  1  /* Retry-After bounds (seconds) */
#define GW_ADM_RETRY_MAX  60
#define GW_ADM_RETRY_IDLE 5 /* Retry-After when nothing finished recently */

struct gw_adm {
    int local_waiting;                   /* admitted here, not started */
    int local_at_poll;                   /* local_waiting when the last backlog poll was sent */
    int64_t redis_waiting;               /* both streams' undelivered entries at the last poll */
    int64_t redis_pending;               /* delivered, not acknowledged */
    int backlog_known;                   /* a backlog poll has completed */
    int workers;                         /* live workers in the registry at the last poll */
    int ready_workers;                   /* of which ready */
    int running;                         /* sequences running on them */
    int registry_known;                  /* a registry poll has completed */
    int64_t finished[GW_ADM_WINDOW];     /* jobs finished, per second (ring) */
    int64_t finished_sec[GW_ADM_WINDOW]; /* the second each slot counts */
    uint64_t rejected;                   /* 429s */
    uint64_t admitted;
};

/* Queued jobs as the gateway sees them. */
int64_t gw_adm_depth(const struct gw_adm *a);
/* 0: admitted (counted as waiting). -1: the queue is full; *retry_after_s says when to retry. */
int gw_adm_admit(struct gw_adm *a, int max_queue, int64_t now_s, int *retry_after_s);
/* A waiting job started (its first event) or was given up before starting. */
void gw_adm_left_queue(struct gw_adm *a);
/* A job finished (any way, once per job that reached a worker). */
void gw_adm_finished(struct gw_adm *a, int64_t now_s);
/* Jobs finished per second over the window ending at now_s. */
double gw_adm_drain_rate(const struct gw_adm *a, int64_t now_s);
/* Poll results: the backlog poll was sent when local_waiting was at_poll. */
void gw_adm_poll_sent(struct gw_adm *a);
void gw_adm_backlog(struct gw_adm *a, int64_t waiting, int64_t pending);

#endif
