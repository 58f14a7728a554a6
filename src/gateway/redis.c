/*
 * The gateway's asynchronous Redis client (see redis.h): two hiredis async connections on the
 * gateway's libevent loop, reconnected with backoff; the reply-stream reader; the periodic
 * backlog and registry polls. Every hiredis callback fires exactly once, with a NULL reply when
 * the connection died, and each one accounts for itself on its connection (outstanding count,
 * last activity) so that a silent connection can be detected and dropped.
 */
#include "gateway/redis.h"

#include "synapse/error.h"
#include "synapse/log.h"

#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOG "gateway"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
#define XREAD_BLOCK_MS "1000"
#define XREAD_COUNT    "512"
/* A connection with commands outstanding and no reply for this long is presumed dead. */
#define STALL_MS 5000

struct rconn {
    struct gw_redis *r;
    const char *name;      /* "command" or "reader", for logs */
    redisAsyncContext *ac; /* NULL while disconnected; freed by hiredis or rconn_drop */
    int connected;         /* the connect callback said OK */
    int ever;              /* connected at least once (later connects count as reconnects) */
    struct event *retry;   /* reconnect timer; owned */
    int backoff_ms;
    int outstanding; /* commands sent and not yet answered */
    int64_t last_ms; /* monotonic ms of the last reply or of the connect */
};

struct gw_redis {
    struct event_base *base;
    int is_unix;
    char host[256];
    int port;
    char path[512];
    int db;
    char user[128];
    char pass[256];
    char reply_key[128];
    char **models; /* n_models names; owned */
    int n_models;
    int poll_ms;
    struct gw_redis_callbacks cb;
    struct rconn cmd;     /* commands and polls */
    struct rconn rd;      /* XREAD BLOCK on the reply stream */
    struct event *poll;   /* the poll timer; owned */
    struct event *reread; /* XREAD again after an error reply; owned */
    char last_id[48];     /* the reply-stream entry read last */
    int positioned;       /* last_id is known */
    int reading;          /* an XREAD is outstanding */
    int *busy;            /* per model: poll contexts outstanding (2 bits) */
    int64_t last_poll_ms;
    int freeing;
    struct gw_redis_stats st;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- URL ---- */

static int copy_n(char *dst, size_t cap, const char *s, size_t n)
{
    if (n >= cap) return -1;
    memcpy(dst, s, n);
    dst[n] = 0;
    return 0;
}

static int parse_uint(const char *s, size_t n, long max, int *out)
{
    long v = 0;
    if (n == 0 || n > 9) return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max) return -1;
    *out = (int)v;
    return 0;
}

static int parse_hostport(const char *s, size_t n, char *host, size_t hostcap, int *port)
{
    const char *colon = NULL;
    if (n && s[0] == '[') { /* [ipv6]:port */
        const char *rb = memchr(s, ']', n);
        if (!rb) return -1;
        if (copy_n(host, hostcap, s + 1, (size_t)(rb - s - 1))) return -1;
        colon = rb + 1 < s + n ? rb + 1 : NULL;
        if (colon && *colon != ':') return -1;
    } else {
        for (size_t i = 0; i < n; i++)
            if (s[i] == ':') colon = s + i;
        if (copy_n(host, hostcap, s, colon ? (size_t)(colon - s) : n)) return -1;
    }
    if (!host[0]) return -1;
    *port = 6379;
    if (colon && parse_uint(colon + 1, (size_t)(s + n - colon - 1), 65535, port)) return -1;
    return *port > 0 ? 0 : -1;
}

