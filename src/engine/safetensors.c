/*
 * Hugging Face model files: the safetensors reader and writer, a model directory (single file or
 * shards listed by an index), and config.json -> struct syn_hparams. See
 * include/synapse/safetensors.h for the format and the rules this file enforces.
 *
 * The header is parsed once with jansson into a small index (names, dtype strings, metadata,
 * tensor views sorted by data offset plus a by-name order for binary search); nothing from
 * jansson is kept after parsing. This module does not convert dtypes or know the engine's names.
 */
#include "synapse/safetensors.h"
#include "engine/safetensors_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "synapse/error.h"

/* ---- dtypes ---- */

struct st_dtype {
    const char *name; /* as written in the file */
    int elem_bytes;   /* bytes per element */
    int type;         /* enum syn_dtype, or -1 when we have none */
};

/* The dtypes of the safetensors specification with a whole number of bytes per element. */
static const struct st_dtype st_dtypes[] = {
    {"F32", 4, SYN_DT_F32}, {"F16", 2, SYN_DT_F16}, {"BF16", 2, SYN_DT_BF16},
    {"F64", 8, SYN_DT_F64}, {"I64", 8, SYN_DT_I64}, {"I32", 4, SYN_DT_I32},
    {"I16", 2, SYN_DT_I16}, {"I8", 1, SYN_DT_I8},   {"U64", 8, -1},
    {"U32", 4, -1},         {"U16", 2, -1},         {"U8", 1, -1},
    {"BOOL", 1, -1},        {"F8_E4M3", 1, -1},     {"F8_E5M2", 1, -1},
    {"F8_E8M0", 1, -1},     {"C64", 8, -1},
};

static const struct st_dtype *st_dtype_by_name(const char *s)
{
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (strcmp(st_dtypes[i].name, s) == 0) return &st_dtypes[i];
    return NULL;
}

static const struct st_dtype *st_dtype_by_type(int type)
{
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (st_dtypes[i].type == type && type >= 0) return &st_dtypes[i];
    return NULL;
}

/* ---- the handle ---- */

struct st_entry {
    struct syn_tensor t; /* the view; t.name is owned by this entry (malloc'ed) */
    char dtype[24];      /* the file's dtype string, cut and made printable for messages */
    int rank;            /* dimensions in the file's shape (0 = scalar; may exceed 4) */
    uint64_t begin;      /* data_offsets[0], relative to the data section */
    uint64_t end;        /* data_offsets[1] */
};

struct syn_safetensors {
    const uint8_t *base;       /* the whole file (fm.data or the caller's buffer) */
    size_t size;               /* its bytes */
    struct syn_filemap fm;     /* the file in memory when we opened it, released by free */
    uint64_t header_len;       /* N, the JSON header's bytes */
    int64_t n;                 /* tensors */
    struct st_entry *ents;     /* n entries, by ascending data offset; malloc'ed */
    struct st_entry **by_name; /* n pointers into ents, sorted by name; malloc'ed */
    int64_t n_meta;            /* __metadata__ entries */
    char **meta_keys;          /* n_meta malloc'ed strings; the array malloc'ed too */
    char **meta_vals;          /* likewise */
};

static uint64_t rd_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* Copies s into dst (cap bytes), replacing non-printable bytes, for use in messages. */
static void printable_copy(char *dst, size_t cap, const char *s)
{
    size_t i = 0;
    for (; s[i] && i + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        dst[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    dst[i] = 0;
}

static int cmp_offset(const void *a, const void *b)
{
    const struct st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->t.name, y->t.name);
}

static int cmp_name_ptr(const void *a, const void *b)
{
    const struct st_entry *x = *(const struct st_entry *const *)a;
    const struct st_entry *y = *(const struct st_entry *const *)b;
    return strcmp(x->t.name, y->t.name);
}

void syn_safetensors_free(struct syn_safetensors *st)
{
    if (!st) return;
    for (int64_t i = 0; i < st->n; i++) free((char *)st->ents[i].t.name);
    free(st->ents);
    free(st->by_name);
    for (int64_t i = 0; i < st->n_meta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_vals[i]);
    }
    free(st->meta_keys);
    free(st->meta_vals);
    syn_filemap_release(&st->fm);
    free(st);
}

/* ---- parsing ---- */

static int parse_metadata(struct syn_safetensors *st, json_t *meta, char *err, size_t errlen)
{
    const char *key;
    json_t *val;
    size_t n = json_object_size(meta);

    if (!json_is_object(meta))
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "__metadata__ is a JSON %s, expected an object of strings",
                          json_is_array(meta) ? "array" : "scalar");
    st->meta_keys = calloc(n ? n : 1, sizeof *st->meta_keys);
    st->meta_vals = calloc(n ? n : 1, sizeof *st->meta_vals);
    if (!st->meta_keys || !st->meta_vals)
        return syn_seterr(err, errlen, SYN_ENOMEM, "out of memory for %zu metadata entries", n);
    json_object_foreach(meta, key, val)
    {
        if (!json_is_string(val)) {
            char k[64];
            printable_copy(k, sizeof k, key);
            return syn_seterr(err, errlen, SYN_EFORMAT,
                              "__metadata__ value of '%s' is not a string (expected a string map)",
                              k);
        }
        st->meta_keys[st->n_meta] = strdup(key);
        st->meta_vals[st->n_meta] = strdup(json_string_value(val));
        st->n_meta++; /* counted first so that free() releases a half-made pair */
        if (!st->meta_keys[st->n_meta - 1] || !st->meta_vals[st->n_meta - 1])
            return syn_seterr(err, errlen, SYN_ENOMEM, "out of memory for metadata");
    }
    return 0;
}

