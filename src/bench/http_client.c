/*
 * The load generator's HTTP/1.1 client (http_client.h). One struct hc_conn per socket and at
 * most one struct hc_call (a request) on it. A connection reads into its own buffer and runs a
 * small state machine over it: the head, then the body by Content-Length, by chunks or until
 * close; body bytes of an event stream go through an SSE line splitter, others are kept (up to
 * 64 KiB) for the caller. After a complete response a keep-alive connection goes back to the
 * idle list and the next request takes it.
 *
 * A request sent on a reused connection that the server had already closed (the race every
 * keep-alive client has) is retried once on a fresh connection, but only when not a single byte
 * of a response came back; a fresh connection that fails is the server's failure and reported.
 */
#include "bench/http_client.h"

#include <errno.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define HEAD_MAX  (64 * 1024) /* bytes of a response head */
#define BODY_KEEP (64 * 1024) /* bytes of a non-stream body kept for on_done */
#define SSE_MAX   (1 << 20)   /* bytes of one event's data */

const char *hc_strerror(int err)
{
    switch (err) {
    case HC_OK:
        return "ok";
    case HC_ECONNECT:
        return "connect";
    case HC_ECLOSED:
        return "closed";
    case HC_ETIMEOUT:
        return "timeout";
    case HC_EPROTO:
        return "protocol";
    case HC_ENOMEM:
        return "nomem";
    case HC_ECANCELED:
        return "canceled";
    default:
        return "unknown";
    }
}

/* ---- types ---- */

struct hc_call {
    struct hc_client *c;
    struct hc_handlers h;
    void *ud;
    char *req; /* (req_len) the request bytes; from malloc */
    size_t req_len;
    struct event *timer;         /* the timeout; NULL when none */
    struct hc_conn *conn;        /* the connection carrying it, NULL while queued */
    struct hc_call *next_queued; /* the wait queue */
    int retried;                 /* already retried once on a fresh connection */
};

enum phase {
    P_HEAD,       /* the status line and headers */
    P_BODY_LEN,   /* a Content-Length body */
    P_CHUNK_SIZE, /* a chunk-size line */
    P_CHUNK_DATA, /* chunk data */
    P_CHUNK_CRLF, /* the CRLF after chunk data */
    P_TRAILER,    /* trailer lines after the last chunk */
    P_EOF,        /* the body runs until the server closes */
};

struct hc_conn {
    struct hc_client *c;
    struct hc_conn *prev, *next; /* all connections */
    struct hc_conn *next_idle;   /* the idle list */
    int fd;
    struct event *ev_r, *ev_w; /* owned */
    int connecting;            /* connect() in progress */
    int idle;                  /* in the idle list */
    int reused;                /* a response came back on it before */
    struct hc_call *call;      /* in flight, or NULL */
    size_t req_off;            /* bytes of call->req written */
    char *in;                  /* (in_cap) unparsed input; from realloc */
    size_t in_len, in_cap;
    /* the response being parsed */
    enum phase phase;
    int got_bytes; /* any byte of a response arrived */
    int status, sse, keep_alive;
    uint64_t left; /* body or chunk bytes still to come */
    char *body;    /* (body_cap) kept body, or an SSE event's data */
    size_t body_len, body_cap;
    char *line; /* (line_cap) the SSE line being gathered */
    size_t line_len, line_cap;
    int has_data; /* the current event has a data: line */
};

struct hc_client {
    struct event_base *base;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char host[256];   /* for the Host header, with :port */
    char prefix[512]; /* path prefix from the URL, without a trailing slash */
    int max_conns;
    int n_conns;
    struct hc_conn *conns;           /* all connections */
    struct hc_conn *idle;            /* idle keep-alive connections, most recent first */
    struct hc_call *q_head, *q_tail; /* waiting for a connection */
    int n_queued;
};

static void conn_on_read(evutil_socket_t fd, short what, void *arg);
static void conn_on_write(evutil_socket_t fd, short what, void *arg);
static void dispatch_queue(struct hc_client *c);

/* ---- buffers ---- */

static int grow(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 512;
    while (nc < need) nc *= 2;
    char *nb = realloc(*buf, nc);
    if (!nb) return -1;
    *buf = nb;
    *cap = nc;
    return 0;
}

/* ---- calls ---- */

static void call_free(struct hc_call *k)
{
    if (!k) return;
    if (k->timer) event_free(k->timer);
    free(k->req);
    free(k);
}