int gw_redis_parse_url(const char *url, int *is_unix, char *host, size_t hostcap, int *port,
                       char *path, size_t pathcap, int *db, char *user, size_t usercap, char *pass,
                       size_t passcap)
{
    *is_unix = 0;
    *port = 0;
    *db = 0;
    host[0] = path[0] = user[0] = pass[0] = 0;
    if (!url || !*url) return -1;
    if (strncmp(url, "unix://", 7) == 0) {
        const char *p = url + 7, *q = strstr(p, "?db=");
        size_t n = q ? (size_t)(q - p) : strlen(p);
        if (p[0] != '/' || copy_n(path, pathcap, p, n)) return -1;
        if (q && parse_uint(q + 4, strlen(q + 4), 1000000, db)) return -1;
        *is_unix = 1;
        return 0;
    }
    if (strncmp(url, "redis://", 8) == 0) {
        const char *rest = url + 8;
        const char *slash = strchr(rest, '/');
        size_t alen = slash ? (size_t)(slash - rest) : strlen(rest);
        if (slash && slash[1] && parse_uint(slash + 1, strlen(slash + 1), 1000000, db)) return -1;
        const char *at = NULL;
        for (size_t i = 0; i < alen; i++)
            if (rest[i] == '@') at = rest + i;
        if (at) {
            const char *colon = memchr(rest, ':', (size_t)(at - rest));
            if (colon) {
                if (copy_n(user, usercap, rest, (size_t)(colon - rest)) ||
                    copy_n(pass, passcap, colon + 1, (size_t)(at - colon - 1)))
                    return -1;
            } else if (copy_n(pass, passcap, rest, (size_t)(at - rest))) {
                return -1;
            }
            alen -= (size_t)(at - rest) + 1;
            rest = at + 1;
        }
        return parse_hostport(rest, alen, host, hostcap, port);
    }
    if (strstr(url, "://")) return -1;
    return parse_hostport(url, strlen(url), host, hostcap, port);
}

/* ---- the event-loop adapter ----
 *
 * hiredis's stock libevent adapter costs two epoll_ctl per command batch and two per reply:
 * its read event is not persistent (removed from epoll when it fires, added back by hiredis
 * after the read) and every batch of commands registers for writability, waits a loop turn for
 * it and unregisters again, though a socket to Redis is nearly always writable. This one keeps
 * a persistent read event, and runs a write at the end of the current loop turn (so that the
 * commands of every request read in this turn go out in one write) straight to the socket;
 * only when the socket's buffer is full, or while connecting, does it wait for writability.
 * Same contract for hiredis: the hooks are idempotent and cleanup frees everything. */

struct radapter {
    redisAsyncContext *ac;
    struct event *rev;   /* EV_READ | EV_PERSIST on the socket; owned */
    struct event *wev;   /* EV_WRITE: wait for writability (buffer full, or connecting); owned */
    struct event *flush; /* no fd: the write at the end of this loop turn; owned */
    int reading;         /* rev is added */
    int waiting;         /* wev is added */
};

/* The adapter whose redisAsyncHandleWrite is running: a write that hiredis cannot finish asks
 * for more through addWrite from inside it, and that must wait for writability, not loop. */
static _Thread_local struct radapter *writing_now;

static void ra_write(struct radapter *a)
{
    writing_now = a;
    redisAsyncHandleWrite(a->ac); /* may free a (cleanup clears writing_now) */
    writing_now = NULL;
}

static void ra_on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct radapter *a = arg;
    redisAsyncHandleRead(a->ac);
}

static void ra_on_writable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct radapter *a = arg;
    a->waiting = 0; /* not persistent: no longer added */
    ra_write(a);
}

static void ra_on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct radapter *a = arg;
    if (!a->waiting) ra_write(a);
}

static void ra_add_read(void *p)
{
    struct radapter *a = p;
    if (!a->reading && event_add(a->rev, NULL) == 0) a->reading = 1;
}

static void ra_del_read(void *p)
{
    struct radapter *a = p;
    if (a->reading) event_del(a->rev);
    a->reading = 0;
}

static void ra_add_write(void *p)
{
    struct radapter *a = p;
    if (a->waiting) return;
    if (writing_now == a || !(a->ac->c.flags & REDIS_CONNECTED)) {
        if (event_add(a->wev, NULL) == 0) a->waiting = 1;
    } else {
        event_active(a->flush, EV_WRITE, 0);
    }
}

static void ra_del_write(void *p)
{
    struct radapter *a = p;
    if (a->waiting) event_del(a->wev);
    a->waiting = 0;
}

