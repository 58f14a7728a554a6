/*
 * GGUF writer: collects metadata pairs and tensors in memory and writes a v3 file (the byte
 * format is in include/synapse/gguf.h) through a temporary name and rename(), so that a reader
 * never sees half a model. It is for `model random`, tests and seed corpora, not for converting
 * large models: every tensor is copied into memory when it is added. Keys and names are checked
 * as the reader checks them (gguf_impl.h); a file it writes always parses.
 */
#include "synapse/gguf.h"

#include "synapse/error.h"
#include "engine/gguf_impl.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct wkv {
    char *key;               /* NUL-terminated; malloc'ed, owned */
    enum syn_gguf_type type; /* the value's type */
    uint8_t *val;            /* the value's bytes as they go in the file; malloc'ed, owned */
    size_t val_len;          /* their count */
};

struct wtensor {
    char *name;      /* NUL-terminated; malloc'ed, owned */
    int type;        /* enum syn_dtype */
    int n_dims;      /* 1..4 */
    uint64_t ne[4];  /* elements per dimension, unused ones 1 */
    uint8_t *data;   /* nbytes bytes copied at add time; malloc'ed, owned */
    uint64_t nbytes; /* bytes of data */
};

struct syn_gguf_writer {
    uint32_t alignment;      /* used when no general.alignment pair was added */
    struct wkv *kvs;         /* n_kv pairs, in the order added; malloc'ed, owned */
    size_t n_kv, cap_kv;     /* used and allocated entries */
    struct wtensor *tensors; /* n_tensors tensors, in the order added; malloc'ed, owned */
    size_t n_tensors, cap_t; /* used and allocated entries */
};

struct syn_gguf_writer *syn_gguf_writer_new(void)
{
    struct syn_gguf_writer *w = calloc(1, sizeof *w);
    if (w) w->alignment = SYN_GGUF_DEFAULT_ALIGNMENT;
    return w;
}

void syn_gguf_writer_free(struct syn_gguf_writer *w)
{
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kvs[i].key);
        free(w->kvs[i].val);
    }
    for (size_t i = 0; i < w->n_tensors; i++) {
        free(w->tensors[i].name);
        free(w->tensors[i].data);
    }
    free(w->kvs);
    free(w->tensors);
    free(w);
}

static struct wkv *writer_find(struct syn_gguf_writer *w, const char *key)
{
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kvs[i].key, key)) return &w->kvs[i];
    return NULL;
}

/* Adds a pair; takes ownership of val (malloc'ed, freed here on failure). */
static int writer_add(struct syn_gguf_writer *w, const char *key, enum syn_gguf_type type,
                      uint8_t *val, size_t val_len)
{
    int rc = 0;
    char *k = NULL;
    if (!w || !syn_gguf_name_ok(key) || writer_find(w, key)) {
        rc = SYN_EINVAL;
        goto out;
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? 2 * w->cap_kv : 16;
        struct wkv *p = realloc(w->kvs, cap * sizeof *p);
        if (!p) {
            rc = SYN_ENOMEM;
            goto out;
        }
        w->kvs = p;
        w->cap_kv = cap;
    }
    if (!(k = strdup(key))) {
        rc = SYN_ENOMEM;
        goto out;
    }
    w->kvs[w->n_kv++] = (struct wkv){k, type, val, val_len};
    return 0;
out:
    free(val);
    return rc;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int k = 0; k < 4; k++) p[k] = (uint8_t)(v >> (8 * k));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int k = 0; k < 8; k++) p[k] = (uint8_t)(v >> (8 * k));
}

static int writer_add_scalar(struct syn_gguf_writer *w, const char *key, enum syn_gguf_type type,
                             uint64_t bits)
{
    uint8_t *v = malloc(8);
    if (!v) return SYN_ENOMEM;
    put_le64(v, bits); /* little-endian: the low value_size bytes are the value */
    return writer_add(w, key, type, v, syn_gguf_value_size(type));
}

int syn_gguf_writer_set_alignment(struct syn_gguf_writer *w, uint32_t alignment)
{
    if (!w || alignment == 0 || (alignment & (alignment - 1))) return SYN_EINVAL;
    w->alignment = alignment;
    struct wkv *kv = writer_find(w, "general.alignment");
    if (kv) {
        if (kv->type != SYN_GGUF_UINT32) return SYN_EINVAL;
        put_le32(kv->val, alignment);
    }
    return 0;
}

int syn_gguf_writer_add_u32(struct syn_gguf_writer *w, const char *key, uint32_t v)
{
    return writer_add_scalar(w, key, SYN_GGUF_UINT32, v);
}

int syn_gguf_writer_add_i32(struct syn_gguf_writer *w, const char *key, int32_t v)
{
    return writer_add_scalar(w, key, SYN_GGUF_INT32, (uint32_t)v);
}

