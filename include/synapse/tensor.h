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
    SYN_DT_Q4_1 = 3, /* blocks of 32: f16 d, f16 m, 16 bytes of 4-bit q; x = d * q + m */
    SYN_DT_Q5_0 = 6, /* blocks of 32: f16 d, u32 qh (bit j: element j's fifth bit), 16 bytes of
                        4-bit q as in Q4_0; x = d * (q + 16 * bit - 16) */
    SYN_DT_Q5_1 = 7, /* blocks of 32: f16 d, f16 m, u32 qh, 16 bytes; x = d * (q + 16 * bit) + m */
    SYN_DT_Q8_0 = 8, /* blocks of 32: f16 scale d, 32 int8 q; x = d * q */
    SYN_DT_Q8_1 = 9,
    SYN_DT_Q2_K = 10,
    SYN_DT_Q3_K = 11,
    SYN_DT_Q4_K = 12, /* super-blocks of 256 (144 bytes); layouts below */
    SYN_DT_Q5_K = 13, /* super-blocks of 256 (176 bytes) */
    SYN_DT_Q6_K = 14, /* super-blocks of 256 (210 bytes) */
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

/* The K-quants (llama.cpp's), super-blocks of SYN_QK_K elements, f16 values little-endian:
 *   Q4_K: f16 d, f16 dmin, u8 scales[12], u8 qs[128]. Eight sub-blocks j of 32 elements, each
 *     with a 6-bit scale sc_j and min m_j packed in scales[] (syn_kquant_scale_min). Element
 *     64c + l (c = 0..3, l < 32) is d*sc_{2c} * (qs[32c + l] & 15) - dmin*m_{2c}; element
 *     64c + 32 + l is d*sc_{2c+1} * (qs[32c + l] >> 4) - dmin*m_{2c+1}.
 *   Q5_K: f16 d, f16 dmin, u8 scales[12], u8 qh[32], u8 qs[128]: Q4_K with a fifth bit, bit 2c
 *     (low nibbles) or 2c + 1 (high nibbles) of qh[l], worth 16.
 *   Q6_K: u8 ql[128], u8 qh[64], i8 scales[16], f16 d. In half n (elements 128n..128n+127),
 *     with L = ql + 64n and H = qh + 32n, element 128n + 32i + l (i = 0..3, l < 32) takes its
 *     low 4 bits from L[l + 32 (i & 1)] (low nibble for i < 2, high for i >= 2) and its top 2
 *     bits from bits 2i, 2i + 1 of H[l]; value d * scales[e / 16] * (q - 32), e the element. */
#define SYN_Q4K_BYTES 144
#define SYN_Q5K_BYTES 176
#define SYN_Q6K_BYTES 210

/* The 6-bit scale and min of sub-block j (0..7) from a Q4_K/Q5_K block's scales[12]. */
static inline void syn_kquant_scale_min(const uint8_t *scales, int j, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = scales[j] & 63;
        *m = scales[j + 4] & 63;
    } else {
        *sc = (uint8_t)((scales[j + 4] & 15) | ((scales[j - 4] >> 6) << 4));
        *m = (uint8_t)((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
    }
}

/* Name ("f32", "q8_0", ...) or NULL for an unknown type. */
const char *syn_dtype_name(int type);
/* Elements per block (1 for plain types) and bytes per block; 0 for unknown types. */
int syn_dtype_block_elems(int type);
int syn_dtype_block_bytes(int type);
/* Bytes for a row of n elements; 0 if the type is unknown or n is not a whole number of blocks. */
uint64_t syn_dtype_row_bytes(int type, uint64_t n);
/* Parses "f32", "f16", "bf16", "q8_0", "q4_0", "q4_K", "q5_K", "q6_K" (case-insensitive); -1
 * otherwise. */
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

/* Quantises n floats (a whole number of blocks) of src into dst in Q4_1, Q5_0, Q5_1, Q4_K, Q5_K
 * or Q6_K: a plain min/max fit per (sub-)block, for random-weight test models, not llama.cpp's
 * error-minimising search. Returns the bytes written, or 0 for another type or a partial
 * block. */
size_t syn_quantize_row(int type, const float *src, void *dst, uint64_t n);

#endif