/* Ends a call: exactly one on_done, then the call is gone. */
static void call_finish(struct hc_call *k, int err, int status, const char *body, size_t len)
{
    if (k->timer) evtimer_del(k->timer);
    k->conn = NULL;
    k->h.on_done(k->ud, err, status, body, len);
    call_free(k);
}

static void queue_remove(struct hc_client *c, struct hc_call *k)
{
    struct hc_call **pp = &c->q_head, *prev = NULL;
    while (*pp && *pp != k) {
        prev = *pp;
        pp = &(*pp)->next_queued;
    }
    if (!*pp) return;
    *pp = k->next_queued;
    if (c->q_tail == k) c->q_tail = prev;
    k->next_queued = NULL;
    c->n_queued--;
}

/* ---- connections ---- */

static void idle_remove(struct hc_client *c, struct hc_conn *cn)
{
    if (!cn->idle) return;
    struct hc_conn **pp = &c->idle;
    while (*pp && *pp != cn) pp = &(*pp)->next_idle;
    if (*pp) *pp = cn->next_idle;
    cn->next_idle = NULL;
    cn->idle = 0;
}

static void conn_free(struct hc_conn *cn)
{
    struct hc_client *c = cn->c;
    idle_remove(c, cn);
    if (cn->prev)
        cn->prev->next = cn->next;
    else
        c->conns = cn->next;
    if (cn->next) cn->next->prev = cn->prev;
    c->n_conns--;
    if (cn->ev_r) event_free(cn->ev_r);
    if (cn->ev_w) event_free(cn->ev_w);
    if (cn->fd >= 0) close(cn->fd);
    free(cn->in);
    free(cn->body);
    free(cn->line);
    free(cn);
}

