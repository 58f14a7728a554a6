/*
 * The job streams: submitting, claiming (with priorities and the anti-starvation rule),
 * reclaiming a dead worker's jobs (XAUTOCLAIM, delivery counts, dead letters), keeping held
 * jobs alive (touch), finishing them (ack), handing them back (requeue), streaming token events
 * to the gateways' reply streams, and cancellation. Every call is one pipelined round trip
 * except where a later command depends on an earlier reply (claim reads the second stream only
 * with the room the first left; autoclaim needs the delivery counts of what it claimed).
 *
 * What Redis guarantees and this module relies on (redis src/t_stream.c): XREADGROUP with ">"
 * hands an entry to exactly one consumer and records it in the pending-entries list (PEL) with
 * delivery count 1; XAUTOCLAIM and XCLAIM move PEL entries between consumers, the former
 * incrementing the count, XCLAIM JUSTID not; XACK removes an entry from the PEL whichever
 * consumer holds it. docs/protocol.md has the whole state machine.
 */
#include "queue_impl.h"

#include "synapse/error.h"
#include "synapse/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* XAUTOCLAIM rounds per call and priority (each scans at most 10 * COUNT PEL entries). */
#define AUTOCLAIM_ROUNDS 4
/* Claims in a row that high-priority jobs may fill completely before normal goes first. */
#define HI_STREAK_MAX 3

/* ---- small helpers ---- */

/* An argv that grows, for commands with one argument per job or per raw field. */
struct dyn_argv {
    int argc;          /* arguments so far */
    int cap;           /* room in argv and len */
    const char **argv; /* pointers to strings that outlive the append. owned (the array) */
    size_t *len;       /* their lengths. owned */
};

static int dyn_init(struct dyn_argv *d, int cap)
{
    d->argc = 0;
    d->cap = cap;
    d->argv = malloc((size_t)cap * sizeof *d->argv);
    d->len = malloc((size_t)cap * sizeof *d->len);
    if (!d->argv || !d->len) {
        free(d->argv);
        free(d->len);
        d->argv = NULL;
        d->len = NULL;
        return SYN_ENOMEM;
    }
    return SYN_OK;
}

static void dyn_push(struct dyn_argv *d, const char *s, size_t len)
{
    if (d->argc >= d->cap) return; /* sized by the caller; never happens */
    d->argv[d->argc] = s;
    d->len[d->argc++] = len;
}

static void dyn_pushs(struct dyn_argv *d, const char *s)
{
    dyn_push(d, s, strlen(s));
}

static void dyn_free(struct dyn_argv *d)
{
    free(d->argv);
    free(d->len);
    d->argv = NULL;
    d->len = NULL;
}

/* Appends a command given as NULL-terminated strings. */
static int append_strs(struct syn_qclient *c, const char *const *s)
{
    const char *argv[16];
    size_t len[16];
    int n = 0;
    for (; s[n] && n < 16; n++) {
        argv[n] = s[n];
        len[n] = strlen(s[n]);
    }
    return qc_appendv(c, n, argv, len);
}

/* 1 if s is a stream entry id ("<ms>-<seq>"). */
static int entry_ok(const char *s)
{
    size_t n = strnlen(s, 48), i = 0, d1 = 0, d2 = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++, d1++;
    if (i >= n || s[i] != '-') return 0;
    i++;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++, d2++;
    return i == n && n < 48 && d1 >= 1 && d1 <= 20 && d2 >= 1 && d2 <= 20;
}

/* Logs error replies among the n replies of fire-and-forget commands; SYN_EIO if one of them
 * is worth retrying (the caller's state did not change as it wanted). */
static int check_replies(struct syn_qclient *c, redisReply **r, int n, const char *what)
{
    int rc = SYN_OK;
    for (int i = 0; i < n; i++) {
        if (!r[i] || r[i]->type != REDIS_REPLY_ERROR) continue;
        if (qc_transient(r[i]))
            rc = qc_reply_error(c, r[i], what);
        else
            syn_warn(QC_LOG, "%s: %s", what, r[i]->str);
    }
    return rc;
}

/* Reads every reply of n commands appended for side effects and logs the errors. */
static int collect_and_check(struct syn_qclient *c, int n, const char *what)
{
    if (n <= 0) return SYN_OK;
    redisReply **r = calloc((size_t)n, sizeof *r);
    if (!r) {
        /* the replies must still be read to keep the connection in step */
        redisReply *one = NULL;
        int rc = SYN_OK;
        for (int i = 0; i < n && rc == SYN_OK; i++) {
            rc = qc_collect(c, 1, &one);
            if (one) freeReplyObject(one);
        }
        return rc == SYN_OK ? SYN_ENOMEM : rc;
    }
    int rc = qc_collect(c, n, r);
    if (rc == SYN_OK) rc = check_replies(c, r, n, what);
    qc_free_replies(r, n);
    free(r);
    return rc;
}

/* Appends the two commands that put an event on a reply stream and refresh its expiry. */
static int append_event(struct syn_qclient *c, const char *reply_key, const struct syn_event *ev)
{
    struct syn_q_argv a;
    int rc = syn_event_xadd_argv(reply_key, ev, &a);
    if (rc) return rc;
    rc = qc_append(c, &a);
    syn_q_argv_reset(&a);
    if (rc) return rc;
    const char *pexpire[] = {"PEXPIRE", reply_key, SYN_Q_REPLY_TTL_MS, NULL};
    rc = append_strs(c, pexpire);
    return rc ? rc : 2;
}

/* ---- groups and submission ---- */