/* Reads a JSON value that must be a non-negative integer. */
static int get_u64(json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* Fills e from the JSON description of tensor name; data_size bounds the offsets. */
static int parse_entry(struct st_entry *e, const char *name, json_t *desc, uint64_t data_size,
                       char *err, size_t errlen)
{
    char nm[96];
    json_t *jdt, *jshape, *joff;
    const struct st_dtype *dt;
    uint64_t prod = 1, outer = 1, need;
    size_t rank;

    printable_copy(nm, sizeof nm, name);
    if (!json_is_object(desc))
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "tensor '%s' is described by a JSON %s, expected an object with "
                          "dtype, shape and data_offsets",
                          nm, json_is_array(desc) ? "array" : "scalar");
    jdt = json_object_get(desc, "dtype");
    jshape = json_object_get(desc, "shape");
    joff = json_object_get(desc, "data_offsets");
    if (!json_is_string(jdt))
        return syn_seterr(err, errlen, SYN_EFORMAT, "tensor '%s': %s, expected a dtype string", nm,
                          jdt ? "dtype is not a string" : "no dtype");
    if (!json_is_array(jshape))
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "tensor '%s': %s, expected shape as an array of integers", nm,
                          jshape ? "shape is not an array" : "no shape");
    if (!json_is_array(joff) || json_array_size(joff) != 2)
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "tensor '%s': data_offsets %s, expected [begin, end]", nm,
                          !joff                  ? "missing"
                          : !json_is_array(joff) ? "is not an array"
                                                 : "does not have 2 entries");

    printable_copy(e->dtype, sizeof e->dtype, json_string_value(jdt));
    dt = st_dtype_by_name(json_string_value(jdt));

    rank = json_array_size(jshape);
    for (size_t i = 0; i < rank; i++) {
        uint64_t d;
        if (get_u64(json_array_get(jshape, i), &d) != 0)
            return syn_seterr(err, errlen, SYN_EFORMAT,
                              "tensor '%s': shape[%zu] is not a non-negative integer", nm, i);
        if (__builtin_mul_overflow(prod, d, &prod))
            return syn_seterr(err, errlen, SYN_EFORMAT,
                              "tensor '%s': the shape's element count overflows 64 bits", nm);
    }
    if (get_u64(json_array_get(joff, 0), &e->begin) != 0 ||
        get_u64(json_array_get(joff, 1), &e->end) != 0)
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "tensor '%s': data_offsets are not non-negative integers", nm);
    if (e->begin > e->end)
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "tensor '%s': data_offsets [%llu, %llu] end before they begin", nm,
                          (unsigned long long)e->begin, (unsigned long long)e->end);
    if (e->end > data_size)
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "tensor '%s' ends at data offset %llu but the data section has %llu "
                          "bytes (truncated file?)",
                          nm, (unsigned long long)e->end, (unsigned long long)data_size);
    if (dt) {
        if (__builtin_mul_overflow(prod, (uint64_t)dt->elem_bytes, &need))
            return syn_seterr(err, errlen, SYN_EFORMAT,
                              "tensor '%s': the shape's byte size overflows 64 bits", nm);
        if (e->end - e->begin != need)
            return syn_seterr(err, errlen, SYN_EFORMAT,
                              "tensor '%s': data_offsets [%llu, %llu] span %llu bytes but shape "
                              "and dtype %s need %llu",
                              nm, (unsigned long long)e->begin, (unsigned long long)e->end,
                              (unsigned long long)(e->end - e->begin), dt->name,
                              (unsigned long long)need);
    }

    e->t.name = strdup(name);
    if (!e->t.name) return syn_seterr(err, errlen, SYN_ENOMEM, "out of memory for names");
    e->t.type = dt ? dt->type : -1;
    e->rank = (int)(rank > INT_MAX ? INT_MAX : rank);
    e->t.n_dims = rank == 0 ? 1 : rank > 4 ? 4 : (int)rank;
    for (int k = 0; k < 4; k++) e->t.ne[k] = 1;
    /* ne is the reversed shape; dimensions beyond the fourth fold into ne[3] (the view is then
     * refused by syn_safetensors_get, but the element count stays right) */
    for (size_t k = 0; k < rank; k++) {
        uint64_t d = (uint64_t)json_integer_value(json_array_get(jshape, rank - 1 - k));
        if (k < 3)
            e->t.ne[k] = d;
        else
            outer *= d; /* cannot overflow: prod did not */
    }
    if (rank > 3) e->t.ne[3] = outer;
    e->t.nbytes = e->end - e->begin;
    return 0;
}

/* Parses data; on success the handle takes fm (when given) over, on failure the caller keeps it. */
static int st_parse(const void *data, size_t size, struct syn_filemap *fm,
                    struct syn_safetensors **out, char *err, size_t errlen)
{
    struct syn_safetensors *st = NULL;
    json_t *root = NULL;
    json_error_t jerr;
    const char *key;
    json_t *val;
    uint64_t n_hdr, data_size, max_end = 0;
    const char *max_name = NULL;
    size_t n_obj;
    int rc = 0;

    *out = NULL;
    st = calloc(1, sizeof *st);
    if (!st) {
        rc = syn_seterr(err, errlen, SYN_ENOMEM, "out of memory");
        goto out;
    }
    st->base = data;
    st->size = size;
    if (size < 8) {
        rc = syn_seterr(err, errlen, SYN_EFORMAT,
                        "file has %zu bytes, expected at least 8 (the header length)", size);
        goto out;
    }
    n_hdr = rd_le64(st->base);
    if (n_hdr > SYN_SAFETENSORS_MAX_HEADER) {
        rc = syn_seterr(err, errlen, SYN_EFORMAT,
                        "header length is %llu bytes, expected at most %u (not a safetensors "
                        "file?)",
                        (unsigned long long)n_hdr, SYN_SAFETENSORS_MAX_HEADER);
        goto out;
    }
    if (n_hdr > size - 8) {
        rc = syn_seterr(err, errlen, SYN_EFORMAT,
                        "header of %llu bytes ends at byte %llu but the file has %zu bytes "
                        "(truncated file?)",
                        (unsigned long long)n_hdr, (unsigned long long)(8 + n_hdr), size);
        goto out;
    }
    st->header_len = n_hdr;
    data_size = size - 8 - n_hdr;

