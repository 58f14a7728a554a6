/*
 * The fake OpenAI server (fake_server.h). Each connection reads one request (head, then a
 * Content-Length body), builds the whole response, or its first part when chunks are spaced in
 * time, and writes it without blocking; a timer adds the later chunks.
 */
#include "bench/fake_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define REQ_MAX (1 << 20)

struct fconn {
    struct syn_fake_server *s;
    struct fconn *prev, *next;
    int fd;
    struct event *ev_r, *ev_w, *timer; /* owned */
    char *in;                          /* (in_cap) request bytes */
    size_t in_len, in_cap;
    char *out; /* (out_cap) response bytes not yet written */
    size_t out_off, out_len, out_cap;
    int busy;  /* a response is being produced */
    int left;  /* chunks still to send after this write */
    int sent;  /* chunks sent */
    int usage; /* add a usage chunk at the end */
    int keep_alive;
    int cut;         /* close after the first chunk */
    int close_after; /* close once out is written */
};

struct syn_fake_server {
    struct syn_fake_params p;
    struct event_base *base;
    struct event *ev_accept, *ev_stop;
    int lfd, stop_pipe[2], port;
    pthread_t thread;
    struct fconn *conns;
    atomic_uint_least64_t requests;
};

struct syn_fake_params syn_fake_default_params(void)
{
    struct syn_fake_params p = {.host = "127.0.0.1", .tokens = 4};
    return p;
}

static void conn_free(struct fconn *c)
{
    struct syn_fake_server *s = c->s;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    if (c->ev_r) event_free(c->ev_r);
    if (c->ev_w) event_free(c->ev_w);
    if (c->timer) event_free(c->timer);
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}

static int out_add(struct fconn *c, const char *b, size_t n)
{
    if (c->out_len + n > c->out_cap) {
        size_t nc = c->out_cap ? c->out_cap : 4096;
        while (nc < c->out_len + n) nc *= 2;
        char *nb = realloc(c->out, nc);
        if (!nb) return -1;
        c->out = nb;
        c->out_cap = nc;
    }
    memcpy(c->out + c->out_len, b, n);
    c->out_len += n;
    return 0;
}

/* One HTTP chunk holding one SSE event. */
static int add_event(struct fconn *c, const char *json)
{
    char buf[1024];
    size_t jl = strlen(json);
    int n = snprintf(buf, sizeof buf, "%zx\r\ndata: %s\n\n\r\n", jl + 8, json);
    return n > 0 && (size_t)n < sizeof buf ? out_add(c, buf, (size_t)n) : -1;
}

static int add_token_chunk(struct fconn *c)
{
    c->sent++;
    return add_event(c, "{\"id\":\"cmpl-fake\",\"object\":\"text_completion\",\"created\":0,"
                        "\"model\":\"fake\",\"choices\":[{\"index\":0,\"text\":\" tok\","
                        "\"logprobs\":null,\"finish_reason\":null}]}");
}

static int add_end(struct fconn *c)
{
    int rc = add_event(c, "{\"id\":\"cmpl-fake\",\"object\":\"text_completion\",\"created\":0,"
                          "\"model\":\"fake\",\"choices\":[{\"index\":0,\"text\":\"\","
                          "\"logprobs\":null,\"finish_reason\":\"length\"}]}");
    if (!rc && c->usage) {
        char u[256];
        snprintf(u, sizeof u,
                 "{\"id\":\"cmpl-fake\",\"object\":\"text_completion\",\"created\":0,"
                 "\"model\":\"fake\",\"choices\":[],\"usage\":{\"prompt_tokens\":1,"
                 "\"completion_tokens\":%d,\"total_tokens\":%d}}",
                 c->sent, c->sent + 1);
        rc = add_event(c, u);
    }
    if (!rc) rc = add_event(c, "[DONE]");
    if (!rc) rc = out_add(c, "0\r\n\r\n", 5);
    return rc;
}

static void flush_out(struct fconn *c);

