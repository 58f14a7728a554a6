/*
 * The gateway's HTTP/1.1 server (see http.h for what it does and does not do, and why it is not
 * evhttp). One struct conn per client connection, reading one request at a time through a
 * small state machine: the head, then a Content-Length body or chunked body, then the handler;
 * the next pipelined request waits in the input buffer until the response is written.
 *
 * Nothing here frees a connection from inside a call the handler made: closing is scheduled on
 * the connection's "kick" event, so the gone callback always runs from the loop.
 */
#include "gateway/http.h"

#include "synapse/error.h"
#include "synapse/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define LOG "http"

/* Bytes of a chunk-size line (with extensions) we are willing to look at. */
#define CHUNK_LINE_MAX 1024
/* Bytes taken from the socket per read(2); a request head is a few hundred. */
#define READ_CHUNK 16384
/* Buffers of output passed to one sendmsg(2). */
#define WRITE_IOV 16

struct gw_http_config gw_http_default_config(void)
{
    struct gw_http_config c = {
        .host = "127.0.0.1",
        .port = 8080,
        .max_header_bytes = 16 * 1024,
        .max_headers = 100,
        .max_body_bytes = 1024 * 1024,
        .max_connections = 16384,
        .read_timeout_ms = 10000,
        .write_timeout_ms = 30000,
        .max_output_bytes = 8 * 1024 * 1024,
    };
    return c;
}

enum conn_state {
    C_HEAD,       /* waiting for (the rest of) a request head */
    C_BODY,       /* reading a Content-Length body */
    C_CHUNK_SIZE, /* reading a chunk-size line */
    C_CHUNK_DATA, /* reading chunk data */
    C_CHUNK_CRLF, /* the CRLF after chunk data */
    C_TRAILER,    /* trailer lines after the last chunk */
    C_HANDLING,   /* the handler has the request */
    C_CLOSING,    /* flushing the last response, then closing */
};

/* The socket is ours, not a bufferevent's: a bufferevent asks the kernel how much there is to
 * read (ioctl FIONREAD) before each read, and registers for writability (epoll_ctl), waits a
 * loop turn and unregisters for each response, though the socket nearly always has room. Here
 * input is read with one read(2) per readiness, and output is written straight to the socket at
 * the end of the response (or of the loop turn, for stream chunks); only what the kernel does
 * not take waits for writability, under the write timeout. */
struct conn {
    struct gw_http *h;
    struct conn *prev, *next; /* h->conns list */
    evutil_socket_t fd;       /* the socket; owned */
    struct evbuffer *in;      /* read, not yet consumed; owned */
    struct evbuffer *out;     /* response bytes the kernel has not taken yet; owned */
    struct event *rev;        /* EV_READ | EV_PERSIST; owned */
    struct event *wev;        /* EV_WRITE with the write timeout, while out waits; owned */
    struct event *flush;      /* writes out at the end of this loop turn; owned */
    int reading;              /* rev is added */
    int no_read;              /* reading stopped for good (closing, or timed out) */
    int waiting;              /* wev is added: out waits for the socket */
    int held;                 /* the next request waits until the last response is written */
    struct event *timer;      /* the read deadline; owned */
    struct event *kick;       /* deferred work (next pipelined request, close); owned */
    enum conn_state state;
    struct gw_http_req *req; /* the request being read or handled; owned */
    uint64_t left;           /* body or chunk bytes still to read */
    int abort;               /* close now, without flushing (too slow, shutting down) */
    char peer[64];           /* "ip:port" */
};

struct gw_http_req {
    struct conn *c;
    struct gw_arena arena; /* head copy, headers, body, the handler's state */
    struct gw_http_head head;
    int error; /* 0, or the status the transport decided */
    char errmsg[256];
    struct evbuffer *body; /* while reading; owned */
    char *body_data;       /* in the arena once complete */
    size_t body_len;
    int is_head;         /* HEAD: answer without a body */
    int keep_alive;      /* the connection may serve another request after this one */
    int streaming;       /* stream_begin was called */
    int chunked_out;     /* the stream uses chunked transfer coding */
    int expect_continue; /* Expect: 100-continue seen */
    gw_http_gone_fn gone;
    void *gone_ctx;
};

struct gw_http {
    struct event_base *base;
    struct evconnlistener *lst; /* owned */
    struct gw_http_config cfg;
    int port;
    gw_http_handler_fn fn;
    void *ud;
    struct conn *conns; /* every open connection */
    int paused;         /* the listener is disabled at max_connections */
    int stopping;       /* no more accepts */
    struct gw_http_stats st;
    struct event *resume; /* re-enables the listener after running out of fds; owned */
    time_t date_t;        /* second of the cached Date header */
    char date[48];
};

