/*
 * GGUF (versions 2 and 3) reader and writer.
 *
 * The byte-level format, all little-endian:
 *
 *   u32 magic "GGUF" (0x46554747)  u32 version (2 or 3)
 *   u64 n_tensors                  u64 n_kv
 *   n_kv times:       string key, u32 value_type, value
 *   n_tensors times:  string name, u32 n_dims (1..4), u64 ne[n_dims], u32 type, u64 offset
 *   padding to `general.alignment` (u32 key, default 32)
 *   tensor data: each tensor at data_start + offset, offset a multiple of the alignment
 *
 *   string = u64 length, then that many bytes (UTF-8, not NUL-terminated)
 *   value  = one of the scalar types below, a string, or an array:
 *            u32 element_type, u64 count, count elements (arrays of arrays allowed)
 *
 * The reader checks every length against the bytes that remain before reading it: a truncated
 * file, an offset past the end, a count larger than the file, a tensor overlapping another or
 * the header, an unknown type, or a key that is not valid UTF-8 is an SYN_EFORMAT error with a
 * message naming what was expected and what was found. It never crashes on hostile input.
 *
 * Ownership: syn_gguf_open() maps the file (read-only, MAP_PRIVATE); the handle owns the mapping
 * and a small index (keys, string offsets, tensor table) built at parse time. Pointers returned
 * by the getters point into the mapping or the index and live until syn_gguf_free().
 */
#ifndef SYNAPSE_GGUF_H
#define SYNAPSE_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "synapse/tensor.h"

#define SYN_GGUF_MAGIC             0x46554747u
#define SYN_GGUF_DEFAULT_ALIGNMENT 32

enum syn_gguf_type {
    SYN_GGUF_UINT8 = 0,
    SYN_GGUF_INT8 = 1,
    SYN_GGUF_UINT16 = 2,
    SYN_GGUF_INT16 = 3,
    SYN_GGUF_UINT32 = 4,
    SYN_GGUF_INT32 = 5,
    SYN_GGUF_FLOAT32 = 6,
    SYN_GGUF_BOOL = 7,
    SYN_GGUF_STRING = 8,
    SYN_GGUF_ARRAY = 9,
    SYN_GGUF_UINT64 = 10,
    SYN_GGUF_INT64 = 11,
    SYN_GGUF_FLOAT64 = 12,
};

struct syn_gguf;

/* Maps and parses the file at path. Returns 0 and sets *out, or a negative syn_err with a
 * message in err. */
int syn_gguf_open(const char *path, struct syn_gguf **out, char *err, size_t errlen);

/* Parses a buffer already in memory (the fuzz target, tests). The buffer is not copied and must
 * outlive the handle; it need not be aligned. */
int syn_gguf_parse(const void *data, size_t size, struct syn_gguf **out, char *err, size_t errlen);

/* Unmaps (if mapped) and frees the index. NULL is fine. */
void syn_gguf_free(struct syn_gguf *g);

uint32_t syn_gguf_version(const struct syn_gguf *g);
uint32_t syn_gguf_alignment(const struct syn_gguf *g);
const void *syn_gguf_base(const struct syn_gguf *g); /* the whole file */
size_t syn_gguf_size(const struct syn_gguf *g);
size_t syn_gguf_data_offset(const struct syn_gguf *g); /* where tensor data starts */

/* ---- key/value metadata ---- */
int64_t syn_gguf_n_kv(const struct syn_gguf *g);
int64_t syn_gguf_find_key(const struct syn_gguf *g, const char *key); /* index, or -1 */
const char *syn_gguf_key(const struct syn_gguf *g, int64_t i);        /* NUL-terminated */
enum syn_gguf_type syn_gguf_kv_type(const struct syn_gguf *g, int64_t i);

/* Typed getters by key. Integers of any width convert when the value fits; floats accept
 * FLOAT32/FLOAT64. Return 0, SYN_ENOTFOUND (absent) or SYN_EFORMAT (wrong type or range). */