static void ra_cleanup(void *p)
{
    struct radapter *a = p;
    if (writing_now == a) writing_now = NULL;
    event_free(a->rev);
    event_free(a->wev);
    event_free(a->flush);
    free(a);
}

static int ra_attach(redisAsyncContext *ac, struct event_base *base)
{
    if (ac->ev.data) return REDIS_ERR;
    struct radapter *a = calloc(1, sizeof *a);
    if (!a) return REDIS_ERR;
    a->ac = ac;
    a->rev = event_new(base, ac->c.fd, EV_READ | EV_PERSIST, ra_on_read, a);
    a->wev = event_new(base, ac->c.fd, EV_WRITE, ra_on_writable, a);
    a->flush = event_new(base, -1, 0, ra_on_flush, a);
    if (!a->rev || !a->wev || !a->flush) {
        if (a->rev) event_free(a->rev);
        if (a->wev) event_free(a->wev);
        if (a->flush) event_free(a->flush);
        free(a);
        return REDIS_ERR;
    }
    ac->ev.addRead = ra_add_read;
    ac->ev.delRead = ra_del_read;
    ac->ev.addWrite = ra_add_write;
    ac->ev.delWrite = ra_del_write;
    ac->ev.cleanup = ra_cleanup;
    ac->ev.data = a;
    /* as the stock adapter: readable and writable both complete the connect */
    ra_add_read(a);
    ra_add_write(a);
    return REDIS_OK;
}

/* ---- connections ---- */

static void rconn_connect(struct rconn *c);
static void reader_start(struct gw_redis *r);

static void schedule_retry(struct rconn *c)
{
    if (c->r->freeing) return;
    struct timeval tv = {c->backoff_ms / 1000, (c->backoff_ms % 1000) * 1000};
    event_add(c->retry, &tv);
    c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
}

/* Drops the connection (a stall, or shutting down); reconnects unless freeing. */
static void rconn_drop(struct rconn *c, const char *why)
{
    redisAsyncContext *ac = c->ac;
    if (!ac) return;
    if (why) syn_warn(LOG, "redis %s connection: %s; reconnecting", c->name, why);
    c->ac = NULL;
    c->connected = 0;
    c->outstanding = 0;
    if (c == &c->r->rd) c->r->reading = 0;
    c->r->st.errors += why != NULL;
    redisAsyncFree(ac);
    schedule_retry(c);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    rconn_connect(arg);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct rconn *c = ac->data;
    if (!c || c->ac != ac) return;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback */
        if (!c->r->freeing)
            syn_warn(LOG, "redis %s connection: cannot connect: %s", c->name, ac->errstr);
        c->ac = NULL;
        c->connected = 0;
        c->outstanding = 0;
        c->r->st.errors++;
        if (c == &c->r->rd) c->r->reading = 0;
        schedule_retry(c);
        return;
    }
    c->connected = 1;
    c->backoff_ms = BACKOFF_MIN_MS;
    c->last_ms = mono_ms();
    if (c->ever) {
        c->r->st.reconnects++;
        syn_info(LOG, "redis %s connection: reconnected", c->name);
    }
    c->ever = 1;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct rconn *c = ac->data;
    if (!c || c->ac != ac) return; /* dropped by us */
    c->ac = NULL;
    c->connected = 0;
    c->outstanding = 0;
    if (c == &c->r->rd) c->r->reading = 0;
    if (c->r->freeing) return;
    c->r->st.errors++;
    syn_warn(LOG, "redis %s connection lost%s%s", c->name, status == REDIS_OK ? "" : ": ",
             status == REDIS_OK ? "" : ac->errstr);
    schedule_retry(c);
}

/* Sends a command on c; fn (may be NULL for "ignore the reply") gets privdata. */
static int rsend(struct rconn *c, redisCallbackFn *fn, void *privdata, int argc, const char **argv,
                 const size_t *len);

