/*
 * Element types and tensor views shared by the file formats (GGUF, safetensors), the model and
 * the backends. The type numbers are GGUF's (ggml's) so that a GGUF tensor's type field can be
 * used as is; safetensors dtypes map onto the same enum.
 *
 * A view never owns its data: it points into a mapped file (or a buffer owned by whoever made it).
 * Dimensions are in GGUF order: ne[0] is the innermost (contiguous) one, so a weight matrix of
 * R rows of K elements has ne[0] = K, ne[1] = R.
 */
#ifndef SYNAPSE_TENSOR_H
#define SYNAPSE_TENSOR_H

#include <stddef.h>
#include <stdint.h>

enum syn_dtype {
    SYN_DT_F32 = 0,
    SYN_DT_F16 = 1,
    SYN_DT_Q4_0 = 2, /* blocks of 32: f16 scale d, 16 bytes of 4-bit q; x = d * (q - 8) */
    SYN_DT_Q4_1 = 3,
    SYN_DT_Q5_0 = 6,
    SYN_DT_Q5_1 = 7,
    SYN_DT_Q8_0 = 8, /* blocks of 32: f16 scale d, 32 int8 q; x = d * q */
    SYN_DT_Q8_1 = 9,
    SYN_DT_Q2_K = 10,
    SYN_DT_Q3_K = 11,
    SYN_DT_Q4_K = 12, /* super-blocks of 256 (144 bytes) */
    SYN_DT_Q5_K = 13,
    SYN_DT_Q6_K = 14,
    SYN_DT_Q8_K = 15,
    SYN_DT_I8 = 24,
    SYN_DT_I16 = 25,
    SYN_DT_I32 = 26,
    SYN_DT_I64 = 27,
    SYN_DT_F64 = 28,
    SYN_DT_BF16 = 30,
    SYN_DT_COUNT = 40, /* one past the largest number we know the size of */
};

#define SYN_QK8_0 32
#define SYN_QK4_0 32
#define SYN_QK_K  256

/* On-file block layouts (little-endian, packed by construction). */
struct syn_block_q8_0 {
    uint16_t d;   /* f16 scale */
    int8_t q[32]; /* quants */
};
struct syn_block_q4_0 {
    uint16_t d;    /* f16 scale */
    uint8_t q[16]; /* low nibbles = elements 0..15, high nibbles = 16..31 */
};

/* Name ("f32", "q8_0", ...) or NULL for an unknown type. */
const char *syn_dtype_name(int type);
/* Elements per block (1 for plain types) and bytes per block; 0 for unknown types. */
int syn_dtype_block_elems(int type);
int syn_dtype_block_bytes(int type);
/* Bytes for a row of n elements; 0 if the type is unknown or n is not a whole number of blocks. */
uint64_t syn_dtype_row_bytes(int type, uint64_t n);
/* Parses "f32", "f16", "bf16", "q8_0", "q4_0" (case-insensitive); -1 otherwise. */
int syn_dtype_parse(const char *s);

/* A view of one tensor. */
struct syn_tensor {
    const char *name; /* NUL-terminated; owned by the file it came from */
    int type;         /* enum syn_dtype */
    int n_dims;       /* 1..4 */
    uint64_t ne[4];   /* elements per dimension, ne[0] innermost; unused dims are 1 */
    const void *data; /* first byte; not owned */
    uint64_t nbytes;  /* total bytes */
};

/* ---- scalar conversions, exact and portable (the kernels have vector versions) ---- */
float syn_f16_to_f32(uint16_t h);
uint16_t syn_f32_to_f16(float f); /* round to nearest even */
float syn_bf16_to_f32(uint16_t h);
uint16_t syn_f32_to_bf16(float f); /* round to nearest even */

/* Dequantises n elements (a whole number of blocks) of src in type into dst. Returns 0, or
 * SYN_EUNSUPPORTED for a type we cannot read. Reference path: tests, NumPy cross-checks and
 * embedding rows; the hot path uses the backend's dot products instead. */
int syn_dequantize_row(int type, const void *src, float *dst, uint64_t n);

#endif