int syn_gguf_get_u32(const struct syn_gguf *g, const char *key, uint32_t *out);
int syn_gguf_get_u64(const struct syn_gguf *g, const char *key, uint64_t *out);
int syn_gguf_get_i64(const struct syn_gguf *g, const char *key, int64_t *out);
int syn_gguf_get_f32(const struct syn_gguf *g, const char *key, float *out);
int syn_gguf_get_bool(const struct syn_gguf *g, const char *key, int *out);
/* A string value: pointer into the file (not NUL-terminated) and its length. */
int syn_gguf_get_str(const struct syn_gguf *g, const char *key, const char **s, size_t *len);

/* Arrays, by kv index: element type, count, and elements. */
enum syn_gguf_type syn_gguf_arr_type(const struct syn_gguf *g, int64_t i);
uint64_t syn_gguf_arr_n(const struct syn_gguf *g, int64_t i);
/* Raw little-endian elements of a numeric array (not aligned); NULL for string/nested arrays. */
const void *syn_gguf_arr_data(const struct syn_gguf *g, int64_t i);
/* Element j of a string array, O(1). Returns 0 or SYN_ERANGE / SYN_EFORMAT. */
int syn_gguf_arr_str(const struct syn_gguf *g, int64_t i, uint64_t j, const char **s, size_t *len);

/* Formats the value of kv i for display (`synapse model info`): scalars in full, strings quoted
 * and cut at max_chars, arrays as "[type; n] first few...". Returns the length written. */
size_t syn_gguf_format_value(const struct syn_gguf *g, int64_t i, char *buf, size_t cap,
                             size_t max_chars);

/* ---- tensors ---- */
int64_t syn_gguf_n_tensors(const struct syn_gguf *g);
const struct syn_tensor *syn_gguf_tensor(const struct syn_gguf *g, int64_t i);
const struct syn_tensor *syn_gguf_find_tensor(const struct syn_gguf *g, const char *name);

/* ---- writer (model random, tests) ----
 * Collects metadata and tensors in memory, then writes a GGUF v3 file. Tensor data is copied
 * at add time. All functions return 0 or a negative syn_err. */
struct syn_gguf_writer;
struct syn_gguf_writer *syn_gguf_writer_new(void);
void syn_gguf_writer_free(struct syn_gguf_writer *w);
int syn_gguf_writer_set_alignment(struct syn_gguf_writer *w, uint32_t alignment);
int syn_gguf_writer_add_u32(struct syn_gguf_writer *w, const char *key, uint32_t v);
int syn_gguf_writer_add_i32(struct syn_gguf_writer *w, const char *key, int32_t v);
int syn_gguf_writer_add_f32(struct syn_gguf_writer *w, const char *key, float v);
int syn_gguf_writer_add_bool(struct syn_gguf_writer *w, const char *key, int v);
int syn_gguf_writer_add_str(struct syn_gguf_writer *w, const char *key, const char *s);
/* Numeric array of n elements of elem_type (raw little-endian bytes copied). */
int syn_gguf_writer_add_arr(struct syn_gguf_writer *w, const char *key,
                            enum syn_gguf_type elem_type, const void *data, uint64_t n);
int syn_gguf_writer_add_arr_str(struct syn_gguf_writer *w, const char *key, const char *const *strs,
                                const size_t *lens, uint64_t n);
/* Copies kv i of src (any type, arrays included) under the same key. */
int syn_gguf_writer_copy_kv(struct syn_gguf_writer *w, const struct syn_gguf *src, int64_t i);
int syn_gguf_writer_add_tensor(struct syn_gguf_writer *w, const char *name, int type, int n_dims,
                               const uint64_t *ne, const void *data, uint64_t nbytes);
int syn_gguf_writer_write(struct syn_gguf_writer *w, const char *path, char *err, size_t errlen);

#endif