static int ensure_groups_once(struct syn_qclient *c, const char *model)
{
    char key[2][160];
    redisReply *r[2] = {0};
    int rc;
    for (int p = 0; p < 2; p++) {
        syn_q_key_jobs(key[p], sizeof key[p], model, p);
        /* from id 0: jobs submitted before the first worker created the group still count */
        const char *cmd[] = {"XGROUP", "CREATE", key[p], SYN_Q_GROUP, "0", "MKSTREAM", NULL};
        if ((rc = append_strs(c, cmd))) return rc;
    }
    if ((rc = qc_collect(c, 2, r))) return rc;
    for (int p = 0; p < 2 && rc == SYN_OK; p++)
        if (r[p]->type == REDIS_REPLY_ERROR && strncmp(r[p]->str, "BUSYGROUP", 9) != 0)
            rc = qc_reply_error(c, r[p], "XGROUP CREATE");
    qc_free_replies(r, 2);
    return rc;
}

int syn_q_ensure_groups(struct syn_qclient *c, const char *model)
{
    if (!c || !syn_q_name_ok(model)) return SYN_EINVAL;
    int rc = qc_begin(c);
    if (rc == SYN_OK) rc = ensure_groups_once(c, model);
    if (qc_retry(c, rc) && (rc = qc_begin(c)) == SYN_OK) rc = ensure_groups_once(c, model);
    return rc;
}

static int submit_once(struct syn_qclient *c, struct syn_job *j)
{
    struct syn_q_argv a;
    redisReply *r = NULL;
    char err[256];
    int rc = qc_begin(c);
    if (rc) return rc;
    if ((rc = syn_job_xadd_argv(j, &a)) != SYN_OK) {
        syn_job_validate(j, err, sizeof err);
        return qc_fail(c, rc, "queue: cannot submit: %s", err);
    }
    rc = qc_command(c, &a, &r);
    syn_q_argv_reset(&a);
    if (rc) return rc;
    if (r->type != REDIS_REPLY_STRING || r->len >= sizeof j->entry)
        rc = qc_reply_error(c, r, "XADD");
    else
        memcpy(j->entry, r->str, r->len + 1);
    freeReplyObject(r);
    return rc;
}

int syn_q_submit(struct syn_qclient *c, struct syn_job *j)
{
    if (!c || !j) return SYN_EINVAL;
    int rc = submit_once(c, j);
    if (qc_retry(c, rc)) rc = submit_once(c, j);
    return rc;
}

/* ---- discarding a delivered entry (dead letter, deadline, undecodable) ---- */

/* The string value of a field in a raw field/value array, or NULL. */
static const redisReply *raw_field(const redisReply *fields, const char *name)
{
    if (!fields || fields->type != REDIS_REPLY_ARRAY) return NULL;
    for (size_t i = 0; i + 1 < fields->elements; i += 2)
        if (qf_is(fields->element[i], name) && fields->element[i + 1] &&
            fields->element[i + 1]->type == REDIS_REPLY_STRING)
            return fields->element[i + 1];
    return NULL;
}

int qs_append_discard(struct syn_qclient *c, const char *model, int priority, const char *entry,
                      const redisReply *fields, int to_dead, int attempts, const char *code,
                      const char *msg)
{
    char key[160], dead[160], num[2][24], reply[128];
    int n = 0, rc;
    if (syn_q_key_jobs(key, sizeof key, model, priority) < 0 ||
        syn_q_key_dead(dead, sizeof dead, model) < 0)
        return SYN_EINVAL;
    if (to_dead) {
        /* the job's own fields, as they were, then why it died */
        int raw = fields && fields->type == REDIS_REPLY_ARRAY && fields->elements % 2 == 0
                      ? (int)fields->elements
                      : 0;
        for (int i = 0; i < raw; i++)
            if (!fields->element[i] || fields->element[i]->type != REDIS_REPLY_STRING) raw = 0;
        struct dyn_argv d;
        if ((rc = dyn_init(&d, raw + 24))) return rc;
        snprintf(num[0], sizeof num[0], "%d", attempts);
        snprintf(num[1], sizeof num[1], "%" PRId64, syn_unix_ms());
        dyn_pushs(&d, "XADD");
        dyn_pushs(&d, dead);
        dyn_pushs(&d, "MAXLEN");
        dyn_pushs(&d, "~");
        dyn_pushs(&d, SYN_Q_DEAD_MAXLEN);
        dyn_pushs(&d, "*");
        for (int i = 0; i < raw; i++)
            dyn_push(&d, fields->element[i]->str, fields->element[i]->len);
        const char *tail[] = {"error", msg,   "code",   code, "attempts", num[0],
                              "entry", entry, "stream", key,  "dead_ms",  num[1]};
        for (size_t i = 0; i < sizeof tail / sizeof tail[0]; i++) dyn_pushs(&d, tail[i]);
        const char *multi[] = {"MULTI", NULL};
        rc = append_strs(c, multi);
        if (rc == SYN_OK) rc = qc_appendv(c, d.argc, d.argv, d.len);
        dyn_free(&d);
        if (rc) return rc;
        n += 2;
    }
    const char *ack[] = {"XACK", key, SYN_Q_GROUP, entry, NULL};
    const char *del[] = {"XDEL", key, entry, NULL};
    const char *exec[] = {"EXEC", NULL};
    if ((rc = append_strs(c, ack)) || (rc = append_strs(c, del))) return rc;
    n += 2;
    if (to_dead) {
        if ((rc = append_strs(c, exec))) return rc;
        n++;
    }
    /* tell the gateway, when the entry says who is waiting */
    const redisReply *id = raw_field(fields, "id"), *rk = raw_field(fields, "reply");
    struct syn_event ev = {0};
    if (id && rk && qf_name(id, ev.job, sizeof ev.job) == 0 &&
        syn_q_reply_key_ok(rk->str, rk->len) && rk->len < sizeof reply) {
        memcpy(reply, rk->str, rk->len);
        reply[rk->len] = 0;
        ev.text = "";
        ev.finish = "error";
        ev.error = msg;
        ev.error_code = code;
        ev.attempt = attempts;
        rc = append_event(c, reply, &ev);
        if (rc > 0)
            n += rc;
        else if (!c->ctx)
            return rc; /* the connection went: nothing is waiting for replies */
    }
    return n;
}

