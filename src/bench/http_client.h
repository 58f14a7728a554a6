/*
 * A small HTTP/1.1 client for the load generator: non-blocking sockets on the caller's libevent
 * loop, keep-alive connections reused for later requests, responses parsed incrementally
 * (Content-Length, chunked, or until close) and Server-Sent Events split into their data
 * payloads as they arrive, so that the time of every token can be taken when its bytes land.
 *
 * Plain http:// only (no TLS, no proxies, no redirects): it exists to put load on a server and
 * time it, not to be a general client. One request per connection at a time (no pipelining).
 *
 * Callbacks follow hiredis' rule: on_done fires exactly once per request, whatever happens
 * (complete response, connect failure, the peer closing, timeout, the client being freed).
 */
#ifndef SYNAPSE_BENCH_HTTP_CLIENT_H
#define SYNAPSE_BENCH_HTTP_CLIENT_H

#include <stddef.h>

struct event_base;
struct hc_client;

enum hc_err {
    HC_OK = 0,
    HC_ECONNECT = -1,  /* the connection could not be made (refused, unreachable) */
    HC_ECLOSED = -2,   /* the peer closed or reset before the response was complete */
    HC_ETIMEOUT = -3,  /* the request's timeout passed */
    HC_EPROTO = -4,    /* the response was not HTTP/1.x as we parse it */
    HC_ENOMEM = -5,    /* an allocation failed */
    HC_ECANCELED = -6, /* the client was freed with the request in flight */
};

/* A static name for an error ("connect", "closed", "timeout", "protocol", ...). */
const char *hc_strerror(int err);

struct hc_handlers {
    /* The status line and headers have arrived; event_stream is 1 for text/event-stream. Once
     * per request, before any on_event; may be NULL. */
    void (*on_head)(void *ud, int status, int event_stream);
    /* One server-sent event's data (its data: lines joined by '\n'), NUL-terminated. Only for
     * event streams; may be NULL. */
    void (*on_event)(void *ud, const char *data, size_t len);
    /* The end. err is HC_OK for a complete response (any status). body holds the first 64 KiB
     * of a body that was not an event stream (NUL-terminated; NULL if none). Required. */
    void (*on_done)(void *ud, int err, int status, const char *body, size_t len);
};

/* A client for one server: url is "http://host[:port][/prefix]" (port 80 by default); request
 * paths are appended to the prefix. max_conns caps the connections open at once (requests
 * beyond it wait in a queue, in order). The name is resolved here, once. Returns 0 or -1 with a
 * message in err. */
int hc_client_new(struct event_base *base, const char *url, int max_conns, struct hc_client **out,
                  char *err, size_t errlen);

/* Starts a request: method and path (e.g. "POST", "/v1/completions"), extra header lines (each
 * ending in "\r\n"; may be NULL), a body (may be NULL) and a timeout from now (<= 0: none). The
 * handlers and ud must stay valid until on_done. Returns 0, or HC_ENOMEM (then on_done is not
 * called). */
int hc_request(struct hc_client *c, const char *method, const char *path, const char *headers,
               const char *body, size_t body_len, double timeout_s, const struct hc_handlers *h,
               void *ud);

/* Connections open now, and requests waiting for one. */
int hc_client_open_conns(const struct hc_client *c);
int hc_client_queued(const struct hc_client *c);

/* Closes every connection; requests still in flight or queued get on_done(HC_ECANCELED). */
void hc_client_free(struct hc_client *c);

#endif
