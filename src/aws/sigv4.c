/*
 * SigV4 request signing (include/synapse/sigv4.h): canonical request, string to sign, signing
 * key and signature, with OpenSSL for SHA-256 and HMAC. Header and query (presigned) forms.
 * It signs what it is given; choosing which headers to sign is the transport's business.
 */
#include "synapse/sigv4.h"

#include "aws/sbuf.h"
#include "synapse/error.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define ALGO "AWS4-HMAC-SHA256"

/* ---- hashing ---- */

static void to_hex(const unsigned char *d, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[2 * n] = 0;
}

void syn_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(data ? data : "", len, md, &n, EVP_sha256(), NULL);
    to_hex(md, n, out);
}

/* HMAC-SHA256 of data under key into out (32 bytes). */
static void hmac(const void *key, size_t klen, const void *data, size_t dlen, unsigned char *out)
{
    unsigned int n = 32;
    HMAC(EVP_sha256(), key, (int)klen, data, dlen, out, &n);
}

/* ---- time ---- */

void syn_sigv4_amz_date(int64_t t, char out[17])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

int64_t syn_sigv4_parse_time(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2dZ%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &n) == 6 &&
        s[n] == 0) {
    } else if (strlen(s) == 16 && s[8] == 'T' && s[15] == 'Z' &&
               sscanf(s, "%4d%2d%2dT%2d%2d%2dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                      &tm.tm_min, &tm.tm_sec) == 6) {
    } else {
        return -1;
    }
    if (tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
        tm.tm_min > 59 || tm.tm_sec > 60)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm);
}

/* ---- encoding ---- */

size_t syn_sigv4_uri_encode(char *out, size_t cap, const char *s, size_t len, int keep_slash)
{
    struct aws_sb b = {0};
    aws_sb_add_uri(&b, s, len, keep_slash);
    size_t n = b.len;
    if (cap) {
        size_t k = n < cap - 1 ? n : cap - 1;
        if (k) memcpy(out, aws_sb_str(&b), k);
        out[k] = 0;
    }
    aws_sb_free(&b);
    return n;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..len) into b ('+' is a plus sign: AWS query strings encode spaces %20). */
static void add_decoded(struct aws_sb *b, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%' && i + 2 < len && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            aws_sb_addc(b, (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2])));
            i += 2;
        } else {
            aws_sb_addc(b, s[i]);
        }
    }
}

/* ---- canonical URI ---- */

/* Removes empty and "." segments and resolves ".." (RFC 3986 section 5.2.4, plus the collapse
 * of repeated slashes that SigV4 normalization adds). A trailing slash, "." or ".." keeps the
 * result ending in '/'. */
static void normalize_path(struct aws_sb *out, const char *path)
{
    size_t n = strlen(path);
    /* segment start offsets into path, as a stack */
    size_t *seg = malloc((n / 2 + 2) * sizeof *seg), *segl = malloc((n / 2 + 2) * sizeof *segl);
    if (!seg || !segl) {
        free(seg);
        free(segl);
        out->failed = 1;
        return;
    }
    int top = 0, trailing = 0;
    size_t i = 0;
    while (i <= n) {
        size_t j = i;
        while (j < n && path[j] != '/') j++;
        size_t l = j - i;
        int last = j >= n;
        if (l == 0 || (l == 1 && path[i] == '.')) {
            trailing = last && (l == 1 || (n > 0 && path[n - 1] == '/'));
        } else if (l == 2 && path[i] == '.' && path[i + 1] == '.') {
            if (top > 0) top--;
            trailing = last;
        } else {
            seg[top] = i;
            segl[top] = l;
            top++;
            trailing = 0;
        }
        i = j + 1;
    }
    for (int k = 0; k < top; k++) {
        aws_sb_addc(out, '/');
        aws_sb_add(out, path + seg[k], segl[k]);
    }
    if (top == 0 || trailing) aws_sb_addc(out, '/');
    free(seg);
    free(segl);
}

static void canonical_uri(struct aws_sb *cr, const char *path, int normalize)
{
    if (!path || !*path) path = "/";
    if (normalize) {
        struct aws_sb norm = {0};
        normalize_path(&norm, path);
        if (norm.failed) cr->failed = 1;
        aws_sb_add_uri(cr, aws_sb_str(&norm), norm.len, 1);
        aws_sb_free(&norm);
    } else {
        aws_sb_add_uri(cr, path, strlen(path), 1);
    }
}

/* ---- canonical query ---- */

struct qparam {
    char *key; /* encoded, from malloc() */
    char *val; /* encoded, from malloc() */
};

static int qparam_cmp(const void *a, const void *b)
{
    const struct qparam *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : strcmp(x->val, y->val);
}

