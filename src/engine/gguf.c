/*
 * GGUF reader; the byte format is spelled out in include/synapse/gguf.h.
 *
 * The reader validates the whole header in one pass over a read-only buffer (a mapping, or the
 * caller's memory) and builds a small index: per key its type and where its value lies, per
 * string array the offset of every element (so that token j of a 128k vocab is O(1)), the tensor
 * table, and two hash tables for lookups by name. Every length is checked against the bytes that
 * remain before it is used, and every count before anything is allocated for it, so a hostile
 * file costs at most memory proportional to its size and gets a message naming what was expected
 * and what was found. Values are not copied: getters point into the buffer. Keys and tensor names
 * are copied once, NUL-terminated, into one block owned by the handle.
 *
 * The writer is in gguf_writer.c.
 *
 * Not here: what the keys mean (src/engine/model.c reads llama.* and tokenizer.*) and what the
 * tensors hold.
 */
#include "synapse/gguf.h"

#include "synapse/error.h"
#include "engine/gguf_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Longest key or tensor name accepted (the GGUF spec caps keys at 65535 bytes; ggml caps tensor
 * names at 63, which we do not enforce). */
#define MAX_NAME_LEN 65535
/* Arrays of arrays are legal GGUF; nesting is capped so that validation cannot recurse deep. */
#define MAX_ARRAY_DEPTH 8
/* Key and tensor names in error messages are escaped and cut to this many bytes. */
#define ERR_NAME_MAX 96
/* Room for such a name: every byte may become a 4-character escape, plus "..." and NUL. */
#define ERR_NAME_BUF (4 * ERR_NAME_MAX + 8)

#define N_VALUE_TYPES (SYN_GGUF_FLOAT64 + 1)

/* Bytes per scalar of each value type; 0 for string and array. */
static const uint8_t value_size[N_VALUE_TYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
static const char *const value_type_names[N_VALUE_TYPES] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
};
/* The fewest bytes one array element of each type takes: a scalar, a string's length field, or
 * a nested array's type and count. Used to reject counts before looping or allocating. */
static const uint8_t min_elem_size[N_VALUE_TYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 8, 12, 8, 8, 8};

static const char *value_type_name(uint32_t t)
{
    return t < N_VALUE_TYPES ? value_type_names[t] : "unknown";
}

/* ---- little-endian loads ---- */

static uint16_t le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* ---- bounded output with escaping (format_value, names in error messages) ---- */

/* A fixed buffer that is always NUL-terminated and never holds part of a unit: a piece of output
 * that does not fit is dropped along with everything after it. */
struct out {
    char *buf;  /* caller's buffer, may be NULL when cap is 0 */
    size_t cap; /* its size, NUL included */
    size_t len; /* bytes written so far, NUL excluded */
    int full;   /* set once a piece did not fit; later pieces are dropped */
};