/* ---- claiming ---- */

/* Accepts a delivered entry into dst, or discards it (appending the commands, counted in
 * *pending). Returns 1 when accepted, 0 when discarded, or a negative syn_err. */
static int accept_entry(struct syn_qclient *c, const char *model, int priority,
                        const redisReply *id, const redisReply *fields, int deliveries,
                        int max_attempts, struct syn_job *dst, int *pending)
{
    char err[300], msg[400], entry[48];
    if (!id || id->type != REDIS_REPLY_STRING || id->len >= sizeof entry) return 0;
    memcpy(entry, id->str, id->len + 1);
    int rc = syn_job_decode(fields, dst, err, sizeof err);
    int n;
    if (rc == SYN_ENOMEM) return rc; /* stays pending; reclaimed later */
    if (rc != SYN_OK) {
        syn_warn(QC_LOG, "entry %s of model %s is not a valid job (%s); moved to the dead letters",
                 entry, model, err);
        n = qs_append_discard(c, model, priority, entry, fields, 1, deliveries, "bad_request", err);
        goto discarded;
    }
    memcpy(dst->entry, entry, id->len + 1);
    dst->priority = priority; /* the stream it is in decides; ack and touch look there */
    dst->attempt += deliveries - 1;
    if (max_attempts > 0 && dst->attempt > max_attempts) {
        snprintf(msg, sizeof msg,
                 "job %s was delivered %d times without finishing (max_attempts %d): its "
                 "workers died or it crashes them",
                 dst->id, dst->attempt, max_attempts);
        syn_warn(QC_LOG, "%s; moved to the dead letters", msg);
        n = qs_append_discard(c, model, priority, entry, fields, 1, dst->attempt, "dead_letter",
                              msg);
        goto discarded;
    }
    int64_t now = syn_unix_ms();
    if (dst->deadline_ms > 0 && now > dst->deadline_ms) {
        snprintf(msg, sizeof msg,
                 "job %s: its deadline passed %" PRId64 " ms before it could start", dst->id,
                 now - dst->deadline_ms);
        syn_info(QC_LOG, "%s", msg);
        n = qs_append_discard(c, model, priority, entry, fields, 0, dst->attempt, "deadline", msg);
        goto discarded;
    }
    return 1;
discarded:
    syn_job_release(dst);
    if (n < 0) return n;
    *pending += n;
    return 0;
}

/* Appends the commands that re-add j to its stream and drop its old entry (one MULTI).
 * Returns the number of commands appended or a negative syn_err. */
static int append_requeue(struct syn_qclient *c, const char *model, const struct syn_job *j)
{
    struct syn_q_argv a;
    char key[160];
    if (!entry_ok(j->entry) || syn_q_key_jobs(key, sizeof key, model, j->priority) < 0)
        return SYN_EINVAL;
    int rc = syn_job_xadd_argv(j, &a);
    if (rc) return rc;
    a.argv[1] = key; /* the worker's model decides the stream, as in claim */
    a.len[1] = strlen(key);
    const char *multi[] = {"MULTI", NULL}, *exec[] = {"EXEC", NULL};
    const char *ack[] = {"XACK", key, SYN_Q_GROUP, j->entry, NULL};
    const char *del[] = {"XDEL", key, j->entry, NULL};
    if (!(rc = append_strs(c, multi)) && !(rc = qc_append(c, &a)) && !(rc = append_strs(c, ack)) &&
        !(rc = append_strs(c, del)))
        rc = append_strs(c, exec);
    syn_q_argv_reset(&a);
    return rc ? rc : 5;
}

/* One XREADGROUP over nkeys streams; *out is NULL (nothing) or the reply. A missing group
 * (a Redis that lost its data) is created and the read made again. */
static int xreadgroup(struct syn_qclient *c, const char *model, const char *consumer,
                      char (*keys)[160], int nkeys, int count, int block_ms, redisReply **out)
{
    struct syn_q_argv a;
    int rc = SYN_OK;
    *out = NULL;
    for (int tries = 0; tries < 2; tries++) {
        qa_init(&a);
        if (qa_pushs(&a, "XREADGROUP") || qa_pushs(&a, "GROUP") || qa_pushs(&a, SYN_Q_GROUP) ||
            qa_pushs(&a, consumer) || qa_pushs(&a, "COUNT") || qa_pushf(&a, "%d", count))
            return SYN_EINVAL;
        if (block_ms > 0 && (qa_pushs(&a, "BLOCK") || qa_pushf(&a, "%d", block_ms)))
            return SYN_EINVAL;
        qa_pushs(&a, "STREAMS");
        for (int k = 0; k < nkeys; k++) qa_pushs(&a, keys[k]);
        for (int k = 0; k < nkeys; k++) qa_pushs(&a, ">");
        redisReply *r = NULL;
        if (block_ms > 0) qc_set_timeout(c, c->timeout_ms + block_ms);
        rc = qc_command(c, &a, &r);
        if (block_ms > 0) qc_set_timeout(c, c->timeout_ms);
        if (rc) return rc;
        if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOGROUP", 7) == 0 && tries == 0) {
            freeReplyObject(r);
            syn_info(QC_LOG,
                     "consumer group of model %s missing (Redis lost its data?): "
                     "creating it",
                     model);
            if ((rc = ensure_groups_once(c, model))) return rc;
            continue;
        }
        if (r->type == REDIS_REPLY_NIL) {
            freeReplyObject(r);
            return SYN_OK;
        }
        if (r->type != REDIS_REPLY_ARRAY) {
            rc = qc_reply_error(c, r, "XREADGROUP");
            freeReplyObject(r);
            return rc;
        }
        *out = r;
        return SYN_OK;
    }
    return rc;
}

