/*
 * The worker registry and the backlog: what the autoscaler reads to decide how many workers a
 * model needs. A worker's entry is a hash that expires unless heartbeats refresh it, indexed by
 * a per-model sorted set (score: last heartbeat) so that listing a model's workers is one ZRANGE
 * and one pipelined round of HGETALLs; ids whose hash has expired are removed from the set as
 * they are found. The backlog comes from XINFO GROUPS (lag and pending) on both job streams.
 */
#include "queue_impl.h"

#include "synapse/error.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- heartbeats ---- */

static int heartbeat_once(struct syn_qclient *c, const struct syn_worker_info *w, int64_t ttl_ms)
{
    char key[160], set[160], ttl[24], hb[24];
    struct syn_q_argv a;
    redisReply *r[4] = {0};
    int rc = qc_begin(c);
    if (rc) return rc;
    syn_q_key_worker(key, sizeof key, w->id);
    syn_q_key_workers(set, sizeof set, w->model);
    snprintf(ttl, sizeof ttl, "%" PRId64, ttl_ms);
    snprintf(hb, sizeof hb, "%" PRId64, w->heartbeat_ms);
    qa_init(&a);
    if (qa_pushs(&a, "HSET") || qa_pushs(&a, key) || qa_pushs(&a, "id") || qa_pushs(&a, w->id) ||
        qa_pushs(&a, "model") || qa_pushs(&a, w->model) || qa_pushs(&a, "state") ||
        qa_pushf(&a, "%d", w->state) || qa_pushs(&a, "pid") || qa_pushf(&a, "%d", w->pid) ||
        qa_pushs(&a, "max_seqs") || qa_pushf(&a, "%d", w->max_seqs) || qa_pushs(&a, "running") ||
        qa_pushf(&a, "%d", w->running) || qa_pushs(&a, "free_slots") ||
        qa_pushf(&a, "%d", w->free_slots) || qa_pushs(&a, "kv_blocks_free") ||
        qa_pushf(&a, "%d", w->kv_blocks_free) || qa_pushs(&a, "kv_blocks_total") ||
        qa_pushf(&a, "%d", w->kv_blocks_total) || qa_pushs(&a, "heartbeat_ms") ||
        qa_pushs(&a, hb) || qa_pushs(&a, "started_ms") || qa_pushf(&a, "%" PRId64, w->started_ms) ||
        qa_pushs(&a, "cold_start_s") || qa_pushf(&a, "%.17g", w->cold_start_s) ||
        qa_pushs(&a, "jobs_done") || qa_pushf(&a, "%" PRIu64, w->jobs_done) ||
        qa_pushs(&a, "tokens_out") || qa_pushf(&a, "%" PRIu64, w->tokens_out))
        return qc_fail(c, SYN_EINVAL, "queue: heartbeat of %s does not fit an argv", w->id);
    const char *pexp[] = {"PEXPIRE", key, ttl};
    const char *zadd[] = {"ZADD", set, hb, w->id};
    const char *zexp[] = {"PEXPIRE", set, SYN_Q_WORKERS_TTL_MS};
    size_t pl[3] = {7, strlen(key), strlen(ttl)};
    size_t zl[4] = {4, strlen(set), strlen(hb), strlen(w->id)};
    size_t el[3] = {7, strlen(set), strlen(SYN_Q_WORKERS_TTL_MS)};
    if ((rc = qc_append(c, &a)) || (rc = qc_appendv(c, 3, pexp, pl)) ||
        (rc = qc_appendv(c, 4, zadd, zl)) || (rc = qc_appendv(c, 3, zexp, el)) ||
        (rc = qc_collect(c, 4, r)))
        return rc;
    for (int i = 0; i < 4 && rc == SYN_OK; i++)
        if (r[i]->type == REDIS_REPLY_ERROR) rc = qc_reply_error(c, r[i], "heartbeat");
    qc_free_replies(r, 4);
    return rc;
}

