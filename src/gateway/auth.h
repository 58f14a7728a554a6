/*
 * Optional API keys: `Authorization: Bearer KEY` checked against keys from a file (one per
 * line; blank lines and lines starting with '#' skipped) and/or a comma-separated list (the
 * SYNAPSE_API_KEYS environment variable). With no keys configured every request is allowed.
 * Comparison takes the same time whichever key matches, or whether any does.
 */
#ifndef SYN_GW_AUTH_H
#define SYN_GW_AUTH_H

#include <stddef.h>

#include "gateway/openai.h"

struct gw_auth;

/* file and list may be NULL. Returns 0, or SYN_EINVAL/SYN_EIO with a message (an unreadable
 * file, a key with spaces or control characters, a file that names no key at all). */
int gw_auth_new(const char *file, const char *list, struct gw_auth **out, char *err, size_t errlen);
void gw_auth_free(struct gw_auth *a);
/* Number of keys (0: authentication is off). */
int gw_auth_count(const struct gw_auth *a);
/* Checks an Authorization header value (NULL when absent). 0 if allowed; -1 with a 401 in e. */
int gw_auth_check(const struct gw_auth *a, const char *authorization, struct gw_oai_error *e);

/* 1 if a[0..an) equals b[0..bn), in time that depends on an only. */
int gw_ct_equal(const char *a, size_t an, const char *b, size_t bn);

#endif