    root = json_loadb((const char *)st->base + 8, (size_t)n_hdr, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        rc = syn_seterr(err, errlen, SYN_EFORMAT,
                        "header is not valid JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                        jerr.column);
        goto out;
    }
    if (!json_is_object(root)) {
        rc = syn_seterr(err, errlen, SYN_EFORMAT, "header is a JSON array, expected an object");
        goto out;
    }

    n_obj = json_object_size(root);
    st->ents = calloc(n_obj ? n_obj : 1, sizeof *st->ents);
    st->by_name = calloc(n_obj ? n_obj : 1, sizeof *st->by_name);
    if (!st->ents || !st->by_name) {
        rc = syn_seterr(err, errlen, SYN_ENOMEM, "out of memory for %zu tensors", n_obj);
        goto out;
    }
    json_object_foreach(root, key, val)
    {
        if (strcmp(key, "__metadata__") == 0) {
            rc = parse_metadata(st, val, err, errlen);
            if (rc) goto out;
            continue;
        }
        rc = parse_entry(&st->ents[st->n], key, val, data_size, err, errlen);
        if (rc) {
            /* the entry's name may be allocated: count it so that free() releases it */
            if (st->ents[st->n].t.name) st->n++;
            goto out;
        }
        st->n++;
    }

    qsort(st->ents, (size_t)st->n, sizeof *st->ents, cmp_offset);
    for (int64_t i = 0; i < st->n; i++) {
        const struct st_entry *e = &st->ents[i];
        if (e->begin == e->end) continue; /* empty tensors occupy no bytes */
        if (e->begin < max_end) {
            char a[96], b[96];
            printable_copy(a, sizeof a, e->t.name);
            printable_copy(b, sizeof b, max_name);
            rc = syn_seterr(err, errlen, SYN_EFORMAT,
                            "tensor '%s' [%llu, %llu) overlaps tensor '%s' which ends at %llu", a,
                            (unsigned long long)e->begin, (unsigned long long)e->end, b,
                            (unsigned long long)max_end);
            goto out;
        }
        max_end = e->end;
        max_name = e->t.name;
    }
    for (int64_t i = 0; i < st->n; i++) {
        st->ents[i].t.data = st->base + 8 + n_hdr + st->ents[i].begin;
        st->by_name[i] = &st->ents[i];
    }
    qsort(st->by_name, (size_t)st->n, sizeof *st->by_name, cmp_name_ptr);
    if (fm) {
        st->fm = *fm;
        memset(fm, 0, sizeof *fm);
    }
    *out = st;
    st = NULL;
out:
    json_decref(root);
    syn_safetensors_free(st); /* on failure; fm stays the caller's */
    return rc;
}

int syn_safetensors_parse(const void *data, size_t size, struct syn_safetensors **out, char *err,
                          size_t errlen)
{
    char msg[512];
    int rc;

    if (!out || (!data && size))
        return syn_seterr(err, errlen, SYN_EINVAL, "safetensors: bad arguments");
    rc = st_parse(data, size, NULL, out, msg, sizeof msg);
    if (rc) syn_seterr(err, errlen, rc, "safetensors: %s", msg);
    return rc;
}

static int st_open(const char *path, enum syn_filemap_mode mode, struct syn_safetensors **out,
                   char *err, size_t errlen)
{
    char msg[512];
    struct stat sb;
    struct syn_filemap fm = {0};
    size_t size = 0;
    int fd = -1, rc = 0;

    if (!path || !out) return syn_seterr(err, errlen, SYN_EINVAL, "safetensors: bad arguments");
    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = syn_seterr(err, errlen, errno == ENOENT ? SYN_ENOTFOUND : SYN_EIO,
                        "safetensors: cannot open %s: %s", path, strerror(errno));
        goto out;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        rc = syn_seterr(err, errlen, SYN_EIO, "safetensors: %s is not a regular file", path);
        goto out;
    }
    size = (size_t)sb.st_size;
    if (size < 8) {
        rc = syn_seterr(err, errlen, SYN_EFORMAT,
                        "safetensors: %s: file has %zu bytes, expected at least 8 (the header "
                        "length)",
                        path, size);
        goto out;
    }
    if ((rc = syn_filemap_open(fd, path, size, mode, &fm, msg, sizeof msg))) {
        syn_seterr(err, errlen, rc, "safetensors: %s", msg);
        goto out;
    }
    rc = st_parse(fm.data, size, &fm, out, msg, sizeof msg);
    if (rc) syn_seterr(err, errlen, rc, "safetensors: %s: %s", path, msg);
out:
    syn_filemap_release(&fm); /* empty if the handle took it over */
    if (fd >= 0) close(fd);
    return rc;
}

int syn_safetensors_open(const char *path, struct syn_safetensors **out, char *err, size_t errlen)
{
    return st_open(path, SYN_FILEMAP_MAPPED, out, err, errlen);
}

/* ---- accessors ---- */

int64_t syn_safetensors_n_tensors(const struct syn_safetensors *st)
{
    return st ? st->n : 0;
}

const struct syn_tensor *syn_safetensors_tensor(const struct syn_safetensors *st, int64_t i)
{
    if (!st || i < 0 || i >= st->n) return NULL;
    return &st->ents[i].t;
}

