/* The tests' HTTP/1.1 server (see http_server.h). */
#include "http_server.h"

#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#define MAX_CONN 64

struct th_server {
    int fd;
    int port;
    char url[64];
    th_handler fn;
    void *ctx;
    pthread_t acceptor;
    pthread_mutex_t mu;
    int conns[MAX_CONN]; /* open connection sockets, -1 = free */
    int stop;
};

struct conn {
    struct th_server *s;
    int fd;
    char *buf; /* bytes read and not yet consumed; from malloc() */
    size_t len, cap;
};

double th_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *find_in(const struct th_header *h, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcasecmp(h[i].name, name)) return h[i].value;
    return NULL;
}

const char *th_header(const struct th_request *rq, const char *name)
{
    return find_in(rq->h, rq->nh, name);
}

const char *th_trailer(const struct th_request *rq, const char *name)
{
    return find_in(rq->trailers, rq->nt, name);
}

void th_body(struct th_response *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    free(r->body);
    r->body = n >= 0 ? s : NULL;
    r->body_len = n >= 0 ? (size_t)n : 0;
}

/* Reads more bytes into c->buf; 0 on EOF or error. */
static int fill(struct conn *c)
{
    if (c->len + 4096 > c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 16384;
        char *nb = realloc(c->buf, nc);
        if (!nb) return 0;
        c->buf = nb;
        c->cap = nc;
    }
    ssize_t n;
    do n = recv(c->fd, c->buf + c->len, c->cap - c->len - 1, 0);
    while (n < 0 && errno == EINTR);
    if (n <= 0) return 0;
    c->len += (size_t)n;
    c->buf[c->len] = 0;
    return 1;
}

/* One line (without CRLF) from the buffer, reading as needed; NULL at EOF. From malloc(). */
static char *read_line(struct conn *c)
{
    for (;;) {
        char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
        if (nl) {
            size_t l = (size_t)(nl - c->buf);
            char *line = strndup(c->buf, l > 0 && c->buf[l - 1] == '\r' ? l - 1 : l);
            memmove(c->buf, nl + 1, c->len - l - 1);
            c->len -= l + 1;
            return line;
        }
        if (!fill(c)) return NULL;
    }
}

/* n bytes from the buffer into out; 0 at EOF. */
static int read_exact(struct conn *c, char *out, size_t n)
{
    while (c->len < n)
        if (!fill(c)) return 0;
    memcpy(out, c->buf, n);
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
    return 1;
}

static void add_header(struct th_header *h, int *n, int cap, const char *line)
{
    const char *colon = strchr(line, ':');
    if (!colon || *n >= cap) return;
    snprintf(h[*n].name, sizeof h[*n].name, "%.*s", (int)(colon - line), line);
    const char *v = colon + 1;
    while (*v == ' ' || *v == '\t') v++;
    h[*n].value = strdup(v);
    (*n)++;
}

static void free_request(struct th_request *rq)
{
    for (int i = 0; i < rq->nh; i++) free(rq->h[i].value);
    for (int i = 0; i < rq->nt; i++) free(rq->trailers[i].value);
    free(rq->body);
}

/* Reads one request; 0 when the connection ended. */
static int read_request(struct conn *c, struct th_request *rq)
{
    memset(rq, 0, sizeof *rq);
    char *line = read_line(c);
    if (!line) return 0;
    char ver[32] = "";
    if (sscanf(line, "%15s %4095s %31s", rq->method, rq->target, ver) != 3) {
        free(line);
        return 0;
    }
    free(line);
    for (;;) {
        line = read_line(c);
        if (!line) return 0;
        if (!*line) {
            free(line);
            break;
        }
        add_header(rq->h, &rq->nh, TH_MAX_HEADERS, line);
        free(line);
    }
    const char *te = th_header(rq, "Transfer-Encoding");
    const char *cl = th_header(rq, "Content-Length");
    if (te && strstr(te, "chunked")) {
        rq->chunked = 1;
        size_t cap = 4096, len = 0;
        rq->body = malloc(cap);
        for (;;) {
            line = read_line(c);
            if (!line) return 0;
            size_t n = strtoul(line, NULL, 16);
            free(line);
            if (n == 0) break;
            if (len + n + 1 > cap) {
                while (len + n + 1 > cap) cap *= 2;
                rq->body = realloc(rq->body, cap);
            }
            if (!read_exact(c, rq->body + len, n)) return 0;
            len += n;
            double t = th_now();
            if (rq->n_chunks++ == 0) rq->first_chunk_s = t;
            rq->last_chunk_s = t;
            char crlf[2];
            if (!read_exact(c, crlf, 2)) return 0;
        }
        rq->body[len] = 0;
        rq->body_len = len;
        for (;;) { /* trailers, then the empty line */
            line = read_line(c);
            if (!line) return 0;
            if (!*line) {
                free(line);
                break;
            }
            add_header(rq->trailers, &rq->nt, 8, line);
            free(line);
        }
    } else {
        size_t n = cl ? strtoul(cl, NULL, 10) : 0;
        rq->body = malloc(n + 1);
        if (n && !read_exact(c, rq->body, n)) return 0;
        rq->body[n] = 0;
        rq->body_len = n;
        if (n) {
            rq->n_chunks = 1;
            rq->first_chunk_s = rq->last_chunk_s = th_now();
        }
    }
    return 1;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static const char *reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 202:
        return "Accepted";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 413:
        return "Payload Too Large";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    default:
        return "Status";
    }
}

