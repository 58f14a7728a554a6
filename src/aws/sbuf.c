/* The growable string of the AWS code (see sbuf.h). */
#include "aws/sbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int grow(struct aws_sb *b, size_t extra)
{
    if (b->failed) return -1;
    if (b->len + extra + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1) cap *= 2;
    char *s = realloc(b->s, cap);
    if (!s) {
        b->failed = 1;
        return -1;
    }
    b->s = s;
    b->cap = cap;
    return 0;
}

void aws_sb_add(struct aws_sb *b, const void *data, size_t len)
{
    if (grow(b, len)) return;
    if (len) memcpy(b->s + b->len, data, len);
    b->len += len;
    b->s[b->len] = 0;
}

void aws_sb_adds(struct aws_sb *b, const char *s)
{
    aws_sb_add(b, s, strlen(s));
}

void aws_sb_addc(struct aws_sb *b, char c)
{
    aws_sb_add(b, &c, 1);
}

void aws_sb_addf(struct aws_sb *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = 1;
        return;
    }
    if ((size_t)n < sizeof small) {
        aws_sb_add(b, small, (size_t)n);
        return;
    }
    if (grow(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static int unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~';
}

void aws_sb_add_uri(struct aws_sb *b, const char *s, size_t len, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved(c) || (keep_slash && c == '/')) {
            aws_sb_addc(b, (char)c);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            aws_sb_add(b, e, 3);
        }
    }
}

void aws_sb_add_json(struct aws_sb *b, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"':
            aws_sb_adds(b, "\\\"");
            break;
        case '\\':
            aws_sb_adds(b, "\\\\");
            break;
        case '\n':
            aws_sb_adds(b, "\\n");
            break;
        case '\r':
            aws_sb_adds(b, "\\r");
            break;
        case '\t':
            aws_sb_adds(b, "\\t");
            break;
        default:
            if (c < 0x20)
                aws_sb_addf(b, "\\u%04x", c);
            else
                aws_sb_addc(b, (char)c);
        }
    }
}

const char *aws_sb_str(const struct aws_sb *b)
{
    return b->s ? b->s : "";
}

char *aws_sb_take(struct aws_sb *b)
{
    if (b->failed) {
        aws_sb_free(b);
        return NULL;
    }
    char *s = b->s ? b->s : calloc(1, 1);
    memset(b, 0, sizeof *b);
    return s;
}

void aws_sb_free(struct aws_sb *b)
{
    free(b->s);
    memset(b, 0, sizeof *b);
}