/* Takes the entries of an XREADGROUP reply: into out while there is room (up to max), handing
 * back any beyond it (a blocking read on two streams can return up to COUNT from each). */
static int take_read(struct syn_qclient *c, const char *model, char (*keys)[160],
                     const redisReply *r, struct syn_job *out, int max, int *got, int *got_prio)
{
    int pending = 0, rc = SYN_OK;
    for (size_t s = 0; r && s < r->elements; s++) {
        const redisReply *sr = r->element[s];
        if (sr->type != REDIS_REPLY_ARRAY || sr->elements != 2) continue;
        int prio = qf_is(sr->element[0], keys[SYN_PRIO_HIGH]) ? SYN_PRIO_HIGH : SYN_PRIO_NORMAL;
        const redisReply *entries = sr->element[1];
        for (size_t e = 0; entries->type == REDIS_REPLY_ARRAY && e < entries->elements; e++) {
            const redisReply *er = entries->element[e];
            if (er->type != REDIS_REPLY_ARRAY || er->elements != 2) continue;
            struct syn_job tmp, *dst = *got < max ? &out[*got] : &tmp;
            int ok =
                accept_entry(c, model, prio, er->element[0], er->element[1], 1, 0, dst, &pending);
            if (ok < 0) {
                rc = ok;
                goto out;
            }
            if (!ok) continue;
            if (dst == &tmp) {
                /* no room: back to the stream as if never delivered */
                tmp.attempt--;
                int n = append_requeue(c, model, &tmp);
                syn_job_release(&tmp);
                if (n < 0) {
                    rc = n;
                    goto out;
                }
                pending += n;
                continue;
            }
            got_prio[prio]++;
            (*got)++;
        }
    }
out:
    if (pending > 0 && c->ctx) {
        int crc = collect_and_check(c, pending, "discarding jobs");
        if (rc == SYN_OK) rc = crc;
    }
    return rc;
}

static int claim_once(struct syn_qclient *c, const char *model, const char *consumer, int max,
                      int block_ms, struct syn_job *out, int *got)
{
    char keys[2][160], both[2][160];
    int got_prio[2] = {0, 0}, rc;
    redisReply *r = NULL;
    if ((rc = qc_begin(c))) return rc;
    qc_state_for(c, model);
    syn_q_key_jobs(keys[SYN_PRIO_NORMAL], sizeof keys[0], model, SYN_PRIO_NORMAL);
    syn_q_key_jobs(keys[SYN_PRIO_HIGH], sizeof keys[0], model, SYN_PRIO_HIGH);
    /* the read over both streams names high first, so that high entries are taken first if
     * it returns more than max */
    memcpy(both[0], keys[SYN_PRIO_HIGH], sizeof both[0]);
    memcpy(both[1], keys[SYN_PRIO_NORMAL], sizeof both[1]);

    /* high first, normal with the room left; after HI_STREAK_MAX claims in a row that high
     * filled completely (normal never asked), normal goes first once. A blocking claim after
     * one that left both streams empty (it took fewer than it could) goes straight to the
     * blocking read over both: a worker that has run out of work waits with one round trip
     * instead of three, and if jobs came meanwhile the read returns them at once. Only the
     * blocking claim takes this road: it comes from a worker that holds nothing, so its max is
     * all of its slots, and more than that arriving on both streams since its last claim
     * (the entries beyond max, handed back, go to the back of their stream) is rare. */
    const int one_read = c->claim_drained && block_ms > 0;
    int first = c->hi_streak >= HI_STREAK_MAX ? SYN_PRIO_NORMAL : SYN_PRIO_HIGH;
    int normal_read = 0;
    for (int k = 0; k < 2 && *got < max && !one_read; k++) {
        int prio = k == 0 ? first : 1 - first;
        if ((rc = xreadgroup(c, model, consumer, &keys[prio], 1, max - *got, 0, &r))) break;
        if (prio == SYN_PRIO_NORMAL) normal_read = 1;
        rc = take_read(c, model, keys, r, out, max, got, got_prio);
        freeReplyObject(r);
        r = NULL;
        if (rc) break;
    }
    if (rc == SYN_OK && *got == 0 && block_ms > 0) {
        /* both empty (or, after a short claim, not asked yet): wait on both at once */
        if ((rc = xreadgroup(c, model, consumer, both, 2, max, block_ms, &r)) == SYN_OK) {
            rc = take_read(c, model, keys, r, out, max, got, got_prio);
            if (r) freeReplyObject(r);
        }
        normal_read = 1;
    }
    if (rc == SYN_OK) {
        c->hi_streak = normal_read ? 0 : c->hi_streak + 1;
        c->claim_drained = *got < max; /* both streams were read and came up short */
    } else {
        c->claim_drained = 0;
    }
    return rc;
}