/* The reply accounting every callback starts with: NULL if the gateway is going away. */
static struct rconn *account(redisAsyncContext *ac)
{
    struct rconn *c = ac->data;
    if (!c) return NULL;
    if (c->outstanding > 0) c->outstanding--;
    c->last_ms = mono_ms();
    return c->r->freeing ? NULL : c;
}

static void cb_ignore(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)privdata;
    struct rconn *c = account(ac);
    redisReply *rep = reply;
    if (c && rep && rep->type == REDIS_REPLY_ERROR)
        syn_debug(LOG, "redis %s connection: %s", c->name, rep->str);
}

static int rsend(struct rconn *c, redisCallbackFn *fn, void *privdata, int argc, const char **argv,
                 const size_t *len)
{
    if (!c->ac) return SYN_EIO;
    if (redisAsyncCommandArgv(c->ac, fn ? fn : cb_ignore, privdata, argc, argv, len) != REDIS_OK)
        return SYN_EIO;
    if (c->outstanding++ == 0) c->last_ms = mono_ms();
    return SYN_OK;
}

static int rsendv(struct rconn *c, redisCallbackFn *fn, void *privdata, const char **argv)
{
    size_t len[16];
    int argc = 0;
    for (; argv[argc] && argc < 16; argc++) len[argc] = strlen(argv[argc]);
    return rsend(c, fn, privdata, argc, argv, len);
}

static void rconn_connect(struct rconn *c)
{
    struct gw_redis *r = c->r;
    if (r->freeing || c->ac) return;
    redisAsyncContext *ac =
        r->is_unix ? redisAsyncConnectUnix(r->path) : redisAsyncConnect(r->host, r->port);
    if (!ac || ac->err) {
        syn_warn(LOG, "redis %s connection: cannot connect: %s", c->name,
                 ac ? ac->errstr : "out of memory");
        if (ac) redisAsyncFree(ac);
        r->st.errors++;
        schedule_retry(c);
        return;
    }
    ac->data = c;
    if (ra_attach(ac, r->base) != REDIS_OK) {
        redisAsyncFree(ac);
        schedule_retry(c);
        return;
    }
    c->ac = ac;
    c->outstanding = 0;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* setup commands are queued now and go out first once connected */
    if (r->pass[0]) {
        const char *auth[] = {"AUTH", r->user[0] ? r->user : r->pass, r->pass, NULL};
        if (!r->user[0]) auth[2] = NULL;
        rsendv(c, NULL, NULL, auth);
    }
    if (r->db) {
        char db[16];
        snprintf(db, sizeof db, "%d", r->db);
        const char *sel[] = {"SELECT", db, NULL};
        rsendv(c, NULL, NULL, sel);
    }
    if (c == &r->cmd) {
        /* the groups must exist from the start of the streams, or a worker creating them later
         * would skip the jobs queued before (an existing group is fine: BUSYGROUP) */
        for (int m = 0; m < r->n_models; m++)
            for (int p = 0; p < 2; p++) {
                char key[160];
                if (syn_q_key_jobs(key, sizeof key, r->models[m], p) < 0) continue;
                const char *xg[] = {"XGROUP", "CREATE", key, SYN_Q_GROUP, "0", "MKSTREAM", NULL};
                rsendv(c, NULL, NULL, xg);
            }
    } else {
        reader_start(r);
    }
}

/* ---- the reply stream ---- */

static void xread_next(struct gw_redis *r);

