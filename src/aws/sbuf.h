/*
 * A growable NUL-terminated byte string for the AWS code (request building, canonical forms,
 * XML and JSON snippets). An allocation failure is sticky: the string stops growing, `failed` is
 * set, and the caller checks once at the end instead of after every append.
 */
#ifndef SYN_AWS_SBUF_H
#define SYN_AWS_SBUF_H

#include <stddef.h>

struct aws_sb {
    char *s;    /* from malloc(); NULL until the first append; NUL-terminated */
    size_t len; /* bytes used, not counting the NUL */
    size_t cap; /* bytes allocated */
    int failed; /* an allocation failed: contents are incomplete */
};

void aws_sb_add(struct aws_sb *b, const void *data, size_t len);
void aws_sb_adds(struct aws_sb *b, const char *s);
void aws_sb_addc(struct aws_sb *b, char c);
void aws_sb_addf(struct aws_sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s percent-encoded for SigV4 (see syn_sigv4_uri_encode). */
void aws_sb_add_uri(struct aws_sb *b, const char *s, size_t len, int keep_slash);
/* Appends s as the inside of a JSON string (quotes not included). */
void aws_sb_add_json(struct aws_sb *b, const char *s, size_t len);
/* The string (never NULL: "" when empty), still owned by b. */
const char *aws_sb_str(const struct aws_sb *b);
/* Hands the string to the caller (from malloc(), never NULL unless failed) and resets b. */
char *aws_sb_take(struct aws_sb *b);
void aws_sb_free(struct aws_sb *b);

#endif
