/*
 * The synchronous Redis client of the queue module: URL parsing, one hiredis connection with a
 * connect timeout and a command timeout (a hung Redis costs a caller at most that long), lazy
 * reconnection with backoff, and the pipelining helpers every API call is built from (append
 * any number of commands, then read every reply: one round trip).
 *
 * Failure model: an I/O error or timeout frees the connection and counts an error; the next
 * call reconnects (at most one attempt per 100 ms, backing off to 2 s while Redis stays away).
 * When a call finds that a connection which worked has been closed under it (Redis restarted,
 * a proxy dropped an idle socket), it is made once more at once on a fresh connection, so that
 * callers rarely see the restart at all. An error reply does not drop the connection.
 * Not thread-safe: one client per thread. hiredis writes with write(2), so the process must
 * ignore SIGPIPE or a Redis that dies can kill it.
 */
#include "queue_impl.h"

#include "synapse/error.h"
#include "synapse/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

static struct timeval ms_tv(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

int qc_fail(struct syn_qclient *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errstr, sizeof c->errstr, fmt, ap);
    va_end(ap);
    syn_debug(QC_LOG, "%s", c->errstr);
    return code;
}

/* "host:port" or the socket path, for messages. */
static const char *where(const struct syn_qclient *c, char *buf, size_t cap)
{
    if (c->is_unix)
        snprintf(buf, cap, "unix:%s", c->path);
    else
        snprintf(buf, cap, "%s:%d", c->host, c->port);
    return buf;
}

/* ---- URL parsing ---- */

static int parse_port(const char *s, size_t n, int *out)
{
    int port = 0;
    if (n < 1 || n > 5) return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        port = port * 10 + (s[i] - '0');
    }
    if (port < 1 || port > 65535) return -1;
    *out = port;
    return 0;
}

/* host[:port] or [v6addr][:port] (n bytes at s). */
static int parse_hostport(struct syn_qclient *c, const char *s, size_t n)
{
    const char *host = s, *colon = NULL;
    size_t hlen;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close) return -1;
        host = s + 1;
        hlen = (size_t)(close - host);
        if (close + 1 < s + n) {
            if (close[1] != ':') return -1;
            colon = close + 1;
        }
    } else {
        colon = memchr(s, ':', n);
        hlen = colon ? (size_t)(colon - s) : n;
    }
    if (hlen == 0 || hlen >= sizeof c->host) return -1;
    memcpy(c->host, host, hlen);
    c->host[hlen] = 0;
    c->port = 6379;
    if (colon && parse_port(colon + 1, (size_t)(s + n - colon - 1), &c->port) != 0) return -1;
    return 0;
}

/* redis://[[user]:password@]host[:port][/db] */
static int parse_redis_url(struct syn_qclient *c, const char *rest)
{
    const char *slash = strchr(rest, '/');
    size_t alen = slash ? (size_t)(slash - rest) : strlen(rest);
    if (slash && slash[1]) {
        char *end = NULL;
        long db = strtol(slash + 1, &end, 10);
        if (*end || db < 0 || db > 1000000 || slash[1] < '0' || slash[1] > '9') return -1;
        c->db = (int)db;
    }
    const char *at = NULL;
    for (size_t i = 0; i < alen; i++)
        if (rest[i] == '@') at = rest + i;
    if (at) {
        size_t ulen = (size_t)(at - rest);
        const char *colon = memchr(rest, ':', ulen);
        const char *pw = colon ? colon + 1 : rest;
        size_t plen = (size_t)(at - pw), nlen = colon ? (size_t)(colon - rest) : 0;
        if (nlen >= sizeof c->user || plen >= sizeof c->pass) return -1;
        memcpy(c->user, rest, nlen);
        c->user[nlen] = 0;
        memcpy(c->pass, pw, plen);
        c->pass[plen] = 0;
        alen -= ulen + 1;
        rest = at + 1;
    }
    return parse_hostport(c, rest, alen);
}

static int parse_url(struct syn_qclient *c, const char *url, char *err, size_t errlen)
{
    if (!url || !*url) return syn_seterr(err, errlen, SYN_EINVAL, "queue: no Redis URL given");
    if (strncmp(url, "rediss://", 9) == 0)
        return syn_seterr(err, errlen, SYN_EUNSUPPORTED,
                          "queue: '%s' asks for TLS, which this build (hiredis 0.14) lacks; use "
                          "redis:// through a TLS tunnel",
                          url);
    int bad;
    if (strncmp(url, "unix://", 7) == 0) {
        /* unix:///path[?db=N] */
        const char *p = url + 7, *q = strstr(p, "?db=");
        size_t n = q ? (size_t)(q - p) : strlen(p);
        bad = p[0] != '/' || n >= sizeof c->path;
        if (!bad && q) {
            char *end = NULL;
            long db = strtol(q + 4, &end, 10);
            bad = *end || q[4] < '0' || q[4] > '9' || db > 1000000;
            c->db = (int)db;
        }
        if (!bad) {
            memcpy(c->path, p, n);
            c->path[n] = 0;
            c->is_unix = 1;
        }
    } else if (strncmp(url, "redis://", 8) == 0) {
        bad = parse_redis_url(c, url + 8) != 0;
    } else {
        bad = strstr(url, "://") != NULL || parse_hostport(c, url, strlen(url)) != 0;
    }
    if (bad)
        return syn_seterr(err, errlen, SYN_EINVAL,
                          "queue: bad Redis URL '%s': expected redis://[:password@]host[:port][/db]"
                          ", unix:///path/to/socket[?db=N] or host:port",
                          url);
    return SYN_OK;
}