static struct hc_conn *conn_open(struct hc_client *c)
{
    struct hc_conn *cn = calloc(1, sizeof *cn);
    if (!cn) return NULL;
    cn->c = c;
    cn->fd = socket(c->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (cn->fd < 0) {
        free(cn);
        return NULL;
    }
    int one = 1;
    setsockopt(cn->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    cn->ev_r = event_new(c->base, cn->fd, EV_READ | EV_PERSIST, conn_on_read, cn);
    cn->ev_w = event_new(c->base, cn->fd, EV_WRITE | EV_PERSIST, conn_on_write, cn);
    cn->next = c->conns;
    if (c->conns) c->conns->prev = cn;
    c->conns = cn;
    c->n_conns++;
    if (!cn->ev_r || !cn->ev_w) {
        conn_free(cn);
        return NULL;
    }
    cn->connecting = 1;
    if (connect(cn->fd, (struct sockaddr *)&c->addr, c->addr_len) == 0)
        cn->connecting = 0;
    else if (errno != EINPROGRESS)
        cn->connecting = -1; /* reported on the first write event */
    return cn;
}

static void reset_response(struct hc_conn *cn)
{
    cn->phase = P_HEAD;
    cn->got_bytes = 0;
    cn->status = 0;
    cn->sse = 0;
    cn->keep_alive = 1;
    cn->left = 0;
    cn->body_len = 0;
    cn->line_len = 0;
    cn->has_data = 0;
}

/* Puts call k on connection cn and starts writing: on a connected socket straight away (a
 * request nearly always fits in the socket's buffer, and waiting a loop turn for writability
 * costs two epoll_ctl and a wake-up per request, which shows in the send lag at thousands of
 * requests/s); whatever is left, or any error, is left to the write event, so that on_done is
 * never called from inside hc_request. */
static void conn_start(struct hc_conn *cn, struct hc_call *k)
{
    cn->call = k;
    k->conn = cn;
    cn->req_off = 0;
    reset_response(cn);
    event_add(cn->ev_r, NULL);
    while (!cn->connecting && cn->req_off < k->req_len) {
        ssize_t w = send(cn->fd, k->req + cn->req_off, k->req_len - cn->req_off, MSG_NOSIGNAL);
        if (w > 0)
            cn->req_off += (size_t)w;
        else if (!(w < 0 && errno == EINTR))
            break;
    }
    if (cn->connecting || cn->req_off < k->req_len) event_add(cn->ev_w, NULL);
}

/* The connection failed with the call on it: retry on a fresh connection when that is safe,
 * otherwise report err. The connection is freed either way. */
static void conn_fail(struct hc_conn *cn, int err)
{
    struct hc_client *c = cn->c;
    struct hc_call *k = cn->call;
    int reused = cn->reused, got = cn->got_bytes, status = cn->status;
    cn->call = NULL;
    conn_free(cn);
    if (!k) {
        dispatch_queue(c);
        return;
    }
    k->conn = NULL;
    if (reused && !got && !k->retried && (err == HC_ECLOSED || err == HC_ECONNECT)) {
        k->retried = 1;
        struct hc_conn *fresh = conn_open(c);
        if (fresh) {
            conn_start(fresh, k);
            return;
        }
    }
    call_finish(k, err, status, NULL, 0);
    dispatch_queue(c);
}

/* A complete response: hand the connection back (or close it), then report. */
static void conn_complete(struct hc_conn *cn)
{
    struct hc_client *c = cn->c;
    struct hc_call *k = cn->call;
    int status = cn->status;
    /* the body moves to a local so the connection can serve the next request at once */
    char *body = NULL;
    size_t blen = 0;
    if (!cn->sse && cn->body_len) {
        body = cn->body;
        blen = cn->body_len;
        cn->body = NULL;
        cn->body_cap = 0;
    }
    cn->body_len = 0;
    cn->call = NULL;
    cn->reused = 1;
    event_del(cn->ev_w);
    if (cn->keep_alive && cn->in_len == 0) {
        /* idle: keep reading so that a close by the server is noticed */
        cn->next_idle = c->idle;
        c->idle = cn;
        cn->idle = 1;
    } else {
        conn_free(cn);
    }
    call_finish(k, HC_OK, status, body, blen);
    free(body);
    dispatch_queue(c);
}

/* ---- parsing ---- */

static int has_token(const char *v, size_t n, const char *tok)
{
    size_t tl = strlen(tok);
    for (size_t i = 0; i + tl <= n; i++)
        if (!strncasecmp(v + i, tok, tl)) return 1;
    return 0;
}

/* Parses a complete head in cn->in[0..n). Returns 0, 1 for an interim 1xx response (skip it)
 * or -1. */
static int parse_head(struct hc_conn *cn, size_t n)
{
    const char *s = cn->in, *end = cn->in + n;
    int minor, status;
    if (n < 12 || sscanf(s, "HTTP/1.%1d %3d", &minor, &status) != 2 || status < 100 || status > 999)
        return -1;
    cn->status = status;
    cn->keep_alive = minor >= 1;
    int chunked = 0, have_len = 0;
    uint64_t len = 0;
    const char *p = memchr(s, '\n', n);
    p = p ? p + 1 : end;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        const char *le = eol > p && eol[-1] == '\r' ? eol - 1 : eol;
        const char *colon = memchr(p, ':', (size_t)(le - p));
        if (colon) {
            size_t kl = (size_t)(colon - p);
            const char *v = colon + 1;
            while (v < le && (*v == ' ' || *v == '\t')) v++;
            size_t vl = (size_t)(le - v);
            if (kl == 14 && !strncasecmp(p, "content-length", 14)) {
                char tmp[32];
                if (vl == 0 || vl >= sizeof tmp) return -1;
                memcpy(tmp, v, vl);
                tmp[vl] = 0;
                char *e;
                unsigned long long x = strtoull(tmp, &e, 10);
                if (*e) return -1;
                len = x;
                have_len = 1;
            } else if (kl == 17 && !strncasecmp(p, "transfer-encoding", 17)) {
                chunked = has_token(v, vl, "chunked");
            } else if (kl == 10 && !strncasecmp(p, "connection", 10)) {
                if (has_token(v, vl, "close"))
                    cn->keep_alive = 0;
                else if (has_token(v, vl, "keep-alive"))
                    cn->keep_alive = 1;
            } else if (kl == 12 && !strncasecmp(p, "content-type", 12)) {
                cn->sse = has_token(v, vl, "text/event-stream");
            }
        }
        p = eol + 1;
    }
    if (status < 200) return 1;
    if (status == 204 || status == 304) {
        cn->phase = P_BODY_LEN;
        cn->left = 0;
    } else if (chunked) {
        cn->phase = P_CHUNK_SIZE;
    } else if (have_len) {
        cn->phase = P_BODY_LEN;
        cn->left = len;
    } else {
        cn->phase = P_EOF;
        cn->keep_alive = 0;
    }
    return 0;
}

/* One SSE line (without its end of line). */
static int sse_line(struct hc_conn *cn, const char *l, size_t n)
{
    struct hc_call *k = cn->call;
    if (n == 0) {
        if (cn->has_data && k && k->h.on_event) {
            if (grow(&cn->body, &cn->body_cap, cn->body_len + 1)) return -1;
            cn->body[cn->body_len] = 0;
            k->h.on_event(k->ud, cn->body, cn->body_len);
        }
        cn->body_len = 0;
        cn->has_data = 0;
        return 0;
    }
    if (n >= 5 && !memcmp(l, "data:", 5)) {
        l += 5;
        n -= 5;
        if (n && *l == ' ') l++, n--;
        size_t need = cn->body_len + (cn->has_data ? 1 : 0) + n + 1;
        if (need > SSE_MAX || grow(&cn->body, &cn->body_cap, need)) return -1;
        if (cn->has_data) cn->body[cn->body_len++] = '\n';
        memcpy(cn->body + cn->body_len, l, n);
        cn->body_len += n;
        cn->has_data = 1;
    }
    return 0; /* event:, id:, retry: and comments are not needed */
}

/* Body bytes, after any chunk framing. */
static int body_bytes(struct hc_conn *cn, const char *b, size_t n)
{
    if (!cn->sse) {
        size_t keep = cn->body_len + n <= BODY_KEEP ? n : BODY_KEEP - cn->body_len;
        if (keep) {
            if (grow(&cn->body, &cn->body_cap, cn->body_len + keep + 1)) return -1;
            memcpy(cn->body + cn->body_len, b, keep);
            cn->body_len += keep;
            cn->body[cn->body_len] = 0;
        }
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = b[i];
        if (ch == '\n') {
            size_t l = cn->line_len;
            if (l && cn->line[l - 1] == '\r') l--;
            if (sse_line(cn, cn->line, l)) return -1;
            cn->line_len = 0;
            if (!cn->call) return 0;
        } else {
            if (cn->line_len + 1 > SSE_MAX || grow(&cn->line, &cn->line_cap, cn->line_len + 1))
                return -1;
            cn->line[cn->line_len++] = ch;
        }
    }
    return 0;
}

/* Runs the state machine over the input. Returns 1 when the response is complete, 0 when more
 * input is needed, or an HC_E* error. Consumed bytes are removed from cn->in. */
static int parse(struct hc_conn *cn)
{
    size_t off = 0;
    int rc = 0;
    while (rc == 0 && off < cn->in_len) {
        char *s = cn->in + off;
        size_t avail = cn->in_len - off;
        switch (cn->phase) {
        case P_HEAD: {
            char *e = NULL;
            for (size_t i = 3; i < avail; i++)
                if (s[i] == '\n' && s[i - 1] == '\r' && s[i - 2] == '\n' && s[i - 3] == '\r') {
                    e = s + i + 1;
                    break;
                }
            if (!e) {
                if (avail > HEAD_MAX) rc = HC_EPROTO;
                goto done;
            }
            /* parse_head reads from cn->in: move the head to the front first */
            if (off) {
                memmove(cn->in, s, avail);
                cn->in_len = avail;
                e -= off;
                off = 0;
                s = cn->in;
            }
            int h = parse_head(cn, (size_t)(e - s));
            if (h < 0) {
                rc = HC_EPROTO;
                goto done;
            }
            off += (size_t)(e - s);
            if (h == 1) continue; /* 100 Continue and friends: the real head follows */
            if (cn->call && cn->call->h.on_head)
                cn->call->h.on_head(cn->call->ud, cn->status, cn->sse);
            if (cn->phase == P_BODY_LEN && cn->left == 0) rc = 1;
            break;
        }
        case P_BODY_LEN: {
            size_t take = avail < cn->left ? avail : (size_t)cn->left;
            if (body_bytes(cn, s, take)) rc = HC_ENOMEM;
            off += take;
            cn->left -= take;
            if (!rc && cn->left == 0) rc = 1;
            break;
        }
        case P_CHUNK_SIZE:
        case P_TRAILER: {
            char *nl = memchr(s, '\n', avail);
            if (!nl) {
                if (avail > 1024) rc = HC_EPROTO;
                goto done;
            }
            size_t ll = (size_t)(nl - s);
            off += ll + 1;
            if (ll && s[ll - 1] == '\r') ll--;
            if (cn->phase == P_TRAILER) {
                if (ll == 0) rc = 1;
                break;
            }
            char *e;
            unsigned long long v = strtoull(s, &e, 16);
            if (e == s || (e < s + ll && *e != ';' && *e != ' ')) {
                rc = HC_EPROTO;
                break;
            }
            if (v == 0)
                cn->phase = P_TRAILER;
            else {
                cn->phase = P_CHUNK_DATA;
                cn->left = v;
            }
            break;
        }
        case P_CHUNK_DATA: {
            size_t take = avail < cn->left ? avail : (size_t)cn->left;
            if (body_bytes(cn, s, take)) rc = HC_ENOMEM;
            off += take;
            cn->left -= take;
            if (cn->left == 0) cn->phase = P_CHUNK_CRLF;
            break;
        }
        case P_CHUNK_CRLF: {
            if (avail < 1) goto done;
            if (s[0] == '\r') {
                if (avail < 2) goto done;
                if (s[1] != '\n') rc = HC_EPROTO;
                off += 2;
            } else if (s[0] == '\n') {
                off += 1;
            } else {
                rc = HC_EPROTO;
            }
            cn->phase = P_CHUNK_SIZE;
            break;
        }
        case P_EOF:
            if (body_bytes(cn, s, avail)) rc = HC_ENOMEM;
            off += avail;
            break;
        }
    }
done:
    if (off) {
        memmove(cn->in, cn->in + off, cn->in_len - off);
        cn->in_len -= off;
    }
    return rc;
}

/* ---- socket events ---- */

static void conn_on_write(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct hc_conn *cn = arg;
    struct hc_call *k = cn->call;
    if (cn->connecting) {
        int e = 0;
        socklen_t el = sizeof e;
        if (cn->connecting < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) != 0 || e) {
            conn_fail(cn, HC_ECONNECT);
            return;
        }
        cn->connecting = 0;
    }
    if (!k) {
        event_del(cn->ev_w);
        return;
    }
    while (cn->req_off < k->req_len) {
        ssize_t w = send(fd, k->req + cn->req_off, k->req_len - cn->req_off, MSG_NOSIGNAL);
        if (w > 0) {
            cn->req_off += (size_t)w;
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (w < 0 && errno == EINTR) continue;
        conn_fail(cn, HC_ECLOSED);
        return;
    }
    event_del(cn->ev_w);
}

static void conn_on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct hc_conn *cn = arg;
    if (cn->connecting) return; /* the write event reports the connect result */
    for (;;) {
        if (grow(&cn->in, &cn->in_cap, cn->in_len + 16384)) {
            conn_fail(cn, HC_ENOMEM);
            return;
        }
        ssize_t r = recv(fd, cn->in + cn->in_len, cn->in_cap - cn->in_len, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (r <= 0) {
            /* closed or reset */
            if (!cn->call) {
                conn_free(cn); /* an idle keep-alive connection the server let go */
                return;
            }
            if (cn->phase == P_EOF && r == 0) {
                cn->keep_alive = 0;
                conn_complete(cn);
                return;
            }
            conn_fail(cn, HC_ECLOSED);
            return;
        }
        if (!cn->call) {
            conn_free(cn); /* bytes nobody asked for: the connection is out of step */
            return;
        }
        cn->got_bytes = 1;
        cn->in_len += (size_t)r;
        int rc = parse(cn);
        if (rc < 0) {
            conn_fail(cn, rc);
            return;
        }
        if (rc == 1) {
            conn_complete(cn);
            return;
        }
        if ((size_t)r < 16384) return; /* drained for now */
    }
}

static void call_on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct hc_call *k = arg;
    struct hc_client *c = k->c;
    struct hc_conn *cn = k->conn;
    int status = 0;
    if (cn) {
        status = cn->status;
        cn->call = NULL;
        conn_free(cn); /* the response is abandoned: the connection cannot be reused */
    } else {
        queue_remove(c, k);
    }
    call_finish(k, HC_ETIMEOUT, status, NULL, 0);
    dispatch_queue(c);
}