static void *conn_main(void *arg)
{
    struct conn *c = arg;
    for (;;) {
        struct th_request rq;
        if (!read_request(c, &rq)) {
            free_request(&rq);
            break;
        }
        struct th_response resp;
        memset(&resp, 0, sizeof resp);
        resp.status = 200;
        c->s->fn(c->s->ctx, &rq, &resp);
        char head[8192];
        int hl = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\n%s\r\n",
                          resp.status, reason(resp.status), resp.body_len, resp.headers);
        int bad = send_all(c->fd, head, (size_t)hl) ||
                  (resp.body_len && send_all(c->fd, resp.body, resp.body_len));
        free(resp.body);
        free_request(&rq);
        if (bad) break;
    }
    pthread_mutex_lock(&c->s->mu);
    for (int i = 0; i < MAX_CONN; i++)
        if (c->s->conns[i] == c->fd) c->s->conns[i] = -1;
    pthread_mutex_unlock(&c->s->mu);
    close(c->fd);
    free(c->buf);
    free(c);
    return NULL;
}

static void *accept_main(void *arg)
{
    struct th_server *s = arg;
    for (;;) {
        int fd = accept(s->fd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR) continue;
            break;
        }
        pthread_mutex_lock(&s->mu);
        int slot = -1;
        for (int i = 0; i < MAX_CONN && slot < 0; i++)
            if (s->conns[i] < 0) slot = i;
        if (s->stop || slot < 0) {
            pthread_mutex_unlock(&s->mu);
            close(fd);
            continue;
        }
        s->conns[slot] = fd;
        pthread_mutex_unlock(&s->mu);
        struct conn *c = calloc(1, sizeof *c);
        c->s = s;
        c->fd = fd;
        pthread_t t;
        pthread_create(&t, NULL, conn_main, c);
        pthread_detach(t);
    }
    return NULL;
}

struct th_server *th_start(th_handler fn, void *ctx)
{
    struct th_server *s = calloc(1, sizeof *s);
    if (!s) FAIL("th_start: out of memory");
    s->fn = fn;
    s->ctx = ctx;
    for (int i = 0; i < MAX_CONN; i++) s->conns[i] = -1;
    pthread_mutex_init(&s->mu, NULL);
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&a, sizeof a) ||
        getsockname(s->fd, (struct sockaddr *)&a, &al) || listen(s->fd, 64))
        FAIL("th_start: cannot listen on 127.0.0.1: %s", strerror(errno));
    s->port = ntohs(a.sin_port);
    snprintf(s->url, sizeof s->url, "http://127.0.0.1:%d", s->port);
    if (pthread_create(&s->acceptor, NULL, accept_main, s)) FAIL("th_start: no thread");
    return s;
}

int th_port(const struct th_server *s)
{
    return s->port;
}

const char *th_url(const struct th_server *s)
{
    return s->url;
}

void th_stop(struct th_server *s)
{
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    for (int i = 0; i < MAX_CONN; i++)
        if (s->conns[i] >= 0) shutdown(s->conns[i], SHUT_RDWR);
    pthread_mutex_unlock(&s->mu);
    shutdown(s->fd, SHUT_RDWR);
    close(s->fd);
    pthread_join(s->acceptor, NULL);
    /* the server struct is left allocated: detached connection threads may still touch it */
}