const char *syn_safetensors_dtype_str(const struct syn_safetensors *st, int64_t i)
{
    if (!st || i < 0 || i >= st->n) return NULL;
    return st->ents[i].dtype;
}

static int64_t st_find_idx(const struct syn_safetensors *st, const char *name)
{
    int64_t lo = 0, hi = st ? st->n : 0;
    if (!name) return -1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->by_name[mid]->t.name, name);
        if (c == 0) return st->by_name[mid] - st->ents;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

const struct syn_tensor *syn_safetensors_find(const struct syn_safetensors *st, const char *name)
{
    int64_t i = st_find_idx(st, name);
    return i < 0 ? NULL : &st->ents[i].t;
}

/* The SYN_EUNSUPPORTED check shared by the file and the directory lookups. */
static int st_check_computable(const struct st_entry *e, char *err, size_t errlen)
{
    char nm[128];
    printable_copy(nm, sizeof nm, e->t.name);
    if (e->t.type != SYN_DT_F32 && e->t.type != SYN_DT_F16 && e->t.type != SYN_DT_BF16)
        return syn_seterr(err, errlen, SYN_EUNSUPPORTED,
                          "safetensors: tensor '%s' has dtype %s, which synapse cannot compute "
                          "with (expected F32, F16 or BF16)",
                          nm, e->dtype);
    if (e->rank > 4)
        return syn_seterr(err, errlen, SYN_EUNSUPPORTED,
                          "safetensors: tensor '%s' has %d dimensions, expected at most 4", nm,
                          e->rank);
    return 0;
}

int syn_safetensors_get(const struct syn_safetensors *st, const char *name,
                        const struct syn_tensor **out, char *err, size_t errlen)
{
    int64_t i = st_find_idx(st, name);
    int rc;

    if (out) *out = NULL;
    if (i < 0)
        return syn_seterr(err, errlen, SYN_ENOTFOUND, "safetensors: no tensor named '%s'",
                          name ? name : "(null)");
    rc = st_check_computable(&st->ents[i], err, errlen);
    if (rc == 0 && out) *out = &st->ents[i].t;
    return rc;
}

int64_t syn_safetensors_n_meta(const struct syn_safetensors *st)
{
    return st ? st->n_meta : 0;
}

const char *syn_safetensors_meta_key(const struct syn_safetensors *st, int64_t i)
{
    return st && i >= 0 && i < st->n_meta ? st->meta_keys[i] : NULL;
}

const char *syn_safetensors_meta_val(const struct syn_safetensors *st, int64_t i)
{
    return st && i >= 0 && i < st->n_meta ? st->meta_vals[i] : NULL;
}

const char *syn_safetensors_meta_get(const struct syn_safetensors *st, const char *key)
{
    for (int64_t i = 0; key && st && i < st->n_meta; i++)
        if (strcmp(st->meta_keys[i], key) == 0) return st->meta_vals[i];
    return NULL;
}

/* ---- writer ---- */

int syn_safetensors_write(const char *path, const struct syn_tensor *tensors, int n,
                          const char *const *meta_keys, const char *const *meta_vals, int n_meta,
                          char *err, size_t errlen)
{
    json_t *root = NULL, *meta = NULL;
    char *hdr = NULL;
    FILE *f = NULL;
    uint64_t off = 0;
    size_t hlen, padded;
    uint8_t lenbuf[8];
    int rc = 0;

    if (!path || n < 0 || (n && !tensors) || n_meta < 0 || (n_meta && (!meta_keys || !meta_vals)))
        return syn_seterr(err, errlen, SYN_EINVAL, "safetensors: write: bad arguments");
    root = json_object();
    if (!root) goto oom;
    if (n_meta) {
        meta = json_object();
        if (!meta || json_object_set_new(root, "__metadata__", meta) != 0) goto oom;
        for (int i = 0; i < n_meta; i++)
            if (!meta_keys[i] || !meta_vals[i] ||
                json_object_set_new(meta, meta_keys[i], json_string(meta_vals[i])) != 0) {
                rc = syn_seterr(err, errlen, SYN_EINVAL,
                                "safetensors: write: metadata entry %d is not a pair of UTF-8 "
                                "strings",
                                i);
                goto out;
            }
    }
    for (int i = 0; i < n; i++) {
        const struct syn_tensor *t = &tensors[i];
        const struct st_dtype *dt = st_dtype_by_type(t->type);
        json_t *desc, *shape;
        uint64_t count = 1, need;

        if (!t->name || !dt || t->n_dims < 1 || t->n_dims > 4 ||
            strcmp(t->name, "__metadata__") == 0) {
            rc = syn_seterr(err, errlen, SYN_EINVAL,
                            "safetensors: write: tensor %d ('%s') has type %d and %d dims, "
                            "expected a name, 1..4 dims and F32/F16/BF16/F64/I8..I64",
                            i, t->name ? t->name : "(null)", t->type, t->n_dims);
            goto out;
        }
        if (json_object_get(root, t->name)) {
            rc = syn_seterr(err, errlen, SYN_EINVAL,
                            "safetensors: write: tensor '%s' appears twice", t->name);
            goto out;
        }
        shape = json_array();
        if (!shape) goto oom;
        for (int k = t->n_dims - 1; k >= 0; k--) {
            if (t->ne[k] > (uint64_t)INT64_MAX || __builtin_mul_overflow(count, t->ne[k], &count) ||
                json_array_append_new(shape, json_integer((json_int_t)t->ne[k])) != 0) {
                json_decref(shape);
                rc = syn_seterr(err, errlen, SYN_EINVAL,
                                "safetensors: write: tensor '%s' has an impossible shape", t->name);
                goto out;
            }
        }
        if (__builtin_mul_overflow(count, (uint64_t)dt->elem_bytes, &need) || need != t->nbytes ||
            (need && !t->data)) {
            json_decref(shape);
            rc = syn_seterr(err, errlen, SYN_EINVAL,
                            "safetensors: write: tensor '%s' has %llu bytes of data, expected %llu "
                            "(%llu elements of %s)",
                            t->name, (unsigned long long)t->nbytes, (unsigned long long)need,
                            (unsigned long long)count, dt->name);
            goto out;
        }
        desc = json_pack("{s:s, s:o, s:[I, I]}", "dtype", dt->name, "shape", shape, "data_offsets",
                         (json_int_t)off, (json_int_t)(off + need));
        if (!desc || json_object_set_new(root, t->name, desc) != 0) goto oom;
        off += need;
    }
    hdr = json_dumps(root, JSON_COMPACT);
    if (!hdr) goto oom;
    hlen = strlen(hdr);
    padded = (8 + hlen + 7) / 8 * 8 - 8; /* data section 8-byte aligned; pad with spaces */
    for (int i = 0; i < 8; i++) lenbuf[i] = (uint8_t)((uint64_t)padded >> (8 * i));

    f = fopen(path, "wb");
    if (!f) {
        rc = syn_seterr(err, errlen, SYN_EIO, "safetensors: cannot create %s: %s", path,
                        strerror(errno));
        goto out;
    }
    if (fwrite(lenbuf, 1, 8, f) != 8 || fwrite(hdr, 1, hlen, f) != hlen) goto ioerr;
    for (size_t i = hlen; i < padded; i++)
        if (fputc(' ', f) == EOF) goto ioerr;
    for (int i = 0; i < n; i++)
        if (tensors[i].nbytes &&
            fwrite(tensors[i].data, 1, (size_t)tensors[i].nbytes, f) != tensors[i].nbytes)
            goto ioerr;
    if (fclose(f) != 0) {
        f = NULL;
        goto ioerr;
    }
    f = NULL;
    goto out;
ioerr:
    rc = syn_seterr(err, errlen, SYN_EIO, "safetensors: writing %s failed: %s", path,
                    strerror(errno));
    goto out;
oom:
    rc = syn_seterr(err, errlen, SYN_ENOMEM, "safetensors: write: out of memory");
out:
    if (f) fclose(f);
    free(hdr);
    json_decref(root);
    return rc;
}