int syn_q_claim(struct syn_qclient *c, const char *model, const char *consumer, int max,
                int block_ms, struct syn_job *out)
{
    if (!c || !syn_q_name_ok(model) || !syn_q_name_ok(consumer) || max < 0 || (max && !out))
        return SYN_EINVAL;
    if (max == 0) return 0;
    int got = 0;
    int rc = claim_once(c, model, consumer, max, block_ms, out, &got);
    if (got == 0 && qc_retry(c, rc)) rc = claim_once(c, model, consumer, max, block_ms, out, &got);
    /* jobs already taken are ours (pending under this consumer): hand them over even if a later
     * step failed; the failure shows again on the next call */
    return got > 0 ? got : rc;
}

/* ---- reclaiming ---- */

/* One XAUTOCLAIM round on one stream: claims up to room entries, reads their delivery counts,
 * accepts or discards each. Sets *done when the scan of the PEL has wrapped around. */
static int autoclaim_round(struct syn_qclient *c, const char *model, const char *consumer, int prio,
                           int64_t min_idle_ms, int max_attempts, int room, struct syn_job *out,
                           int *got, int *done)
{
    char key[160], idle[24], count[16];
    redisReply *r = NULL, **pend = NULL;
    int rc, pending = 0, n_ids = 0;
    const redisReply **ids = NULL, **flds = NULL;
    syn_q_key_jobs(key, sizeof key, model, prio);
    snprintf(idle, sizeof idle, "%" PRId64, min_idle_ms);
    snprintf(count, sizeof count, "%d", room);
    const char *cmd[] = {"XAUTOCLAIM",    key,     SYN_Q_GROUP, consumer, idle,
                         c->cursor[prio], "COUNT", count,       NULL};
    *done = 1;
    if ((rc = append_strs(c, cmd)) || (rc = qc_collect(c, 1, &r))) return rc;
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOGROUP", 7) == 0) {
        rc = SYN_OK; /* no group, or no stream: nothing was ever delivered there */
        goto out;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY) {
        rc = qc_reply_error(c, r, "XAUTOCLAIM");
        goto out;
    }
    const redisReply *next = r->element[0], *claimed = r->element[1];
    if (next->len < sizeof c->cursor[prio]) memcpy(c->cursor[prio], next->str, next->len + 1);
    *done = strcmp(c->cursor[prio], "0-0") == 0;
    /* Redis 7 leaves entries deleted meanwhile out (listing them third); 6.2 gave nil fields */
    ids = calloc(claimed->elements + 1, sizeof *ids);
    flds = calloc(claimed->elements + 1, sizeof *flds);
    pend = calloc(claimed->elements + 1, sizeof *pend);
    if (!ids || !flds || !pend) {
        rc = SYN_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < claimed->elements; i++) {
        const redisReply *e = claimed->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
            e->element[0]->type != REDIS_REPLY_STRING || e->element[1]->type != REDIS_REPLY_ARRAY)
            continue;
        ids[n_ids] = e->element[0];
        flds[n_ids++] = e->element[1];
    }
    if (n_ids == 0) goto out;
    /* XAUTOCLAIM does not say how often each was delivered: XPENDING does, one per entry */
    for (int i = 0; i < n_ids; i++) {
        const char *xp[] = {"XPENDING", key, SYN_Q_GROUP, ids[i]->str, ids[i]->str, "1", NULL};
        if ((rc = append_strs(c, xp))) goto out;
    }
    if ((rc = qc_collect(c, n_ids, pend))) goto out;
    for (int i = 0; i < n_ids; i++) {
        int deliveries = 1;
        const redisReply *p = pend[i];
        /* [[id, consumer, idle, deliveries]]; nothing if its old worker acknowledged it in
         * between, another consumer if a second reclaimer took it meanwhile: not ours to run */
        if (p->type == REDIS_REPLY_ARRAY && p->elements == 1 &&
            p->element[0]->type == REDIS_REPLY_ARRAY && p->element[0]->elements == 4 &&
            qf_is(p->element[0]->element[1], consumer) &&
            p->element[0]->element[3]->type == REDIS_REPLY_INTEGER)
            deliveries = (int)p->element[0]->element[3]->integer;
        else
            continue;
        int ok = accept_entry(c, model, prio, ids[i], flds[i], deliveries, max_attempts, &out[*got],
                              &pending);
        if (ok < 0) {
            rc = ok;
            break;
        }
        *got += ok;
    }
    if (pending > 0 && c->ctx) {
        int crc = collect_and_check(c, pending, "discarding reclaimed jobs");
        if (rc == SYN_OK) rc = crc;
    }
out:
    if (pend) qc_free_replies(pend, n_ids);
    free(pend);
    free(ids);
    free(flds);
    if (r) freeReplyObject(r);
    return rc;
}

static int autoclaim_once(struct syn_qclient *c, const char *model, const char *consumer,
                          int64_t min_idle_ms, int max_attempts, int max, struct syn_job *out,
                          int *got)
{
    int rc = qc_begin(c);
    if (rc) return rc;
    qc_state_for(c, model);
    const int order[2] = {SYN_PRIO_HIGH, SYN_PRIO_NORMAL};
    for (int k = 0; k < 2 && rc == SYN_OK; k++) {
        int done = 0;
        for (int round = 0; round < AUTOCLAIM_ROUNDS && !done && *got < max && rc == SYN_OK;
             round++)
            rc = autoclaim_round(c, model, consumer, order[k], min_idle_ms, max_attempts,
                                 max - *got, out, got, &done);
    }
    return rc;
}