int syn_gguf_writer_add_f32(struct syn_gguf_writer *w, const char *key, float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return writer_add_scalar(w, key, SYN_GGUF_FLOAT32, u);
}

int syn_gguf_writer_add_bool(struct syn_gguf_writer *w, const char *key, int v)
{
    return writer_add_scalar(w, key, SYN_GGUF_BOOL, v != 0);
}

int syn_gguf_writer_add_str(struct syn_gguf_writer *w, const char *key, const char *s)
{
    if (!s) return SYN_EINVAL;
    size_t n = strlen(s);
    uint8_t *v = malloc(8 + n);
    if (!v) return SYN_ENOMEM;
    put_le64(v, n);
    memcpy(v + 8, s, n);
    return writer_add(w, key, SYN_GGUF_STRING, v, 8 + n);
}

int syn_gguf_writer_add_arr(struct syn_gguf_writer *w, const char *key,
                            enum syn_gguf_type elem_type, const void *data, uint64_t n)
{
    size_t sz = syn_gguf_value_size(elem_type); /* 0 for strings, arrays and unknown types */
    if (!sz || (n && !data)) return SYN_EINVAL;
    if (n > (SIZE_MAX - 12) / sz) return SYN_EINVAL;
    uint8_t *v = malloc(12 + (size_t)n * sz);
    if (!v) return SYN_ENOMEM;
    put_le32(v, (uint32_t)elem_type);
    put_le64(v + 4, n);
    if (n) memcpy(v + 12, data, (size_t)n * sz);
    return writer_add(w, key, SYN_GGUF_ARRAY, v, 12 + (size_t)n * sz);
}

int syn_gguf_writer_add_arr_str(struct syn_gguf_writer *w, const char *key, const char *const *strs,
                                const size_t *lens, uint64_t n)
{
    if (n && !strs) return SYN_EINVAL;
    size_t total = 12;
    for (uint64_t j = 0; j < n; j++) {
        if (!strs[j]) return SYN_EINVAL;
        size_t len = lens ? lens[j] : strlen(strs[j]);
        if (len > SIZE_MAX - 8 - total) return SYN_EINVAL;
        total += 8 + len;
    }
    uint8_t *v = malloc(total);
    if (!v) return SYN_ENOMEM;
    put_le32(v, SYN_GGUF_STRING);
    put_le64(v + 4, n);
    size_t at = 12;
    for (uint64_t j = 0; j < n; j++) {
        size_t len = lens ? lens[j] : strlen(strs[j]);
        put_le64(v + at, len);
        memcpy(v + at + 8, strs[j], len);
        at += 8 + len;
    }
    return writer_add(w, key, SYN_GGUF_ARRAY, v, total);
}

int syn_gguf_writer_copy_kv(struct syn_gguf_writer *w, const struct syn_gguf *src, int64_t i)
{
    const char *key;
    enum syn_gguf_type type;
    const uint8_t *val;
    size_t n;
    if (syn_gguf_kv_bytes(src, i, &key, &type, &val, &n) != 0) return SYN_EINVAL;
    uint8_t *v = malloc(n ? n : 1);
    if (!v) return SYN_ENOMEM;
    memcpy(v, val, n);
    return writer_add(w, key, type, v, n);
}

int syn_gguf_writer_add_tensor(struct syn_gguf_writer *w, const char *name, int type, int n_dims,
                               const uint64_t *ne, const void *data, uint64_t nbytes)
{
    if (!w || !syn_gguf_name_ok(name) || n_dims < 1 || n_dims > 4 || !ne || !data)
        return SYN_EINVAL;
    struct wtensor t = {0};
    uint64_t nel = 1;
    for (int d = 0; d < 4; d++) t.ne[d] = d < n_dims ? ne[d] : 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] == 0 || ne[d] > (uint64_t)INT64_MAX / nel) return SYN_EINVAL;
        nel *= ne[d];
    }
    uint64_t row = syn_dtype_row_bytes(type, ne[0]);
    if (row == 0 || nel / ne[0] > UINT64_MAX / row || row * (nel / ne[0]) != nbytes ||
        nbytes > SIZE_MAX)
        return SYN_EINVAL;
    for (size_t i = 0; i < w->n_tensors; i++)
        if (!strcmp(w->tensors[i].name, name)) return SYN_EINVAL;
    if (w->n_tensors == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 16;
        struct wtensor *p = realloc(w->tensors, cap * sizeof *p);
        if (!p) return SYN_ENOMEM;
        w->tensors = p;
        w->cap_t = cap;
    }
    t.type = type;
    t.n_dims = n_dims;
    t.nbytes = nbytes;
    t.name = strdup(name);
    t.data = malloc((size_t)nbytes);
    if (!t.name || !t.data) {
        free(t.name);
        free(t.data);
        return SYN_ENOMEM;
    }
    memcpy(t.data, data, (size_t)nbytes);
    w->tensors[w->n_tensors++] = t;
    return 0;
}

