/* API key checks (see auth.h). */
#include "gateway/auth.h"

#include "synapse/error.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_KEY_BYTES 512

struct gw_auth {
    char **keys; /* owned, each malloc'ed */
    int n;
};

int gw_ct_equal(const char *a, size_t an, const char *b, size_t bn)
{
    /* walk a (the client's bytes) in full whatever b is; b of length 0 never matches */
    volatile unsigned char diff = (unsigned char)(an != bn) | (unsigned char)(bn == 0);
    for (size_t i = 0; i < an; i++) {
        unsigned char bc = bn ? (unsigned char)b[i % bn] : 0;
        diff |= (unsigned char)a[i] ^ bc;
    }
    return diff == 0;
}

static int add_key(struct gw_auth *a, const char *s, size_t n, const char *where, char *err,
                   size_t errlen)
{
    while (n && isspace((unsigned char)*s)) s++, n--;
    while (n && isspace((unsigned char)s[n - 1])) n--;
    if (n == 0) return 0;
    if (n > MAX_KEY_BYTES)
        return syn_seterr(err, errlen, SYN_EINVAL, "api keys: a key in %s is longer than %d bytes",
                          where, MAX_KEY_BYTES);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] == 0x7f)
            return syn_seterr(err, errlen, SYN_EINVAL,
                              "api keys: a key in %s contains a space or control character", where);
    char **nk = realloc(a->keys, sizeof *nk * (size_t)(a->n + 1));
    if (!nk) return syn_seterr(err, errlen, SYN_ENOMEM, "api keys: out of memory");
    a->keys = nk;
    a->keys[a->n] = strndup(s, n);
    if (!a->keys[a->n]) return syn_seterr(err, errlen, SYN_ENOMEM, "api keys: out of memory");
    a->n++;
    return 0;
}

int gw_auth_new(const char *file, const char *list, struct gw_auth **out, char *err, size_t errlen)
{
    int rc = 0;
    *out = NULL;
    struct gw_auth *a = calloc(1, sizeof *a);
    if (!a) return syn_seterr(err, errlen, SYN_ENOMEM, "api keys: out of memory");
    if (file && *file) {
        FILE *f = fopen(file, "r");
        if (!f) {
            rc = syn_seterr(err, errlen, SYN_EIO, "api keys: cannot read '%s'", file);
            goto out;
        }
        char line[MAX_KEY_BYTES + 64];
        int before = a->n;
        while (fgets(line, sizeof line, f)) {
            size_t n = strlen(line);
            if (n == sizeof line - 1 && line[n - 1] != '\n') {
                fclose(f);
                rc = syn_seterr(err, errlen, SYN_EINVAL, "api keys: a line of '%s' is too long",
                                file);
                goto out;
            }
            const char *p = line;
            while (isspace((unsigned char)*p)) p++;
            if (*p == '#') continue;
            if ((rc = add_key(a, line, n, file, err, errlen))) {
                fclose(f);
                goto out;
            }
        }
        fclose(f);
        if (a->n == before) {
            rc = syn_seterr(err, errlen, SYN_EINVAL, "api keys: '%s' contains no key", file);
            goto out;
        }
    }
    if (list && *list) {
        const char *s = list;
        for (;;) {
            const char *c = strchr(s, ',');
            size_t n = c ? (size_t)(c - s) : strlen(s);
            if ((rc = add_key(a, s, n, "the key list", err, errlen))) goto out;
            if (!c) break;
            s = c + 1;
        }
    }
out:
    if (rc) {
        gw_auth_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

void gw_auth_free(struct gw_auth *a)
{
    if (!a) return;
    for (int i = 0; i < a->n; i++) free(a->keys[i]);
    free(a->keys);
    free(a);
}

int gw_auth_count(const struct gw_auth *a)
{
    return a ? a->n : 0;
}

int gw_auth_check(const struct gw_auth *a, const char *authorization, struct gw_oai_error *e)
{
    if (!a || a->n == 0) return 0;
    const char *key = NULL;
    if (authorization && strncasecmp(authorization, "Bearer", 6) == 0 &&
        (authorization[6] == ' ' || authorization[6] == '\t')) {
        key = authorization + 7;
        while (*key == ' ' || *key == '\t') key++;
    }
    if (!key || !*key) {
        gw_oai_set_error(e, 401, "invalid_request_error", NULL, NULL,
                         "You didn't provide an API key. You need to provide your API key in an "
                         "Authorization header using Bearer auth (i.e. Authorization: Bearer "
                         "YOUR_KEY).");
        return -1;
    }
    size_t n = strlen(key);
    int ok = 0;
    for (int i = 0; i < a->n; i++) ok |= gw_ct_equal(key, n, a->keys[i], strlen(a->keys[i]));
    if (ok) return 0;
    gw_oai_set_error(e, 401, "invalid_request_error", "invalid_api_key", NULL,
                     "Incorrect API key provided.");
    return -1;
}