int syn_q_autoclaim(struct syn_qclient *c, const char *model, const char *consumer,
                    int64_t min_idle_ms, int max_attempts, int max, struct syn_job *out)
{
    if (!c || !syn_q_name_ok(model) || !syn_q_name_ok(consumer) || max < 0 || (max && !out) ||
        min_idle_ms < 0)
        return SYN_EINVAL;
    if (max == 0) return 0;
    int got = 0;
    int rc = autoclaim_once(c, model, consumer, min_idle_ms, max_attempts, max, out, &got);
    if (got == 0 && qc_retry(c, rc))
        rc = autoclaim_once(c, model, consumer, min_idle_ms, max_attempts, max, out, &got);
    return got > 0 ? got : rc;
}

/* ---- touch, ack, requeue ---- */

/* XCLAIM ... JUSTID only for entries this consumer still holds: a worker that was slow enough
 * to be declared dead must not take its jobs back from the worker that reclaimed them. */
static const char touch_script[] =
    "local r = {}\n"
    "for i = 3, #ARGV do\n"
    "  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)\n"
    "  if p[1] and p[1][2] == ARGV[2] then\n"
    "    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')\n"
    "    r[#r + 1] = 1\n"
    "  else\n"
    "    r[#r + 1] = 0\n"
    "  end\n"
    "end\n"
    "return r\n";

static int touch_once(struct syn_qclient *c, const char *model, const char *consumer,
                      const struct syn_job *const *jobs, int n, int *owned)
{
    char keys[2][160];
    struct dyn_argv d[2] = {{0}, {0}};
    int which[2] = {-1, -1}, n_cmd = 0, rc = qc_begin(c);
    redisReply *r[2] = {0};
    if (rc) return rc;
    for (int i = 0; i < n; i++) owned[i] = 0;
    /* build both commands first: nothing may be left appended and unread on a failure */
    for (int p = 0; p < 2; p++) {
        int cnt = 0;
        for (int i = 0; i < n; i++) cnt += jobs[i]->priority == p && entry_ok(jobs[i]->entry);
        if (cnt == 0) continue;
        syn_q_key_jobs(keys[p], sizeof keys[p], model, p);
        if ((rc = dyn_init(&d[p], cnt + 6))) goto out;
        dyn_pushs(&d[p], "EVAL");
        dyn_pushs(&d[p], touch_script);
        dyn_pushs(&d[p], "1");
        dyn_pushs(&d[p], keys[p]);
        dyn_pushs(&d[p], SYN_Q_GROUP);
        dyn_pushs(&d[p], consumer);
        for (int i = 0; i < n; i++)
            if (jobs[i]->priority == p && entry_ok(jobs[i]->entry))
                dyn_pushs(&d[p], jobs[i]->entry);
        which[n_cmd++] = p;
    }
    for (int k = 0; k < n_cmd; k++)
        if ((rc = qc_appendv(c, d[which[k]].argc, d[which[k]].argv, d[which[k]].len))) goto out;
    if (n_cmd > 0 && (rc = qc_collect(c, n_cmd, r))) goto out;
    for (int k = 0; k < n_cmd && rc == SYN_OK; k++) {
        int p = which[k];
        if (r[k]->type != REDIS_REPLY_ARRAY) {
            rc = qc_reply_error(c, r[k], "touch (EVAL XCLAIM JUSTID)");
            break;
        }
        size_t e = 0;
        for (int i = 0; i < n; i++) {
            if (jobs[i]->priority != p || !entry_ok(jobs[i]->entry)) continue;
            if (e < r[k]->elements && r[k]->element[e]->type == REDIS_REPLY_INTEGER)
                owned[i] = r[k]->element[e]->integer == 1;
            e++;
        }
    }
out:
    qc_free_replies(r, 2);
    dyn_free(&d[0]);
    dyn_free(&d[1]);
    return rc;
}

int syn_q_touch_owned(struct syn_qclient *c, const char *model, const char *consumer,
                      const struct syn_job *const *jobs, int n, int *owned)
{
    if (!c || !syn_q_name_ok(model) || !syn_q_name_ok(consumer) || n < 0 || (n && !jobs))
        return SYN_EINVAL;
    if (n == 0) return SYN_OK;
    int *tmp = owned ? NULL : malloc((size_t)n * sizeof *tmp), *o = owned ? owned : tmp;
    if (!o) return SYN_ENOMEM;
    int rc = touch_once(c, model, consumer, jobs, n, o);
    if (qc_retry(c, rc)) rc = touch_once(c, model, consumer, jobs, n, o);
    free(tmp);
    return rc;
}

int syn_q_touch(struct syn_qclient *c, const char *model, const char *consumer,
                const struct syn_job *const *jobs, int n)
{
    return syn_q_touch_owned(c, model, consumer, jobs, n, NULL);
}

static int ack_once(struct syn_qclient *c, const char *model, const struct syn_job *j)
{
    char key[160];
    redisReply *r[2] = {0};
    int rc = qc_begin(c);
    if (rc) return rc;
    syn_q_key_jobs(key, sizeof key, model, j->priority);
    const char *ack[] = {"XACK", key, SYN_Q_GROUP, j->entry, NULL};
    const char *del[] = {"XDEL", key, j->entry, NULL};
    if ((rc = append_strs(c, ack)) || (rc = append_strs(c, del)) || (rc = qc_collect(c, 2, r)))
        return rc;
    for (int i = 0; i < 2 && rc == SYN_OK; i++)
        if (r[i]->type != REDIS_REPLY_INTEGER) rc = qc_reply_error(c, r[i], i ? "XDEL" : "XACK");
    qc_free_replies(r, 2);
    return rc;
}

