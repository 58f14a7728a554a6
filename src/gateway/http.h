/*
 * The gateway's HTTP/1.1 server: a small server of our own on libevent (its loop, listener and
 * buffers; the socket reads and writes are ours, see struct conn in http.c), so that every
 * limit is ours to enforce and every refusal can be answered in the API's error shape.
 * (evhttp, in libevent 2.1, answers an oversized body or a malformed head with its own HTML
 * page and gives no way to learn that a client went away while its request is being served;
 * both matter here.)
 *
 * What it does: keep-alive and pipelining (one request at a time per connection, in order),
 * Content-Length and chunked request bodies, Expect: 100-continue, HEAD, responses with a
 * length or streamed with chunked transfer coding. Limits: head size and header count, body
 * size (refused from Content-Length before a byte of the body is read), connections (the
 * listener pauses while full), a deadline for reading each whole request (so a client that
 * sends half a header and stalls, or dribbles, is cut off), a write timeout (a response making
 * no progress), and a cap on a slow reader's buffered output.
 *
 * What it does not do: TLS, HTTP/2, request trailers as headers (they are read and dropped),
 * percent-decoding (the routes are fixed strings), absolute-form targets.
 *
 * Errors the transport finds (a malformed head, a body too large, a read timeout) are handed to
 * the handler as a request with gw_http_req_error() set, so that the one place that shapes API
 * errors answers them too; the connection is closed after that response.
 */
#ifndef SYN_GW_HTTP_H
#define SYN_GW_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "gateway/arena.h"

struct event_base;
struct gw_http;
struct gw_http_req;

struct gw_http_config {
    const char *host;        /* address to bind ("127.0.0.1", "0.0.0.0", "::") */
    int port;                /* 0: the kernel picks one (see gw_http_port) */
    size_t max_header_bytes; /* request line + headers */
    int max_headers;         /* header lines */
    size_t max_body_bytes;   /* decoded body */
    int max_connections;     /* open client connections; the listener pauses beyond */
    int read_timeout_ms;     /* a whole request (head and body) must arrive within this of
                                 the connection being ready for it (accepted, or the previous
                                 response written); an idle connection is closed after it */
    int write_timeout_ms;    /* a response write that makes no progress this long: closed */
    size_t max_output_bytes; /* response bytes buffered for a slow reader before closing */
};

/* Defaults: 127.0.0.1:8080, 16 KiB of head, 100 headers, 1 MiB body, 16384 connections, 10 s
 * read, 30 s write, 8 MiB of buffered output. */
struct gw_http_config gw_http_default_config(void);

/* Called once per request, on the loop thread. The request is the handler's until it calls
 * gw_http_respond or gw_http_stream_end, or until the gone callback (if set) fires. */
typedef void (*gw_http_handler_fn)(struct gw_http_req *r, void *ud);
/* The client went away (closed, reset, too slow) before the response was complete. r is
 * freed after this returns; it must not be used again. Never called from inside a gw_http_*
 * call, only from the event loop. */
typedef void (*gw_http_gone_fn)(struct gw_http_req *r, void *ctx);

/* Binds and starts listening. Returns 0, or SYN_EIO with a message. */
int gw_http_new(struct event_base *base, const struct gw_http_config *cfg, gw_http_handler_fn fn,
                void *ud, struct gw_http **out, char *err, size_t errlen);
/* Closes the listener and every connection (gone callbacks fire for requests in progress). */
void gw_http_free(struct gw_http *h);
/* The port actually bound. */
int gw_http_port(const struct gw_http *h);
/* Stops accepting (graceful shutdown); open connections are served until they end. */
void gw_http_stop_accepting(struct gw_http *h);

struct gw_http_stats {
    int connections;           /* open now */
    uint64_t accepted;         /* connections accepted */
    uint64_t requests;         /* requests handed to the handler (errors included) */
    uint64_t transport_errors; /* malformed heads, bad framing, oversize bodies */
    uint64_t read_timeouts;    /* connections cut off while a request was arriving */
    uint64_t write_timeouts;   /* connections cut off for not reading their response */
    uint64_t paused;           /* times the listener paused at max_connections */
};
void gw_http_get_stats(const struct gw_http *h, struct gw_http_stats *st);

/* ---- the request ---- */

/* 0 for a well-formed request; otherwise the HTTP status the transport decided (400, 408, 413,
 * 417, 431, 501, 505) and gw_http_req_error_message says why. */
int gw_http_req_error(const struct gw_http_req *r);
const char *gw_http_req_error_message(const struct gw_http_req *r);
const char *gw_http_req_method(const struct gw_http_req *r); /* "GET", ... ("" on error) */
const char *gw_http_req_path(const struct gw_http_req *r);   /* target before '?' */
/* The first header of that name (case-insensitive), value trimmed; NULL if absent. */
const char *gw_http_req_header(const struct gw_http_req *r, const char *name);
/* The body (NUL-terminated for convenience; may contain NULs). */
const char *gw_http_req_body(const struct gw_http_req *r, size_t *len);
/* Memory that lives exactly as long as the request. */
struct gw_arena *gw_http_req_arena(struct gw_http_req *r);
/* "ip:port" of the client. */
const char *gw_http_req_peer(const struct gw_http_req *r);

void gw_http_req_on_gone(struct gw_http_req *r, gw_http_gone_fn fn, void *ctx);

/* A complete response. extra_headers: "" or lines "Name: value\r\n". r is done afterwards. */
void gw_http_respond(struct gw_http_req *r, int status, const char *content_type,
                     const char *extra_headers, const char *body, size_t len);
/* A streamed response: the head now (chunked for HTTP/1.1; for HTTP/1.0 the body runs to the
 * connection's close), then any number of writes, then the end. A write returns -1 when the
 * client is too slow (output over the cap) or gone: the connection is being closed and the gone
 * callback will fire from the loop. */
void gw_http_stream_begin(struct gw_http_req *r, int status, const char *content_type,
                          const char *extra_headers);
int gw_http_stream_write(struct gw_http_req *r, const char *data, size_t len);
void gw_http_stream_end(struct gw_http_req *r);
/* 1 once stream_begin was called. */
int gw_http_req_streaming(const struct gw_http_req *r);

/* ---- the parser, exposed for tests ---- */

struct gw_http_header {
    const char *name;
    const char *value;
};

struct gw_http_head {
    const char *method;
    const char *target; /* as sent */
    const char *path;   /* target up to '?' */
    int minor;          /* HTTP/1.minor */
    int n_headers;
    struct gw_http_header *headers; /* in the arena */
};

/* Parses a request head (request line, header lines, the blank line; len bytes, CRLF or bare
 * LF line ends) into h, copying into a. Returns 0, or the HTTP status to refuse it with (400,
 * 431, 505) and a message in err. */
int gw_http_parse_head(const char *buf, size_t len, int max_headers, struct gw_arena *a,
                       struct gw_http_head *h, char *err, size_t errlen);

/* Reads a Content-Length value: 0 and *out, or -1 when it is not a plain decimal number;
 * values past 2^62 saturate (and are refused as too large by the caller). */
int gw_http_parse_length(const char *s, uint64_t *out);

/* The reason phrase of a status ("Not Found"). */
const char *gw_http_reason(int status);

#endif
