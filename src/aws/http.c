/*
 * The HTTP client of the AWS code (src/aws/http.h) on libcurl's easy interface. Signing happens
 * here, after the URL is taken apart, so that the Host, path and query that are signed are the
 * ones curl sends.
 */
#include "aws/http.h"

#include "aws/sbuf.h"
#include "synapse/error.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct syn_http_client {
    CURL *curl; /* reused: keeps the connection between requests */
};

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_init_ok;

static void global_init(void)
{
    g_init_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

struct syn_http_client *syn_http_client_new(void)
{
    pthread_once(&g_once, global_init);
    if (!g_init_ok) return NULL;
    struct syn_http_client *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    if (!(c->curl = curl_easy_init())) {
        free(c);
        return NULL;
    }
    return c;
}

void syn_http_client_free(struct syn_http_client *c)
{
    if (!c) return;
    curl_easy_cleanup(c->curl);
    free(c);
}

void syn_http_resp_free(struct syn_http_resp *r)
{
    if (!r) return;
    free(r->body);
    free(r->head);
    memset(r, 0, sizeof *r);
}

const char *syn_http_header(const struct syn_http_resp *r, const char *name, char *buf, size_t cap)
{
    if (!r->head || !cap) return NULL;
    size_t nl = strlen(name);
    for (const char *line = r->head; *line;) {
        const char *end = strchr(line, '\n');
        size_t l = end ? (size_t)(end - line) : strlen(line);
        if (l > nl && line[nl] == ':' && !strncasecmp(line, name, nl)) {
            const char *v = line + nl + 1;
            const char *ve = line + l;
            while (v < ve && (*v == ' ' || *v == '\t')) v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t')) ve--;
            size_t n = (size_t)(ve - v) < cap - 1 ? (size_t)(ve - v) : cap - 1;
            memcpy(buf, v, n);
            buf[n] = 0;
            return buf;
        }
        line = end ? end + 1 : line + l;
    }
    return NULL;
}

/* ---- curl callbacks ---- */

struct xfer {
    struct aws_sb body, head;
    const struct syn_http_req *rq;
    int read_failed;
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct xfer *x = ud;
    aws_sb_add(&x->body, p, size * n);
    return x->body.failed ? 0 : size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    struct xfer *x = ud;
    /* a new status line (after 100 Continue, say) starts a new header block */
    if (size * n >= 5 && !strncmp(p, "HTTP/", 5)) x->head.len = 0;
    aws_sb_add(&x->head, p, size * n);
    return x->head.failed ? 0 : size * n;
}

static size_t on_read(char *buf, size_t size, size_t n, void *ud)
{
    struct xfer *x = ud;
    long got = x->rq->read(x->rq->read_ctx, buf, size * n);
    if (got < 0) {
        x->read_failed = 1;
        return CURL_READFUNC_ABORT;
    }
    return (size_t)got;
}

static int on_trailer(struct curl_slist **list, void *ud)
{
    struct xfer *x = ud;
    for (int i = 0;; i++) {
        const char *t = x->rq->trailer(x->rq->read_ctx, i);
        if (!t) break;
        struct curl_slist *nl = curl_slist_append(*list, t);
        if (!nl) return CURL_TRAILERFUNC_ABORT;
        *list = nl;
    }
    return CURL_TRAILERFUNC_OK;
}

/* ---- signing ---- */

/* Signs rq for the URL's host, path and query, appending the headers to add to *list. */
static int sign(const struct syn_http_req *rq, struct curl_slist **list, char *err, size_t errlen)
{
    int rc = SYN_EINVAL;
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL, *path = NULL, *query = NULL;
    struct syn_sigv4_header *h = NULL;
    char **names = NULL;
    struct syn_sigv4_result res;
    memset(&res, 0, sizeof res);
    if (!u || curl_url_set(u, CURLUPART_URL, rq->url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        syn_seterr(err, errlen, SYN_EINVAL, "http: cannot parse URL '%s'", rq->url);
        goto out;
    }
    curl_url_get(u, CURLUPART_PORT, &port, 0); /* only when the URL names one */
    curl_url_get(u, CURLUPART_PATH, &path, 0);
    curl_url_get(u, CURLUPART_QUERY, &query, 0);
    char hostval[512];
    if (port)
        snprintf(hostval, sizeof hostval, "%s:%s", host, port);
    else
        snprintf(hostval, sizeof hostval, "%s", host);
    h = calloc((size_t)rq->n_headers + 1, sizeof *h);
    names = calloc((size_t)rq->n_headers + 1, sizeof *names);
    if (!h || !names) {
        rc = syn_seterr(err, errlen, SYN_ENOMEM, "http: out of memory");
        goto out;
    }
    int n = 0;
    h[n++] = (struct syn_sigv4_header){"Host", hostval};
    for (int i = 0; i < rq->n_headers; i++) {
        const char *line = rq->headers[i];
        const char *colon = strchr(line, ':');
        if (!colon) {
            syn_seterr(err, errlen, SYN_EINVAL, "http: header '%s' has no ':'", line);
            goto out;
        }
        if (!(names[i] = strndup(line, (size_t)(colon - line)))) {
            rc = syn_seterr(err, errlen, SYN_ENOMEM, "http: out of memory");
            goto out;
        }
        if (!strcasecmp(names[i], "host")) continue;
        h[n++] = (struct syn_sigv4_header){names[i], colon + 1};
    }
    struct syn_sigv4_request sr = {rq->method, path ? path : "/",          query, h, n,
                                   rq->body,   rq->read ? 0 : rq->body_len};
    struct syn_sigv4_params p = {.region = rq->region,
                                 .service = rq->service,
                                 .normalize_path = 1,
                                 .sign_body = rq->sign_body,
                                 .payload_hash = rq->read ? "UNSIGNED-PAYLOAD" : NULL};
    if ((rc = syn_sigv4_sign(&p, rq->creds, &sr, &res, err, errlen))) goto out;
    char line[8192];
    snprintf(line, sizeof line, "Host: %s", hostval);
    struct curl_slist *nl = curl_slist_append(*list, line);
    for (int i = 0; nl && i < res.n_add; i++) {
        *list = nl;
        snprintf(line, sizeof line, "%s: %s", res.add[i].name, res.add[i].value);
        nl = curl_slist_append(*list, line);
    }
    if (!nl) {
        rc = syn_seterr(err, errlen, SYN_ENOMEM, "http: out of memory");
        goto out;
    }
    *list = nl;
    rc = SYN_OK;
out:
    syn_sigv4_result_free(&res);
    if (names)
        for (int i = 0; i < rq->n_headers; i++) free(names[i]);
    free(names);
    free(h);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(query);
    curl_url_cleanup(u);
    return rc;
}

/* ---- the request ---- */

int syn_http_do(struct syn_http_client *c, const struct syn_http_req *rq,
                struct syn_http_resp *resp, char *err, size_t errlen)
{
    memset(resp, 0, sizeof *resp);
    struct syn_http_client *own = NULL;
    if (!c && !(c = own = syn_http_client_new()))
        return syn_seterr(err, errlen, SYN_ENOMEM, "http: cannot initialise libcurl");
    int rc = SYN_EIO;
    struct curl_slist *list = NULL;
    struct xfer x;
    memset(&x, 0, sizeof x);
    x.rq = rq;
    CURL *cu = c->curl;
    curl_easy_reset(cu);
    char cerr[CURL_ERROR_SIZE] = "";

    for (int i = 0; i < rq->n_headers; i++) {
        struct curl_slist *nl = curl_slist_append(list, rq->headers[i]);
        if (!nl) goto nomem;
        list = nl;
    }
    /* no "Expect: 100-continue" round trip; chunked when the body is streamed */
    struct curl_slist *nl = curl_slist_append(list, "Expect:");
    if (!nl) goto nomem;
    list = nl;
    if (rq->read) {
        if (!(nl = curl_slist_append(list, "Transfer-Encoding: chunked"))) goto nomem;
        list = nl;
    }
    if (rq->creds && (rc = sign(rq, &list, err, errlen))) goto out;
    rc = SYN_EIO;

    curl_easy_setopt(cu, CURLOPT_URL, rq->url);
    curl_easy_setopt(cu, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(cu, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(cu, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(cu, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(cu, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(cu, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(cu, CURLOPT_HEADERDATA, &x);
    curl_easy_setopt(cu, CURLOPT_TIMEOUT_MS, rq->timeout_ms > 0 ? rq->timeout_ms : 0L);
    curl_easy_setopt(cu, CURLOPT_CONNECTTIMEOUT_MS,
                     rq->connect_timeout_ms > 0 ? rq->connect_timeout_ms : 5000L);
    curl_easy_setopt(cu, CURLOPT_USERAGENT, "synapse-aws/0.1");
    if (!strcmp(rq->method, "GET")) {
        curl_easy_setopt(cu, CURLOPT_HTTPGET, 1L);
    } else if (rq->read) {
        curl_easy_setopt(cu, CURLOPT_POST, 1L);
        curl_easy_setopt(cu, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(cu, CURLOPT_READDATA, &x);
        if (rq->trailer) {
            curl_easy_setopt(cu, CURLOPT_TRAILERFUNCTION, on_trailer);
            curl_easy_setopt(cu, CURLOPT_TRAILERDATA, &x);
        }
        if (strcmp(rq->method, "POST")) curl_easy_setopt(cu, CURLOPT_CUSTOMREQUEST, rq->method);
    } else {
        curl_easy_setopt(cu, CURLOPT_POST, 1L);
        curl_easy_setopt(cu, CURLOPT_POSTFIELDS, rq->body ? (const char *)rq->body : "");
        curl_easy_setopt(cu, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
        if (strcmp(rq->method, "POST")) curl_easy_setopt(cu, CURLOPT_CUSTOMREQUEST, rq->method);
    }
    CURLcode cc = curl_easy_perform(cu);
    if (cc != CURLE_OK) {
        if (x.read_failed)
            syn_seterr(err, errlen, SYN_EIO, "http: %s %s: the body could not be produced",
                       rq->method, rq->url);
        else
            syn_seterr(err, errlen, SYN_EIO, "http: %s %s: %s", rq->method, rq->url,
                       cerr[0] ? cerr : curl_easy_strerror(cc));
        goto out;
    }
    if (x.body.failed || x.head.failed) goto nomem;
    curl_easy_getinfo(cu, CURLINFO_RESPONSE_CODE, &resp->status);
    resp->body_len = x.body.len;
    resp->body = aws_sb_take(&x.body);
    resp->head = aws_sb_take(&x.head);
    if (!resp->body || !resp->head) goto nomem;
    rc = SYN_OK;
    goto out;
nomem:
    rc = syn_seterr(err, errlen, SYN_ENOMEM, "http: out of memory");
out:
    /* the easy handle keeps pointers to our header list and buffers: drop them */
    curl_easy_setopt(cu, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(cu, CURLOPT_ERRORBUFFER, NULL);
    curl_slist_free_all(list);
    aws_sb_free(&x.body);
    aws_sb_free(&x.head);
    if (rc != SYN_OK) syn_http_resp_free(resp);
    syn_http_client_free(own);
    return rc;
}