/* Adds one parameter, given in wire form (decoded, then strictly re-encoded) or, when raw is 0,
 * as plain text (encoded). */
static int qparam_push(struct qparam **v, int *n, int *cap, const char *k, size_t kl,
                       const char *val, size_t vl, int wire)
{
    if (*n == *cap) {
        int nc = *cap ? *cap * 2 : 16;
        struct qparam *nv = realloc(*v, (size_t)nc * sizeof *nv);
        if (!nv) return -1;
        *v = nv;
        *cap = nc;
    }
    struct aws_sb dk = {0}, dv = {0}, ek = {0}, ev = {0};
    if (wire) {
        add_decoded(&dk, k, kl);
        add_decoded(&dv, val, vl);
        aws_sb_add_uri(&ek, aws_sb_str(&dk), dk.len, 0);
        aws_sb_add_uri(&ev, aws_sb_str(&dv), dv.len, 0);
    } else {
        aws_sb_add_uri(&ek, k, kl, 0);
        aws_sb_add_uri(&ev, val, vl, 0);
    }
    aws_sb_free(&dk);
    aws_sb_free(&dv);
    char *ks = aws_sb_take(&ek), *vs = aws_sb_take(&ev);
    if (!ks || !vs) {
        free(ks);
        free(vs);
        return -1;
    }
    (*v)[*n].key = ks;
    (*v)[*n].val = vs;
    (*n)++;
    return 0;
}

/* ---- canonical headers ---- */

struct chdr {
    char *name;  /* lower-case, from malloc() */
    char *value; /* canonical (trimmed, folded, duplicates joined), from malloc() */
    int order;   /* first appearance, for a stable sort */
};

static int chdr_cmp(const void *a, const void *b)
{
    const struct chdr *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : x->order - y->order;
}

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Appends v trimmed, with runs of white space (line folds included) as one space. */
static void add_folded(struct aws_sb *b, const char *v)
{
    while (is_ws(*v)) v++;
    size_t end = strlen(v);
    while (end > 0 && is_ws(v[end - 1])) end--;
    for (size_t i = 0; i < end; i++) {
        if (is_ws(v[i])) {
            aws_sb_addc(b, ' ');
            while (i + 1 < end && is_ws(v[i + 1])) i++;
        } else {
            aws_sb_addc(b, v[i]);
        }
    }
}

static int token_ok(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 32 || c >= 127 || strchr("()<>@,;:\\\"/[]?={}", c)) return 0;
    }
    return 1;
}

/* Adds a header, joining it to an earlier one of the same name. */
static int chdr_add(struct chdr **v, int *n, int *cap, const char *name, const char *value)
{
    for (int i = 0; i < *n; i++)
        if (!strcasecmp((*v)[i].name, name)) {
            struct aws_sb b = {0};
            aws_sb_adds(&b, (*v)[i].value);
            aws_sb_addc(&b, ',');
            add_folded(&b, value);
            char *nv = aws_sb_take(&b);
            if (!nv) return -1;
            free((*v)[i].value);
            (*v)[i].value = nv;
            return 0;
        }
    if (*n == *cap) {
        int nc = *cap ? *cap * 2 : 16;
        struct chdr *nvv = realloc(*v, (size_t)nc * sizeof *nvv);
        if (!nvv) return -1;
        *v = nvv;
        *cap = nc;
    }
    struct aws_sb b = {0};
    add_folded(&b, value);
    char *val = aws_sb_take(&b);
    char *nm = strdup(name);
    if (!val || !nm) {
        free(val);
        free(nm);
        return -1;
    }
    for (char *c = nm; *c; c++)
        if (*c >= 'A' && *c <= 'Z') *c = (char)(*c - 'A' + 'a');
    (*v)[*n] = (struct chdr){nm, val, *n};
    (*n)++;
    return 0;
}

/* ---- signing ---- */

static void set_add(struct syn_sigv4_result *out, const char *name, char *value_owned)
{
    int i = out->n_add++;
    snprintf(out->add[i].name, sizeof out->add[i].name, "%s", name);
    out->add[i].value = value_owned;
}

void syn_sigv4_result_free(struct syn_sigv4_result *res)
{
    if (!res) return;
    free(res->canonical_request);
    free(res->string_to_sign);
    for (int i = 0; i < res->n_add; i++) free(res->add[i].value);
    free(res->query_add);
    memset(res, 0, sizeof *res);
}