/* ---- the client ---- */

/* Gives waiting calls a connection: an idle one, or a new one while under max_conns. */
static void dispatch_queue(struct hc_client *c)
{
    while (c->q_head) {
        struct hc_conn *cn = c->idle;
        if (cn) {
            idle_remove(c, cn);
        } else if (c->n_conns < c->max_conns) {
            cn = conn_open(c);
            if (!cn) {
                struct hc_call *k = c->q_head;
                queue_remove(c, k);
                call_finish(k, HC_ECONNECT, 0, NULL, 0);
                continue;
            }
        } else {
            return;
        }
        struct hc_call *k = c->q_head;
        queue_remove(c, k);
        conn_start(cn, k);
    }
}

int hc_client_new(struct event_base *base, const char *url, int max_conns, struct hc_client **out,
                  char *err, size_t errlen)
{
    *out = NULL;
    if (strncmp(url, "http://", 7) != 0) {
        snprintf(err, errlen, "the URL must start with http:// (got '%s'); TLS is not supported",
                 url);
        return -1;
    }
    const char *h = url + 7, *slash = strchr(h, '/');
    size_t hl = slash ? (size_t)(slash - h) : strlen(h);
    char host[256], port[16] = "80";
    if (hl == 0 || hl >= sizeof host) {
        snprintf(err, errlen, "the URL '%s' has no host", url);
        return -1;
    }
    memcpy(host, h, hl);
    host[hl] = 0;
    char *name = host;
    char *colon = NULL;
    if (host[0] == '[') { /* [v6]:port */
        char *rb = strchr(host, ']');
        if (!rb) {
            snprintf(err, errlen, "the URL '%s' has a bad IPv6 host", url);
            return -1;
        }
        *rb = 0;
        name = host + 1;
        if (rb[1] == ':') colon = rb + 1;
    } else {
        colon = strrchr(host, ':');
    }
    if (colon) {
        snprintf(port, sizeof port, "%s", colon + 1);
        *colon = 0;
    }
    struct hc_client *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->base = base;
    c->max_conns = max_conns > 0 ? max_conns : 1024;
    snprintf(c->host, sizeof c->host, "%.*s", (int)hl, h);
    if (slash) {
        snprintf(c->prefix, sizeof c->prefix, "%s", slash);
        size_t pl = strlen(c->prefix);
        while (pl > 0 && c->prefix[pl - 1] == '/') c->prefix[--pl] = 0;
    }
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int g = getaddrinfo(name, port, &hints, &res);
    if (g != 0 || !res) {
        snprintf(err, errlen, "cannot resolve '%s' port '%s': %s", name, port, gai_strerror(g));
        free(c);
        return -1;
    }
    memcpy(&c->addr, res->ai_addr, res->ai_addrlen);
    c->addr_len = res->ai_addrlen;
    freeaddrinfo(res);
    *out = c;
    return 0;
}