/* ---- a model directory ---- */

struct syn_hf_dir {
    int n_shards;                    /* files opened (>= 1) */
    struct syn_safetensors **shards; /* n_shards handles, owned; array malloc'ed */
    char **names;                    /* n_shards file names (no directory), malloc'ed */
    enum syn_filemap_mode mode;      /* how the shards are brought into memory */
};

void syn_hf_dir_free(struct syn_hf_dir *d)
{
    if (!d) return;
    for (int i = 0; i < d->n_shards; i++) {
        syn_safetensors_free(d->shards[i]);
        free(d->names[i]);
    }
    free(d->shards);
    free(d->names);
    free(d);
}

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Opens dir/name as shard number d->n_shards. */
static int dir_add_shard(struct syn_hf_dir *d, const char *dir, const char *name, char *err,
                         size_t errlen)
{
    char path[4096];
    int rc;

    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path)
        return syn_seterr(err, errlen, SYN_EINVAL, "hf: path %s/%s is too long", dir, name);
    d->names[d->n_shards] = strdup(name);
    if (!d->names[d->n_shards]) return syn_seterr(err, errlen, SYN_ENOMEM, "hf: out of memory");
    rc = st_open(path, d->mode, &d->shards[d->n_shards], err, errlen);
    d->n_shards++; /* counted even on failure so that free() releases the name */
    return rc;
}

static int dir_open_index(struct syn_hf_dir *d, const char *dir, const char *index_path, char *err,
                          size_t errlen)
{
    json_t *root = NULL, *wmap;
    json_error_t jerr;
    const char *key;
    json_t *val;
    size_t n_map;
    int rc = 0;

    root = json_load_file(index_path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        rc = syn_seterr(err, errlen, SYN_EFORMAT, "hf: %s is not valid JSON: %s (line %d)",
                        index_path, jerr.text, jerr.line);
        goto out;
    }
    wmap = json_object_get(root, "weight_map");
    if (!json_is_object(wmap) || json_object_size(wmap) == 0) {
        rc = syn_seterr(err, errlen, SYN_EFORMAT,
                        "hf: %s has no \"weight_map\" (expected an object: tensor name -> shard "
                        "file)",
                        index_path);
        goto out;
    }
    n_map = json_object_size(wmap);
    d->shards = calloc(n_map, sizeof *d->shards);
    d->names = calloc(n_map, sizeof *d->names);
    if (!d->shards || !d->names) {
        rc = syn_seterr(err, errlen, SYN_ENOMEM, "hf: out of memory");
        goto out;
    }
    /* open each shard once, in order of first mention */
    json_object_foreach(wmap, key, val)
    {
        const char *file = json_string_value(val);
        int seen = 0;
        if (!file || !*file || strchr(file, '/') || strcmp(file, ".") == 0 ||
            strcmp(file, "..") == 0) {
            rc = syn_seterr(err, errlen, SYN_EFORMAT,
                            "hf: %s maps '%s' to %s%s%s, expected a file name inside the model "
                            "directory",
                            index_path, key, file ? "'" : "", file ? file : "a non-string",
                            file ? "'" : "");
            goto out;
        }
        for (int i = 0; i < d->n_shards && !seen; i++) seen = strcmp(d->names[i], file) == 0;
        if (seen) continue;
        rc = dir_add_shard(d, dir, file, err, errlen);
        if (rc) goto out;
    }
    /* every tensor the index names is where it says */
    json_object_foreach(wmap, key, val)
    {
        const char *file = json_string_value(val);
        for (int i = 0; i < d->n_shards; i++) {
            if (strcmp(d->names[i], file) != 0) continue;
            if (!syn_safetensors_find(d->shards[i], key)) {
                rc = syn_seterr(err, errlen, SYN_EFORMAT,
                                "hf: the index says tensor '%s' is in %s, but that shard has no "
                                "such tensor",
                                key, file);
                goto out;
            }
        }
    }
out:
    json_decref(root);
    return rc;
}