int syn_q_ack(struct syn_qclient *c, const char *model, const struct syn_job *j)
{
    if (!c || !j || !syn_q_name_ok(model) || !entry_ok(j->entry) ||
        (j->priority != SYN_PRIO_NORMAL && j->priority != SYN_PRIO_HIGH))
        return SYN_EINVAL;
    int rc = ack_once(c, model, j);
    if (qc_retry(c, rc)) rc = ack_once(c, model, j);
    return rc;
}

int syn_q_ack_many(struct syn_qclient *c, const char *model, const struct syn_job *const *jobs,
                   int n)
{
    if (!c || !syn_q_name_ok(model)) return SYN_EINVAL;
    /* XACK and XDEL of an entry already gone answer 0: a retried batch changes nothing twice */
    struct syn_q_step_out o = {.acks = jobs, .n_acks = n};
    int rc = syn_q_post_step(c, model, &o);
    return rc == SYN_OK && !o.acks_done ? SYN_EIO : rc; /* check_acks said why */
}

static int requeue_once(struct syn_qclient *c, const char *model, const struct syn_job *j)
{
    redisReply *r[5] = {0};
    int rc = qc_begin(c);
    if (rc) return rc;
    int n = append_requeue(c, model, j);
    if (n < 0) return n;
    if ((rc = qc_collect(c, n, r))) return rc;
    /* EXEC answers an array of the three results, or nil/an error if the MULTI failed */
    const redisReply *x = r[n - 1];
    if (x->type != REDIS_REPLY_ARRAY || x->elements != 3 ||
        x->element[0]->type != REDIS_REPLY_STRING)
        rc = qc_reply_error(c, x->type == REDIS_REPLY_ARRAY && x->elements ? x->element[0] : x,
                            "requeue (MULTI XADD XACK XDEL)");
    qc_free_replies(r, n);
    return rc;
}

int syn_q_requeue(struct syn_qclient *c, const char *model, const struct syn_job *j)
{
    if (!c || !j || !syn_q_name_ok(model)) return SYN_EINVAL;
    int rc = requeue_once(c, model, j);
    if (qc_retry(c, rc)) rc = requeue_once(c, model, j);
    return rc;
}

/* ---- token events ---- */

/* Buffers the XADDs of n events and one PEXPIRE per reply stream; *n_cmd gets the count. */
static int append_posts(struct syn_qclient *c, const struct syn_event *ev,
                        const char *const *reply_keys, int n, int *n_cmd)
{
    int rc = SYN_OK, n_seen = 0;
    *n_cmd = 0;
    const char **seen = calloc((size_t)n, sizeof *seen);
    if (!seen) return SYN_ENOMEM;
    for (int i = 0; i < n; i++) {
        struct syn_q_argv a;
        if (syn_event_xadd_argv(reply_keys[i], &ev[i], &a) != SYN_OK) {
            /* a bad event is the caller's bug: report it, but do not hold back the others */
            syn_error(QC_LOG, "dropping an invalid event (job '%.100s', reply '%.130s', pos %d)",
                      ev[i].job, reply_keys[i] ? reply_keys[i] : "(null)", ev[i].pos);
            continue;
        }
        rc = qc_append(c, &a);
        syn_q_argv_reset(&a);
        if (rc) goto out;
        ++*n_cmd;
        int dup = 0;
        for (int k = 0; k < n_seen && !dup; k++) dup = strcmp(seen[k], reply_keys[i]) == 0;
        if (!dup) seen[n_seen++] = reply_keys[i];
    }
    for (int k = 0; k < n_seen; k++) {
        const char *pexpire[] = {"PEXPIRE", seen[k], SYN_Q_REPLY_TTL_MS, NULL};
        if ((rc = append_strs(c, pexpire))) goto out;
        ++*n_cmd;
    }
out:
    free(seen);
    return rc;
}

/* Buffers one EXISTS per valid id; *n_cmd gets the count. */
static int append_cancel_checks(struct syn_qclient *c, const char *const *ids, int n, int *out,
                                int *n_cmd)
{
    char key[160];
    *n_cmd = 0;
    for (int i = 0; i < n; i++) {
        out[i] = 0;
        if (syn_q_key_cancel(key, sizeof key, ids[i]) < 0) continue;
        const char *ex[] = {"EXISTS", key, NULL};
        int rc = append_strs(c, ex);
        if (rc) return rc;
        ++*n_cmd;
    }
    return SYN_OK;
}

/* Reads the EXISTS replies r (one per valid id) into out. */
static int read_cancel_checks(struct syn_qclient *c, redisReply **r, const char *const *ids, int n,
                              int *out)
{
    int rc = SYN_OK;
    for (int i = 0, k = 0; i < n; i++) {
        if (!syn_q_name_ok(ids[i])) continue;
        if (r[k]->type != REDIS_REPLY_INTEGER)
            rc = qc_reply_error(c, r[k], "EXISTS cancel");
        else
            out[i] = r[k]->integer > 0;
        k++;
    }
    return rc;
}

