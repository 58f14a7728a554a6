/*
 * What the GGUF writer (gguf_writer.c) needs from the reader (gguf.c): the size of each value
 * type, the rule for key and tensor names, and a pair's raw bytes for copying it into a new
 * file; and how the model loader (model.c) opens a file with its weights resident. Private to
 * src/engine.
 */
#ifndef SYN_ENGINE_GGUF_IMPL_H
#define SYN_ENGINE_GGUF_IMPL_H

#include "common/filemap.h"
#include "synapse/gguf.h"

#include <stddef.h>
#include <stdint.h>

/* Bytes per scalar of a value type; 0 for string, array and unknown types. */
size_t syn_gguf_value_size(enum syn_gguf_type t);

/* 1 if s is a name the reader accepts: 1 to 65535 bytes of valid UTF-8. */
int syn_gguf_name_ok(const char *s);

/* Pair i of g: its key (NUL-terminated), type, and the value's bytes exactly as in the file
 * (for arrays: element type, count, elements). Returns 0, or SYN_EINVAL when i is out of range. */
int syn_gguf_kv_bytes(const struct syn_gguf *g, int64_t i, const char **key,
                      enum syn_gguf_type *type, const uint8_t **val, size_t *len);

/* syn_gguf_open with the file brought into memory as mode says (syn_gguf_open: mapped). */
int syn_gguf_open_mode(const char *path, enum syn_filemap_mode mode, struct syn_gguf **out,
                       char *err, size_t errlen);

#endif