static void schedule(struct fconn *c, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

/* The response is complete: the next request may be read. */
static void response_done(struct fconn *c)
{
    c->busy = 0;
    if (!c->keep_alive) c->close_after = 1;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fconn *c = arg;
    if (c->left > 0) {
        add_token_chunk(c);
        c->left--;
        if (c->cut) {
            c->close_after = 1;
        } else if (c->left > 0) {
            schedule(c, c->s->p.token_ms);
        } else {
            add_end(c);
            response_done(c);
        }
    }
    flush_out(c);
}

static void handle(struct fconn *c, const char *head, size_t head_len, const char *body,
                   size_t body_len)
{
    struct syn_fake_server *s = c->s;
    uint64_t k = atomic_fetch_add(&s->requests, 1) + 1;
    const struct syn_fake_params *p = &s->p;
    c->keep_alive = !p->no_keepalive && !(memmem(head, head_len, "Connection: close", 17) ||
                                          memmem(head, head_len, "connection: close", 17));
    if (p->every_close && k % (uint64_t)p->every_close == 0) {
        c->close_after = 1;
        return;
    }
    int status = 0;
    if (p->every_500 && k % (uint64_t)p->every_500 == 0)
        status = 500;
    else if (p->every_429 && k % (uint64_t)p->every_429 == 0)
        status = 429;
    char hdr[512];
    if (status) {
        const char *msg = status == 429
                              ? "{\"error\":{\"message\":\"Too many requests (fake)\",\"type\":"
                                "\"rate_limit_error\",\"param\":null,\"code\":\"rate_limited\"}}"
                              : "{\"error\":{\"message\":\"Internal error (fake)\",\"type\":"
                                "\"server_error\",\"param\":null,\"code\":null}}";
        int n = snprintf(hdr, sizeof hdr,
                         "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n%s%s"
                         "Content-Length: %zu\r\n\r\n",
                         status, status == 429 ? "Too Many Requests" : "Internal Server Error",
                         status == 429 ? "Retry-After: 1\r\n" : "",
                         c->keep_alive ? "" : "Connection: close\r\n", strlen(msg));
        out_add(c, hdr, (size_t)n);
        out_add(c, msg, strlen(msg));
        response_done(c);
        return;
    }
    if (head_len >= 4 && !memcmp(head, "GET ", 4)) {
        const char *msg = "{\"object\":\"list\",\"data\":[{\"id\":\"fake\",\"object\":\"model\","
                          "\"created\":0,\"owned_by\":\"synapse\"}]}";
        int n = snprintf(hdr, sizeof hdr,
                         "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n%s"
                         "Content-Length: %zu\r\n\r\n",
                         c->keep_alive ? "" : "Connection: close\r\n", strlen(msg));
        out_add(c, hdr, (size_t)n);
        out_add(c, msg, strlen(msg));
        response_done(c);
        return;
    }
    int tokens = p->tokens > 0 ? p->tokens : 1;
    const char *mt = body ? memmem(body, body_len, "\"max_tokens\"", 12) : NULL;
    if (mt) {
        const char *v = mt + 12, *end = body + body_len;
        while (v < end && (*v == ' ' || *v == ':')) v++;
        int m = 0;
        while (v < end && *v >= '0' && *v <= '9' && m < 1000000) m = m * 10 + (*v++ - '0');
        if (m > 0 && m < tokens) tokens = m;
    }
    c->usage = body && memmem(body, body_len, "\"include_usage\":true", 20) != NULL;
    c->cut = p->every_cut && k % (uint64_t)p->every_cut == 0;
    c->sent = 0;
    c->busy = 1;
    int n = snprintf(hdr, sizeof hdr,
                     "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n%s\r\n",
                     c->keep_alive ? "" : "Connection: close\r\n");
    out_add(c, hdr, (size_t)n);
    if (p->first_ms > 0 || (p->token_ms > 0 && tokens > 1)) {
        c->left = tokens;
        if (p->first_ms > 0) {
            schedule(c, p->first_ms);
            return;
        }
        add_token_chunk(c);
        c->left--;
        if (c->cut)
            c->close_after = 1;
        else
            schedule(c, p->token_ms);
        return;
    }
    for (int i = 0; i < tokens; i++) {
        add_token_chunk(c);
        if (c->cut) {
            c->close_after = 1;
            return;
        }
    }
    add_end(c);
    response_done(c);
}

/* Parses one complete request out of c->in, if there is one, and handles it. */
static void try_request(struct fconn *c)
{
    if (c->busy || c->close_after) return;
    char *e = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!e) return;
    size_t head_len = (size_t)(e - c->in) + 4, body_len = 0;
    for (char *h = c->in; h < e; h++) {
        if ((h == c->in || h[-1] == '\n') && !strncasecmp(h, "content-length:", 15)) {
            body_len = (size_t)strtoul(h + 15, NULL, 10);
            break;
        }
    }
    if (body_len > REQ_MAX) {
        c->close_after = 1;
        return;
    }
    if (c->in_len < head_len + body_len) return;
    handle(c, c->in, head_len, body_len ? c->in + head_len : NULL, body_len);
    memmove(c->in, c->in + head_len + body_len, c->in_len - head_len - body_len);
    c->in_len -= head_len + body_len;
}