static void cb_xread(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)privdata;
    struct rconn *c = account(ac);
    if (!c) return;
    struct gw_redis *r = c->r;
    redisReply *rep = reply;
    r->reading = 0;
    if (!rep) return; /* disconnected: the reconnect restarts the loop */
    if (rep->type == REDIS_REPLY_ERROR) {
        syn_warn(LOG, "XREAD %s: %s", r->reply_key, rep->str);
        struct timeval tv = {0, 100 * 1000};
        event_add(r->reread, &tv);
        return;
    }
    if (rep->type == REDIS_REPLY_ARRAY) {
        for (size_t s = 0; s < rep->elements; s++) {
            redisReply *st = rep->element[s];
            if (st->type != REDIS_REPLY_ARRAY || st->elements != 2) continue;
            redisReply *entries = st->element[1];
            if (entries->type != REDIS_REPLY_ARRAY) continue;
            for (size_t e = 0; e < entries->elements; e++) {
                redisReply *ent = entries->element[e];
                if (ent->type != REDIS_REPLY_ARRAY || ent->elements != 2 ||
                    ent->element[0]->type != REDIS_REPLY_STRING)
                    continue;
                snprintf(r->last_id, sizeof r->last_id, "%s", ent->element[0]->str);
                struct syn_event ev;
                char err[256];
                if (syn_event_decode(ent->element[1], &ev, err, sizeof err) != SYN_OK) {
                    r->st.bad_events++;
                    syn_warn(LOG, "reply stream entry %s: %s", r->last_id, err);
                    continue;
                }
                r->st.events++;
                if (r->cb.on_event) r->cb.on_event(r->cb.ud, &ev);
                if (r->freeing) return;
            }
        }
    }
    xread_next(r);
}

static void xread_next(struct gw_redis *r)
{
    if (r->reading || !r->rd.ac || r->freeing) return;
    const char *argv[] = {"XREAD",   "COUNT",      XREAD_COUNT, "BLOCK", XREAD_BLOCK_MS,
                          "STREAMS", r->reply_key, r->last_id,  NULL};
    if (rsendv(&r->rd, cb_xread, NULL, argv) == SYN_OK) r->reading = 1;
}

static void on_reread(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    xread_next(arg);
}

static void cb_position(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)privdata;
    struct rconn *c = account(ac);
    if (!c) return;
    struct gw_redis *r = c->r;
    redisReply *rep = reply;
    if (!rep) return;
    if (rep->type == REDIS_REPLY_ARRAY) {
        /* start after the newest entry: older ones belong to an earlier life of this id */
        if (rep->elements > 0 && rep->element[0]->type == REDIS_REPLY_ARRAY &&
            rep->element[0]->elements == 2 &&
            rep->element[0]->element[0]->type == REDIS_REPLY_STRING)
            snprintf(r->last_id, sizeof r->last_id, "%s", rep->element[0]->element[0]->str);
        else
            snprintf(r->last_id, sizeof r->last_id, "0-0");
        r->positioned = 1;
        xread_next(r);
    } else {
        syn_warn(LOG, "XREVRANGE %s: %s", r->reply_key,
                 rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
        rconn_drop(c, "cannot find the reply stream's position");
    }
}

static void reader_start(struct gw_redis *r)
{
    if (!r->positioned) {
        const char *argv[] = {"XREVRANGE", r->reply_key, "+", "-", "COUNT", "1", NULL};
        rsendv(&r->rd, cb_position, NULL, argv);
    } else {
        xread_next(r);
    }
}

/* ---- jobs ---- */

static void cb_submit(redisAsyncContext *ac, void *reply, void *privdata)
{
    char *job_id = privdata;
    struct rconn *c = account(ac);
    redisReply *rep = reply;
    if (c && c->r->cb.on_submitted) {
        if (rep && rep->type == REDIS_REPLY_STRING)
            c->r->cb.on_submitted(c->r->cb.ud, job_id, 1, rep->str, NULL);
        else
            c->r->cb.on_submitted(c->r->cb.ud, job_id, 0, NULL,
                                  !rep                             ? "the Redis connection was lost"
                                  : rep->type == REDIS_REPLY_ERROR ? rep->str
                                                                   : "unexpected reply to XADD");
    }
    free(job_id);
}

int gw_redis_submit(struct gw_redis *r, const struct syn_job *j)
{
    if (!gw_redis_up(r)) return SYN_EIO;
    struct syn_q_argv a;
    memset(&a, 0, sizeof a);
    int rc = syn_job_xadd_argv(j, &a);
    if (rc) return rc;
    char *id = strdup(j->id);
    if (!id) {
        syn_q_argv_reset(&a);
        return SYN_ENOMEM;
    }
    rc = rsend(&r->cmd, cb_submit, id, a.argc, a.argv, a.len);
    syn_q_argv_reset(&a);
    if (rc) free(id);
    return rc;
}