int syn_sigv4_sign(const struct syn_sigv4_params *p, const struct syn_aws_creds *c,
                   const struct syn_sigv4_request *r, struct syn_sigv4_result *out, char *err,
                   size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!r->method || !*r->method)
        return syn_seterr(err, errlen, SYN_EINVAL, "sigv4: the request has no method");
    if (!c || !c->access_key_id || !*c->access_key_id || !c->secret_access_key ||
        !*c->secret_access_key)
        return syn_seterr(err, errlen, SYN_EINVAL, "sigv4: no AWS credentials");
    if (!p->region || !*p->region || !p->service || !*p->service)
        return syn_seterr(err, errlen, SYN_EINVAL, "sigv4: region and service are required");
    if (strchr(p->region, '/') || strchr(p->service, '/'))
        return syn_seterr(err, errlen, SYN_EINVAL, "sigv4: region '%s' or service '%s' has a '/'",
                          p->region, p->service);
    const int has_token = c->session_token && *c->session_token;
    const int sign_token = has_token && !p->omit_session_token;
    const int query = p->query != 0;
    const int expires = p->expires_s > 0 ? p->expires_s : 3600;

    int rc = SYN_ENOMEM;
    struct chdr *hv = NULL;
    int nh = 0, hcap = 0;
    struct qparam *qv = NULL;
    int nq = 0, qcap = 0;
    struct aws_sb cr = {0}, sts = {0}, sh = {0}, qa = {0}, auth = {0};
    char *signed_headers = NULL;

    char amz_date[17], date[9], body_hash[65];
    syn_sigv4_amz_date(p->time_s ? p->time_s : (int64_t)time(NULL), amz_date);
    memcpy(date, amz_date, 8);
    date[8] = 0;
    if (p->payload_hash)
        snprintf(body_hash, sizeof body_hash, "%s", p->payload_hash);
    else
        syn_sha256_hex(r->body, r->body_len, body_hash);

    /* headers: the caller's, minus the ones we set, plus ours */
    int have_host = 0;
    for (int i = 0; i < r->n_headers; i++) {
        const char *nm = r->headers[i].name;
        if (!nm || !token_ok(nm)) {
            rc = syn_seterr(err, errlen, SYN_EINVAL, "sigv4: header name '%s' is not a token",
                            nm ? nm : "(null)");
            goto out;
        }
        if (!strcasecmp(nm, "authorization") || (!query && !strcasecmp(nm, "x-amz-date")) ||
            (!query && has_token && !strcasecmp(nm, "x-amz-security-token")) ||
            (!query && p->sign_body && !strcasecmp(nm, "x-amz-content-sha256")))
            continue;
        have_host |= !strcasecmp(nm, "host");
        if (chdr_add(&hv, &nh, &hcap, nm, r->headers[i].value ? r->headers[i].value : "")) goto out;
    }
    if (!have_host) {
        rc = syn_seterr(err, errlen, SYN_EINVAL, "sigv4: the request has no Host header");
        goto out;
    }
    if (!query) {
        if (sign_token && chdr_add(&hv, &nh, &hcap, "X-Amz-Security-Token", c->session_token))
            goto out;
        if (chdr_add(&hv, &nh, &hcap, "X-Amz-Date", amz_date)) goto out;
        if (p->sign_body && chdr_add(&hv, &nh, &hcap, "x-amz-content-sha256", body_hash)) goto out;
    }
    if (nh > 1) qsort(hv, (size_t)nh, sizeof *hv, chdr_cmp);
    for (int i = 0; i < nh; i++) {
        if (i) aws_sb_addc(&sh, ';');
        aws_sb_adds(&sh, hv[i].name);
    }
    if (!(signed_headers = aws_sb_take(&sh))) goto out;

    /* query: the request's own parameters, plus ours when presigning */
    char scope[256];
    snprintf(scope, sizeof scope, "%s/%s/%s/aws4_request", date, p->region, p->service);
    char credential[512];
    snprintf(credential, sizeof credential, "%s/%s", c->access_key_id, scope);
    if (r->query) {
        const char *q = r->query;
        while (*q) {
            const char *amp = strchr(q, '&');
            size_t l = amp ? (size_t)(amp - q) : strlen(q);
            if (l > 0) {
                const char *eq = memchr(q, '=', l);
                size_t kl = eq ? (size_t)(eq - q) : l;
                const char *v = eq ? eq + 1 : q + l;
                size_t vl = eq ? l - kl - 1 : 0;
                if (qparam_push(&qv, &nq, &qcap, q, kl, v, vl, 1)) goto out;
            }
            q += l;
            if (*q == '&') q++;
        }
    }
    if (query) {
        char exp[16];
        snprintf(exp, sizeof exp, "%d", expires);
        /* these are appended to the URL in this order, after the request's own */
        const char *kv[][2] = {{"X-Amz-Algorithm", ALGO},
                               {"X-Amz-Credential", credential},
                               {"X-Amz-Date", amz_date},
                               {"X-Amz-SignedHeaders", signed_headers},
                               {"X-Amz-Expires", exp},
                               {"X-Amz-Security-Token", sign_token ? c->session_token : NULL}};
        for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++) {
            if (!kv[i][1]) continue;
            if (qparam_push(&qv, &nq, &qcap, kv[i][0], strlen(kv[i][0]), kv[i][1], strlen(kv[i][1]),
                            0))
                goto out;
            if (qa.len) aws_sb_addc(&qa, '&');
            aws_sb_adds(&qa, kv[i][0]);
            aws_sb_addc(&qa, '=');
            aws_sb_add_uri(&qa, kv[i][1], strlen(kv[i][1]), 0);
        }
    }
    if (nq > 1) qsort(qv, (size_t)nq, sizeof *qv, qparam_cmp);

    /* the canonical request */
    aws_sb_adds(&cr, r->method);
    aws_sb_addc(&cr, '\n');
    canonical_uri(&cr, r->path, p->normalize_path);
    aws_sb_addc(&cr, '\n');
    for (int i = 0; i < nq; i++) {
        if (i) aws_sb_addc(&cr, '&');
        aws_sb_adds(&cr, qv[i].key);
        aws_sb_addc(&cr, '=');
        aws_sb_adds(&cr, qv[i].val);
    }
    aws_sb_addc(&cr, '\n');
    for (int i = 0; i < nh; i++) aws_sb_addf(&cr, "%s:%s\n", hv[i].name, hv[i].value);
    aws_sb_addc(&cr, '\n');
    aws_sb_adds(&cr, signed_headers);
    aws_sb_addc(&cr, '\n');
    aws_sb_adds(&cr, body_hash);
    if (cr.failed) goto out;

    /* the string to sign and the signature */
    char cr_hash[65];
    syn_sha256_hex(cr.s, cr.len, cr_hash);
    aws_sb_addf(&sts, "%s\n%s\n%s\n%s", ALGO, amz_date, scope, cr_hash);
    if (sts.failed) goto out;
    {
        struct aws_sb k = {0};
        aws_sb_adds(&k, "AWS4");
        aws_sb_adds(&k, c->secret_access_key);
        if (k.failed) goto out;
        unsigned char k1[32], k2[32], k3[32], k4[32], sig[32];
        hmac(k.s, k.len, date, strlen(date), k1);
        aws_sb_free(&k);
        hmac(k1, 32, p->region, strlen(p->region), k2);
        hmac(k2, 32, p->service, strlen(p->service), k3);
        hmac(k3, 32, "aws4_request", 12, k4);
        hmac(k4, 32, sts.s, sts.len, sig);
        to_hex(sig, 32, out->signature);
    }

    if (query) {
        if (has_token && !sign_token) {
            aws_sb_adds(&qa, "&X-Amz-Security-Token=");
            aws_sb_add_uri(&qa, c->session_token, strlen(c->session_token), 0);
        }
        aws_sb_addf(&qa, "&X-Amz-Signature=%s", out->signature);
        if (!(out->query_add = aws_sb_take(&qa))) goto out;
    } else {
        char *v;
        if (has_token) {
            if (!(v = strdup(c->session_token))) goto out;
            set_add(out, "X-Amz-Security-Token", v);
        }
        if (!(v = strdup(amz_date))) goto out;
        set_add(out, "X-Amz-Date", v);
        if (p->sign_body) {
            if (!(v = strdup(body_hash))) goto out;
            set_add(out, "x-amz-content-sha256", v);
        }
        aws_sb_addf(&auth, "%s Credential=%s, SignedHeaders=%s, Signature=%s", ALGO, credential,
                    signed_headers, out->signature);
        if (!(v = aws_sb_take(&auth))) goto out;
        set_add(out, "Authorization", v);
    }
    out->canonical_request = aws_sb_take(&cr);
    out->string_to_sign = aws_sb_take(&sts);
    if (!out->canonical_request || !out->string_to_sign) goto out;
    rc = SYN_OK;
out:
    if (rc == SYN_ENOMEM) syn_seterr(err, errlen, SYN_ENOMEM, "sigv4: out of memory");
    if (rc != SYN_OK) syn_sigv4_result_free(out);
    for (int i = 0; i < nh; i++) {
        free(hv[i].name);
        free(hv[i].value);
    }
    free(hv);
    for (int i = 0; i < nq; i++) {
        free(qv[i].key);
        free(qv[i].val);
    }
    free(qv);
    free(signed_headers);
    aws_sb_free(&cr);
    aws_sb_free(&sts);
    aws_sb_free(&sh);
    aws_sb_free(&qa);
    aws_sb_free(&auth);
    return rc;
}