int syn_q_heartbeat(struct syn_qclient *c, const struct syn_worker_info *w, int64_t ttl_ms)
{
    if (!c || !w || !syn_q_name_ok(w->id) || !syn_q_name_ok(w->model) || ttl_ms < 1)
        return SYN_EINVAL;
    int rc = heartbeat_once(c, w, ttl_ms);
    if (qc_retry(c, rc)) rc = heartbeat_once(c, w, ttl_ms);
    return rc;
}

static int unregister_once(struct syn_qclient *c, const struct syn_worker_info *w)
{
    char key[160], set[160];
    redisReply *r[2] = {0};
    int rc = qc_begin(c);
    if (rc) return rc;
    syn_q_key_worker(key, sizeof key, w->id);
    syn_q_key_workers(set, sizeof set, w->model);
    const char *del[] = {"DEL", key}, *zrem[] = {"ZREM", set, w->id};
    size_t dl[2] = {3, strlen(key)}, zl[3] = {4, strlen(set), strlen(w->id)};
    if ((rc = qc_appendv(c, 2, del, dl)) || (rc = qc_appendv(c, 3, zrem, zl)) ||
        (rc = qc_collect(c, 2, r)))
        return rc;
    for (int i = 0; i < 2 && rc == SYN_OK; i++)
        if (r[i]->type == REDIS_REPLY_ERROR) rc = qc_reply_error(c, r[i], "unregister");
    qc_free_replies(r, 2);
    return rc;
}

int syn_q_unregister(struct syn_qclient *c, const struct syn_worker_info *w)
{
    if (!c || !w || !syn_q_name_ok(w->id) || !syn_q_name_ok(w->model)) return SYN_EINVAL;
    int rc = unregister_once(c, w);
    if (qc_retry(c, rc)) rc = unregister_once(c, w);
    return rc;
}

/* ---- listing ---- */

int syn_worker_decode(const struct redisReply *h, struct syn_worker_info *w, char *err,
                      size_t errlen)
{
    char show[200];
    memset(w, 0, sizeof *w);
    if (!h || h->type != REDIS_REPLY_ARRAY || h->elements % 2 != 0)
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "worker: expected a hash (field/value array), found %s",
                          !h                             ? "nothing"
                          : h->type != REDIS_REPLY_ARRAY ? "a non-array"
                                                         : "an odd count");
    int have_id = 0, have_model = 0;
    for (size_t i = 0; i < h->elements; i += 2) {
        const redisReply *k = h->element[i], *v = h->element[i + 1];
        int64_t x = 0;
        uint64_t u = 0;
        int bad = 0;
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) {
            bad = 1;
        } else if (qf_is(k, "id")) {
            bad = qf_name(v, w->id, sizeof w->id) != 0;
            have_id = !bad;
        } else if (qf_is(k, "model")) {
            bad = qf_name(v, w->model, sizeof w->model) != 0;
            have_model = !bad;
        } else if (qf_is(k, "heartbeat_ms") || qf_is(k, "started_ms")) {
            bad = qf_i64(v, 0, INT64_MAX, &x) != 0;
            *(qf_is(k, "heartbeat_ms") ? &w->heartbeat_ms : &w->started_ms) = x;
        } else if (qf_is(k, "jobs_done") || qf_is(k, "tokens_out")) {
            bad = qf_u64(v, &u) != 0;
            *(qf_is(k, "jobs_done") ? &w->jobs_done : &w->tokens_out) = u;
        } else if (qf_is(k, "cold_start_s")) {
            float f = 0;
            char tmp[48];
            bad = qf_f32(v, &f) != 0 || v->len >= sizeof tmp;
            if (!bad) {
                memcpy(tmp, v->str, v->len);
                tmp[v->len] = 0;
                w->cold_start_s = strtod(tmp, NULL); /* the syntax was checked above */
            }
        } else {
            static const char *const ints[] = {"state",          "pid",        "max_seqs",
                                               "running",        "free_slots", "kv_blocks_free",
                                               "kv_blocks_total"};
            int *dst[] = {&w->state,          &w->pid,        &w->max_seqs,
                          &w->running,        &w->free_slots, &w->kv_blocks_free,
                          &w->kv_blocks_total};
            for (size_t f = 0; f < sizeof ints / sizeof ints[0]; f++) {
                if (!qf_is(k, ints[f])) continue;
                bad = qf_i64(v, INT_MIN, INT_MAX, &x) != 0;
                *dst[f] = (int)x;
            }
        }
        if (bad)
            return syn_seterr(err, errlen, SYN_EFORMAT, "worker: field '%s' has a bad value '%s'",
                              k->type == REDIS_REPLY_STRING ? k->str : "?",
                              qf_show(v, show, sizeof show));
    }
    if (!have_id || !have_model)
        return syn_seterr(err, errlen, SYN_EFORMAT, "worker: fields 'id' and 'model' are required");
    return SYN_OK;
}