static void out_put(struct out *o, const char *s, size_t n)
{
    if (o->full) return;
    if (o->cap == 0 || n > o->cap - 1 - o->len) {
        o->full = 1;
        return;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

static void out_str(struct out *o, const char *s)
{
    out_put(o, s, strlen(s));
}

static void out_printf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_printf(struct out *o, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    out_put(o, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Length of the valid UTF-8 sequence at s (1..4 bytes, no overlongs, no surrogates, at most
 * U+10FFFF) and its code point, or 0 if the bytes there are not valid UTF-8. */
static size_t utf8_seq(const uint8_t *s, size_t n, uint32_t *cp_out)
{
    uint8_t c = s[0];
    size_t len;
    uint32_t cp, min;
    if (c < 0x80) {
        *cp_out = c;
        return 1;
    } else if ((c & 0xe0) == 0xc0) {
        len = 2, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len) return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (s[k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    *cp_out = cp;
    return len;
}

/* Bytes of s that are valid UTF-8 from the start: n when all of it is. */
static size_t utf8_valid_prefix(const uint8_t *s, size_t n)
{
    size_t i = 0;
    uint32_t cp;
    while (i < n) {
        size_t k = utf8_seq(s + i, n - i, &cp);
        if (!k) break;
        i += k;
    }
    return i;
}

/* Code points that would change how a terminal shows what follows: C1 controls, bidirectional
 * overrides and isolates, zero-width characters, line and paragraph separators. */
static int cp_is_invisible(uint32_t cp)
{
    return (cp >= 0x80 && cp <= 0x9f) || (cp >= 0x200b && cp <= 0x200f) ||
           (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0xfeff;
}

/* Appends s escaped for one line of a terminal: printable ASCII and visible UTF-8 as they are,
 * quotes and backslashes backslashed, control characters as \n \t \r or \xNN, invalid UTF-8
 * bytes as \xNN, invisible code points as \u{NNNN}. Stops after max source bytes (0: no limit,
 * never splitting a character); returns the source bytes consumed. */
static size_t out_escaped(struct out *o, const uint8_t *s, size_t n, size_t max)
{
    size_t i = 0;
    while (i < n && !o->full) {
        uint32_t cp;
        size_t k = utf8_seq(s + i, n - i, &cp);
        if (max && i + (k ? k : 1) > max) break;
        if (k == 0) {
            out_printf(o, "\\x%02x", s[i]);
            k = 1;
        } else if (cp == '"' || cp == '\\') {
            char e[2] = {'\\', (char)cp};
            out_put(o, e, 2);
        } else if (cp == '\n') {
            out_put(o, "\\n", 2);
        } else if (cp == '\t') {
            out_put(o, "\\t", 2);
        } else if (cp == '\r') {
            out_put(o, "\\r", 2);
        } else if (cp < 0x20 || cp == 0x7f) {
            out_printf(o, "\\x%02x", (unsigned)cp);
        } else if (cp_is_invisible(cp)) {
            out_printf(o, "\\u{%04x}", (unsigned)cp);
        } else {
            out_put(o, (const char *)s + i, k);
        }
        if (o->full) break;
        i += k;
    }
    return i;
}

/* A name from the file made safe for an error message: escaped, cut at ERR_NAME_MAX bytes. */
static const char *err_name(char *dst, size_t cap, const uint8_t *s, size_t n)
{
    struct out o = {dst, cap, 0, 0};
    dst[0] = '\0';
    size_t used = out_escaped(&o, s, n, ERR_NAME_MAX);
    if (used < n) {
        o.full = 0;
        out_str(&o, "...");
    }
    return dst;
}

/* ---- name index: open addressing over names held in the handle's name block ---- */

struct name_slot {
    size_t off;  /* the name's offset in the name block */
    size_t len;  /* its length */
    int64_t idx; /* the entry's index (kv or tensor); -1 for an empty slot */
};

struct name_index {
    struct name_slot *slots; /* malloc'ed, owned */
    uint64_t seed;           /* mixed into the hash so that a file cannot choose colliding names */
    size_t mask;             /* capacity - 1; capacity is a power of two at least twice the count */
};

static uint64_t name_hash(uint64_t seed, const char *s, size_t n)
{
    /* FNV-1a from a seeded basis */
    uint64_t h = 0xcbf29ce484222325ull ^ seed;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
    return h;
}

static int index_init(struct name_index *ix, uint64_t count)
{
    size_t cap = 8;
    while (cap < 2 * count) cap <<= 1;
    ix->slots = malloc(cap * sizeof *ix->slots);
    if (!ix->slots) return SYN_ENOMEM;
    for (size_t i = 0; i < cap; i++) ix->slots[i].idx = -1;
    ix->mask = cap - 1;
    /* the index's own address differs per handle and per run (ASLR): enough to keep a file from
     * knowing which names collide, without a random source */
    ix->seed = (uint64_t)(uintptr_t)ix * 0x9e3779b97f4a7c15ull;
    return 0;
}

/* The slot holding name s, or the empty slot where it would go. */
static struct name_slot *index_slot(const struct name_index *ix, const char *names, const char *s,
                                    size_t n)
{
    size_t i = (size_t)name_hash(ix->seed, s, n) & ix->mask;
    for (;; i = (i + 1) & ix->mask) {
        struct name_slot *sl = &ix->slots[i];
        if (sl->idx < 0) return sl;
        if (sl->len == n && memcmp(names + sl->off, s, n) == 0) return sl;
    }
}

/* ---- the handle ---- */

struct gguf_kv {
    size_t key_off;              /* NUL-terminated key at names + key_off */
    size_t key_len;              /* its length, NUL excluded */
    enum syn_gguf_type type;     /* the value's type */
    size_t value_off;            /* file offset of the value (arrays: of their element type) */
    size_t value_end;            /* file offset one past the value's last byte */
    enum syn_gguf_type arr_type; /* arrays: element type */
    uint64_t arr_n;              /* arrays: element count */
    size_t arr_data;             /* arrays: file offset of the first element */
    size_t *str_offs;            /* string arrays: file offset of each element's length field;
                                    malloc'ed, owned; NULL for other types and empty arrays */
};

struct tensor_info {
    size_t name_off; /* NUL-terminated name at names + name_off */
    size_t name_len; /* its length, NUL excluded */
    uint64_t offset; /* as in the file: relative to the data section */
};

struct syn_gguf {
    const uint8_t *base;         /* the file: fm.data or the caller's buffer */
    size_t size;                 /* its length */
    struct syn_filemap fm;       /* the file in memory when we opened it, released by free */
    uint32_t version;            /* 2 or 3 */
    uint32_t alignment;          /* general.alignment, or 32 */
    size_t data_offset;          /* file offset of the data section */
    int64_t n_kv;                /* key/value pairs */
    struct gguf_kv *kvs;         /* n_kv entries, in file order; malloc'ed, owned */
    int64_t n_tensors;           /* tensors */
    struct syn_tensor *tensors;  /* n_tensors views, in file order; malloc'ed, owned */
    struct tensor_info *tinfo;   /* n_tensors entries parallel to tensors; malloc'ed, owned */
    char *names;                 /* every key and tensor name, NUL-terminated; malloc'ed, owned */
    size_t names_len, names_cap; /* bytes used and allocated in names */
    struct name_index kv_index;  /* keys -> kv index */
    struct name_index t_index;   /* tensor names -> tensor index */
};

/* Appends a NUL-terminated copy of s to the name block; returns its offset in *off. */
static int names_add(struct syn_gguf *g, const uint8_t *s, size_t n, size_t *off)
{
    if (g->names_cap - g->names_len < n + 1) {
        size_t cap = g->names_cap ? g->names_cap : 4096;
        while (cap - g->names_len < n + 1) cap *= 2;
        char *p = realloc(g->names, cap);
        if (!p) return SYN_ENOMEM;
        g->names = p;
        g->names_cap = cap;
    }
    memcpy(g->names + g->names_len, s, n);
    g->names[g->names_len + n] = '\0';
    *off = g->names_len;
    g->names_len += n + 1;
    return 0;
}

/* ---- the reader ---- */

struct reader {
    const uint8_t *p; /* the file */
    size_t size;      /* its length */
    size_t pos;       /* next byte to read */
    char *err;        /* caller's message buffer */
    size_t errlen;    /* its size */
    /* what is being read, for messages: "header", "key 'x'", "tensor 'y'" */
    char ctx[ERR_NAME_BUF + 32];
};

static size_t left(const struct reader *r)
{
    return r->size - r->pos;
}

/* Checks that n more bytes exist before a read of `what`. */
static int need(struct reader *r, uint64_t n, const char *what)
{
    if (n <= left(r)) return 0;
    return syn_seterr(r->err, r->errlen, SYN_EFORMAT,
                      "gguf: %s: %s needs %" PRIu64
                      " bytes at offset %zu but the file has %zu bytes",
                      r->ctx, what, n, r->pos, r->size);
}

static int rd_u32(struct reader *r, uint32_t *v, const char *what)
{
    int rc = need(r, 4, what);
    if (rc) return rc;
    *v = le32(r->p + r->pos);
    r->pos += 4;
    return 0;
}

static int rd_u64(struct reader *r, uint64_t *v, const char *what)
{
    int rc = need(r, 8, what);
    if (rc) return rc;
    *v = le64(r->p + r->pos);
    r->pos += 8;
    return 0;
}

/* Reads a string: its bytes are at r->p + *off, *len of them. */
static int rd_str(struct reader *r, size_t *off, size_t *len, const char *what)
{
    uint64_t n;
    int rc = rd_u64(r, &n, what);
    if (rc) return rc;
    if (n > left(r))
        return syn_seterr(r->err, r->errlen, SYN_EFORMAT,
                          "gguf: %s: %s is %" PRIu64 " bytes long at offset %zu but only %zu bytes "
                          "remain in the file",
                          r->ctx, what, n, r->pos, left(r));
    *off = r->pos;
    *len = (size_t)n;
    r->pos += (size_t)n;
    return 0;
}

/* Reads a key or tensor name and checks it: 1..MAX_NAME_LEN bytes of UTF-8 without NUL. */
static int rd_name(struct reader *r, size_t *off, size_t *len, const char *what)
{
    int rc = rd_str(r, off, len, what);
    if (rc) return rc;
    const uint8_t *s = r->p + *off;
    if (*len == 0)
        return syn_seterr(r->err, r->errlen, SYN_EFORMAT, "gguf: %s: %s is empty", r->ctx, what);
    if (*len > MAX_NAME_LEN)
        return syn_seterr(r->err, r->errlen, SYN_EFORMAT,
                          "gguf: %s: %s is %zu bytes long, more than the %d allowed", r->ctx, what,
                          *len, MAX_NAME_LEN);
    size_t valid = utf8_valid_prefix(s, *len);
    const void *nul = memchr(s, 0, *len);
    if (valid < *len || nul) {
        char shown[ERR_NAME_BUF];
        if (valid < *len)
            return syn_seterr(
                r->err, r->errlen, SYN_EFORMAT,
                "gguf: %s: %s \"%s\" is not valid UTF-8 (bad byte 0x%02x at offset %zu)", r->ctx,
                what, err_name(shown, sizeof shown, s, *len), s[valid], *off + valid);
        return syn_seterr(r->err, r->errlen, SYN_EFORMAT,
                          "gguf: %s: %s \"%s\" contains a NUL byte at offset %zu", r->ctx, what,
                          err_name(shown, sizeof shown, s, *len),
                          *off + (size_t)((const uint8_t *)nul - s));
    }
    return 0;
}

/* Validates an array (its element type, count and elements) at r->pos; records it in kv when kv
 * is not NULL (a top-level array), including the string offsets index. */
static int rd_array(struct reader *r, int depth, struct gguf_kv *kv)
{
    uint32_t et;
    uint64_t n;
    int rc = rd_u32(r, &et, "the array's element type");
    if (rc) return rc;
    if (et >= N_VALUE_TYPES)
        return syn_seterr(r->err, r->errlen, SYN_EFORMAT,
                          "gguf: %s: array element type %" PRIu32 " is unknown (expected 0..%d)",
                          r->ctx, et, N_VALUE_TYPES - 1);
    if ((rc = rd_u64(r, &n, "the array's element count"))) return rc;
    if (n > left(r) / min_elem_size[et])
        return syn_seterr(r->err, r->errlen, SYN_EFORMAT,
                          "gguf: %s: array of %" PRIu64 " %s elements at offset %zu needs at least "
                          "%u bytes each but only %zu bytes remain in the file",
                          r->ctx, n, value_type_names[et], r->pos, min_elem_size[et], left(r));
    if (kv) {
        kv->arr_type = (enum syn_gguf_type)et;
        kv->arr_n = n;
        kv->arr_data = r->pos;
    }
    if (et == SYN_GGUF_STRING) {
        size_t *offs = NULL;
        if (kv && n) {
            /* n <= remaining / 8, so this is at most the file's size */
            offs = malloc((size_t)n * sizeof *offs);
            if (!offs) return SYN_ENOMEM;
            kv->str_offs = offs;
        }
        for (uint64_t j = 0; j < n; j++) {
            if (left(r) < 8 || le64(r->p + r->pos) > left(r) - 8) {
                /* let rd_str say what is wrong; the element number is formatted only now, as
                 * vocabularies have 100k+ elements */
                char what[64];
                size_t off, len;
                snprintf(what, sizeof what, "string element %" PRIu64, j);
                return rd_str(r, &off, &len, what);
            }
            if (offs) offs[j] = r->pos;
            r->pos += 8 + (size_t)le64(r->p + r->pos);
        }
    } else if (et == SYN_GGUF_ARRAY) {
        if (depth >= MAX_ARRAY_DEPTH)
            return syn_seterr(r->err, r->errlen, SYN_EFORMAT,
                              "gguf: %s: arrays nested more than %d deep at offset %zu", r->ctx,
                              MAX_ARRAY_DEPTH, r->pos);
        for (uint64_t j = 0; j < n; j++)
            if ((rc = rd_array(r, depth + 1, NULL))) return rc;
    } else {
        r->pos += (size_t)n * value_size[et]; /* checked above: n * size <= remaining */
    }
    return 0;
}

/* Validates the value of kv (whose type is set) at r->pos and records where it lies. */
static int rd_value(struct reader *r, struct gguf_kv *kv)
{
    int rc = 0;
    kv->value_off = r->pos;
    if (kv->type == SYN_GGUF_STRING) {
        size_t off, len;
        rc = rd_str(r, &off, &len, "the string value");
    } else if (kv->type == SYN_GGUF_ARRAY) {
        rc = rd_array(r, 1, kv);
    } else {
        char what[32];
        snprintf(what, sizeof what, "the %s value", value_type_names[kv->type]);
        if (!(rc = need(r, value_size[kv->type], what))) r->pos += value_size[kv->type];
    }
    kv->value_end = r->pos;
    return rc;
}

/* Types ggml once had and has removed (repacked layouts now made at load time): a file with them
 * is well-formed but old. */
static const char *removed_type_name(uint32_t t)
{
    switch (t) {
    case 4:
        return "q4_2";
    case 5:
        return "q4_3";
    case 31:
        return "q4_0_4_4";
    case 32:
        return "q4_0_4_8";
    case 33:
        return "q4_0_8_8";
    case 36:
        return "iq4_nl_4_4";
    case 37:
        return "iq4_nl_4_8";
    case 38:
        return "iq4_nl_8_8";
    default:
        return NULL;
    }
}

static int rd_tensor_info(struct reader *r, struct syn_gguf *g, int64_t i)
{
    struct syn_tensor *t = &g->tensors[i];
    struct tensor_info *ti = &g->tinfo[i];
    char shown[ERR_NAME_BUF];
    size_t noff, nlen;
    int rc;
    snprintf(r->ctx, sizeof r->ctx, "tensor #%" PRId64, i);
    if ((rc = rd_name(r, &noff, &nlen, "the name"))) return rc;
    const char *name = (const char *)r->p + noff;
    err_name(shown, sizeof shown, r->p + noff, nlen);
    snprintf(r->ctx, sizeof r->ctx, "tensor '%s'", shown);

    struct name_slot *sl = index_slot(&g->t_index, g->names, name, nlen);
    if (sl->idx >= 0)
        return syn_seterr(r->err, r->errlen, SYN_EFORMAT,
                          "gguf: tensor '%s' appears twice (tensors #%" PRId64 " and #%" PRId64 ")",
                          shown, sl->idx, i);
    if ((rc = names_add(g, r->p + noff, nlen, &ti->name_off))) return rc;
    ti->name_len = nlen;
    *sl = (struct name_slot){ti->name_off, nlen, i};

    uint32_t n_dims, type;
    if ((rc = rd_u32(r, &n_dims, "the dimension count"))) return rc;
    if (n_dims < 1 || n_dims > 4)
        return syn_seterr(r->err, r->errlen, SYN_EFORMAT,
                          "gguf: tensor '%s' has %" PRIu32 " dimensions (expected 1 to 4)", shown,
                          n_dims);
    t->n_dims = (int)n_dims;
    uint64_t nel = 1;
    for (int d = 0; d < 4; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if ((rc = rd_u64(r, &t->ne[d], "a dimension"))) return rc;
        if (t->ne[d] == 0)
            return syn_seterr(r->err, r->errlen, SYN_EFORMAT,
                              "gguf: tensor '%s' has size 0 in dimension %" PRIu32
                              " (expected at least 1)",
                              shown, d);
        if (t->ne[d] > (uint64_t)INT64_MAX / nel)
            return syn_seterr(r->err, r->errlen, SYN_EFORMAT,
                              "gguf: tensor '%s' has more than 2^63 elements (dimension %" PRIu32
                              " is %" PRIu64 ")",
                              shown, d, t->ne[d]);
        nel *= t->ne[d];
    }
    if ((rc = rd_u32(r, &type, "the type"))) return rc;
    int bb = syn_dtype_block_bytes((int)(type < SYN_DT_COUNT ? type : SYN_DT_COUNT));
    if (bb == 0) {
        const char *old = removed_type_name(type);
        if (old)
            return syn_seterr(r->err, r->errlen, SYN_EUNSUPPORTED,
                              "gguf: tensor '%s' has type %" PRIu32
                              " (%s), which ggml has removed; "
                              "convert the model again",
                              shown, type, old);
        return syn_seterr(r->err, r->errlen, SYN_EFORMAT,
                          "gguf: tensor '%s' has unknown type %" PRIu32, shown, type);
    }
    t->type = (int)type;
    uint64_t row = syn_dtype_row_bytes(t->type, t->ne[0]);
    if (row == 0)
        return syn_seterr(r->err, r->errlen, SYN_EFORMAT,
                          "gguf: tensor '%s' has rows of %" PRIu64 " elements, which is not a "
                          "multiple of the %s block size %d",
                          shown, t->ne[0], syn_dtype_name(t->type), syn_dtype_block_elems(t->type));
    uint64_t rows = nel / t->ne[0];
    if (rows > UINT64_MAX / row)
        return syn_seterr(r->err, r->errlen, SYN_EFORMAT,
                          "gguf: tensor '%s' would take more than 2^64 bytes", shown);
    t->nbytes = row * rows;
    if ((rc = rd_u64(r, &ti->offset, "the data offset"))) return rc;
    if (ti->offset % g->alignment)
        return syn_seterr(r->err, r->errlen, SYN_EFORMAT,
                          "gguf: tensor '%s' is at data offset %" PRIu64
                          ", which is not a multiple of the alignment %" PRIu32,
                          shown, ti->offset, g->alignment);
    return 0;
}

static int rd_kv(struct reader *r, struct syn_gguf *g, int64_t i)
{
    struct gguf_kv *kv = &g->kvs[i];
    char shown[ERR_NAME_BUF];
    size_t koff, klen;
    uint32_t type;
    int rc;
    snprintf(r->ctx, sizeof r->ctx, "key/value pair #%" PRId64, i);
    if ((rc = rd_name(r, &koff, &klen, "the key"))) return rc;
    const char *key = (const char *)r->p + koff;
    err_name(shown, sizeof shown, r->p + koff, klen);
    snprintf(r->ctx, sizeof r->ctx, "key '%s'", shown);

    struct name_slot *sl = index_slot(&g->kv_index, g->names, key, klen);
    if (sl->idx >= 0)
        return syn_seterr(r->err, r->errlen, SYN_EFORMAT,
                          "gguf: key '%s' appears twice (pairs #%" PRId64 " and #%" PRId64 ")",
                          shown, sl->idx, i);
    if ((rc = names_add(g, r->p + koff, klen, &kv->key_off))) return rc;
    kv->key_len = klen;
    *sl = (struct name_slot){kv->key_off, klen, i};

    if ((rc = rd_u32(r, &type, "the value type"))) return rc;
    if (type >= N_VALUE_TYPES)
        return syn_seterr(r->err, r->errlen, SYN_EFORMAT,
                          "gguf: key '%s' has unknown value type %" PRIu32 " (expected 0..%d)",
                          shown, type, N_VALUE_TYPES - 1);
    kv->type = (enum syn_gguf_type)type;
    return rd_value(r, kv);
}

static int cmp_u64_pair(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* Places every tensor in the data section: inside the file, and not overlapping another. */
static int place_tensors(struct syn_gguf *g, char *err, size_t errlen)
{
    int rc = 0;
    uint64_t *order = NULL; /* pairs (offset, index), sorted; malloc'ed here */
    char a[ERR_NAME_BUF], b[ERR_NAME_BUF];
    for (int64_t i = 0; i < g->n_tensors; i++) {
        struct syn_tensor *t = &g->tensors[i];
        struct tensor_info *ti = &g->tinfo[i];
        uint64_t start = (uint64_t)g->data_offset + ti->offset;
        if (ti->offset > g->size || start > g->size || t->nbytes > g->size - start) {
            err_name(a, sizeof a, (const uint8_t *)g->names + ti->name_off, ti->name_len);
            if (ti->offset > g->size || start > g->size)
                return syn_seterr(err, errlen, SYN_EFORMAT,
                                  "gguf: tensor '%s' starts at data offset %" PRIu64
                                  " (file offset %zu + %" PRIu64 ") but the file has %zu bytes",
                                  a, ti->offset, g->data_offset, ti->offset, g->size);
            return syn_seterr(err, errlen, SYN_EFORMAT,
                              "gguf: tensor '%s' ends at %" PRIu64 " but the file has %zu bytes", a,
                              start + t->nbytes, g->size);
        }
        t->data = g->base + start;
    }
    if (g->n_tensors < 2) return 0;
    order = malloc((size_t)g->n_tensors * 2 * sizeof *order);
    if (!order) return SYN_ENOMEM;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        order[2 * i] = g->tinfo[i].offset;
        order[2 * i + 1] = (uint64_t)i;
    }
    qsort(order, (size_t)g->n_tensors, 2 * sizeof *order, cmp_u64_pair);
    for (int64_t k = 1; k < g->n_tensors; k++) {
        int64_t p = (int64_t)order[2 * (k - 1) + 1], q = (int64_t)order[2 * k + 1];
        uint64_t p_end = g->tinfo[p].offset + g->tensors[p].nbytes;
        if (g->tinfo[q].offset < p_end) {
            err_name(a, sizeof a, (const uint8_t *)g->names + g->tinfo[p].name_off,
                     g->tinfo[p].name_len);
            err_name(b, sizeof b, (const uint8_t *)g->names + g->tinfo[q].name_off,
                     g->tinfo[q].name_len);
            rc = syn_seterr(err, errlen, SYN_EFORMAT,
                            "gguf: tensors '%s' (data bytes %" PRIu64 "..%" PRIu64 ") and '%s' "
                            "(data bytes %" PRIu64 "..%" PRIu64 ") overlap",
                            a, g->tinfo[p].offset, p_end, b, g->tinfo[q].offset,
                            g->tinfo[q].offset + g->tensors[q].nbytes);
            goto out;
        }
    }
out:
    free(order);
    return rc;
}

static int parse(struct syn_gguf *g, char *err, size_t errlen)
{
    struct reader r = {g->base, g->size, 0, err, errlen, "header"};
    uint64_t n_tensors, n_kv;
    int rc;

    if (g->size < 4 && memcmp(g->base, "GGUF", g->size) == 0)
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "gguf: the file has %zu bytes, too short for a GGUF header (24 bytes)",
                          g->size);
    if (g->size < 4 || memcmp(g->base, "GGUF", 4) != 0) {
        char found[32] = "";
        struct out o = {found, sizeof found, 0, 0};
        out_escaped(&o, g->base, g->size < 4 ? g->size : 4, 0);
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "gguf: not a GGUF file: expected the magic \"GGUF\" at offset 0, found "
                          "\"%s\" (%zu bytes)",
                          found, g->size);
    }
    r.pos = 4;
    if ((rc = rd_u32(&r, &g->version, "the version"))) return rc;
    if (g->version != 2 && g->version != 3) {
        uint32_t v = g->version;
        uint32_t swapped = v >> 24 | (v >> 8 & 0xff00) | (v << 8 & 0xff0000) | v << 24;
        if (swapped == 2 || swapped == 3)
            return syn_seterr(err, errlen, SYN_EUNSUPPORTED,
                              "gguf: big-endian GGUF files are not supported (version %" PRIu32
                              " read byte-swapped)",
                              swapped);
        if (v == 0)
            return syn_seterr(err, errlen, SYN_EFORMAT,
                              "gguf: version 0 is not a GGUF version (expected 2 or 3)");
        return syn_seterr(err, errlen, SYN_EUNSUPPORTED,
                          "gguf: version %" PRIu32 " is not supported (expected 2 or 3)%s", v,
                          v == 1 ? "; convert the model again with a current llama.cpp" : "");
    }
    if ((rc = rd_u64(&r, &n_tensors, "the tensor count"))) return rc;
    if ((rc = rd_u64(&r, &n_kv, "the key/value count"))) return rc;

    /* smallest key/value pair: 8-byte length, 1-byte key, 4-byte type, 1-byte value; smallest
     * tensor info: 8 + 1 name, 4 n_dims, 8 one dimension, 4 type, 8 offset */
    const uint64_t kv_min = 14, tensor_min = 33;
    if (n_kv > left(&r) / kv_min)
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "gguf: header: %" PRIu64 " key/value pairs need at least %" PRIu64
                          " bytes each but only %zu bytes follow the header",
                          n_kv, kv_min, left(&r));
    if (n_tensors > (left(&r) - n_kv * kv_min) / tensor_min)
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "gguf: header: %" PRIu64 " tensors (and %" PRIu64
                          " key/value pairs) need "
                          "at least %" PRIu64 " bytes each but only %zu bytes follow the header",
                          n_tensors, n_kv, tensor_min, left(&r));
    g->n_kv = (int64_t)n_kv;
    g->n_tensors = (int64_t)n_tensors;
    g->kvs = calloc(n_kv ? (size_t)n_kv : 1, sizeof *g->kvs);
    g->tensors = calloc(n_tensors ? (size_t)n_tensors : 1, sizeof *g->tensors);
    g->tinfo = calloc(n_tensors ? (size_t)n_tensors : 1, sizeof *g->tinfo);
    if (!g->kvs || !g->tensors || !g->tinfo) return SYN_ENOMEM;
    if ((rc = index_init(&g->kv_index, n_kv)) || (rc = index_init(&g->t_index, n_tensors)))
        return rc;

    for (int64_t i = 0; i < g->n_kv; i++) {
        /* a failed pair is still freed: its string index may already be allocated */
        if ((rc = rd_kv(&r, g, i))) return rc;
    }

    g->alignment = SYN_GGUF_DEFAULT_ALIGNMENT;
    int64_t ai = syn_gguf_find_key(g, "general.alignment");
    if (ai >= 0) {
        uint32_t a;
        rc = syn_gguf_get_u32(g, "general.alignment", &a);
        if (rc)
            return syn_seterr(err, errlen, SYN_EFORMAT,
                              "gguf: general.alignment must be an unsigned 32-bit integer, found a "
                              "%s",
                              value_type_name(g->kvs[ai].type));
        if (a == 0 || (a & (a - 1)))
            return syn_seterr(err, errlen, SYN_EFORMAT,
                              "gguf: general.alignment must be a power of two, found %" PRIu32, a);
        g->alignment = a;
    }

    for (int64_t i = 0; i < g->n_tensors; i++)
        if ((rc = rd_tensor_info(&r, g, i))) return rc;

    /* The data section starts at the next multiple of the alignment. A file without tensors
     * may end before it (vocab-only files do): keep the offset inside the file then. */
    uint64_t data = ((uint64_t)r.pos + g->alignment - 1) / g->alignment * g->alignment;
    if (data > g->size) {
        if (g->n_tensors > 0)
            return syn_seterr(err, errlen, SYN_EFORMAT,
                              "gguf: the data section starts at %" PRIu64
                              " but the file has %zu bytes",
                              data, g->size);
        data = g->size;
    }
    g->data_offset = (size_t)data;
    if ((rc = place_tensors(g, err, errlen))) return rc;
    for (int64_t i = 0; i < g->n_tensors; i++) g->tensors[i].name = g->names + g->tinfo[i].name_off;
    return 0;
}

/* ---- open, parse, free ---- */

/* Parses data; on success the handle takes fm (when given) over, on failure the caller keeps it. */
static int parse_into(const void *data, size_t size, struct syn_filemap *fm, struct syn_gguf **out,
                      char *err, size_t errlen)
{
    struct syn_gguf *g = calloc(1, sizeof *g);
    if (!g) return syn_seterr(err, errlen, SYN_ENOMEM, "gguf: out of memory");
    g->base = data;
    g->size = size;
    int rc = parse(g, err, errlen);
    if (rc) {
        if (rc == SYN_ENOMEM) syn_seterr(err, errlen, rc, "gguf: out of memory building the index");
        syn_gguf_free(g);
        return rc;
    }
    if (fm) {
        g->fm = *fm;
        memset(fm, 0, sizeof *fm);
    }
    *out = g;
    return 0;
}

int syn_gguf_parse(const void *data, size_t size, struct syn_gguf **out, char *err, size_t errlen)
{
    static const uint8_t empty[1];
    if (!out || (!data && size))
        return syn_seterr(err, errlen, SYN_EINVAL, "gguf: parse needs a buffer and an out pointer");
    *out = NULL;
    return parse_into(data ? data : empty, size, NULL, out, err, errlen);
}

int syn_gguf_open_mode(const char *path, enum syn_filemap_mode mode, struct syn_gguf **out,
                       char *err, size_t errlen)
{
    int rc = 0;
    int fd = -1;
    struct syn_filemap fm = {0};
    size_t size = 0;
    struct stat st;
    if (!out || !path) return syn_seterr(err, errlen, SYN_EINVAL, "gguf: open needs a path");
    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = syn_seterr(err, errlen, SYN_EIO, "gguf: cannot open '%s': %s", path, strerror(errno));
        goto out;
    }
    if (fstat(fd, &st) != 0) {
        rc = syn_seterr(err, errlen, SYN_EIO, "gguf: cannot stat '%s': %s", path, strerror(errno));
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = syn_seterr(err, errlen, SYN_EUNSUPPORTED, "gguf: '%s' is a directory, not a GGUF file",
                        path);
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = syn_seterr(err, errlen, SYN_EFORMAT, "gguf: '%s' is not a regular file", path);
        goto out;
    }
    size = (size_t)st.st_size;
    if (size > 0) {
        char msg[400];
        if ((rc = syn_filemap_open(fd, path, size, mode, &fm, msg, sizeof msg))) {
            syn_seterr(err, errlen, rc, "gguf: %s", msg);
            goto out;
        }
    }
    rc = size > 0 ? parse_into(fm.data, size, &fm, out, err, errlen)
                  : syn_gguf_parse(NULL, 0, out, err, errlen);
out:
    syn_filemap_release(&fm); /* empty if the handle took it over */
    if (fd >= 0) close(fd);
    return rc;
}

int syn_gguf_open(const char *path, struct syn_gguf **out, char *err, size_t errlen)
{
    return syn_gguf_open_mode(path, SYN_FILEMAP_MAPPED, out, err, errlen);
}

void syn_gguf_free(struct syn_gguf *g)
{
    if (!g) return;
    if (g->kvs)
        for (int64_t i = 0; i < g->n_kv; i++) free(g->kvs[i].str_offs);
    free(g->kvs);
    free(g->tensors);
    free(g->tinfo);
    free(g->names);
    free(g->kv_index.slots);
    free(g->t_index.slots);
    syn_filemap_release(&g->fm);
    free(g);
}

uint32_t syn_gguf_version(const struct syn_gguf *g)
{
    return g->version;
}

uint32_t syn_gguf_alignment(const struct syn_gguf *g)
{
    return g->alignment;
}

const void *syn_gguf_base(const struct syn_gguf *g)
{
    return g->base;
}

size_t syn_gguf_size(const struct syn_gguf *g)
{
    return g->size;
}

size_t syn_gguf_data_offset(const struct syn_gguf *g)
{
    return g->data_offset;
}

/* ---- key/value getters ---- */

int64_t syn_gguf_n_kv(const struct syn_gguf *g)
{
    return g->n_kv;
}

int64_t syn_gguf_find_key(const struct syn_gguf *g, const char *key)
{
    if (!key) return -1;
    struct name_slot *sl = index_slot(&g->kv_index, g->names, key, strlen(key));
    return sl->idx;
}

static const struct gguf_kv *kv_at(const struct syn_gguf *g, int64_t i)
{
    return i >= 0 && i < g->n_kv ? &g->kvs[i] : NULL;
}

const char *syn_gguf_key(const struct syn_gguf *g, int64_t i)
{
    const struct gguf_kv *kv = kv_at(g, i);
    return kv ? g->names + kv->key_off : NULL;
}

enum syn_gguf_type syn_gguf_kv_type(const struct syn_gguf *g, int64_t i)
{
    const struct gguf_kv *kv = kv_at(g, i);
    return kv ? kv->type : (enum syn_gguf_type)(-1);
}

/* Reads an integer value of any width as a sign and magnitude pair. */
static int kv_int(const struct syn_gguf *g, const char *key, int *neg, uint64_t *mag)
{
    int64_t i = syn_gguf_find_key(g, key);
    if (i < 0) return SYN_ENOTFOUND;
    const struct gguf_kv *kv = &g->kvs[i];
    const uint8_t *p = g->base + kv->value_off;
    int64_t s;
    *neg = 0;
    switch (kv->type) {
    case SYN_GGUF_UINT8:
        *mag = p[0];
        return 0;
    case SYN_GGUF_UINT16:
        *mag = le16(p);
        return 0;
    case SYN_GGUF_UINT32:
        *mag = le32(p);
        return 0;
    case SYN_GGUF_UINT64:
        *mag = le64(p);
        return 0;
    case SYN_GGUF_INT8:
        s = (int8_t)p[0];
        break;
    case SYN_GGUF_INT16:
        s = (int16_t)le16(p);
        break;
    case SYN_GGUF_INT32:
        s = (int32_t)le32(p);
        break;
    case SYN_GGUF_INT64:
        s = (int64_t)le64(p);
        break;
    default:
        return SYN_EFORMAT;
    }
    *neg = s < 0;
    *mag = s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s;
    return 0;
}

int syn_gguf_get_u32(const struct syn_gguf *g, const char *key, uint32_t *out)
{
    int neg;
    uint64_t m;
    int rc = kv_int(g, key, &neg, &m);
    if (rc) return rc;
    if (neg || m > UINT32_MAX) return SYN_EFORMAT;
    *out = (uint32_t)m;
    return 0;
}

int syn_gguf_get_u64(const struct syn_gguf *g, const char *key, uint64_t *out)
{
    int neg;
    uint64_t m;
    int rc = kv_int(g, key, &neg, &m);
    if (rc) return rc;
    if (neg) return SYN_EFORMAT;
    *out = m;
    return 0;
}

int syn_gguf_get_i64(const struct syn_gguf *g, const char *key, int64_t *out)
{
    int neg;
    uint64_t m;
    int rc = kv_int(g, key, &neg, &m);
    if (rc) return rc;
    if (!neg && m > (uint64_t)INT64_MAX) return SYN_EFORMAT;
    if (neg && m > (uint64_t)INT64_MAX + 1) return SYN_EFORMAT;
    *out = neg ? (m == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)m) : (int64_t)m;
    return 0;
}

static float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static double f64_from_bits(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

int syn_gguf_get_f32(const struct syn_gguf *g, const char *key, float *out)
{
    int64_t i = syn_gguf_find_key(g, key);
    if (i < 0) return SYN_ENOTFOUND;
    const uint8_t *p = g->base + g->kvs[i].value_off;
    if (g->kvs[i].type == SYN_GGUF_FLOAT32) {
        *out = f32_from_bits(le32(p));
        return 0;
    }
    if (g->kvs[i].type == SYN_GGUF_FLOAT64) {
        *out = (float)f64_from_bits(le64(p));
        return 0;
    }
    return SYN_EFORMAT;
}

int syn_gguf_get_bool(const struct syn_gguf *g, const char *key, int *out)
{
    int64_t i = syn_gguf_find_key(g, key);
    if (i < 0) return SYN_ENOTFOUND;
    if (g->kvs[i].type != SYN_GGUF_BOOL) return SYN_EFORMAT;
    *out = g->base[g->kvs[i].value_off] != 0;
    return 0;
}

int syn_gguf_get_str(const struct syn_gguf *g, const char *key, const char **s, size_t *len)
{
    int64_t i = syn_gguf_find_key(g, key);
    if (i < 0) return SYN_ENOTFOUND;
    if (g->kvs[i].type != SYN_GGUF_STRING) return SYN_EFORMAT;
    const uint8_t *p = g->base + g->kvs[i].value_off;
    *len = (size_t)le64(p);
    *s = (const char *)p + 8;
    return 0;
}

enum syn_gguf_type syn_gguf_arr_type(const struct syn_gguf *g, int64_t i)
{
    const struct gguf_kv *kv = kv_at(g, i);
    return kv && kv->type == SYN_GGUF_ARRAY ? kv->arr_type : (enum syn_gguf_type)(-1);
}

uint64_t syn_gguf_arr_n(const struct syn_gguf *g, int64_t i)
{
    const struct gguf_kv *kv = kv_at(g, i);
    return kv && kv->type == SYN_GGUF_ARRAY ? kv->arr_n : 0;
}

const void *syn_gguf_arr_data(const struct syn_gguf *g, int64_t i)
{
    const struct gguf_kv *kv = kv_at(g, i);
    if (!kv || kv->type != SYN_GGUF_ARRAY || kv->arr_type == SYN_GGUF_STRING ||
        kv->arr_type == SYN_GGUF_ARRAY)
        return NULL;
    return g->base + kv->arr_data;
}

int syn_gguf_arr_str(const struct syn_gguf *g, int64_t i, uint64_t j, const char **s, size_t *len)
{
    const struct gguf_kv *kv = kv_at(g, i);
    if (!kv) return SYN_ERANGE;
    if (kv->type != SYN_GGUF_ARRAY || kv->arr_type != SYN_GGUF_STRING) return SYN_EFORMAT;
    if (j >= kv->arr_n) return SYN_ERANGE;
    const uint8_t *p = g->base + kv->str_offs[j];
    *len = (size_t)le64(p);
    *s = (const char *)p + 8;
    return 0;
}

/* ---- formatting for display ---- */

/* One scalar at p of type t. */
static void format_scalar(struct out *o, enum syn_gguf_type t, const uint8_t *p)
{
    switch (t) {
    case SYN_GGUF_UINT8:
        out_printf(o, "%u", p[0]);
        break;
    case SYN_GGUF_INT8:
        out_printf(o, "%d", (int8_t)p[0]);
        break;
    case SYN_GGUF_UINT16:
        out_printf(o, "%u", le16(p));
        break;
    case SYN_GGUF_INT16:
        out_printf(o, "%d", (int16_t)le16(p));
        break;
    case SYN_GGUF_UINT32:
        out_printf(o, "%" PRIu32, le32(p));
        break;
    case SYN_GGUF_INT32:
        out_printf(o, "%" PRId32, (int32_t)le32(p));
        break;
    case SYN_GGUF_UINT64:
        out_printf(o, "%" PRIu64, le64(p));
        break;
    case SYN_GGUF_INT64:
        out_printf(o, "%" PRId64, (int64_t)le64(p));
        break;
    case SYN_GGUF_FLOAT32:
        out_printf(o, "%.7g", (double)f32_from_bits(le32(p)));
        break;
    case SYN_GGUF_FLOAT64:
        out_printf(o, "%.15g", f64_from_bits(le64(p)));
        break;
    case SYN_GGUF_BOOL:
        out_str(o, p[0] ? "true" : "false");
        break;
    default:
        break;
    }
}

/* A string at p (length field first), quoted, its content cut at max bytes (0: whole). */
static void format_string(struct out *o, const uint8_t *p, size_t max)
{
    size_t n = (size_t)le64(p);
    out_put(o, "\"", 1);
    size_t used = out_escaped(o, p + 8, n, max);
    out_put(o, "\"", 1);
    if (used < n && !o->full) out_printf(o, "...(%zu bytes)", n);
}

/* max_chars == 0 means no limit: the whole value, every array element (`model info --all`). */
size_t syn_gguf_format_value(const struct syn_gguf *g, int64_t i, char *buf, size_t cap,
                             size_t max_chars)
{
    struct out o = {buf, cap, 0, 0};
    if (buf && cap) buf[0] = '\0';
    const struct gguf_kv *kv = kv_at(g, i);
    if (!kv) return 0;
    const uint8_t *p = g->base + kv->value_off;
    if (kv->type == SYN_GGUF_STRING) {
        format_string(&o, p, max_chars);
        return o.len;
    }
    if (kv->type != SYN_GGUF_ARRAY) {
        format_scalar(&o, kv->type, p);
        return o.len;
    }
    out_printf(&o, "[%s; %" PRIu64 "]", value_type_names[kv->arr_type], kv->arr_n);
    size_t start = o.len;
    /* nested arrays have no index: walk them with a reader (already validated, cannot fail) */
    struct reader r = {g->base, g->size, kv->arr_data, NULL, 0, ""};
    for (uint64_t j = 0; j < kv->arr_n && !o.full; j++) {
        if (max_chars && o.len - start > max_chars) {
            out_str(&o, " ...");
            break;
        }
        out_str(&o, j ? ", " : " ");
        switch (kv->arr_type) {
        case SYN_GGUF_STRING:
            format_string(&o, g->base + kv->str_offs[j], max_chars);
            break;
        case SYN_GGUF_ARRAY: {
            uint32_t et = le32(g->base + r.pos);
            uint64_t n = le64(g->base + r.pos + 4);
            out_printf(&o, "[%s; %" PRIu64 "]", value_type_name(et), n);
            rd_array(&r, 2, NULL);
            break;
        }
        default:
            format_scalar(&o, kv->arr_type, g->base + kv->arr_data + j * value_size[kv->arr_type]);
            break;
        }
    }
    return o.len;
}

/* ---- tensors ---- */

int64_t syn_gguf_n_tensors(const struct syn_gguf *g)
{
    return g->n_tensors;
}

const struct syn_tensor *syn_gguf_tensor(const struct syn_gguf *g, int64_t i)
{
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const struct syn_tensor *syn_gguf_find_tensor(const struct syn_gguf *g, const char *name)
{
    if (!name) return NULL;
    struct name_slot *sl = index_slot(&g->t_index, g->names, name, strlen(name));
    return sl->idx >= 0 ? &g->tensors[sl->idx] : NULL;
}

/* ---- for the writer (gguf_impl.h) ---- */

size_t syn_gguf_value_size(enum syn_gguf_type t)
{
    return (unsigned)t < N_VALUE_TYPES ? value_size[t] : 0;
}

int syn_gguf_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n > 0 && n <= MAX_NAME_LEN && utf8_valid_prefix((const uint8_t *)s, n) == n;
}

int syn_gguf_kv_bytes(const struct syn_gguf *g, int64_t i, const char **key,
                      enum syn_gguf_type *type, const uint8_t **val, size_t *len)
{
    const struct gguf_kv *kv = g ? kv_at(g, i) : NULL;
    if (!kv) return SYN_EINVAL;
    *key = g->names + kv->key_off;
    *type = kv->type;
    *val = g->base + kv->value_off;
    *len = kv->value_end - kv->value_off;
    return 0;
}