int gw_redis_cancel(struct gw_redis *r, const char *job_id)
{
    char key[160];
    if (syn_q_key_cancel(key, sizeof key, job_id) < 0) return SYN_EINVAL;
    const char *set[] = {"SET", key, "1", "EX", "3600", NULL};
    const char *pub[] = {"PUBLISH", "syn:cancel", job_id, NULL};
    int rc = rsendv(&r->cmd, NULL, NULL, set);
    if (rc == SYN_OK) rc = rsendv(&r->cmd, NULL, NULL, pub);
    return rc;
}

/* ---- polls ---- */

#define BUSY_BACKLOG  1
#define BUSY_REGISTRY 2

struct backlog_ctx {
    struct gw_redis *r;
    int model;
    int left; /* replies still to come */
    int failed;
    int64_t len[2];     /* XLEN per priority */
    int64_t pending[2]; /* the group's pending */
    int64_t lag[2];     /* the group's lag, -1 for nil */
    int group[2];       /* the group exists */
};

static void backlog_done(struct backlog_ctx *x)
{
    struct gw_redis *r = x->r;
    r->busy[x->model] &= ~BUSY_BACKLOG;
    if (!x->failed && r->cb.on_backlog) {
        int64_t waiting = 0, pending = 0;
        for (int p = 0; p < 2; p++) {
            if (!x->group[p]) {
                waiting += x->len[p];
                continue;
            }
            pending += x->pending[p];
            /* lag is nil when Redis cannot count it; we delete acknowledged entries, so
             * everything in the stream is either waiting or pending */
            waiting += x->lag[p] >= 0 ? x->lag[p]
                                      : (x->len[p] > x->pending[p] ? x->len[p] - x->pending[p] : 0);
        }
        r->cb.on_backlog(r->cb.ud, x->model, waiting, pending);
        r->last_poll_ms = (int64_t)time(NULL) * 1000;
    }
    free(x);
}

static int is_str(const redisReply *r, const char *s)
{
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) &&
           strcmp(r->str, s) == 0;
}

/* privdata: the ctx, with the priority in the low bit of a tag. */
struct backlog_tag {
    struct backlog_ctx *x;
    int prio;
    int is_len;
};

static void cb_backlog(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct backlog_tag *t = privdata;
    struct backlog_ctx *x = t->x;
    int p = t->prio, is_len = t->is_len;
    free(t);
    struct rconn *c = account(ac);
    redisReply *rep = reply;
    if (!c || !rep) {
        x->failed = 1;
    } else if (is_len) {
        x->len[p] = rep->type == REDIS_REPLY_INTEGER ? rep->integer : 0;
    } else if (rep->type == REDIS_REPLY_ERROR) {
        if (!strstr(rep->str, "no such key")) x->failed = 1;
    } else if (rep->type == REDIS_REPLY_ARRAY) {
        for (size_t g = 0; g < rep->elements; g++) {
            redisReply *grp = rep->element[g];
            if (grp->type != REDIS_REPLY_ARRAY) continue;
            redisReply *name = NULL, *pend = NULL, *lag = NULL;
            for (size_t i = 0; i + 1 < grp->elements; i += 2) {
                if (is_str(grp->element[i], "name"))
                    name = grp->element[i + 1];
                else if (is_str(grp->element[i], "pending"))
                    pend = grp->element[i + 1];
                else if (is_str(grp->element[i], "lag"))
                    lag = grp->element[i + 1];
            }
            if (!is_str(name, SYN_Q_GROUP)) continue;
            x->group[p] = 1;
            x->pending[p] = pend && pend->type == REDIS_REPLY_INTEGER ? pend->integer : 0;
            x->lag[p] = lag && lag->type == REDIS_REPLY_INTEGER ? lag->integer : -1;
        }
    }
    if (--x->left == 0) {
        if (c || !x->r->freeing)
            backlog_done(x);
        else
            free(x);
    }
}