static void flush_out(struct fconn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w > 0) {
            c->out_off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            event_add(c->ev_w, NULL);
            return;
        }
        conn_free(c);
        return;
    }
    c->out_off = c->out_len = 0;
    event_del(c->ev_w);
    if (c->close_after) {
        conn_free(c);
        return;
    }
    if (!c->busy && c->in_len) {
        try_request(c);
        if (c->out_len || c->close_after) flush_out(c);
    }
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    flush_out(arg);
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct fconn *c = arg;
    for (;;) {
        if (c->in_len + 8192 > c->in_cap) {
            size_t nc = c->in_cap ? c->in_cap * 2 : 16384;
            if (nc > REQ_MAX * 2) {
                conn_free(c);
                return;
            }
            char *nb = realloc(c->in, nc);
            if (!nb) {
                conn_free(c);
                return;
            }
            c->in = nb;
            c->in_cap = nc;
        }
        ssize_t r = recv(fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (r <= 0) {
            conn_free(c);
            return;
        }
        c->in_len += (size_t)r;
    }
    if (c->out_len == 0) {
        try_request(c);
        if (c->out_len || c->close_after) flush_out(c);
    }
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
    (void)what;
    struct syn_fake_server *s = arg;
    for (int i = 0; i < 64; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct fconn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->s = s;
        c->fd = fd;
        c->next = s->conns;
        if (s->conns) s->conns->prev = c;
        s->conns = c;
        c->ev_r = event_new(s->base, fd, EV_READ | EV_PERSIST, on_read, c);
        c->ev_w = event_new(s->base, fd, EV_WRITE | EV_PERSIST, on_write, c);
        c->timer = evtimer_new(s->base, on_timer, c);
        if (!c->ev_r || !c->ev_w || !c->timer) {
            conn_free(c);
            continue;
        }
        event_add(c->ev_r, NULL);
    }
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct syn_fake_server *s = arg;
    event_base_loopbreak(s->base);
}

static void *fake_main(void *arg)
{
    struct syn_fake_server *s = arg;
    event_base_dispatch(s->base);
    return NULL;
}

int syn_fake_start(const struct syn_fake_params *p, struct syn_fake_server **out, char *err,
                   size_t errlen)
{
    *out = NULL;
    struct syn_fake_server *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "fake server: out of memory");
        return -1;
    }
    s->p = *p;
    s->lfd = -1;
    s->stop_pipe[0] = s->stop_pipe[1] = -1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)p->port);
    if (inet_pton(AF_INET, p->host ? p->host : "127.0.0.1", &a.sin_addr) != 1) {
        snprintf(err, errlen, "fake server: '%s' is not an IPv4 address", p->host);
        goto fail;
    }
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (s->lfd >= 0) setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(s->lfd, 4096) != 0) {
        snprintf(err, errlen, "fake server: cannot listen on %s:%d: %s",
                 p->host ? p->host : "127.0.0.1", p->port, strerror(errno));
        goto fail;
    }
    socklen_t al = sizeof a;
    getsockname(s->lfd, (struct sockaddr *)&a, &al);
    s->port = ntohs(a.sin_port);
    if (pipe2(s->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        snprintf(err, errlen, "fake server: pipe: %s", strerror(errno));
        goto fail;
    }
    s->base = event_base_new();
    if (!s->base) {
        snprintf(err, errlen, "fake server: cannot make an event loop");
        goto fail;
    }
    s->ev_accept = event_new(s->base, s->lfd, EV_READ | EV_PERSIST, on_accept, s);
    s->ev_stop = event_new(s->base, s->stop_pipe[0], EV_READ, on_stop, s);
    if (!s->ev_accept || !s->ev_stop) {
        snprintf(err, errlen, "fake server: out of memory");
        goto fail;
    }
    event_add(s->ev_accept, NULL);
    event_add(s->ev_stop, NULL);
    if (pthread_create(&s->thread, NULL, fake_main, s) != 0) {
        snprintf(err, errlen, "fake server: cannot start its thread");
        goto fail;
    }
    *out = s;
    return 0;
fail:
    if (s->ev_accept) event_free(s->ev_accept);
    if (s->ev_stop) event_free(s->ev_stop);
    if (s->base) event_base_free(s->base);
    if (s->lfd >= 0) close(s->lfd);
    if (s->stop_pipe[0] >= 0) close(s->stop_pipe[0]);
    if (s->stop_pipe[1] >= 0) close(s->stop_pipe[1]);
    free(s);
    return -1;
}

int syn_fake_port(const struct syn_fake_server *s)
{
    return s->port;
}

uint64_t syn_fake_requests(const struct syn_fake_server *s)
{
    return atomic_load(&((struct syn_fake_server *)s)->requests);
}

void syn_fake_stop(struct syn_fake_server *s)
{
    if (!s) return;
    char b = 1;
    if (write(s->stop_pipe[1], &b, 1) != 1) { /* the loop wakes on any byte; nothing to do */
    }
    pthread_join(s->thread, NULL);
    while (s->conns) conn_free(s->conns);
    event_free(s->ev_accept);
    event_free(s->ev_stop);
    event_base_free(s->base);
    close(s->lfd);
    close(s->stop_pipe[0]);
    close(s->stop_pipe[1]);
    free(s);
}