int syn_hf_dir_open_mode(const char *dir, enum syn_filemap_mode mode, struct syn_hf_dir **out,
                         char *err, size_t errlen)
{
    struct syn_hf_dir *d = NULL;
    char path[4096];
    int rc = 0;

    if (!dir || !out) return syn_seterr(err, errlen, SYN_EINVAL, "hf: bad arguments");
    *out = NULL;
    d = calloc(1, sizeof *d);
    if (!d) return syn_seterr(err, errlen, SYN_ENOMEM, "hf: out of memory");
    d->mode = mode;
    if ((size_t)snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir) >=
        sizeof path) {
        rc = syn_seterr(err, errlen, SYN_EINVAL, "hf: directory path is too long");
        goto out;
    }
    if (file_exists(path)) {
        rc = dir_open_index(d, dir, path, err, errlen);
        if (rc) goto out;
    } else {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        if (!file_exists(path)) {
            rc = syn_seterr(err, errlen, SYN_ENOTFOUND,
                            "hf: %s has neither model.safetensors nor "
                            "model.safetensors.index.json",
                            dir);
            goto out;
        }
        d->shards = calloc(1, sizeof *d->shards);
        d->names = calloc(1, sizeof *d->names);
        if (!d->shards || !d->names) {
            rc = syn_seterr(err, errlen, SYN_ENOMEM, "hf: out of memory");
            goto out;
        }
        rc = dir_add_shard(d, dir, "model.safetensors", err, errlen);
        if (rc) goto out;
    }
    /* no tensor may live in two shards: lookups would depend on the shard order */
    for (int i = 1; i < d->n_shards; i++)
        for (int64_t j = 0; j < syn_safetensors_n_tensors(d->shards[i]); j++) {
            const char *name = syn_safetensors_tensor(d->shards[i], j)->name;
            for (int k = 0; k < i; k++)
                if (syn_safetensors_find(d->shards[k], name)) {
                    rc = syn_seterr(err, errlen, SYN_EFORMAT,
                                    "hf: tensor '%s' is in both %s and %s, expected one shard",
                                    name, d->names[k], d->names[i]);
                    goto out;
                }
        }
    *out = d;
    d = NULL;
out:
    syn_hf_dir_free(d);
    return rc;
}

int syn_hf_dir_open(const char *dir, struct syn_hf_dir **out, char *err, size_t errlen)
{
    return syn_hf_dir_open_mode(dir, SYN_FILEMAP_MAPPED, out, err, errlen);
}

int syn_hf_dir_n_shards(const struct syn_hf_dir *d)
{
    return d ? d->n_shards : 0;
}

const struct syn_safetensors *syn_hf_dir_shard(const struct syn_hf_dir *d, int i)
{
    return d && i >= 0 && i < d->n_shards ? d->shards[i] : NULL;
}

const char *syn_hf_dir_shard_name(const struct syn_hf_dir *d, int i)
{
    return d && i >= 0 && i < d->n_shards ? d->names[i] : NULL;
}

const struct syn_tensor *syn_hf_dir_find_tensor(const struct syn_hf_dir *d, const char *name)
{
    for (int i = 0; d && i < d->n_shards; i++) {
        const struct syn_tensor *t = syn_safetensors_find(d->shards[i], name);
        if (t) return t;
    }
    return NULL;
}

int syn_hf_dir_get(const struct syn_hf_dir *d, const char *name, const struct syn_tensor **out,
                   char *err, size_t errlen)
{
    if (out) *out = NULL;
    for (int i = 0; d && i < d->n_shards; i++) {
        int64_t j = st_find_idx(d->shards[i], name);
        if (j < 0) continue;
        int rc = st_check_computable(&d->shards[i]->ents[j], err, errlen);
        if (rc == 0 && out) *out = &d->shards[i]->ents[j].t;
        return rc;
    }
    return syn_seterr(err, errlen, SYN_ENOTFOUND, "hf: no tensor named '%s' in any of %d shard(s)",
                      name ? name : "(null)", d ? d->n_shards : 0);
}

/* ---- config.json ---- */

/* An integer field: absent or null gives def (def < 0: required); must be in [lo, INT_MAX]. */
static int cfg_int(json_t *root, const char *key, int def, int lo, int *out, char *err,
                   size_t errlen)
{
    json_t *v = json_object_get(root, key);
    double x;

    if (!v || json_is_null(v)) {
        if (def < 0)
            return syn_seterr(err, errlen, SYN_EFORMAT,
                              "config.json: missing \"%s\" (expected an integer >= %d)", key, lo);
        *out = def;
        return 0;
    }
    if (!json_is_number(v))
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "config.json: \"%s\" is not a number (expected an integer >= %d)", key,
                          lo);
    x = json_number_value(v);
    if (!(x >= lo && x <= INT_MAX) || x != (double)(int)x)
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "config.json: \"%s\" is %g, expected an integer in [%d, %d]", key, x, lo,
                          INT_MAX);
    *out = (int)x;
    return 0;
}