/* ---- connecting ---- */

/* Runs one setup command on a fresh context; 0 when it answered +OK. */
static int setup_cmd(struct syn_qclient *c, redisContext *ctx, int argc, const char **argv)
{
    char w[600];
    redisReply *r = redisCommandArgv(ctx, argc, argv, NULL);
    int rc = SYN_OK;
    if (!r) {
        rc = qc_fail(c, SYN_EIO, "queue: Redis at %s: %s failed: %s", where(c, w, sizeof w),
                     argv[0], ctx->errstr);
    } else if (r->type == REDIS_REPLY_ERROR) {
        rc = qc_fail(c, SYN_EIO, "queue: Redis at %s refused %s: %s", where(c, w, sizeof w),
                     argv[0], r->str);
    }
    if (r) freeReplyObject(r);
    return rc;
}

static int qc_connect(struct syn_qclient *c)
{
    char w[600];
    int64_t now = qc_mono_ms();
    c->last_try_ms = now;
    redisContext *ctx =
        c->is_unix ? redisConnectUnixWithTimeout(c->path, ms_tv(QC_CONNECT_TIMEOUT_MS))
                   : redisConnectWithTimeout(c->host, c->port, ms_tv(QC_CONNECT_TIMEOUT_MS));
    int rc = SYN_OK;
    if (!ctx || ctx->err) {
        rc = qc_fail(c, SYN_EIO, "queue: cannot connect to Redis at %s: %s", where(c, w, sizeof w),
                     ctx ? ctx->errstr : "out of memory");
        goto out;
    }
    if (redisSetTimeout(ctx, ms_tv(c->timeout_ms)) != REDIS_OK) {
        rc = qc_fail(c, SYN_EIO, "queue: cannot set the command timeout on %s: %s",
                     where(c, w, sizeof w), ctx->errstr);
        goto out;
    }
    if (c->pass[0]) {
        const char *argv[3] = {"AUTH", c->user[0] ? c->user : c->pass, c->pass};
        if ((rc = setup_cmd(c, ctx, c->user[0] ? 3 : 2, argv))) goto out;
    }
    if (c->db) {
        char db[16];
        snprintf(db, sizeof db, "%d", c->db);
        const char *argv[2] = {"SELECT", db};
        if ((rc = setup_cmd(c, ctx, 2, argv))) goto out;
    }
out:
    if (rc != SYN_OK) {
        if (ctx) redisFree(ctx);
        c->errors++;
        c->next_try_ms = now + c->backoff_ms;
        c->backoff_ms =
            c->backoff_ms * 2 > QC_BACKOFF_MAX_MS ? QC_BACKOFF_MAX_MS : c->backoff_ms * 2;
        return rc;
    }
    c->ctx = ctx;
    c->backoff_ms = QC_BACKOFF_MIN_MS;
    if (c->ever_connected) {
        c->reconnects++;
        syn_info(QC_LOG, "reconnected to Redis at %s", where(c, w, sizeof w));
    }
    c->ever_connected = 1;
    return SYN_OK;
}

/* Frees a connection that failed under a call; saved_errno is errno right after the failure. */
static void qc_drop(struct syn_qclient *c, int saved_errno)
{
    char w[600];
    int err = c->ctx->err;
    /* EOF or a reset: the peer closed a connection that worked (worth one immediate retry);
     * a timeout (EAGAIN) is not: retrying would only double the wait on a hung server */
    c->lost_live = err == REDIS_ERR_EOF ||
                   (err == REDIS_ERR_IO && saved_errno != EAGAIN && saved_errno != EWOULDBLOCK);
    qc_fail(c, SYN_EIO, "queue: lost the connection to Redis at %s: %s", where(c, w, sizeof w),
            c->ctx->errstr[0] ? c->ctx->errstr : "I/O error");
    syn_warn(QC_LOG, "%s", c->errstr);
    redisFree(c->ctx);
    c->ctx = NULL;
    c->errors++;
    int64_t earliest = c->last_try_ms + QC_BACKOFF_MIN_MS, now = qc_mono_ms();
    c->next_try_ms = earliest > now ? earliest : now;
}

/* ---- the public client API ---- */

int syn_qclient_new(const char *url, struct syn_qclient **out, char *err, size_t errlen)
{
    int rc;
    *out = NULL;
    struct syn_qclient *c = calloc(1, sizeof *c);
    if (!c) return syn_seterr(err, errlen, SYN_ENOMEM, "queue: out of memory");
    if ((rc = parse_url(c, url, err, errlen)) != SYN_OK) {
        free(c);
        return rc;
    }
    c->timeout_ms = QC_COMMAND_TIMEOUT_MS;
    c->backoff_ms = QC_BACKOFF_MIN_MS;
    *out = c;
    if ((rc = qc_connect(c)) != SYN_OK) return syn_seterr(err, errlen, rc, "%s", c->errstr);
    return SYN_OK;
}

