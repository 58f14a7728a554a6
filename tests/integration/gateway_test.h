/*
 * Helpers shared by the gateway's integration tests: start `synapse gateway` (and workers) as
 * children in the test's process group, find the port it bound, and speak raw HTTP/1.1 to it
 * over a socket, so that a test controls every byte (half a header, a short body, pipelining)
 * and bounds every wait.
 */
#ifndef SYN_TEST_GATEWAY_H
#define SYN_TEST_GATEWAY_H

#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#define GWT_UNUSED __attribute__((unused))

static GWT_UNUSED double gwt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static GWT_UNUSED void gwt_sleep_ms(int ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* Starts `synapse ARGS...` (NULL-terminated) with stdout and stderr to log; returns its pid. */
static GWT_UNUSED pid_t gwt_spawn(const char *log, const char *const *args)
{
    pid_t parent = getpid();
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) FAIL("fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        const char *argv[64];
        int n = 0;
        argv[n++] = syn_test_bin();
        for (int i = 0; args[i] && n < 63; i++) argv[n++] = args[i];
        argv[n] = NULL;
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* Waits (up to timeout_s) for the gateway's "listening on HOST:PORT" line; returns the port. */
static GWT_UNUSED int gwt_wait_port(pid_t pid, const char *log, double timeout_s)
{
    double end = gwt_now() + timeout_s;
    while (gwt_now() < end) {
        char *s = syn_test_read_file(log, NULL);
        const char *p = s ? strstr(s, "listening on ") : NULL;
        if (p) {
            const char *colon = strchr(p + 13, ':');
            int port = colon ? atoi(colon + 1) : 0;
            free(s);
            if (port > 0) return port;
        }
        free(s);
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            char *l = syn_test_read_file(log, NULL);
            FAIL("the gateway exited during start (status %d):\n%s", st, l ? l : "");
        }
        gwt_sleep_ms(20);
    }
    char *l = syn_test_read_file(log, NULL);
    FAIL("the gateway did not print its port within %.0f s:\n%s", timeout_s, l ? l : "");
    return -1;
}

/* Connects to the port on 127.0.0.1; a receive buffer of rcvbuf bytes when > 0, set before the
 * connection so that the window the client advertises never shrinks. */
static GWT_UNUSED int gwt_connect_rcvbuf(int port, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) FAIL("socket: %s", strerror(errno));
    if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        FAIL("connect to port %d: %s", port, strerror(errno));
    return fd;
}

static GWT_UNUSED int gwt_connect(int port)
{
    return gwt_connect_rcvbuf(port, 0);
}

static GWT_UNUSED void gwt_send(int fd, const char *buf, size_t n)
{
    while (n) {
        ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return; /* the server may close early on purpose (413) */
        buf += w;
        n -= (size_t)w;
    }
}

struct gwt_resp {
    int status; /* 0: no complete response */
    char *head; /* the head, NUL-terminated (malloc'ed) */
    char *body; /* the body, de-chunked, NUL-terminated (malloc'ed) */
    size_t body_len;
    int closed; /* the server closed the connection */
    char *rest; /* bytes after the response (a pipelined one), malloc'ed */
    size_t rest_len;
};

static GWT_UNUSED void gwt_resp_free(struct gwt_resp *r)
{
    free(r->head);
    free(r->body);
    free(r->rest);
    memset(r, 0, sizeof *r);
}

/* Case-insensitive header value in a response head ("" if absent); static buffer. */
static GWT_UNUSED const char *gwt_header(const struct gwt_resp *r, const char *name)
{
    static char v[256];
    v[0] = 0;
    if (!r->head) return v;
    size_t n = strlen(name);
    for (const char *p = strstr(r->head, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':') {
            const char *s = p + 3 + n;
            while (*s == ' ') s++;
            size_t k = strcspn(s, "\r");
            if (k >= sizeof v) k = sizeof v - 1;
            memcpy(v, s, k);
            v[k] = 0;
            return v;
        }
    }
    return v;
}