/* A positive number field: absent or null gives def (def <= 0: required). */
static int cfg_num(json_t *obj, const char *where, const char *key, double def, float *out,
                   char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, key);
    double x;

    if (!v || json_is_null(v)) {
        if (def <= 0)
            return syn_seterr(err, errlen, SYN_EFORMAT,
                              "config.json: %s is missing \"%s\" (expected a positive number)",
                              where, key);
        *out = (float)def;
        return 0;
    }
    x = json_is_number(v) ? json_number_value(v) : -1;
    if (!(x > 0) || x > 1e30)
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "config.json: %s \"%s\" is %s, expected a positive number", where, key,
                          json_is_number(v) ? "not positive" : "not a number");
    *out = (float)x;
    return 0;
}

/* Fields that, when true, mean weights the engine has no place for. */
static int cfg_false(json_t *root, const char *key, const char *why, char *err, size_t errlen)
{
    if (json_is_true(json_object_get(root, key)))
        return syn_seterr(err, errlen, SYN_EUNSUPPORTED, "config.json: \"%s\" is true: %s", key,
                          why);
    return 0;
}

static int cfg_arch(json_t *root, struct syn_hparams *hp, char *err, size_t errlen)
{
    static const struct {
        const char *hf;   /* architectures[0] */
        const char *type; /* model_type */
        const char *arch; /* ours */
        int qkv_bias;     /* q/k/v projections carry biases */
    } archs[] = {
        {"LlamaForCausalLM", "llama", "llama", 0},
        {"MistralForCausalLM", "mistral", "llama", 0},
        {"Qwen2ForCausalLM", "qwen2", "qwen2", 1},
    };
    json_t *a = json_object_get(root, "architectures");
    const char *name = NULL;
    int by_type = 0;

    if (json_is_array(a) && json_array_size(a) > 0) {
        name = json_string_value(json_array_get(a, 0));
        if (!name)
            return syn_seterr(err, errlen, SYN_EFORMAT,
                              "config.json: architectures[0] is not a string");
    } else {
        name = json_string_value(json_object_get(root, "model_type"));
        by_type = 1;
        if (!name)
            return syn_seterr(err, errlen, SYN_EFORMAT,
                              "config.json: neither \"architectures\" nor \"model_type\" says "
                              "what the model is");
    }
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++) {
        if (strcmp(name, by_type ? archs[i].type : archs[i].hf) != 0) continue;
        snprintf(hp->arch, sizeof hp->arch, "%s", archs[i].arch);
        hp->qkv_bias = archs[i].qkv_bias;
        return 0;
    }
    return syn_seterr(err, errlen, SYN_EUNSUPPORTED,
                      "config.json: %s '%.64s' is not supported (expected %s)",
                      by_type ? "model_type" : "architecture", name,
                      by_type ? "llama, mistral or qwen2"
                              : "LlamaForCausalLM, MistralForCausalLM or Qwen2ForCausalLM");
}

static int cfg_rope_scaling(json_t *root, struct syn_hparams *hp, char *err, size_t errlen)
{
    json_t *rs = json_object_get(root, "rope_scaling");
    const char *type;
    int rc;

    hp->rope_scaling = SYN_ROPE_SCALING_NONE;
    if (!rs || json_is_null(rs)) return 0;
    if (!json_is_object(rs))
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "config.json: \"rope_scaling\" is not an object or null");
    type = json_string_value(json_object_get(rs, "rope_type"));
    if (!type) type = json_string_value(json_object_get(rs, "type"));
    if (!type)
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "config.json: rope_scaling has no \"rope_type\" or \"type\" string");
    if (strcmp(type, "default") == 0) return 0;
    if (strcmp(type, "linear") == 0) {
        hp->rope_scaling = SYN_ROPE_SCALING_LINEAR;
        return cfg_num(rs, "rope_scaling", "factor", 0, &hp->rope_factor, err, errlen);
    }
    if (strcmp(type, "llama3") == 0) {
        hp->rope_scaling = SYN_ROPE_SCALING_LLAMA3;
        if ((rc = cfg_num(rs, "rope_scaling", "factor", 0, &hp->rope_factor, err, errlen)) ||
            (rc = cfg_num(rs, "rope_scaling", "low_freq_factor", 0, &hp->rope_low_freq_factor, err,
                          errlen)) ||
            (rc = cfg_num(rs, "rope_scaling", "high_freq_factor", 0, &hp->rope_high_freq_factor,
                          err, errlen)) ||
            (rc = cfg_int(rs, "original_max_position_embeddings", -1, 1, &hp->rope_orig_ctx, err,
                          errlen)))
            return rc;
        if (!(hp->rope_high_freq_factor > hp->rope_low_freq_factor))
            return syn_seterr(err, errlen, SYN_EFORMAT,
                              "config.json: rope_scaling high_freq_factor %g must exceed "
                              "low_freq_factor %g",
                              (double)hp->rope_high_freq_factor, (double)hp->rope_low_freq_factor);
        return 0;
    }
    return syn_seterr(err, errlen, SYN_EUNSUPPORTED,
                      "config.json: rope_scaling type '%.32s' is not supported (expected linear "
                      "or llama3)",
                      type);
}