void syn_qclient_free(struct syn_qclient *c)
{
    if (!c) return;
    if (c->ctx) redisFree(c->ctx);
    free(c);
}

struct redisContext *syn_qclient_ctx(struct syn_qclient *c)
{
    return c ? c->ctx : NULL;
}

int syn_qclient_ensure(struct syn_qclient *c)
{
    if (!c) return SYN_EINVAL;
    if (c->ctx) return SYN_OK;
    if (qc_mono_ms() < c->next_try_ms) return SYN_EIO; /* errstr still holds the last failure */
    return qc_connect(c);
}

uint64_t syn_qclient_errors(const struct syn_qclient *c)
{
    return c ? c->errors : 0;
}

uint64_t syn_qclient_reconnects(const struct syn_qclient *c)
{
    return c ? c->reconnects : 0;
}

const char *syn_qclient_errstr(const struct syn_qclient *c)
{
    return c ? c->errstr : "no client";
}

void syn_qclient_set_timeout(struct syn_qclient *c, int timeout_ms)
{
    if (!c || timeout_ms < 1) return;
    c->timeout_ms = timeout_ms;
    qc_set_timeout(c, timeout_ms);
}

/* ---- pipelining helpers ---- */

void qc_set_timeout(struct syn_qclient *c, int ms)
{
    if (c->ctx) redisSetTimeout(c->ctx, ms_tv(ms));
}

int qc_begin(struct syn_qclient *c)
{
    if (!c) return SYN_EINVAL;
    c->lost_live = 0;
    return syn_qclient_ensure(c);
}

int qc_retry(struct syn_qclient *c, int rc)
{
    if (rc != SYN_EIO || !c || !c->lost_live) return 0;
    c->lost_live = 0;
    return 1;
}

int qc_appendv(struct syn_qclient *c, int argc, const char **argv, const size_t *len)
{
    if (!c->ctx) return qc_fail(c, SYN_EIO, "queue: not connected to Redis");
    if (redisAppendCommandArgv(c->ctx, argc, argv, len) != REDIS_OK) {
        /* the output buffer may hold half a command now: the connection is unusable */
        qc_drop(c, errno);
        return SYN_EIO;
    }
    return SYN_OK;
}

int qc_append(struct syn_qclient *c, const struct syn_q_argv *a)
{
    return qc_appendv(c, a->argc, (const char **)a->argv, a->len);
}

void qc_free_replies(redisReply **r, int n)
{
    for (int i = 0; i < n; i++) {
        if (r[i]) freeReplyObject(r[i]);
        r[i] = NULL;
    }
}

int qc_collect(struct syn_qclient *c, int n, redisReply **out)
{
    if (!c->ctx) return qc_fail(c, SYN_EIO, "queue: not connected to Redis");
    for (int i = 0; i < n; i++) out[i] = NULL;
    for (int i = 0; i < n; i++) {
        void *r = NULL;
        if (redisGetReply(c->ctx, &r) != REDIS_OK || !r) {
            int saved = errno;
            if (r) freeReplyObject(r);
            qc_free_replies(out, i);
            qc_drop(c, saved);
            return SYN_EIO;
        }
        out[i] = r;
    }
    return SYN_OK;
}

int qc_command(struct syn_qclient *c, const struct syn_q_argv *a, redisReply **out)
{
    int rc = qc_append(c, a);
    if (rc == SYN_OK) rc = qc_collect(c, 1, out);
    return rc;
}

int qc_reply_error(struct syn_qclient *c, const redisReply *r, const char *what)
{
    if (r && r->type == REDIS_REPLY_ERROR)
        return qc_fail(c, SYN_EIO, "queue: %s: %s", what, r->str);
    return qc_fail(c, SYN_EIO, "queue: %s: unexpected reply (type %d)", what, r ? r->type : -1);
}

int qc_transient(const redisReply *r)
{
    static const char *const prefixes[] = {"LOADING",     "BUSY",       "OOM",
                                           "READONLY",    "MASTERDOWN", "TRYAGAIN",
                                           "CLUSTERDOWN", "NOREPLICAS", "MISCONF"};
    if (!r || r->type != REDIS_REPLY_ERROR) return 0;
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (strncmp(r->str, prefixes[i], strlen(prefixes[i])) == 0) return 1;
    return 0;
}

void qc_state_for(struct syn_qclient *c, const char *model)
{
    if (strcmp(c->state_model, model) == 0) return;
    snprintf(c->state_model, sizeof c->state_model, "%s", model);
    c->hi_streak = 0;
    c->claim_drained = 0;
    snprintf(c->cursor[0], sizeof c->cursor[0], "0-0");
    snprintf(c->cursor[1], sizeof c->cursor[1], "0-0");
}
