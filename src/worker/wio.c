/*
 * The worker's I/O thread (see wio.h). One loop: flush the outbox (all events in one pipelined
 * round trip, then acks and requeues), check the held jobs for cancellation, heartbeat and touch
 * on schedule, reclaim dead workers' jobs, and claim new ones when the scheduler has room,
 * blocking on Redis only while the scheduler is idle. Messages that fail to go out stay at the
 * head of the outbox and are retried after the client reconnects: nothing accepted is dropped.
 */
#include "wio.h"

#include "worker/metrics.h"

#include "synapse/error.h"
#include "synapse/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOG "worker-io"

/* While jobs run: check them for cancellation at least this often when no step ends (a step's
 * end checks them with its events), and look for new jobs this often while slots are free. */
#define CANCEL_POLL_MS 10
#define CLAIM_POLL_MS  2
/* Acks wait this long at most for events to ride with (flush). */
#define ACK_LATER_MS 5

static void free_msg(struct out_msg *m)
{
    if (!m) return;
    free(m->text);
    free(m->logprobs);
    free(m->error);
    if (m->job) {
        syn_job_release(m->job);
        free(m->job);
    }
    free(m);
}

void wio_send(struct wio *w, struct out_msg *m)
{
    m->next = NULL;
    pthread_mutex_lock(&w->mu);
    if (w->out_tail)
        w->out_tail->next = m;
    else
        w->out_head = m;
    w->out_tail = m;
    pthread_cond_signal(&w->cv_io);
    pthread_mutex_unlock(&w->mu);
}

/* Puts a list back at the head of the outbox (after a failed flush). */
static void requeue_front(struct wio *w, struct out_msg *head)
{
    if (!head) return;
    struct out_msg *tail = head;
    while (tail->next) tail = tail->next;
    pthread_mutex_lock(&w->mu);
    tail->next = w->out_head;
    w->out_head = head;
    if (!w->out_tail) w->out_tail = tail;
    pthread_mutex_unlock(&w->mu);
}

/* Moves the events of the list's head, up to its first requeue, before its acks, keeping the
 * order of each kind. A job's finishing event still goes out before its ack (the protocol's one
 * ordering rule), and a step that finished many jobs costs two round trips, not two per job. */
static struct out_msg *events_first(struct out_msg *list)
{
    struct out_msg *evs = NULL, **ev_tail = &evs, *acks = NULL, **ack_tail = &acks, *m = list;
    while (m && m->kind != OUT_REQUEUE) {
        struct out_msg *nx = m->next;
        if (m->kind == OUT_EVENT) {
            *ev_tail = m;
            ev_tail = &m->next;
        } else {
            *ack_tail = m;
            ack_tail = &m->next;
        }
        m = nx;
    }
    *ack_tail = m;
    *ev_tail = acks;
    return evs;
}

/* Which held jobs to check for cancellation in the next flush, and what it found. */
struct checks {
    const char **ids; /* (n) job ids, pointing into the I/O thread's copy of the runs */
    int *flags;       /* (n) OUT: 1 = cancelled */
    int n;            /* 0 = no check asked */
    int done;         /* OUT: the check ran and flags can be trusted */
};

/* Acks waiting to ride with the next step's events (see flush). */
struct later {
    struct out_msg *head, **tail;
    int64_t since_ms; /* when the oldest came */
};

/* Frees the acks of `later` before upto (those that went out). */
static void later_drop(struct later *later, const struct out_msg *upto)
{
    while (later->head != upto) {
        struct out_msg *nx = later->head->next;
        free_msg(later->head);
        later->head = nx;
    }
    if (!later->head) later->tail = &later->head;
}

/* Sends a batch of outgoing messages in order. Returns the unsent remainder (NULL if all went).
 * The cancellation checks in ck, if any, ride with the first batch of events, so that a step's
 * tokens and the answer to "were any of my jobs cancelled?" cost one round trip, not two. An ack
 * is not sent when its job's final event goes out: it waits in `later` and rides with the next
 * batch of events, whose round trip it then shares (after a step that finished jobs, the next
 * step's events usually follow within a step). The I/O thread sends acks alone only when no
 * events come for ACK_LATER_MS, before it blocks, and at exit (io_main). */