static int list_once(struct syn_qclient *c, const char *model, struct syn_worker_info *out, int cap,
                     int *count)
{
    char set[160], key[160];
    redisReply *ids = NULL, **h = NULL;
    int rc = qc_begin(c), n_ids = 0, n_gone = 0;
    const char **gone = NULL;
    *count = 0;
    if (rc) return rc;
    syn_q_key_workers(set, sizeof set, model);
    const char *zr[] = {"ZRANGE", set, "0", "-1"};
    size_t zl[4] = {6, strlen(set), 1, 2};
    if ((rc = qc_appendv(c, 4, zr, zl)) || (rc = qc_collect(c, 1, &ids))) return rc;
    if (ids->type != REDIS_REPLY_ARRAY) {
        rc = qc_reply_error(c, ids, "ZRANGE workers");
        goto out;
    }
    h = calloc(ids->elements + 1, sizeof *h);
    gone = calloc(ids->elements + 1, sizeof *gone);
    if (!h || !gone) {
        rc = SYN_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < ids->elements; i++) {
        const redisReply *id = ids->element[i];
        if (id->type != REDIS_REPLY_STRING || syn_q_key_worker(key, sizeof key, id->str) < 0)
            continue;
        const char *hg[] = {"HGETALL", key};
        size_t hl[2] = {7, strlen(key)};
        if ((rc = qc_appendv(c, 2, hg, hl))) goto out;
        n_ids++;
    }
    if (n_ids && (rc = qc_collect(c, n_ids, h))) {
        n_ids = 0;
        goto out;
    }
    for (size_t i = 0, k = 0; i < ids->elements; i++) {
        const redisReply *id = ids->element[i];
        if (id->type != REDIS_REPLY_STRING || !syn_q_name_ok(id->str)) continue;
        const redisReply *hr = h[k++];
        struct syn_worker_info w;
        if (hr->type == REDIS_REPLY_ARRAY && hr->elements == 0) {
            gone[n_gone++] = id->str; /* expired: the worker stopped heartbeating */
            continue;
        }
        if (syn_worker_decode(hr, &w, NULL, 0) != SYN_OK || strcmp(w.id, id->str) != 0) continue;
        if (strcmp(w.model, model) != 0) {
            gone[n_gone++] = id->str; /* the id now serves another model */
            continue;
        }
        if (*count < cap) out[(*count)++] = w;
    }
    if (n_gone > 0) {
        /* one ZREM of every id that is gone */
        const char **argv = calloc((size_t)n_gone + 2, sizeof *argv);
        size_t *len = calloc((size_t)n_gone + 2, sizeof *len);
        redisReply *zrem = NULL;
        if (argv && len) {
            argv[0] = "ZREM";
            argv[1] = set;
            for (int i = 0; i < n_gone; i++) argv[i + 2] = gone[i];
            for (int i = 0; i < n_gone + 2; i++) len[i] = strlen(argv[i]);
            if (qc_appendv(c, n_gone + 2, argv, len) == SYN_OK && qc_collect(c, 1, &zrem) == SYN_OK)
                freeReplyObject(zrem);
        }
        free(argv);
        free(len);
    }
out:
    if (h) qc_free_replies(h, n_ids);
    free(h);
    free(gone);
    if (ids) freeReplyObject(ids);
    return rc;
}

