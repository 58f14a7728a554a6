/*
 * A small HTTP/1.1 server for tests that need one of ours on the other end: the Lambda Runtime
 * API (test_lambda.c), the Lambda and Auto Scaling APIs (test_aws_pool.c). It listens on an
 * ephemeral port of 127.0.0.1, serves each connection on its own thread (keep-alive; a handler
 * may block, as the Runtime API's long poll does), reads Content-Length and chunked bodies with
 * their trailers, records when each chunk arrived (to tell a streamed body from a buffered one),
 * and answers with whatever the test's handler fills in.
 */
#ifndef SYN_TEST_HTTP_SERVER_H
#define SYN_TEST_HTTP_SERVER_H

#include <stddef.h>

#define TH_MAX_HEADERS 64

struct th_header {
    char name[128];
    char *value; /* from malloc() */
};

struct th_request {
    char method[16];
    char target[4096]; /* path and query as on the request line */
    struct th_header h[TH_MAX_HEADERS];
    int nh;
    char *body; /* from malloc(), NUL-terminated; "" when none */
    size_t body_len;
    int chunked;                        /* the body came in chunked transfer encoding */
    int n_chunks;                       /* data chunks it came in */
    double first_chunk_s, last_chunk_s; /* monotonic arrival of the first and last chunk */
    struct th_header trailers[8];
    int nt;
};

/* The first header (or trailer) called name, case-insensitively, or NULL. */
const char *th_header(const struct th_request *rq, const char *name);
const char *th_trailer(const struct th_request *rq, const char *name);

struct th_response {
    int status;         /* default 200 */
    char headers[4096]; /* extra header lines, each ending in "\r\n" */
    char *body;         /* from malloc() (the server frees it), or NULL */
    size_t body_len;
};

/* printf into r->body. */
void th_body(struct th_response *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Called on a connection's thread for every complete request. */
typedef void (*th_handler)(void *ctx, const struct th_request *rq, struct th_response *resp);

struct th_server;

/* Starts a server (fails the test if it cannot). */
struct th_server *th_start(th_handler fn, void *ctx);
int th_port(const struct th_server *s);
/* "http://127.0.0.1:PORT" (static buffer per server). */
const char *th_url(const struct th_server *s);
/* Stops accepting and closes every connection; handlers that block must return by themselves. */
void th_stop(struct th_server *s);

double th_now(void);

#endif