/* ---- the parser ---- */

static int is_tchar(unsigned char c)
{
    if (c >= '0' && c <= '9') return 1;
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int fail(char *err, size_t errlen, int status, const char *fmt, const char *arg)
{
    if (err && errlen) snprintf(err, errlen, fmt, arg ? arg : "");
    return status;
}

int gw_http_parse_head(const char *buf, size_t len, int max_headers, struct gw_arena *a,
                       struct gw_http_head *h, char *err, size_t errlen)
{
    memset(h, 0, sizeof *h);
    char *s = gw_arena_strndup(a, buf, len);
    if (!s) return fail(err, errlen, 500, "out of memory", NULL);
    char *end = s + len;
    /* the request line */
    char *eol = memchr(s, '\n', len);
    if (!eol) return fail(err, errlen, 400, "the request line is not terminated", NULL);
    char *le = eol;
    if (le > s && le[-1] == '\r') le--;
    *le = 0;
    char *p = s;
    char *m = p;
    while (p < le && is_tchar((unsigned char)*p)) p++;
    if (p == m || *p != ' ')
        return fail(err, errlen, 400,
                    "malformed request line: expected METHOD SP TARGET SP "
                    "HTTP/1.x",
                    NULL);
    *p++ = 0;
    char *t = p;
    while (p < le && (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f) p++;
    if (p == t || *p != ' ')
        return fail(err, errlen, 400,
                    "malformed request line: expected METHOD SP TARGET SP "
                    "HTTP/1.x",
                    NULL);
    *p++ = 0;
    char *v = p;
    if (strncmp(v, "HTTP/", 5) != 0 || strlen(v) != 8 || v[5] < '0' || v[5] > '9' || v[6] != '.' ||
        v[7] < '0' || v[7] > '9')
        return fail(err, errlen, 400, "malformed request line: bad HTTP version", NULL);
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
        return fail(err, errlen, 505, "HTTP version %s is not supported (1.0 and 1.1 are)", v);
    if (t[0] != '/')
        return fail(err, errlen, 400, "the request target must be a path starting with '/'", NULL);
    h->method = m;
    h->target = t;
    h->minor = v[7] - '0';
    char *q = strchr(t, '?');
    h->path = q ? gw_arena_strndup(a, t, (size_t)(q - t)) : t;
    if (!h->path) return fail(err, errlen, 500, "out of memory", NULL);

    /* header lines, up to the empty line */
    int cap = 16;
    h->headers = gw_arena_alloc(a, sizeof *h->headers * (size_t)cap);
    if (!h->headers) return fail(err, errlen, 500, "out of memory", NULL);
    p = eol + 1;
    for (;;) {
        if (p >= end) return fail(err, errlen, 400, "the request head is not terminated", NULL);
        eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) return fail(err, errlen, 400, "a header line is not terminated", NULL);
        le = eol;
        if (le > p && le[-1] == '\r') le--;
        *le = 0;
        if (le == p) break; /* the empty line */
        if (*p == ' ' || *p == '\t')
            return fail(err, errlen, 400, "folded header lines are not allowed", NULL);
        char *name = p;
        while (p < le && is_tchar((unsigned char)*p)) p++;
        if (p == name || *p != ':')
            return fail(err, errlen, 400, "malformed header line (expected 'Name: value')", NULL);
        *p++ = 0;
        while (p < le && (*p == ' ' || *p == '\t')) p++;
        char *val = p;
        for (char *x = p; x < le; x++) {
            unsigned char c = (unsigned char)*x;
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                return fail(err, errlen, 400, "header '%s' contains a control character", name);
        }
        char *ve = le;
        while (ve > val && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        *ve = 0;
        if (h->n_headers >= max_headers)
            return fail(err, errlen, 431, "too many header lines (at most %s)", NULL);
        if (h->n_headers == cap) {
            struct gw_http_header *nh = gw_arena_alloc(a, sizeof *nh * (size_t)cap * 2);
            if (!nh) return fail(err, errlen, 500, "out of memory", NULL);
            memcpy(nh, h->headers, sizeof *nh * (size_t)cap);
            h->headers = nh;
            cap *= 2;
        }
        h->headers[h->n_headers].name = name;
        h->headers[h->n_headers].value = val;
        h->n_headers++;
        p = eol + 1;
    }
    return 0;
}

int gw_http_parse_length(const char *s, uint64_t *out)
{
    if (!s || !*s) return -1;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -1;
        if (v < (1ULL << 62)) v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v > (1ULL << 62) ? (1ULL << 62) : v;
    return 0;
}

const char *gw_http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 411:
        return "Length Required";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

/* ---- requests ---- */

static const char *head_header(const struct gw_http_head *h, const char *name)
{
    for (int i = 0; i < h->n_headers; i++)
        if (strcasecmp(h->headers[i].name, name) == 0) return h->headers[i].value;
    return NULL;
}

/* 1 if the comma-separated list s contains token tok (case-insensitive). */
static int has_token(const char *s, const char *tok)
{
    size_t n = strlen(tok);
    while (s && *s) {
        while (*s == ' ' || *s == '\t' || *s == ',') s++;
        const char *e = s;
        while (*e && *e != ',') e++;
        const char *te = e;
        while (te > s && (te[-1] == ' ' || te[-1] == '\t')) te--;
        if ((size_t)(te - s) == n && strncasecmp(s, tok, n) == 0) return 1;
        s = e;
    }
    return 0;
}

int gw_http_req_error(const struct gw_http_req *r)
{
    return r->error;
}

const char *gw_http_req_error_message(const struct gw_http_req *r)
{
    return r->errmsg;
}

const char *gw_http_req_method(const struct gw_http_req *r)
{
    return r->head.method ? r->head.method : "";
}

const char *gw_http_req_path(const struct gw_http_req *r)
{
    return r->head.path ? r->head.path : "";
}

const char *gw_http_req_header(const struct gw_http_req *r, const char *name)
{
    return head_header(&r->head, name);
}

const char *gw_http_req_body(const struct gw_http_req *r, size_t *len)
{
    if (len) *len = r->body_len;
    return r->body_data ? r->body_data : "";
}

struct gw_arena *gw_http_req_arena(struct gw_http_req *r)
{
    return &r->arena;
}

const char *gw_http_req_peer(const struct gw_http_req *r)
{
    return r->c->peer;
}

void gw_http_req_on_gone(struct gw_http_req *r, gw_http_gone_fn fn, void *ctx)
{
    r->gone = fn;
    r->gone_ctx = ctx;
}

int gw_http_req_streaming(const struct gw_http_req *r)
{
    return r->streaming;
}

static struct gw_http_req *req_new(struct conn *c)
{
    struct gw_http_req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->c = c;
    r->body = evbuffer_new();
    if (!r->body) {
        free(r);
        return NULL;
    }
    r->keep_alive = 1;
    return r;
}

static void req_free(struct gw_http_req *r)
{
    if (!r) return;
    if (r->body) evbuffer_free(r->body);
    gw_arena_release(&r->arena);
    free(r);
}

/* ---- connections ---- */

static void conn_process(struct conn *c);

static void listener_update(struct gw_http *h)
{
    int count = h->st.connections;
    if (!h->lst || h->stopping) return;
    if (!h->paused && count >= h->cfg.max_connections) {
        evconnlistener_disable(h->lst);
        h->paused = 1;
        h->st.paused++;
        syn_warn(LOG, "%d connections open: not accepting more until one closes", count);
    } else if (h->paused && count < h->cfg.max_connections) {
        evconnlistener_enable(h->lst);
        h->paused = 0;
    }
}

static void conn_free(struct conn *c)
{
    struct gw_http *h = c->h;
    struct gw_http_req *r = c->req;
    c->req = NULL;
    if (r && c->state == C_HANDLING && r->gone) r->gone(r, r->gone_ctx);
    req_free(r);
    if (c->prev)
        c->prev->next = c->next;
    else
        h->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    event_free(c->rev);
    event_free(c->wev);
    event_free(c->flush);
    evbuffer_free(c->in);
    evbuffer_free(c->out);
    evutil_closesocket(c->fd);
    event_free(c->timer);
    event_free(c->kick);
    free(c);
    h->st.connections--;
    listener_update(h);
}

static void arm_read_timer(struct conn *c)
{
    struct timeval tv = {c->h->cfg.read_timeout_ms / 1000,
                         (c->h->cfg.read_timeout_ms % 1000) * 1000};
    event_add(c->timer, &tv);
}

/* Schedules conn_process (or the close) to run from the loop. */
static void conn_kick(struct conn *c)
{
    event_active(c->kick, EV_TIMEOUT, 0);
}

/* ---- socket I/O ---- */

/* Input beyond a head's worth waits in the kernel while a request is being handled. */
static size_t read_limit(const struct gw_http *h)
{
    return h->cfg.max_header_bytes + 65536;
}

/* Reads while there is room for input and reading has not been stopped. */
static void conn_want_read(struct conn *c)
{
    int want = !c->no_read && evbuffer_get_length(c->in) < read_limit(c->h);
    if (want && !c->reading) {
        if (event_add(c->rev, NULL) == 0) c->reading = 1;
    } else if (!want && c->reading) {
        event_del(c->rev);
        c->reading = 0;
    }
}

static void conn_stop_reading(struct conn *c)
{
    c->no_read = 1;
    conn_want_read(c);
}

/* Writes what the kernel takes of c->out now; the rest waits for writability. On a write
 * error the connection is scheduled to close (never freed here: handlers call this). */
static void conn_flush(struct conn *c)
{
    if (c->waiting) return; /* wev writes when the socket has room */
    while (evbuffer_get_length(c->out) > 0) {
        struct evbuffer_iovec v[WRITE_IOV];
        struct iovec iov[WRITE_IOV];
        int nv = evbuffer_peek(c->out, -1, NULL, v, WRITE_IOV);
        if (nv > WRITE_IOV) nv = WRITE_IOV;
        for (int i = 0; i < nv; i++) {
            iov[i].iov_base = v[i].iov_base;
            iov[i].iov_len = v[i].iov_len;
        }
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)nv};
        ssize_t n = sendmsg(c->fd, &m, MSG_NOSIGNAL);
        if (n > 0) {
            evbuffer_drain(c->out, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct timeval tv = {c->h->cfg.write_timeout_ms / 1000,
                                 (c->h->cfg.write_timeout_ms % 1000) * 1000};
            if (event_add(c->wev, &tv) == 0) c->waiting = 1;
            return;
        }
        syn_debug(LOG, "%s: write: %s", c->peer, n < 0 ? strerror(errno) : "no progress");
        c->abort = 1;
        conn_kick(c);
        return;
    }
}

/* Stream chunks are written together at the end of the loop turn. */
static void conn_flush_later(struct conn *c)
{
    if (!c->waiting) event_active(c->flush, EV_WRITE, 0);
}

static void conn_add(struct conn *c, const void *data, size_t len)
{
    evbuffer_add(c->out, data, len);
}

/* Hands the request to the handler. */
static void dispatch(struct conn *c)
{
    struct gw_http_req *r = c->req;
    event_del(c->timer);
    c->state = C_HANDLING;
    if (!r->error) {
        size_t n = evbuffer_get_length(r->body);
        r->body_data = gw_arena_alloc(&r->arena, n + 1);
        if (!r->body_data) {
            r->error = 500;
            snprintf(r->errmsg, sizeof r->errmsg, "out of memory reading the request body");
        } else {
            evbuffer_remove(r->body, r->body_data, n);
            r->body_data[n] = 0;
            r->body_len = n;
        }
    }
    evbuffer_free(r->body);
    r->body = NULL;
    if (r->error) {
        r->keep_alive = 0;
        c->h->st.transport_errors++;
    }
    c->h->st.requests++;
    c->h->fn(r, c->h->ud);
}

/* A transport error: the request (created if need be) goes to the handler with the status set;
 * the connection closes after the response. */
static void transport_error(struct conn *c, int status, const char *msg)
{
    if (!c->req) c->req = req_new(c);
    if (!c->req) {
        c->abort = 1;
        conn_kick(c);
        return;
    }
    c->req->error = status;
    c->req->keep_alive = 0;
    snprintf(c->req->errmsg, sizeof c->req->errmsg, "%s", msg);
    syn_debug(LOG, "%s: %d %s", c->peer, status, msg);
    dispatch(c);
}

/* Moves up to c->left bytes of input into the body; 1 when c->left reached 0. */
static int take_body(struct conn *c, struct evbuffer *in)
{
    size_t avail = evbuffer_get_length(in);
    size_t n = c->left < avail ? (size_t)c->left : avail;
    if (n) evbuffer_remove_buffer(in, c->req->body, n);
    c->left -= n;
    return c->left == 0;
}

/* Reads a line (CRLF or LF) of at most max bytes: 1 with *line (malloc'ed) set, 0 when more
 * input is needed, -1 when the line is too long. */
static int take_line(struct evbuffer *in, size_t max, char **line, size_t *n)
{
    *line = evbuffer_readln(in, n, EVBUFFER_EOL_CRLF);
    if (*line) return *n > max ? (free(*line), -1) : 1;
    return evbuffer_get_length(in) > max ? -1 : 0;
}

/* The head is complete in the first n bytes of the input: parse it and set up the body. */
static void start_request(struct conn *c, struct evbuffer *in, size_t n)
{
    struct gw_http *h = c->h;
    char err[256];
    struct gw_http_req *r = req_new(c);
    if (!r) {
        c->abort = 1;
        conn_kick(c);
        return;
    }
    c->req = r;
    char *buf = (char *)evbuffer_pullup(in, (ev_ssize_t)n);
    int st = gw_http_parse_head(buf, n, h->cfg.max_headers, &r->arena, &r->head, err, sizeof err);
    evbuffer_drain(in, n);
    if (st == 431)
        snprintf(err, sizeof err, "too many header lines (at most %d)", h->cfg.max_headers);
    if (st) {
        transport_error(c, st, err);
        return;
    }
    r->is_head = strcmp(r->head.method, "HEAD") == 0;
    const char *conn_hdr = head_header(&r->head, "Connection");
    r->keep_alive =
        r->head.minor >= 1 ? !has_token(conn_hdr, "close") : has_token(conn_hdr, "keep-alive");
    /* body framing: at most one Content-Length value, or chunked; never both */
    const char *te = NULL, *cl = NULL;
    int n_te = 0;
    for (int i = 0; i < r->head.n_headers; i++) {
        const struct gw_http_header *hd = &r->head.headers[i];
        if (strcasecmp(hd->name, "Transfer-Encoding") == 0) {
            te = hd->value;
            n_te++;
        } else if (strcasecmp(hd->name, "Content-Length") == 0) {
            if (cl && strcmp(cl, hd->value) != 0) {
                transport_error(c, 400, "conflicting Content-Length headers");
                return;
            }
            cl = hd->value;
        }
    }
    if (te && cl) {
        transport_error(c, 400,
                        "a request must not have both Transfer-Encoding and "
                        "Content-Length");
        return;
    }
    const char *expect = head_header(&r->head, "Expect");
    if (expect) {
        if (strcasecmp(expect, "100-continue") != 0) {
            transport_error(c, 417, "only 'Expect: 100-continue' is supported");
            return;
        }
        r->expect_continue = r->head.minor >= 1;
    }
    if (te) {
        if (n_te > 1 || strcasecmp(te, "chunked") != 0) {
            snprintf(err, sizeof err,
                     "Transfer-Encoding '%.100s' is not supported (only "
                     "chunked is)",
                     te);
            transport_error(c, 501, err);
            return;
        }
        c->state = C_CHUNK_SIZE;
    } else if (cl) {
        uint64_t len;
        if (gw_http_parse_length(cl, &len) != 0) {
            transport_error(c, 400, "Content-Length must be a decimal number");
            return;
        }
        if (len > h->cfg.max_body_bytes) {
            snprintf(err, sizeof err,
                     "the request body is %llu bytes; at most %zu are "
                     "allowed",
                     (unsigned long long)len, h->cfg.max_body_bytes);
            transport_error(c, 413, err);
            return;
        }
        c->left = len;
        if (len == 0) {
            dispatch(c);
            return;
        }
        c->state = C_BODY;
    } else {
        dispatch(c);
        return;
    }
    if (r->expect_continue && evbuffer_get_length(in) == 0) {
        conn_add(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        conn_flush(c);
    }
}

static void conn_run(struct conn *c);

/* Runs the state machine over whatever input there is, then reads again if it made room. */
static void conn_process(struct conn *c)
{
    conn_run(c);
    conn_want_read(c);
}

static void conn_run(struct conn *c)
{
    struct gw_http *h = c->h;
    struct evbuffer *in = c->in;
    char *line;
    size_t n;
    for (;;) {
        switch (c->state) {
        case C_HEAD: {
            /* a client that sends requests and does not read the answers gets no more
             * answered (and buffered here) than one response beyond what the kernel holds */
            if (c->held) return;
            /* blank lines before a request line are allowed (RFC 9112 2.2) */
            unsigned char lead[2];
            while (evbuffer_copyout(in, lead, 2) >= 1 &&
                   (lead[0] == '\n' ||
                    (lead[0] == '\r' && evbuffer_get_length(in) >= 2 && lead[1] == '\n')))
                evbuffer_drain(in, lead[0] == '\n' ? 1 : 2);
            size_t len = evbuffer_get_length(in);
            if (len == 0) return;
            size_t look = len < h->cfg.max_header_bytes + 4 ? len : h->cfg.max_header_bytes + 4;
            const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
            size_t end = 0;
            for (size_t i = 0; i + 1 < look; i++) {
                if (buf[i] != '\n') continue;
                if (buf[i + 1] == '\n') {
                    end = i + 2;
                    break;
                }
                if (buf[i + 1] == '\r' && i + 2 < look && buf[i + 2] == '\n') {
                    end = i + 3;
                    break;
                }
            }
            if (!end || end > h->cfg.max_header_bytes) {
                if (len > h->cfg.max_header_bytes || end > h->cfg.max_header_bytes) {
                    char err[128];
                    snprintf(err, sizeof err, "the request head is larger than %zu bytes",
                             h->cfg.max_header_bytes);
                    transport_error(c, 431, err);
                }
                return;
            }
            start_request(c, in, end);
            break;
        }
        case C_BODY:
            if (!take_body(c, in)) return;
            dispatch(c);
            break;
        case C_CHUNK_SIZE: {
            int t = take_line(in, CHUNK_LINE_MAX, &line, &n);
            if (t == 0) return;
            if (t < 0) {
                transport_error(c, 400, "a chunk-size line is too long");
                return;
            }
            uint64_t size = 0;
            size_t i = 0, digits = 0;
            for (; i < n; i++) {
                char ch = line[i];
                int d = ch >= '0' && ch <= '9'   ? ch - '0'
                        : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                        : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                                 : -1;
                if (d < 0) break;
                if (++digits > 15)
                    size = UINT64_MAX; /* saturate: refused below */
                else
                    size = size * 16 + (uint64_t)d;
            }
            int ok = digits > 0 && (i == n || line[i] == ';' || line[i] == ' ' || line[i] == '\t');
            free(line);
            if (!ok) {
                transport_error(c, 400, "malformed chunk-size line");
                return;
            }
            if (size == 0) {
                c->state = C_TRAILER;
                c->left = 0; /* counts trailer bytes */
                break;
            }
            if (size > h->cfg.max_body_bytes ||
                evbuffer_get_length(c->req->body) + size > h->cfg.max_body_bytes) {
                char err[128];
                snprintf(err, sizeof err, "the request body is larger than %zu bytes",
                         h->cfg.max_body_bytes);
                transport_error(c, 413, err);
                return;
            }
            c->left = size;
            c->state = C_CHUNK_DATA;
            break;
        }
        case C_CHUNK_DATA:
            if (!take_body(c, in)) return;
            c->state = C_CHUNK_CRLF;
            break;
        case C_CHUNK_CRLF: {
            unsigned char b[2];
            ev_ssize_t got = evbuffer_copyout(in, b, 2);
            if (got < 1) return;
            if (b[0] == '\n') {
                evbuffer_drain(in, 1);
            } else if (b[0] == '\r') {
                if (got < 2) return;
                if (b[1] != '\n') {
                    transport_error(c, 400, "chunk data is not followed by CRLF");
                    return;
                }
                evbuffer_drain(in, 2);
            } else {
                transport_error(c, 400, "chunk data is longer than its chunk-size");
                return;
            }
            c->state = C_CHUNK_SIZE;
            break;
        }
        case C_TRAILER: {
            int t = take_line(in, h->cfg.max_header_bytes, &line, &n);
            if (t == 0) return;
            if (t > 0) free(line);
            c->left += n + 2;
            if (t < 0 || c->left > h->cfg.max_header_bytes) {
                transport_error(c, 431, "the request trailers are too large");
                return;
            }
            if (n == 0) dispatch(c);
            break;
        }
        case C_HANDLING:
        case C_CLOSING:
            return;
        }
    }
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct conn *c = arg;
    size_t got = 0;
    for (;;) {
        size_t have = evbuffer_get_length(c->in), limit = read_limit(c->h);
        if (have >= limit) break;
        char buf[READ_CHUNK];
        size_t want = limit - have < sizeof buf ? limit - have : sizeof buf;
        ssize_t n = recv(fd, buf, want, 0);
        if (n > 0) {
            evbuffer_add(c->in, buf, (size_t)n);
            got += (size_t)n;
            if ((size_t)n < want) break; /* the kernel had no more */
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        /* end of input or an error: the client is gone (a request being handled is told) */
        conn_free(c);
        return;
    }
    conn_want_read(c);
    if (got) conn_process(c);
}

/* The output is written: a closing connection goes; a held one reads its next request. */
static void after_write(struct conn *c)
{
    if (evbuffer_get_length(c->out) || c->abort) return;
    if (c->state == C_CLOSING) {
        conn_free(c);
    } else if (c->held) {
        c->held = 0;
        arm_read_timer(c);
        conn_kick(c);
    }
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    struct conn *c = arg;
    c->waiting = 0; /* not persistent: no longer added */
    if (what & EV_TIMEOUT) {
        c->h->st.write_timeouts++;
        syn_info(LOG, "%s: response write made no progress for %d ms: closing", c->peer,
                 c->h->cfg.write_timeout_ms);
        conn_free(c);
        return;
    }
    conn_flush(c);
    after_write(c);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct conn *c = arg;
    conn_flush(c);
    after_write(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct conn *c = arg;
    if (c->state == C_HEAD && evbuffer_get_length(c->in) == 0 && !c->req) {
        conn_free(c); /* an idle keep-alive connection */
        return;
    }
    if (c->state == C_HANDLING || c->state == C_CLOSING) return;
    c->h->st.read_timeouts++;
    syn_info(LOG, "%s: the request did not arrive within %d ms: closing", c->peer,
             c->h->cfg.read_timeout_ms);
    conn_stop_reading(c);
    char msg[128];
    snprintf(msg, sizeof msg, "the request did not arrive in full within %d ms",
             c->h->cfg.read_timeout_ms);
    transport_error(c, 408, msg);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct conn *c = arg;
    if (c->abort) {
        conn_free(c);
        return;
    }
    if (c->state == C_CLOSING) {
        conn_flush(c); /* normally a no-op: the response was written when it ended */
        if (!c->abort && evbuffer_get_length(c->out) == 0) conn_free(c);
        return;
    }
    if (c->state == C_HEAD) conn_process(c);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    (void)l;
    (void)salen;
    struct gw_http *h = arg;
    if (h->stopping) {
        evutil_closesocket(fd);
        return;
    }
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        evutil_closesocket(fd);
        return;
    }
    c->h = h;
    c->fd = fd;
    c->in = evbuffer_new();
    c->out = evbuffer_new();
    c->rev = event_new(h->base, fd, EV_READ | EV_PERSIST, on_readable, c);
    c->wev = event_new(h->base, fd, EV_WRITE, on_writable, c);
    c->flush = event_new(h->base, -1, 0, on_flush, c);
    c->timer = event_new(h->base, -1, 0, on_timer, c);
    c->kick = event_new(h->base, -1, 0, on_kick, c);
    if (!c->in || !c->out || !c->rev || !c->wev || !c->flush || !c->timer || !c->kick) {
        if (c->in) evbuffer_free(c->in);
        if (c->out) evbuffer_free(c->out);
        struct event *evs[] = {c->rev, c->wev, c->flush, c->timer, c->kick};
        for (size_t i = 0; i < sizeof evs / sizeof *evs; i++)
            if (evs[i]) event_free(evs[i]);
        evutil_closesocket(fd);
        free(c);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in *in4 = (struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in4->sin_addr, ip, sizeof ip);
        port = ntohs(in4->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        port = ntohs(in6->sin6_port);
    }
    snprintf(c->peer, sizeof c->peer, "%s:%d", ip, port);
    c->state = C_HEAD;
    c->next = h->conns;
    if (h->conns) h->conns->prev = c;
    h->conns = c;
    h->st.connections++;
    h->st.accepted++;
    conn_want_read(c);
    arm_read_timer(c);
    listener_update(h);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct gw_http *h = arg;
    if (!h->stopping && !h->paused) evconnlistener_enable(h->lst);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    struct gw_http *h = arg;
    int e = EVUTIL_SOCKET_ERROR();
    syn_warn(LOG, "accept: %s", evutil_socket_error_to_string(e));
    if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
        /* out of descriptors: the pending connection stays ready, so accepting again at once
         * would spin; pause for a moment while others close */
        evconnlistener_disable(l);
        struct timeval tv = {0, 100 * 1000};
        event_add(h->resume, &tv);
    }
}

/* ---- responses ---- */

static const char *date_header(struct gw_http *h)
{
    time_t now = time(NULL);
    if (now != h->date_t) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(h->date, sizeof h->date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        h->date_t = now;
    }
    return h->date;
}

/* The request is answered: free it and either go on with the connection or close it. */
static void finish(struct gw_http_req *r)
{
    struct conn *c = r->c;
    int keep = r->keep_alive && !(r->streaming && !r->chunked_out);
    c->req = NULL;
    req_free(r);
    if (keep && !c->h->stopping) {
        c->state = C_HEAD;
        /* the read deadline runs from when the response is written; until then the write
         * timeout governs (a read deadline armed by an earlier pipelined answer is dropped) */
        if (c->waiting) {
            c->held = 1;
            event_del(c->timer);
        } else {
            arm_read_timer(c);
        }
    } else {
        c->state = C_CLOSING;
        conn_stop_reading(c);
    }
    conn_kick(c);
}

static void write_head(struct gw_http_req *r, int status, const char *content_type,
                       const char *extra, long long length)
{
    struct evbuffer *out = r->c->out;
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: synapse\r\n", status,
                        gw_http_reason(status), date_header(r->c->h));
    if (content_type) evbuffer_add_printf(out, "Content-Type: %s\r\n", content_type);
    if (length >= 0) evbuffer_add_printf(out, "Content-Length: %lld\r\n", length);
    if (r->chunked_out) evbuffer_add_printf(out, "Transfer-Encoding: chunked\r\n");
    int keep = r->keep_alive && !(r->streaming && !r->chunked_out) && !r->c->h->stopping;
    if (!keep)
        evbuffer_add_printf(out, "Connection: close\r\n");
    else if (r->head.minor == 0)
        evbuffer_add_printf(out, "Connection: keep-alive\r\n");
    if (extra && *extra) evbuffer_add(out, extra, strlen(extra));
    evbuffer_add(out, "\r\n", 2);
}

void gw_http_respond(struct gw_http_req *r, int status, const char *content_type,
                     const char *extra_headers, const char *body, size_t len)
{
    struct conn *c = r->c;
    if (c->abort) {
        /* the connection is going away; the gone callback will not fire for a finished req */
        c->req = NULL;
        req_free(r);
        return;
    }
    write_head(r, status, content_type, extra_headers, (long long)len);
    if (!r->is_head && len) conn_add(c, body, len);
    conn_flush(c);
    finish(r);
}

void gw_http_stream_begin(struct gw_http_req *r, int status, const char *content_type,
                          const char *extra_headers)
{
    r->streaming = 1;
    r->chunked_out = r->head.minor >= 1 && !r->is_head;
    if (r->c->abort) return;
    write_head(r, status, content_type, extra_headers, r->is_head ? 0 : -1);
    conn_flush_later(r->c);
}

int gw_http_stream_write(struct gw_http_req *r, const char *data, size_t len)
{
    struct conn *c = r->c;
    if (c->abort) return -1;
    if (r->is_head || len == 0) return 0;
    struct evbuffer *out = c->out;
    if (evbuffer_get_length(out) + len > c->h->cfg.max_output_bytes) {
        c->h->st.write_timeouts++;
        syn_info(LOG, "%s: more than %zu response bytes waiting for a slow reader: closing",
                 c->peer, c->h->cfg.max_output_bytes);
        c->abort = 1;
        conn_kick(c);
        return -1;
    }
    if (r->chunked_out) evbuffer_add_printf(out, "%zx\r\n", len);
    evbuffer_add(out, data, len);
    if (r->chunked_out) evbuffer_add(out, "\r\n", 2);
    conn_flush_later(c);
    return 0;
}

void gw_http_stream_end(struct gw_http_req *r)
{
    struct conn *c = r->c;
    if (c->abort) {
        c->req = NULL;
        req_free(r);
        return;
    }
    if (r->chunked_out) conn_add(c, "0\r\n\r\n", 5);
    conn_flush(c);
    finish(r);
}

/* ---- the server ---- */

int gw_http_new(struct event_base *base, const struct gw_http_config *cfg, gw_http_handler_fn fn,
                void *ud, struct gw_http **out, char *err, size_t errlen)
{
    *out = NULL;
    struct gw_http *h = calloc(1, sizeof *h);
    if (!h) return syn_seterr(err, errlen, SYN_ENOMEM, "http: out of memory");
    h->base = base;
    h->cfg = *cfg;
    h->fn = fn;
    h->ud = ud;
    if (h->cfg.max_connections < 1) h->cfg.max_connections = 1;
    if (h->cfg.read_timeout_ms < 1) h->cfg.read_timeout_ms = 1;
    if (h->cfg.write_timeout_ms < 1) h->cfg.write_timeout_ms = 1;
    if (h->cfg.max_headers < 1) h->cfg.max_headers = 1;

    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", cfg->port);
    const char *host = cfg->host && *cfg->host ? cfg->host : NULL;
    int gai = getaddrinfo(host, portstr, &hints, &ai);
    if (gai != 0) {
        free(h);
        return syn_seterr(err, errlen, SYN_EIO, "http: cannot resolve '%s': %s", host ? host : "*",
                          gai_strerror(gai));
    }
    h->lst = evconnlistener_new_bind(
        base, on_accept, h, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE, 1024,
        ai->ai_addr, (int)ai->ai_addrlen);
    int e = errno;
    freeaddrinfo(ai);
    if (!h->lst) {
        free(h);
        return syn_seterr(err, errlen, SYN_EIO, "http: cannot listen on %s:%d: %s",
                          host ? host : "*", cfg->port, strerror(e));
    }
    evconnlistener_set_error_cb(h->lst, on_accept_error);
    h->resume = event_new(base, -1, 0, on_resume, h);
    if (!h->resume) {
        evconnlistener_free(h->lst);
        free(h);
        return syn_seterr(err, errlen, SYN_ENOMEM, "http: out of memory");
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(evconnlistener_get_fd(h->lst), (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            h->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            h->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    *out = h;
    return SYN_OK;
}

int gw_http_port(const struct gw_http *h)
{
    return h->port;
}

void gw_http_stop_accepting(struct gw_http *h)
{
    h->stopping = 1;
    if (h->lst) evconnlistener_disable(h->lst);
}

void gw_http_get_stats(const struct gw_http *h, struct gw_http_stats *st)
{
    *st = h->st;
}

void gw_http_free(struct gw_http *h)
{
    if (!h) return;
    h->stopping = 1;
    while (h->conns) conn_free(h->conns);
    if (h->resume) event_free(h->resume);
    if (h->lst) evconnlistener_free(h->lst);
    free(h);
}
