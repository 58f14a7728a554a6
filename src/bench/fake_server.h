/*
 * A trivial OpenAI-compatible server for testing and benchmarking the load generator itself:
 * every POST gets a short fixed Server-Sent Events stream of completion chunks (chunked
 * transfer encoding, keep-alive, a usage chunk when asked, then [DONE]); GET /v1/models names
 * one model "fake". It does no work, so whatever rate the load generator reaches against it is
 * the generator's own limit. Failures can be injected by request number, to check that they
 * are counted: the k-th request (from 1) gets a 429 when k % every_429 == 0, and likewise a
 * 500, a close without an answer, or a close in the middle of the stream.
 *
 * One thread with its own libevent loop. Not a general HTTP server: no pipelining beyond one
 * request at a time per connection, request bodies up to 1 MiB.
 */
#ifndef SYNAPSE_BENCH_FAKE_SERVER_H
#define SYNAPSE_BENCH_FAKE_SERVER_H

#include <stddef.h>
#include <stdint.h>

struct syn_fake_params {
    const char *host; /* bind address (default "127.0.0.1") */
    int port;         /* 0 = any free port (see syn_fake_port) */
    int tokens;       /* content chunks per completion, at most the request's max_tokens
                         (default 4) */
    int first_ms;     /* delay before the first chunk (default 0) */
    int token_ms;     /* delay between chunks (default 0: the whole stream in one write) */
    int every_429;    /* failure injection by request number; 0 = never */
    int every_500;
    int every_close;  /* close the connection without a response */
    int every_cut;    /* send the head and one chunk, then close */
    int no_keepalive; /* answer with Connection: close (a new connection per request) */
};

struct syn_fake_params syn_fake_default_params(void);

struct syn_fake_server;

/* Binds, listens and starts the server's thread. Returns 0, or -1 with a message in err. */
int syn_fake_start(const struct syn_fake_params *p, struct syn_fake_server **out, char *err,
                   size_t errlen);

/* The port it listens on. */
int syn_fake_port(const struct syn_fake_server *s);

/* Requests answered so far (any outcome). Thread-safe. */
uint64_t syn_fake_requests(const struct syn_fake_server *s);

/* Stops the thread, closes every connection and frees the server. */
void syn_fake_stop(struct syn_fake_server *s);

#endif