static struct out_msg *flush(struct wio *w, struct syn_qclient *c, struct out_msg *list,
                             struct checks *ck, struct later *later, int64_t now_ms)
{
    enum { BATCH = 256 };
    struct syn_event evs[BATCH];
    const char *keys[BATCH];
    const struct syn_job *acks[SYN_Q_ACK_BATCH];
    list = events_first(list);
    while (list) {
        if (list->kind == OUT_EVENT) {
            int n = 0, n_acks = 0;
            struct out_msg *m = list, *a = later->head;
            for (; m && m->kind == OUT_EVENT && n < BATCH; m = m->next, n++) {
                evs[n] = m->ev;
                keys[n] = m->reply;
            }
            for (; a && n_acks < SYN_Q_ACK_BATCH; a = a->next) acks[n_acks++] = a->job;
            int n_ck = ck->done ? 0 : ck->n;
            struct syn_q_step_out o = {.ev = evs,
                                       .reply_keys = keys,
                                       .n_ev = n,
                                       .acks = acks,
                                       .n_acks = n_acks,
                                       .check_ids = ck->ids,
                                       .n_check = n_ck,
                                       .cancelled = ck->flags};
            if (syn_q_post_step(c, w->model, &o) != 0) return list;
            if (n_ck) ck->done = 1;
            while (list != m) {
                struct out_msg *nx = list->next;
                free_msg(list);
                list = nx;
            }
            if (o.acks_done) later_drop(later, a); /* else they go alone (io_main) */
            continue;
        }
        if (list->kind == OUT_ACK) {
            /* every event before it in the list has gone out: it may ride with the next ones */
            struct out_msg *nx = list->next;
            if (!later->head) later->since_ms = now_ms;
            list->next = NULL;
            *later->tail = list;
            later->tail = &list->next;
            list = nx;
            continue;
        }
        if (syn_q_requeue(c, w->model, list->job) != 0) return list;
        struct out_msg *nx = list->next;
        free_msg(list);
        list = nx;
    }
    return NULL;
}

/* Sends the acks waiting in `later` on their own. Returns 0 when none is left. */
static int flush_later(struct wio *w, struct syn_qclient *c, struct later *later)
{
    while (later->head) {
        const struct syn_job *acks[SYN_Q_ACK_BATCH];
        int n = 0;
        struct out_msg *a = later->head;
        for (; a && n < SYN_Q_ACK_BATCH; a = a->next) acks[n++] = a->job;
        if (syn_q_ack_many(c, w->model, acks, n) != 0) return -1;
        later_drop(later, a);
    }
    return 0;
}