/* Appends XACK + XDEL of each job; *n_cmd gets the count. */
static int append_acks(struct syn_qclient *c, const char *model, const struct syn_job *const *jobs,
                       int n, int *n_cmd)
{
    char key[160];
    *n_cmd = 0;
    for (int k = 0; k < n; k++) {
        syn_q_key_jobs(key, sizeof key, model, jobs[k]->priority);
        const char *ack[] = {"XACK", key, SYN_Q_GROUP, jobs[k]->entry, NULL};
        const char *del[] = {"XDEL", key, jobs[k]->entry, NULL};
        int rc = append_strs(c, ack);
        if (rc || (rc = append_strs(c, del))) return rc;
        *n_cmd += 2;
    }
    return SYN_OK;
}

/* Checks the n replies of append_acks. */
static int check_acks(struct syn_qclient *c, redisReply **r, int n)
{
    for (int i = 0; i < n; i++)
        if (r[i]->type != REDIS_REPLY_INTEGER)
            return qc_reply_error(c, r[i], i % 2 ? "XDEL" : "XACK");
    return SYN_OK;
}

/* Events, acks and cancellation checks (any of them empty), all in one round trip. */
static int post_once(struct syn_qclient *c, const char *model, struct syn_q_step_out *o)
{
    o->acks_done = 0;
    int rc = qc_begin(c), n_post = 0, n_ack = 0, n_check = 0;
    if (rc) return rc;
    redisReply **r =
        calloc((size_t)o->n_ev * 2 + (size_t)o->n_acks * 2 + (size_t)o->n_check + 1, sizeof *r);
    if (!r) return SYN_ENOMEM;
    if ((rc = append_posts(c, o->ev, o->reply_keys, o->n_ev, &n_post)) ||
        (rc = append_acks(c, model, o->acks, o->n_acks, &n_ack)) ||
        (rc = append_cancel_checks(c, o->check_ids, o->n_check, o->cancelled, &n_check)))
        goto out;
    if (n_post + n_ack + n_check == 0) goto out;
    if ((rc = qc_collect(c, n_post + n_ack + n_check, r))) goto out;
    if (n_post) rc = check_replies(c, r, n_post, "posting events");
    o->acks_done = check_acks(c, r + n_post, n_ack) == SYN_OK;
    int rc2 = read_cancel_checks(c, r + n_post + n_ack, o->check_ids, o->n_check, o->cancelled);
    if (rc == SYN_OK) rc = rc2;
    qc_free_replies(r, n_post + n_ack + n_check);
out:
    free(r);
    return rc;
}

int syn_q_post_step(struct syn_qclient *c, const char *model, struct syn_q_step_out *o)
{
    if (!c || !o || o->n_ev < 0 || o->n_acks < 0 || o->n_acks > SYN_Q_ACK_BATCH || o->n_check < 0 ||
        (o->n_ev && (!o->ev || !o->reply_keys)) ||
        (o->n_check && (!o->check_ids || !o->cancelled)) || (o->n_acks && !o->acks) ||
        (o->n_acks && !syn_q_name_ok(model)))
        return SYN_EINVAL;
    for (int k = 0; k < o->n_acks; k++)
        if (!o->acks[k] || !entry_ok(o->acks[k]->entry) ||
            (o->acks[k]->priority != SYN_PRIO_NORMAL && o->acks[k]->priority != SYN_PRIO_HIGH))
            return SYN_EINVAL;
    o->acks_done = o->n_acks == 0;
    if (o->n_ev + o->n_acks + o->n_check == 0) return SYN_OK;
    int rc = post_once(c, model, o);
    if (qc_retry(c, rc)) rc = post_once(c, model, o);
    return rc;
}

int syn_q_post_events(struct syn_qclient *c, const struct syn_event *ev,
                      const char *const *reply_keys, int n)
{
    struct syn_q_step_out o = {.ev = ev, .reply_keys = reply_keys, .n_ev = n};
    return syn_q_post_step(c, NULL, &o);
}

int syn_q_post_events_check(struct syn_qclient *c, const struct syn_event *ev,
                            const char *const *reply_keys, int n, const char *const *job_ids,
                            int n_ids, int *cancelled)
{
    struct syn_q_step_out o = {.ev = ev,
                               .reply_keys = reply_keys,
                               .n_ev = n,
                               .check_ids = job_ids,
                               .n_check = n_ids,
                               .cancelled = cancelled};
    return syn_q_post_step(c, NULL, &o);
}

/* ---- cancellation ---- */

static int cancel_once(struct syn_qclient *c, const char *job_id)
{
    char key[160];
    redisReply *r[2] = {0};
    int rc = qc_begin(c);
    if (rc) return rc;
    syn_q_key_cancel(key, sizeof key, job_id);
    const char *set[] = {"SET", key, "1", "EX", SYN_Q_CANCEL_TTL_S, NULL};
    const char *pub[] = {"PUBLISH", SYN_Q_CANCEL_CHANNEL, job_id, NULL};
    if ((rc = append_strs(c, set)) || (rc = append_strs(c, pub)) || (rc = qc_collect(c, 2, r)))
        return rc;
    if (r[0]->type == REDIS_REPLY_ERROR) rc = qc_reply_error(c, r[0], "SET cancel");
    qc_free_replies(r, 2);
    return rc;
}

int syn_q_cancel(struct syn_qclient *c, const char *job_id)
{
    if (!c || !syn_q_name_ok(job_id)) return SYN_EINVAL;
    int rc = cancel_once(c, job_id);
    if (qc_retry(c, rc)) rc = cancel_once(c, job_id);
    return rc;
}

int syn_q_cancelled(struct syn_qclient *c, const char *const *job_ids, int n, int *out)
{
    struct syn_q_step_out o = {.check_ids = job_ids, .n_check = n, .cancelled = out};
    return syn_q_post_step(c, NULL, &o);
}