static void poll_backlog(struct gw_redis *r, int m)
{
    struct backlog_ctx *x = calloc(1, sizeof *x);
    if (!x) return;
    x->r = r;
    x->model = m;
    if (r->cb.on_poll_sent) r->cb.on_poll_sent(r->cb.ud, m);
    r->busy[m] |= BUSY_BACKLOG;
    for (int p = 0; p < 2; p++) {
        char key[160];
        syn_q_key_jobs(key, sizeof key, r->models[m], p);
        for (int l = 0; l < 2; l++) {
            struct backlog_tag *t = malloc(sizeof *t);
            if (!t) {
                x->failed = 1;
                continue;
            }
            t->x = x;
            t->prio = p;
            t->is_len = l;
            const char *xi[] = {"XINFO", "GROUPS", key, NULL}, *xl[] = {"XLEN", key, NULL};
            if (rsendv(&r->cmd, cb_backlog, t, l ? xl : xi) != SYN_OK) {
                free(t);
                x->failed = 1;
                continue;
            }
            x->left++;
        }
    }
    if (x->left == 0) {
        r->busy[m] &= ~BUSY_BACKLOG;
        free(x);
    }
}

struct registry_ctx {
    struct gw_redis *r;
    int model;
    int left;
    int failed;
    int live, ready, running;
};

static void registry_done(struct registry_ctx *x)
{
    struct gw_redis *r = x->r;
    r->busy[x->model] &= ~BUSY_REGISTRY;
    if (!x->failed && r->cb.on_workers)
        r->cb.on_workers(r->cb.ud, x->model, x->live, x->ready, x->running);
    free(x);
}

static void cb_worker(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct registry_ctx *x = privdata;
    struct rconn *c = account(ac);
    redisReply *rep = reply;
    if (!c || !rep) {
        x->failed = 1;
    } else if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
               rep->element[0]->type == REDIS_REPLY_STRING &&
               is_str(rep->element[2], x->r->models[x->model])) {
        /* HMGET state running model: nil fields when the entry expired */
        x->live++;
        if (atoi(rep->element[0]->str) == SYN_WORKER_READY) x->ready++;
        if (rep->element[1]->type == REDIS_REPLY_STRING) x->running += atoi(rep->element[1]->str);
    }
    if (--x->left == 0) {
        if (c)
            registry_done(x);
        else
            free(x);
    }
}

static void cb_workers(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct registry_ctx *x = privdata;
    struct rconn *c = account(ac);
    redisReply *rep = reply;
    if (!c || !rep || rep->type != REDIS_REPLY_ARRAY) {
        if (c) x->r->busy[x->model] &= ~BUSY_REGISTRY;
        free(x);
        return;
    }
    for (size_t i = 0; i < rep->elements; i++) {
        char key[160];
        if (rep->element[i]->type != REDIS_REPLY_STRING ||
            syn_q_key_worker(key, sizeof key, rep->element[i]->str) < 0)
            continue;
        const char *hm[] = {"HMGET", key, "state", "running", "model", NULL};
        if (rsendv(&x->r->cmd, cb_worker, x, hm) == SYN_OK)
            x->left++;
        else
            x->failed = 1;
    }
    if (x->left == 0) registry_done(x);
}

static void poll_registry(struct gw_redis *r, int m)
{
    struct registry_ctx *x = calloc(1, sizeof *x);
    if (!x) return;
    x->r = r;
    x->model = m;
    char set[160];
    syn_q_key_workers(set, sizeof set, r->models[m]);
    const char *zr[] = {"ZRANGE", set, "0", "-1", NULL};
    if (rsendv(&r->cmd, cb_workers, x, zr) != SYN_OK) {
        free(x);
        return;
    }
    r->busy[m] |= BUSY_REGISTRY;
}