static void push_jobs(struct wio *w, struct syn_job *jobs, int n)
{
    for (int i = 0; i < n; i++)
        syn_debug(LOG, "claimed job %s (entry %s)", jobs[i].id, jobs[i].entry);
    pthread_mutex_lock(&w->mu);
    int cap = w->p->max_seqs * 2;
    for (int i = 0; i < n; i++) {
        struct syn_job *j = malloc(sizeof *j);
        if (!j || w->n_inbox >= cap) {
            /* cannot hold it: hand it back rather than lose it */
            free(j);
            syn_warn(LOG, "inbox full, leaving job %s for another worker", jobs[i].id);
            syn_job_release(&jobs[i]);
            continue;
        }
        *j = jobs[i];
        w->inbox[w->n_inbox++] = j;
    }
    /* these fill slots the scheduler offered; until it publishes again, claim only the rest */
    w->want -= n;
    if (w->want < 0) w->want = 0;
    if (n > 0) pthread_cond_signal(&w->cv_sched);
    pthread_mutex_unlock(&w->mu);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *io_main(void *arg)
{
    struct wio *w = arg;
    const struct syn_worker_params *p = w->p;
    struct syn_qclient *c = NULL;
    char err[256];
    const int cap = p->max_seqs * 2;
    struct syn_job *claimed = calloc((size_t)cap, sizeof *claimed);
    struct run_ref *runs = calloc((size_t)cap, sizeof *runs);
    struct syn_job *touch = calloc((size_t)cap, sizeof *touch);
    const struct syn_job **touchp = calloc((size_t)cap, sizeof *touchp);
    const char **ids = calloc((size_t)cap, sizeof *ids);
    int *flags = calloc((size_t)cap, sizeof *flags);
    if (!claimed || !runs || !touch || !touchp || !ids || !flags) {
        snprintf(w->fatal, sizeof w->fatal, "out of memory");
        goto out;
    }
    if (syn_qclient_new(p->redis_url, &c, err, sizeof err) != 0 && !c) {
        snprintf(w->fatal, sizeof w->fatal, "%s", err);
        goto out;
    }
    int64_t next_hb = 0, next_reclaim = mono_ms() + p->reclaim_ms / 2, last_check = 0;
    int groups_ok = 0;
    struct later later = {.head = NULL};
    later.tail = &later.head;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        if (!w->out_head && !w->stop) {
            /* Sleep unless there is work. While jobs are held, the scheduler's publish after
             * each step wakes us; the timeout only bounds how stale a cancellation check gets
             * in a long step, or (with free slots) how soon a new job is claimed. Polling on a
             * short timer during a step would cost a Redis round trip (and wake-ups of Redis
             * and of this thread, which take the engine's core on a small machine) each time. */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            long wait_ms = w->held + w->n_inbox > 0 ? (w->want > 0 ? CLAIM_POLL_MS : CANCEL_POLL_MS)
                                                    : (w->want > 0 ? 0 : 20);
            if (later.head) {
                /* the acks may not wait longer for events to ride with */
                int64_t left = later.since_ms + ACK_LATER_MS - mono_ms();
                if (left < wait_ms) wait_ms = left > 0 ? (long)left : 0;
            }
            ts.tv_nsec += wait_ms * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            if (wait_ms > 0) pthread_cond_timedwait(&w->cv_io, &w->mu, &ts);
        }
        struct out_msg *list = w->out_head;
        w->out_head = w->out_tail = NULL;
        int want = w->want, stop = w->stop, n_runs = w->n_runs;
        memcpy(runs, w->runs, sizeof *runs * (size_t)n_runs);
        struct syn_worker_info info = w->info;
        pthread_mutex_unlock(&w->mu);

        int ok = syn_qclient_ensure(c) == 0;
        if (ok && !groups_ok) groups_ok = syn_q_ensure_groups(c, w->model) == 0;
        /* check the held jobs with this step's events, or on their own when no step has
         * ended for CANCEL_POLL_MS */
        int has_events = 0;
        for (struct out_msg *m = list; m && !has_events; m = m->next)
            has_events = m->kind == OUT_EVENT;
        struct checks ck = {ids, flags, 0, 0};
        if (n_runs > 0 && (has_events || mono_ms() - last_check >= CANCEL_POLL_MS)) {
            for (int i = 0; i < n_runs; i++) ids[i] = runs[i].id;
            ck.n = n_runs;
        }
        struct out_msg *rest = ok ? flush(w, c, list, &ck, &later, mono_ms()) : list;
        if (rest) {
            requeue_front(w, rest);
            ok = 0;
        }
        /* the acks waiting for events go alone when none came in time, when the scheduler
         * holds nothing (no step will come), and before the thread exits */
        if (ok && !rest && later.head) {
            pthread_mutex_lock(&w->mu);
            int quiet = w->held + w->n_inbox == 0 && !w->out_head;
            pthread_mutex_unlock(&w->mu);
            if ((stop || quiet || mono_ms() - later.since_ms >= ACK_LATER_MS) &&
                flush_later(w, c, &later) != 0)
                ok = 0;
        }
        wmetrics_redis(w->metrics, syn_qclient_errors(c), syn_qclient_reconnects(c), ok);
        if (stop && ok && !rest) {
            /* a claim that was in flight when the scheduler said stop may have left jobs in
             * the inbox after its last sweep: hand them back now rather than leave them pending
             * until another worker reclaims them */
            pthread_mutex_lock(&w->mu);
            int n_in = w->n_inbox;
            w->n_inbox = 0;
            pthread_mutex_unlock(&w->mu);
            for (int i = 0; i < n_in; i++) {
                if (syn_q_requeue(c, w->model, w->inbox[i]) != 0)
                    syn_warn(LOG, "could not hand job %s back; it will be reclaimed",
                             w->inbox[i]->id);
                syn_job_release(w->inbox[i]);
                free(w->inbox[i]);
            }
            break;
        }
        if (stop && !ok) {
            /* Redis is gone and we are asked to stop: keep trying for a while, the
             * outbox holds acks and events that must not be lost */
            struct timespec nap = {0, 50 * 1000 * 1000};
            nanosleep(&nap, NULL);
            static int64_t give_up;
            if (!give_up) give_up = mono_ms() + 10000;
            if (mono_ms() > give_up) {
                syn_error(LOG, "Redis unreachable at exit; unsent messages are left to "
                               "reclaim by other workers");
                break;
            }
            continue;
        }
        if (!ok) {
            w->redis_ok = 0;
            struct timespec nap = {0, 20 * 1000 * 1000};
            nanosleep(&nap, NULL);
            continue;
        }
        w->redis_ok = 1;

        /* cancellations of held jobs, unless the flush checked them with its events */
        if (ck.n > 0 && !ck.done && syn_q_cancelled(c, ids, n_runs, flags) == 0) ck.done = 1;
        if (ck.done) {
            last_check = mono_ms();
            int any = 0;
            pthread_mutex_lock(&w->mu);
            for (int i = 0; i < n_runs; i++)
                if (flags[i] && w->n_cancelled < cap) {
                    memcpy(w->cancelled[w->n_cancelled++], runs[i].id, sizeof runs[i].id);
                    any = 1;
                }
            if (any) pthread_cond_signal(&w->cv_sched);
            pthread_mutex_unlock(&w->mu);
        }
        int64_t now = mono_ms();
        if (now >= next_hb) {
            next_hb = now + p->heartbeat_ms;
            info.heartbeat_ms = syn_unix_ms();
            syn_q_heartbeat(c, &info, (int64_t)p->heartbeat_ms * 3);
            if (n_runs > 0) {
                for (int i = 0; i < n_runs; i++) {
                    memset(&touch[i], 0, sizeof touch[i]);
                    memcpy(touch[i].id, runs[i].id, sizeof runs[i].id);
                    memcpy(touch[i].entry, runs[i].entry, sizeof runs[i].entry);
                    touch[i].priority = runs[i].priority;
                    touchp[i] = &touch[i];
                }
                syn_q_touch(c, w->model, info.id, touchp, n_runs);
            }
        }
        if (stop || want <= 0) continue;
        if (now >= next_reclaim) {
            next_reclaim = now + p->reclaim_ms / 2;
            int n = syn_q_autoclaim(c, w->model, info.id, p->reclaim_ms, p->max_attempts, want,
                                    claimed);
            if (n > 0) {
                syn_info(LOG, "reclaimed %d job(s) of a stopped worker", n);
                push_jobs(w, claimed, n);
                want -= n;
            }
        }
        if (want > 0) {
            /* Block (the connection is synchronous: nothing is flushed meanwhile) only when
             * nothing is held and nothing waits to go out, looked at now rather than at the
             * top of the loop: jobs pushed a moment ago are being prefilled, and their first
             * events must not wait for the block to time out. */
            pthread_mutex_lock(&w->mu);
            int idle = w->held == 0 && w->n_inbox == 0 && !w->out_head && !list;
            pthread_mutex_unlock(&w->mu);
            int block = idle ? 50 : 0;
            int n = syn_q_claim(c, w->model, info.id, want, block, claimed);
            if (n > 0) push_jobs(w, claimed, n);
        }
    }
    syn_q_unregister(c, &w->info);
    later_drop(&later, NULL); /* only if Redis was gone at exit: reclaimed by others */
out:
    syn_qclient_free(c);
    free(claimed);
    free(runs);
    free(touch);
    free(touchp);
    free(ids);
    free(flags);
    pthread_mutex_lock(&w->mu);
    w->stop = 2; /* exited */
    pthread_cond_signal(&w->cv_sched);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

int wio_start(struct wio *w, const struct syn_worker_params *p, const char *model, char *err,
              size_t errlen)
{
    w->p = p;
    snprintf(w->model, sizeof w->model, "%s", model);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv_io, NULL);
    pthread_cond_init(&w->cv_sched, NULL);
    int cap = p->max_seqs * 2;
    w->runs = calloc((size_t)cap, sizeof *w->runs);
    w->inbox = calloc((size_t)cap, sizeof *w->inbox);
    w->cancelled = calloc((size_t)cap, sizeof *w->cancelled);
    if (!w->runs || !w->inbox || !w->cancelled)
        return syn_seterr(err, errlen, SYN_ENOMEM, "worker: out of memory");
    if (pthread_create(&w->thread, NULL, io_main, w) != 0)
        return syn_seterr(err, errlen, SYN_ENOMEM, "worker: cannot start the I/O thread");
    w->started = 1;
    return SYN_OK;
}

void wio_stop(struct wio *w)
{
    if (w->started) {
        pthread_mutex_lock(&w->mu);
        if (!w->stop) w->stop = 1;
        pthread_cond_signal(&w->cv_io);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL);
        w->started = 0;
    }
    for (struct out_msg *m = w->out_head; m;) {
        struct out_msg *nx = m->next;
        free_msg(m);
        m = nx;
    }
    w->out_head = w->out_tail = NULL;
    for (int i = 0; i < w->n_inbox; i++) {
        syn_job_release(w->inbox[i]);
        free(w->inbox[i]);
    }
    free(w->inbox);
    free(w->runs);
    free(w->cancelled);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv_io);
    pthread_cond_destroy(&w->cv_sched);
}