int hc_request(struct hc_client *c, const char *method, const char *path, const char *headers,
               const char *body, size_t body_len, double timeout_s, const struct hc_handlers *h,
               void *ud)
{
    struct hc_call *k = calloc(1, sizeof *k);
    if (!k) return HC_ENOMEM;
    k->c = c;
    k->h = *h;
    k->ud = ud;
    size_t cap = strlen(method) + strlen(c->prefix) + strlen(path) + strlen(c->host) +
                 (headers ? strlen(headers) : 0) + body_len + 160;
    k->req = malloc(cap);
    if (!k->req) {
        free(k);
        return HC_ENOMEM;
    }
    int n = snprintf(k->req, cap, "%s %s%s HTTP/1.1\r\nHost: %s\r\n%s", method, c->prefix, path,
                     c->host, headers ? headers : "");
    if (body)
        n += snprintf(k->req + n, cap - (size_t)n,
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n", body_len);
    else
        n += snprintf(k->req + n, cap - (size_t)n, "\r\n");
    if (body_len) memcpy(k->req + n, body, body_len);
    k->req_len = (size_t)n + body_len;
    if (timeout_s > 0) {
        k->timer = evtimer_new(c->base, call_on_timeout, k);
        if (!k->timer) {
            call_free(k);
            return HC_ENOMEM;
        }
        struct timeval tv = {(time_t)timeout_s,
                             (suseconds_t)((timeout_s - (double)(time_t)timeout_s) * 1e6)};
        evtimer_add(k->timer, &tv);
    }
    if (c->q_tail)
        c->q_tail->next_queued = k;
    else
        c->q_head = k;
    c->q_tail = k;
    c->n_queued++;
    dispatch_queue(c);
    return HC_OK;
}

int hc_client_open_conns(const struct hc_client *c)
{
    return c->n_conns;
}

int hc_client_queued(const struct hc_client *c)
{
    return c->n_queued;
}

void hc_client_free(struct hc_client *c)
{
    if (!c) return;
    c->max_conns = 0; /* nothing new may open from the callbacks below */
    while (c->conns || c->q_head) {
        while (c->conns) {
            struct hc_conn *cn = c->conns;
            struct hc_call *k = cn->call;
            cn->call = NULL;
            conn_free(cn);
            if (k) call_finish(k, HC_ECANCELED, 0, NULL, 0);
        }
        while (c->q_head) {
            struct hc_call *k = c->q_head;
            queue_remove(c, k);
            call_finish(k, HC_ECANCELED, 0, NULL, 0);
        }
    }
    free(c);
}
