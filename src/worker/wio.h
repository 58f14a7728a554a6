/*
 * The worker's I/O thread and the queues between it and the scheduler. The scheduler (which owns
 * the engine) never talks to Redis: it drops outgoing messages into the outbox and takes claimed
 * jobs from the inbox; the I/O thread does the round trips, reconnects, heartbeats, touches and
 * reclaims. Both sides hold the mutex only to move pointers.
 */
#ifndef SYN_WORKER_WIO_H
#define SYN_WORKER_WIO_H

#include "synapse/queue.h"
#include "synapse/worker.h"

#include <pthread.h>

enum out_kind {
    OUT_EVENT = 0,   /* post ev to reply */
    OUT_ACK = 1,     /* acknowledge job */
    OUT_REQUEUE = 2, /* hand job back to the stream */
};

/* One outgoing message; owns its strings and job. */
struct out_msg {
    int kind;            /* enum out_kind */
    struct syn_event ev; /* OUT_EVENT: text/logprobs/error point into the owned copies */
    char reply[128];     /* OUT_EVENT: the reply stream key */
    char *text;          /* owned copy of the text delta */
    char *logprobs;      /* owned JSON, or NULL */
    char *error;         /* owned error message, or NULL */
    struct syn_job
        *job; /* OUT_ACK / OUT_REQUEUE: owned (from malloc, released by the I/O thread) */
    struct out_msg *next;
};

/* What the I/O thread needs to know of a running job (a copy, so no sharing of job structs). */
struct run_ref {
    char id[101];
    char entry[48];
    int priority;
};

struct wio {
    pthread_mutex_t mu;
    pthread_cond_t cv_io;    /* wakes the I/O thread: outbox, want, stop */
    pthread_cond_t cv_sched; /* wakes the scheduler: inbox, cancellations */
    pthread_t thread;
    int started;

    const struct syn_worker_params *p;
    char model[101];             /* the model name (key part) */
    struct syn_worker_info info; /* registry entry; stats updated by the scheduler under mu */

    /* scheduler -> I/O */
    struct out_msg *out_head, *out_tail;
    int want;             /* jobs the scheduler can take now */
    struct run_ref *runs; /* (max_seqs * 2) jobs held: running or waiting */
    int n_runs;
    int held; /* jobs the scheduler holds: set when it takes the inbox, before the first step
               * publishes runs, so that the I/O thread never blocks in Redis while events may
               * be coming */
    int stop; /* finish the outbox, unregister, exit */

    /* I/O -> scheduler */
    struct syn_job **inbox; /* (max_seqs * 2) claimed jobs, owned until taken */
    int n_inbox;
    char (*cancelled)[101]; /* (max_seqs * 2) ids found cancelled */
    int n_cancelled;
    int redis_ok;             /* last round trip succeeded */
    struct wmetrics *metrics; /* Redis errors and reconnects go here (set before start) */
    char fatal[256];          /* set if the I/O thread cannot go on */
};

int wio_start(struct wio *w, const struct syn_worker_params *p, const char *model, char *err,
              size_t errlen);
/* Asks the thread to flush and exit, joins it, frees what is left. */
void wio_stop(struct wio *w);
/* Appends m to the outbox (caller holds no lock). */
void wio_send(struct wio *w, struct out_msg *m);

#endif