/* Tries to cut one complete response off buf[0..n); 1 when done. */
static int gwt_parse(const char *buf, size_t n, int eof, struct gwt_resp *r)
{
    const char *he = NULL;
    for (size_t i = 0; i + 3 < n; i++)
        if (!memcmp(buf + i, "\r\n\r\n", 4)) {
            he = buf + i;
            break;
        }
    if (!he) return 0;
    size_t hl = (size_t)(he - buf) + 4;
    /* skip interim 100 Continue responses */
    if (hl >= 12 && !memcmp(buf, "HTTP/1.1 100", 12)) return -(int)hl;
    char *head = strndup(buf, hl);
    struct gwt_resp tmp = {0};
    tmp.head = head;
    tmp.status = atoi(head + 9);
    char cl[32];
    snprintf(cl, sizeof cl, "%s", gwt_header(&tmp, "Content-Length"));
    int chunked = strstr(gwt_header(&tmp, "Transfer-Encoding"), "chunked") != NULL;
    const char *b = buf + hl;
    size_t avail = n - hl, used = 0;
    char *body = NULL;
    size_t blen = 0;
    if (*cl) {
        size_t want = (size_t)atol(cl);
        if (avail < want) goto more;
        body = malloc(want + 1);
        memcpy(body, b, want);
        body[want] = 0;
        blen = want;
        used = want;
    } else if (chunked) {
        body = malloc(avail + 1);
        size_t o = 0, p = 0;
        for (;;) {
            const char *eol = memmem(b + p, avail - p, "\r\n", 2);
            if (!eol) goto more;
            size_t sz = strtoul(b + p, NULL, 16);
            size_t start = (size_t)(eol - b) + 2;
            if (sz == 0) {
                if (avail < start + 2) goto more;
                used = start + 2;
                break;
            }
            if (avail < start + sz + 2) goto more;
            memcpy(body + o, b + start, sz);
            o += sz;
            p = start + sz + 2;
        }
        body[o] = 0;
        blen = o;
    } else {
        if (!eof) goto more; /* to the close */
        body = malloc(avail + 1);
        memcpy(body, b, avail);
        body[avail] = 0;
        blen = avail;
        used = avail;
    }
    r->status = tmp.status;
    r->head = head;
    r->body = body;
    r->body_len = blen;
    r->rest_len = avail - used;
    r->rest = malloc(r->rest_len + 1);
    memcpy(r->rest, b + used, r->rest_len);
    r->rest[r->rest_len] = 0;
    return 1;
more:
    free(body);
    free(head);
    return 0;
}

/* Reads one response from fd, waiting at most timeout_ms in all. */
static GWT_UNUSED struct gwt_resp gwt_read(int fd, int timeout_ms)
{
    struct gwt_resp r = {0};
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    double end = gwt_now() + timeout_ms / 1000.0;
    int eof = 0;
    for (;;) {
        int done = gwt_parse(buf, n, eof, &r);
        if (done > 0) break;
        if (done < 0) { /* drop a 100 Continue */
            memmove(buf, buf + (-done), n - (size_t)(-done));
            n -= (size_t)(-done);
            continue;
        }
        if (eof) break;
        int left = (int)((end - gwt_now()) * 1000);
        if (left <= 0) break;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, left) <= 0) break;
        if (n == cap) buf = realloc(buf, cap *= 2);
        ssize_t k = recv(fd, buf + n, cap - n, 0);
        if (k <= 0) {
            eof = 1;
            r.closed = 1;
            continue;
        }
        n += (size_t)k;
    }
    if (r.status && !r.closed) {
        /* did the server close right after? (look without waiting long) */
        struct pollfd p = {fd, POLLIN, 0};
        if (r.rest_len == 0 && poll(&p, 1, 50) > 0) {
            char c;
            if (recv(fd, &c, 1, MSG_PEEK) == 0) r.closed = 1;
        }
    }
    free(buf);
    return r;
}

/* Reads up to n responses that arrive on fd back to back (pipelining); returns how many. */
static GWT_UNUSED int gwt_read_n(int fd, struct gwt_resp *out, int n, int timeout_ms)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    double end = gwt_now() + timeout_ms / 1000.0;
    int got = 0;
    memset(out, 0, sizeof *out * (size_t)n);
    while (got < n) {
        int done = gwt_parse(buf, len, 0, &out[got]);
        if (done > 0) {
            memcpy(buf, out[got].rest, out[got].rest_len);
            len = out[got].rest_len;
            got++;
            continue;
        }
        int left = (int)((end - gwt_now()) * 1000);
        struct pollfd p = {fd, POLLIN, 0};
        if (left <= 0 || poll(&p, 1, left) <= 0) break;
        if (len == cap) buf = realloc(buf, cap *= 2);
        ssize_t k = recv(fd, buf + len, cap - len, 0);
        if (k <= 0) break;
        len += (size_t)k;
    }
    free(buf);
    return got;
}

/* One request on a fresh connection. */
static GWT_UNUSED struct gwt_resp gwt_raw(int port, const char *req, size_t len, int timeout_ms)
{
    int fd = gwt_connect(port);
    gwt_send(fd, req, len);
    struct gwt_resp r = gwt_read(fd, timeout_ms);
    close(fd);
    return r;
}