static void check_stall(struct rconn *c, int64_t now, int64_t allow_ms)
{
    if (c->ac && c->outstanding > 0 && now - c->last_ms > allow_ms)
        rconn_drop(c, "no reply for too long");
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct gw_redis *r = arg;
    int64_t now = mono_ms();
    check_stall(&r->cmd, now, STALL_MS);
    check_stall(&r->rd, now, STALL_MS + atoi(XREAD_BLOCK_MS));
    if (!r->cmd.connected) return;
    for (int m = 0; m < r->n_models; m++) {
        if (!(r->busy[m] & BUSY_BACKLOG)) poll_backlog(r, m);
        if (!(r->busy[m] & BUSY_REGISTRY)) poll_registry(r, m);
    }
    if (r->rd.connected && r->positioned && !r->reading) xread_next(r);
}

/* ---- lifecycle ---- */

int gw_redis_new(struct event_base *base, const char *url, const char *reply_key,
                 const char *const *models, int n_models, int poll_ms,
                 const struct gw_redis_callbacks *cb, struct gw_redis **out, char *err,
                 size_t errlen)
{
    *out = NULL;
    struct gw_redis *r = calloc(1, sizeof *r);
    if (!r) return syn_seterr(err, errlen, SYN_ENOMEM, "redis: out of memory");
    if (gw_redis_parse_url(url, &r->is_unix, r->host, sizeof r->host, &r->port, r->path,
                           sizeof r->path, &r->db, r->user, sizeof r->user, r->pass,
                           sizeof r->pass) != 0) {
        free(r);
        return syn_seterr(err, errlen, SYN_EINVAL,
                          "bad Redis URL '%s': expected redis://[[user]:password@]host[:port]"
                          "[/db], unix:///path/to/socket[?db=N] or host:port",
                          url ? url : "");
    }
    r->base = base;
    snprintf(r->reply_key, sizeof r->reply_key, "%s", reply_key);
    r->poll_ms = poll_ms > 0 ? poll_ms : 200;
    r->cb = *cb;
    r->models = calloc((size_t)n_models + 1, sizeof *r->models);
    r->busy = calloc((size_t)n_models + 1, sizeof *r->busy);
    r->n_models = n_models;
    int ok = r->models && r->busy;
    for (int i = 0; ok && i < n_models; i++) ok = (r->models[i] = strdup(models[i])) != NULL;
    r->cmd.r = r->rd.r = r;
    r->cmd.name = "command";
    r->rd.name = "reader";
    r->cmd.backoff_ms = r->rd.backoff_ms = BACKOFF_MIN_MS;
    r->cmd.retry = ok ? event_new(base, -1, 0, on_retry, &r->cmd) : NULL;
    r->rd.retry = ok ? event_new(base, -1, 0, on_retry, &r->rd) : NULL;
    r->poll = ok ? event_new(base, -1, EV_PERSIST, on_poll, r) : NULL;
    r->reread = ok ? event_new(base, -1, 0, on_reread, r) : NULL;
    if (!r->cmd.retry || !r->rd.retry || !r->poll || !r->reread) {
        gw_redis_free(r);
        return syn_seterr(err, errlen, SYN_ENOMEM, "redis: out of memory");
    }
    struct timeval tv = {r->poll_ms / 1000, (r->poll_ms % 1000) * 1000};
    event_add(r->poll, &tv);
    rconn_connect(&r->cmd);
    rconn_connect(&r->rd);
    *out = r;
    return SYN_OK;
}

void gw_redis_free(struct gw_redis *r)
{
    if (!r) return;
    r->freeing = 1;
    rconn_drop(&r->cmd, NULL);
    rconn_drop(&r->rd, NULL);
    if (r->cmd.retry) event_free(r->cmd.retry);
    if (r->rd.retry) event_free(r->rd.retry);
    if (r->poll) event_free(r->poll);
    if (r->reread) event_free(r->reread);
    for (int i = 0; r->models && i < r->n_models; i++) free(r->models[i]);
    free(r->models);
    free(r->busy);
    free(r);
}

int gw_redis_up(const struct gw_redis *r)
{
    return r && r->cmd.connected && r->rd.connected && r->positioned;
}

int64_t gw_redis_last_poll_ms(const struct gw_redis *r)
{
    return r->last_poll_ms;
}

void gw_redis_get_stats(const struct gw_redis *r, struct gw_redis_stats *st)
{
    *st = r->st;
}