int syn_hf_config_parse(const char *json, size_t len, const char *name, struct syn_hparams *hp,
                        char *err, size_t errlen)
{
    json_t *root = NULL, *sw;
    json_error_t jerr;
    const char *act;
    int rc = 0, head_dim_def;

    if (!json || !hp) return syn_seterr(err, errlen, SYN_EINVAL, "config.json: bad arguments");
    memset(hp, 0, sizeof *hp);
    root = json_loadb(json, len, 0, &jerr);
    if (!root || !json_is_object(root)) {
        rc = syn_seterr(err, errlen, SYN_EFORMAT, "config.json: %s%s (line %d)",
                        root ? "expected a JSON object" : "not valid JSON: ", root ? "" : jerr.text,
                        jerr.line);
        goto out;
    }
    if (name) snprintf(hp->name, sizeof hp->name, "%s", name);
    if ((rc = cfg_arch(root, hp, err, errlen))) goto out;
    if ((rc = cfg_int(root, "vocab_size", -1, 1, &hp->n_vocab, err, errlen)) ||
        (rc = cfg_int(root, "hidden_size", -1, 1, &hp->dim, err, errlen)) ||
        (rc = cfg_int(root, "num_hidden_layers", -1, 1, &hp->n_layer, err, errlen)) ||
        (rc = cfg_int(root, "num_attention_heads", -1, 1, &hp->n_head, err, errlen)) ||
        (rc = cfg_int(root, "num_key_value_heads", hp->n_head, 1, &hp->n_kv_head, err, errlen)) ||
        (rc = cfg_int(root, "intermediate_size", -1, 1, &hp->ffn_dim, err, errlen)) ||
        (rc = cfg_int(root, "max_position_embeddings", 2048, 1, &hp->n_ctx_train, err, errlen)))
        goto out;
    if (hp->n_head % hp->n_kv_head != 0) {
        rc = syn_seterr(err, errlen, SYN_EFORMAT,
                        "config.json: num_attention_heads %d is not a multiple of "
                        "num_key_value_heads %d",
                        hp->n_head, hp->n_kv_head);
        goto out;
    }
    head_dim_def = hp->dim % hp->n_head == 0 ? hp->dim / hp->n_head : -1;
    if ((rc = cfg_int(root, "head_dim", head_dim_def, 1, &hp->head_dim, err, errlen))) {
        if (head_dim_def < 0)
            syn_seterr(err, errlen, SYN_EFORMAT,
                       "config.json: no \"head_dim\" and hidden_size %d is not a multiple of "
                       "num_attention_heads %d",
                       hp->dim, hp->n_head);
        goto out;
    }
    if ((rc = cfg_num(root, "top level", "rms_norm_eps", 1e-6, &hp->norm_eps, err, errlen)) ||
        (rc = cfg_num(root, "top level", "rope_theta", 10000.0, &hp->rope_theta, err, errlen)) ||
        (rc = cfg_rope_scaling(root, hp, err, errlen)))
        goto out;
    hp->rope_neox = 1;
    hp->tied_embeddings = json_is_true(json_object_get(root, "tie_word_embeddings"));

    /* what the engine cannot run: say so now rather than produce wrong text later */
    sw = json_object_get(root, "sliding_window");
    if (json_is_integer(sw) && !json_is_false(json_object_get(root, "use_sliding_window")) &&
        json_integer_value(sw) < hp->n_ctx_train) {
        rc = syn_seterr(err, errlen, SYN_EUNSUPPORTED,
                        "config.json: sliding_window is %lld but max_position_embeddings is %d; "
                        "sliding-window attention is not supported (expected null or a window "
                        "of at least the context length)",
                        (long long)json_integer_value(sw), hp->n_ctx_train);
        goto out;
    }
    act = json_string_value(json_object_get(root, "hidden_act"));
    if (act && strcmp(act, "silu") != 0) {
        rc = syn_seterr(err, errlen, SYN_EUNSUPPORTED,
                        "config.json: hidden_act is '%.32s', expected silu (SwiGLU)", act);
        goto out;
    }
    if (strcmp(hp->arch, "llama") == 0 &&
        (rc = cfg_false(root, "attention_bias",
                        "attention projections with biases are not "
                        "supported on llama",
                        err, errlen)))
        goto out;
    rc = cfg_false(root, "mlp_bias", "MLP projections with biases are not supported", err, errlen);
out:
    json_decref(root);
    return rc;
}

int syn_hf_config_load(const char *dir, struct syn_hparams *hp, char *err, size_t errlen)
{
    char path[4096], name[128];
    char *text = NULL;
    FILE *f = NULL;
    long len;
    size_t dl;
    const char *base;
    int rc = 0;

    if (!dir || !hp) return syn_seterr(err, errlen, SYN_EINVAL, "config.json: bad arguments");
    if ((size_t)snprintf(path, sizeof path, "%s/config.json", dir) >= sizeof path)
        return syn_seterr(err, errlen, SYN_EINVAL, "config.json: directory path is too long");
    f = fopen(path, "rb");
    if (!f) {
        rc = syn_seterr(err, errlen, errno == ENOENT ? SYN_ENOTFOUND : SYN_EIO,
                        "config.json: cannot open %s: %s", path, strerror(errno));
        goto out;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        rc = syn_seterr(err, errlen, SYN_EIO, "config.json: cannot read %s", path);
        goto out;
    }
    if (len > 16 * 1024 * 1024) {
        rc = syn_seterr(err, errlen, SYN_EFORMAT,
                        "config.json: %s has %ld bytes, expected at most 16 MiB", path, len);
        goto out;
    }
    text = malloc((size_t)len + 1);
    if (!text) {
        rc = syn_seterr(err, errlen, SYN_ENOMEM, "config.json: out of memory");
        goto out;
    }
    if (fread(text, 1, (size_t)len, f) != (size_t)len) {
        rc = syn_seterr(err, errlen, SYN_EIO, "config.json: cannot read %s", path);
        goto out;
    }
    /* the model's name: the directory's last component, without trailing slashes */
    dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/') dl--;
    base = dir + dl;
    while (base > dir && base[-1] != '/') base--;
    snprintf(name, sizeof name, "%.*s", (int)(dir + dl - base), base);
    rc = syn_hf_config_parse(text, (size_t)len, name, hp, err, errlen);
out:
    if (f) fclose(f);
    free(text);
    return rc;
}