int syn_q_list_workers(struct syn_qclient *c, const char *model, struct syn_worker_info *out,
                       int cap)
{
    int count = 0;
    if (!c || !syn_q_name_ok(model) || cap < 0 || (cap && !out)) return SYN_EINVAL;
    int rc = list_once(c, model, out, cap, &count);
    if (qc_retry(c, rc)) rc = list_once(c, model, out, cap, &count);
    return rc ? rc : count;
}

/* ---- backlog ---- */

/* From one XINFO GROUPS reply and the stream's XLEN: waiting and pending of our group. */
static int group_backlog(struct syn_qclient *c, const redisReply *info, const redisReply *xlen,
                         int64_t *waiting, int64_t *pending)
{
    int64_t len = xlen->type == REDIS_REPLY_INTEGER ? xlen->integer : 0;
    if (info->type == REDIS_REPLY_ERROR) {
        /* "no such key": the stream does not exist yet */
        if (strstr(info->str, "no such key")) return SYN_OK;
        return qc_reply_error(c, info, "XINFO GROUPS");
    }
    if (info->type != REDIS_REPLY_ARRAY) return qc_reply_error(c, info, "XINFO GROUPS");
    for (size_t g = 0; g < info->elements; g++) {
        const redisReply *grp = info->element[g];
        const redisReply *name = NULL, *pend = NULL, *lag = NULL;
        if (grp->type != REDIS_REPLY_ARRAY) continue;
        for (size_t i = 0; i + 1 < grp->elements; i += 2) {
            if (qf_is(grp->element[i], "name"))
                name = grp->element[i + 1];
            else if (qf_is(grp->element[i], "pending"))
                pend = grp->element[i + 1];
            else if (qf_is(grp->element[i], "lag"))
                lag = grp->element[i + 1];
        }
        if (!qf_is(name, SYN_Q_GROUP)) continue;
        int64_t p = pend && pend->type == REDIS_REPLY_INTEGER ? pend->integer : 0;
        *pending += p;
        /* lag is nil when Redis cannot count it (entries deleted past the group's position);
         * we delete what is acknowledged, so every entry is either waiting or pending */
        if (lag && lag->type == REDIS_REPLY_INTEGER)
            *waiting += lag->integer;
        else
            *waiting += len - p > 0 ? len - p : 0;
        return SYN_OK;
    }
    *waiting += len; /* no group yet: everything waits */
    return SYN_OK;
}

static int backlog_once(struct syn_qclient *c, const char *model, int64_t *waiting,
                        int64_t *pending)
{
    char keys[2][160];
    redisReply *r[4] = {0};
    int rc = qc_begin(c);
    *waiting = *pending = 0;
    if (rc) return rc;
    for (int p = 0; p < 2; p++) {
        syn_q_key_jobs(keys[p], sizeof keys[p], model, p);
        const char *xi[] = {"XINFO", "GROUPS", keys[p]}, *xl[] = {"XLEN", keys[p]};
        size_t il[3] = {5, 6, strlen(keys[p])}, ll[2] = {4, strlen(keys[p])};
        if ((rc = qc_appendv(c, 3, xi, il)) || (rc = qc_appendv(c, 2, xl, ll))) return rc;
    }
    if ((rc = qc_collect(c, 4, r))) return rc;
    for (int p = 0; p < 2 && rc == SYN_OK; p++)
        rc = group_backlog(c, r[2 * p], r[2 * p + 1], waiting, pending);
    qc_free_replies(r, 4);
    return rc;
}

int syn_q_backlog(struct syn_qclient *c, const char *model, int64_t *waiting, int64_t *pending)
{
    if (!c || !syn_q_name_ok(model) || !waiting || !pending) return SYN_EINVAL;
    int rc = backlog_once(c, model, waiting, pending);
    if (qc_retry(c, rc)) rc = backlog_once(c, model, waiting, pending);
    return rc;
}
