/*
 * A small HTTP client over libcurl for the AWS code: AWS API calls signed with SigV4 (the pool
 * backends), the Lambda Runtime API (the `synapse lambda` loop, including a chunked streaming
 * body with trailers) and the credential endpoints of ECS and EC2. One request at a time per
 * client, blocking, with a timeout; the connection is kept between requests of one client.
 * Endpoints are plain URLs, so tests point every caller at a local server.
 *
 * Not a general HTTP library: no redirects, no cookies, no proxies beyond curl's environment
 * defaults, response bodies held in memory (they are small: JSON and XML documents).
 */
#ifndef SYN_AWS_HTTP_H
#define SYN_AWS_HTTP_H

#include <stddef.h>

#include "synapse/sigv4.h"

struct syn_http_req {
    const char *method;         /* "GET", "POST", "PUT", "DELETE" (required) */
    const char *url;            /* "https://lambda.us-east-1.amazonaws.com/...", "http://..." */
    const char *const *headers; /* "Name: value" lines, sent (and signed, when signing) */
    int n_headers;
    const void *body; /* request body, or NULL */
    size_t body_len;
    /* A body produced while it is sent, in chunked transfer encoding (instead of body): read
     * fills up to cap bytes and returns how many (> 0), 0 at the end, or < 0 to abort. */
    long (*read)(void *ctx, char *buf, size_t cap);
    void *read_ctx;
    /* Trailers after a chunked body: the i-th "Name: value" line, NULL after the last. Called
     * once the body has ended. The request must declare them in a Trailer header. */
    const char *(*trailer)(void *ctx, int i);
    long timeout_ms;         /* the whole exchange; 0 = no limit (Runtime API long poll) */
    long connect_timeout_ms; /* 0 = 5000 */
    /* SigV4: when creds is set the request is signed for region/service (body hashed) */
    const struct syn_aws_creds *creds;
    const char *region;
    const char *service;
    int sign_body; /* also send x-amz-content-sha256 (S3-style services) */
};

struct syn_http_resp {
    long status; /* HTTP status, 0 when no response arrived */
    char *body;  /* from malloc(), NUL-terminated (may hold NULs before it) */
    size_t body_len;
    char *head; /* the raw response header block, from malloc(), NUL-terminated */
};

struct syn_http_client;

/* NULL when curl cannot be set up. */
struct syn_http_client *syn_http_client_new(void);
void syn_http_client_free(struct syn_http_client *c);

/* Sends rq and reads the whole response into resp (zeroed first; free it with
 * syn_http_resp_free, also after a failure). Returns 0 when a response arrived, whatever its
 * status; SYN_EIO when none did (cannot connect, timeout, aborted body) and SYN_EINVAL for a
 * bad URL or a request that cannot be signed, with a message. */
int syn_http_do(struct syn_http_client *c, const struct syn_http_req *rq,
                struct syn_http_resp *resp, char *err, size_t errlen);
void syn_http_resp_free(struct syn_http_resp *r);

/* The value of response header name (case-insensitive, the first one, trimmed) copied into buf;
 * NULL when absent. */
const char *syn_http_header(const struct syn_http_resp *r, const char *name, char *buf, size_t cap);

#endif