/* A FILE that remembers how many bytes went in and whether any write failed. */
struct wfile {
    FILE *f;      /* the temporary file */
    uint64_t pos; /* bytes written */
    int failed;   /* a write failed */
};

static void w_bytes(struct wfile *f, const void *p, size_t n)
{
    if (n && fwrite(p, 1, n, f->f) != n) f->failed = 1;
    f->pos += n;
}

static void w_u32(struct wfile *f, uint32_t v)
{
    uint8_t b[4];
    put_le32(b, v);
    w_bytes(f, b, 4);
}

static void w_u64(struct wfile *f, uint64_t v)
{
    uint8_t b[8];
    put_le64(b, v);
    w_bytes(f, b, 8);
}

static void w_str(struct wfile *f, const char *s)
{
    size_t n = strlen(s);
    w_u64(f, n);
    w_bytes(f, s, n);
}

static void w_pad(struct wfile *f, uint32_t alignment)
{
    static const uint8_t zeros[256];
    uint64_t pad = (alignment - f->pos % alignment) % alignment;
    while (pad) {
        size_t k = pad < sizeof zeros ? (size_t)pad : sizeof zeros;
        w_bytes(f, zeros, k);
        pad -= k;
    }
}

int syn_gguf_writer_write(struct syn_gguf_writer *w, const char *path, char *err, size_t errlen)
{
    int rc = 0;
    char *tmp = NULL;
    struct wfile f = {NULL, 0, 0};
    if (!w || !path) return syn_seterr(err, errlen, SYN_EINVAL, "gguf: write needs a path");

    /* the alignment: an explicit general.alignment pair wins, else the writer's setting, which
     * goes into the file as a pair unless it is the default */
    uint32_t alignment = w->alignment;
    int add_alignment_kv = alignment != SYN_GGUF_DEFAULT_ALIGNMENT;
    const struct wkv *akv = writer_find(w, "general.alignment");
    if (akv) {
        uint32_t a = akv->type == SYN_GGUF_UINT32
                         ? (uint32_t)akv->val[0] | (uint32_t)akv->val[1] << 8 |
                               (uint32_t)akv->val[2] << 16 | (uint32_t)akv->val[3] << 24
                         : 0;
        if (a == 0 || (a & (a - 1)))
            return syn_seterr(err, errlen, SYN_EINVAL,
                              "gguf: general.alignment must be a u32 power of two");
        alignment = a;
        add_alignment_kv = 0;
    }

    size_t plen = strlen(path);
    if (!(tmp = malloc(plen + 16)))
        return syn_seterr(err, errlen, SYN_ENOMEM, "gguf: out of memory");
    snprintf(tmp, plen + 16, "%s.tmp.%d", path, (int)getpid());
    if (!(f.f = fopen(tmp, "wb"))) {
        rc = syn_seterr(err, errlen, SYN_EIO, "gguf: cannot create '%s': %s", tmp, strerror(errno));
        goto out;
    }

    w_u32(&f, SYN_GGUF_MAGIC);
    w_u32(&f, 3);
    w_u64(&f, w->n_tensors);
    w_u64(&f, w->n_kv + (size_t)add_alignment_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        w_str(&f, w->kvs[i].key);
        w_u32(&f, (uint32_t)w->kvs[i].type);
        w_bytes(&f, w->kvs[i].val, w->kvs[i].val_len);
    }
    if (add_alignment_kv) {
        w_str(&f, "general.alignment");
        w_u32(&f, SYN_GGUF_UINT32);
        w_u32(&f, alignment);
    }
    /* tensors laid out in the order added, each at a multiple of the alignment; no padding after
     * the last one */
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const struct wtensor *t = &w->tensors[i];
        w_str(&f, t->name);
        w_u32(&f, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) w_u64(&f, t->ne[d]);
        w_u32(&f, (uint32_t)t->type);
        w_u64(&f, off);
        off = (off + t->nbytes + alignment - 1) / alignment * alignment;
    }
    if (w->n_tensors) w_pad(&f, alignment);
    for (size_t i = 0; i < w->n_tensors; i++) {
        if (i) w_pad(&f, alignment);
        w_bytes(&f, w->tensors[i].data, (size_t)w->tensors[i].nbytes);
    }
    if (fflush(f.f) != 0) f.failed = 1;
    if (fclose(f.f) != 0) f.failed = 1;
    f.f = NULL;
    if (f.failed) {
        rc =
            syn_seterr(err, errlen, SYN_EIO, "gguf: writing '%s' failed: %s", tmp, strerror(errno));
        goto out;
    }
    if (rename(tmp, path) != 0) {
        rc = syn_seterr(err, errlen, SYN_EIO, "gguf: cannot rename '%s' to '%s': %s", tmp, path,
                        strerror(errno));
        goto out;
    }
out:
    if (f.f) fclose(f.f);
    if (rc && tmp) unlink(tmp);
    free(tmp);
    return rc;
}