/* METHOD path with a body (may be NULL) and extra header lines ("" or "Name: v\r\n..."). */
static GWT_UNUSED struct gwt_resp gwt_request(int port, const char *method, const char *path,
                                              const char *extra, const char *body, int timeout_ms)
{
    size_t bl = body ? strlen(body) : 0;
    size_t cap = bl + strlen(path) + (extra ? strlen(extra) : 0) + 256;
    char *req = malloc(cap);
    int n = snprintf(req, cap, "%s %s HTTP/1.1\r\nHost: t\r\n%s", method, path, extra ? extra : "");
    if (body)
        n += snprintf(req + n, cap - (size_t)n,
                      "Content-Type: application/json\r\n"
                      "Content-Length: %zu\r\n",
                      bl);
    n += snprintf(req + n, cap - (size_t)n, "\r\n");
    if (body) memcpy(req + n, body, bl);
    struct gwt_resp r = gwt_raw(port, req, (size_t)n + bl, timeout_ms);
    free(req);
    return r;
}

static GWT_UNUSED struct gwt_resp gwt_post(int port, const char *path, const char *body,
                                           const char *extra)
{
    return gwt_request(port, "POST", path, extra, body, 10000);
}

/* Checks that the body is an OpenAI error object: {"error":{"message": str, "type": str,
 * "param": str|null, "code": str|null}}; returns the code ("" for null), static buffer. */
static GWT_UNUSED const char *gwt_check_error(const struct gwt_resp *r, const char *what)
{
    static char code[128];
    json_error_t je;
    json_t *j = r->body ? json_loads(r->body, 0, &je) : NULL;
    json_t *e = json_object_get(j, "error");
    if (!j || !json_is_object(e) || !json_is_string(json_object_get(e, "message")) ||
        !json_is_string(json_object_get(e, "type")) || !json_object_get(e, "param") ||
        !json_object_get(e, "code") ||
        !(json_is_string(json_object_get(e, "param")) ||
          json_is_null(json_object_get(e, "param"))) ||
        !(json_is_string(json_object_get(e, "code")) || json_is_null(json_object_get(e, "code"))))
        FAIL("%s: not an OpenAI error object (status %d): %s", what, r->status,
             r->body ? r->body : "(no body)");
    if (!strstr(gwt_header(r, "Content-Type"), "application/json"))
        FAIL("%s: error without a JSON content type: %s", what, r->head);
    json_t *c = json_object_get(e, "code");
    snprintf(code, sizeof code, "%s", json_is_string(c) ? json_string_value(c) : "");
    json_decref(j);
    return code;
}

static GWT_UNUSED void gwt_expect_healthy(int port, const char *after)
{
    struct gwt_resp h = gwt_request(port, "GET", "/healthz", "", NULL, 5000);
    if (h.status != 200) FAIL("/healthz after %s: status %d", after, h.status);
    gwt_resp_free(&h);
}

/* Stops a gateway with SIGTERM and expects a clean exit (status 0) within timeout_s: under
 * the sanitizers that is also where leaks and errors would make it fail. */
static GWT_UNUSED void gwt_stop(pid_t pid, const char *log, double timeout_s)
{
    kill(pid, SIGTERM);
    double end = gwt_now() + timeout_s;
    int st = 0;
    while (waitpid(pid, &st, WNOHANG) != pid) {
        if (gwt_now() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            char *l = syn_test_read_file(log, NULL);
            FAIL("the gateway did not exit within %.0f s of SIGTERM:\n%s", timeout_s, l ? l : "");
        }
        gwt_sleep_ms(10);
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char *l = syn_test_read_file(log, NULL);
        size_t n = l ? strlen(l) : 0;
        FAIL("the gateway exited with status %d on SIGTERM:\n%s", st,
             l ? l + (n > 8000 ? n - 8000 : 0) : "");
    }
}

/* Polls /readyz until its "redis" is true (the queue is reachable), up to timeout_s. */
static GWT_UNUSED void gwt_wait_redis(int port, double timeout_s)
{
    double end = gwt_now() + timeout_s;
    while (gwt_now() < end) {
        struct gwt_resp h = gwt_request(port, "GET", "/readyz", "", NULL, 2000);
        int up = h.body && strstr(h.body, "\"redis\":true");
        gwt_resp_free(&h);
        if (up) return;
        gwt_sleep_ms(20);
    }
    FAIL("the gateway did not reach Redis within %.0f s", timeout_s);
}

/* Polls /readyz until it answers 200 (a worker is ready), up to timeout_s. */
static GWT_UNUSED void gwt_wait_ready(int port, double timeout_s)
{
    double end = gwt_now() + timeout_s;
    while (gwt_now() < end) {
        struct gwt_resp h = gwt_request(port, "GET", "/readyz", "", NULL, 2000);
        int st = h.status;
        gwt_resp_free(&h);
        if (st == 200) return;
        gwt_sleep_ms(50);
    }
    FAIL("/readyz did not become 200 within %.0f s", timeout_s);
}

#endif
