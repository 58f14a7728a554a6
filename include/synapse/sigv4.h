/*
 * AWS Signature Version 4: signs an HTTP request so that an AWS service (Lambda, EC2 Auto
 * Scaling, ...) accepts it, either with an Authorization header or as a presigned URL (the
 * signature in the query string). Pure computation over the request's parts: no clock unless
 * asked for, no I/O; the transport (src/aws/http.c) calls it just before sending.
 *
 * The steps, as AWS documents them:
 *
 *   canonical request = METHOD \n canonical URI \n canonical query \n
 *                       canonical headers (one "name:value\n" each) \n signed headers \n
 *                       hex(SHA256(body))
 *   string to sign    = "AWS4-HMAC-SHA256" \n YYYYMMDDTHHMMSSZ \n
 *                       YYYYMMDD/region/service/aws4_request \n hex(SHA256(canonical request))
 *   signing key       = HMAC(HMAC(HMAC(HMAC("AWS4" secret, date), region), service),
 *                       "aws4_request")
 *   signature         = hex(HMAC(signing key, string to sign))
 *
 * Canonical URI: the path as it is sent, optionally normalized (dot segments and empty segments
 * removed; every service but S3 wants that), then URI-encoded byte by byte (only A-Z a-z 0-9
 * - _ . ~ and '/' stay as they are). A path that is already percent-encoded on the wire is thus
 * encoded twice, which is what AWS expects of every service except S3.
 * Canonical query: each parameter decoded, re-encoded strictly, sorted by name then value.
 * Canonical headers: names lower-cased, values trimmed with inner runs of white space (line
 * folds included) collapsed to one space, repeated headers joined with ',' in their order.
 *
 * What the signer adds to the request, in this order (header signing):
 *   X-Amz-Security-Token (session credentials), X-Amz-Date, x-amz-content-sha256 (when
 *   sign_body), Authorization.
 * Query signing appends, after the request's own parameters:
 *   X-Amz-Algorithm, X-Amz-Credential, X-Amz-Date, X-Amz-SignedHeaders, X-Amz-Expires,
 *   X-Amz-Security-Token (session credentials), X-Amz-Signature.
 * Headers the signer sets itself (authorization, x-amz-date, and x-amz-security-token /
 * x-amz-content-sha256 when it adds them) are ignored if the caller passes them, so a receiver
 * can verify a request by signing it again with the headers it lists in SignedHeaders.
 */
#ifndef SYNAPSE_SIGV4_H
#define SYNAPSE_SIGV4_H

#include <stddef.h>
#include <stdint.h>

/* Credentials. Strings are not copied. */
struct syn_aws_creds {
    const char *access_key_id;     /* "AKIDEXAMPLE" (required) */
    const char *secret_access_key; /* (required) */
    const char *session_token;     /* temporary credentials' token; NULL or "" = none */
};

struct syn_sigv4_header {
    const char *name;  /* as sent; compared case-insensitively */
    const char *value; /* as sent; trimmed and folded for signing */
};

/* The request to sign. Nothing is copied or modified. */
struct syn_sigv4_request {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* as on the request line, without the query; "" = "/" */
    const char *query;  /* as on the request line after '?'; NULL = none */
    const struct syn_sigv4_header *headers; /* must include Host */
    int n_headers;
    const void *body; /* may be NULL when body_len is 0 */
    size_t body_len;
};

struct syn_sigv4_params {
    const char *region;       /* "us-east-1" (required) */
    const char *service;      /* "lambda", "autoscaling", ... (required) */
    int64_t time_s;           /* the signing time, unix seconds; 0 = now */
    int normalize_path;       /* 1: remove dot and empty path segments (all services but S3) */
    int sign_body;            /* 1: add and sign x-amz-content-sha256 (header signing) */
    int omit_session_token;   /* 1: add the token after signing instead of signing it */
    int query;                /* 0: Authorization header; 1: presigned (query string) */
    int expires_s;            /* query signing: X-Amz-Expires (default 3600 when 0) */
    const char *payload_hash; /* NULL: hex SHA-256 of the body; or e.g. "UNSIGNED-PAYLOAD" */
};

/* What signing produced. Everything is owned by the result: syn_sigv4_result_free. */
struct syn_sigv4_result {
    char *canonical_request; /* from malloc() */
    char *string_to_sign;    /* from malloc() */
    char signature[65];      /* lower-case hex */
    /* header signing: the headers to add to the request, in order (the last is Authorization) */
    struct {
        char name[32];
        char *value; /* from malloc() */
    } add[5];
    int n_add;
    /* query signing: parameters to append to the query ('&'-joined, already encoded) */
    char *query_add; /* from malloc(); NULL for header signing */
};

/* Signs r. Returns 0, or SYN_EINVAL (missing method, Host header, credentials, region or
 * service; a header name with characters outside token characters), SYN_ENOMEM, with a message.
 * out is zeroed first, so syn_sigv4_result_free is safe after a failure. */
int syn_sigv4_sign(const struct syn_sigv4_params *p, const struct syn_aws_creds *c,
                   const struct syn_sigv4_request *r, struct syn_sigv4_result *out, char *err,
                   size_t errlen);
void syn_sigv4_result_free(struct syn_sigv4_result *res);

/* URI-encodes len bytes of s the way SigV4 wants (unreserved characters kept, everything else
 * %XX with upper-case hex; '/' kept when keep_slash). Writes a NUL-terminated string into out
 * (cap bytes) like snprintf: returns the full length needed, not counting the NUL. */
size_t syn_sigv4_uri_encode(char *out, size_t cap, const char *s, size_t len, int keep_slash);

/* Lower-case hex SHA-256 of len bytes (out: 65 bytes). */
void syn_sha256_hex(const void *data, size_t len, char out[65]);

/* "20150830T123600Z" (out: 17 bytes) for unix time t. */
void syn_sigv4_amz_date(int64_t t, char out[17]);
/* Parses "20150830T123600Z" or "2015-08-30T12:36:00Z"; -1 if malformed. */
int64_t syn_sigv4_parse_time(const char *s);

#endif
