/*
 * Element types: their names and block sizes, the exact scalar conversions between f32 and the
 * two 16-bit float formats, and a reference dequantiser for the types the backends compute with.
 *
 * The size table covers every type number GGUF files use today, including the quantisations we
 * cannot compute with (K-quants, i-quants, ternary, mxfp4): the GGUF reader needs their sizes to
 * lay out and bounds-check a file, even if the model loader later refuses the tensor. This is
 * the reference path, written for clarity; the fast paths live in the backends.
 */
#include "synapse/tensor.h"

#include "synapse/error.h"

#include <string.h>
#include <strings.h>

/* ---- the type table ---- */

struct dtype_info {
    const char *name; /* as ggml spells it; NULL for a number no file format uses */
    int block_elems;  /* elements per block (1 for plain types) */
    int block_bytes;  /* bytes per block */
};

/* Indexed by type number (ggml's). Holes are numbers ggml never used or has since removed
 * (4, 5: q4_2/q4_3; 31-33, 36-38: repacked layouts now done at load time). */
/* clang-format off: one type per line reads better than the packed columns */
static const struct dtype_info dtypes[SYN_DT_COUNT] = {
    [SYN_DT_F32] = {"f32", 1, 4},       [SYN_DT_F16] = {"f16", 1, 2},
    [SYN_DT_Q4_0] = {"q4_0", 32, 18},   [SYN_DT_Q4_1] = {"q4_1", 32, 20},
    [SYN_DT_Q5_0] = {"q5_0", 32, 22},   [SYN_DT_Q5_1] = {"q5_1", 32, 24},
    [SYN_DT_Q8_0] = {"q8_0", 32, 34},   [SYN_DT_Q8_1] = {"q8_1", 32, 36},
    [SYN_DT_Q2_K] = {"q2_K", 256, 84},  [SYN_DT_Q3_K] = {"q3_K", 256, 110},
    [SYN_DT_Q4_K] = {"q4_K", 256, 144}, [SYN_DT_Q5_K] = {"q5_K", 256, 176},
    [SYN_DT_Q6_K] = {"q6_K", 256, 210}, [SYN_DT_Q8_K] = {"q8_K", 256, 292},
    [16] = {"iq2_xxs", 256, 66},        [17] = {"iq2_xs", 256, 74},
    [18] = {"iq3_xxs", 256, 98},        [19] = {"iq1_s", 256, 50},
    [20] = {"iq4_nl", 32, 18},          [21] = {"iq3_s", 256, 110},
    [22] = {"iq2_s", 256, 82},          [23] = {"iq4_xs", 256, 136},
    [SYN_DT_I8] = {"i8", 1, 1},         [SYN_DT_I16] = {"i16", 1, 2},
    [SYN_DT_I32] = {"i32", 1, 4},       [SYN_DT_I64] = {"i64", 1, 8},
    [SYN_DT_F64] = {"f64", 1, 8},       [29] = {"iq1_m", 256, 56},
    [SYN_DT_BF16] = {"bf16", 1, 2},     [34] = {"tq1_0", 256, 54},
    [35] = {"tq2_0", 256, 66},          [39] = {"mxfp4", 32, 17},
};
/* clang-format on */

static const struct dtype_info *dtype_info(int type)
{
    if (type < 0 || type >= SYN_DT_COUNT || !dtypes[type].name) return NULL;
    return &dtypes[type];
}

const char *syn_dtype_name(int type)
{
    const struct dtype_info *d = dtype_info(type);
    return d ? d->name : NULL;
}

int syn_dtype_block_elems(int type)
{
    const struct dtype_info *d = dtype_info(type);
    return d ? d->block_elems : 0;
}

int syn_dtype_block_bytes(int type)
{
    const struct dtype_info *d = dtype_info(type);
    return d ? d->block_bytes : 0;
}

uint64_t syn_dtype_row_bytes(int type, uint64_t n)
{
    const struct dtype_info *d = dtype_info(type);
    if (!d || n % (uint64_t)d->block_elems != 0) return 0;
    uint64_t blocks = n / (uint64_t)d->block_elems;
    if (blocks > UINT64_MAX / (uint64_t)d->block_bytes) return 0;
    return blocks * (uint64_t)d->block_bytes;
}

int syn_dtype_parse(const char *s)
{
    /* Only the types a user may ask for (model random --type, conversions): the ones the
     * backends compute with. */
    static const int parseable[] = {SYN_DT_F32, SYN_DT_F16, SYN_DT_BF16, SYN_DT_Q8_0, SYN_DT_Q4_0};
    if (!s) return -1;
    for (size_t i = 0; i < sizeof parseable / sizeof parseable[0]; i++)
        if (!strcasecmp(s, dtypes[parseable[i]].name)) return parseable[i];
    return -1;
}

/* ---- scalar conversions ---- */

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float syn_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    if (exp == 0) {
        /* zero or subnormal: mant * 2^-24, exact in f32 */
        float v = (float)mant * 0x1p-24f;
        return bits_f32(f32_bits(v) | sign);
    }
    if (exp == 31) /* inf, or NaN keeping its payload (and so its quiet bit) */
        return bits_f32(sign | 0x7f800000u | (mant << 13));
    return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

/* Shifts m right by s (1..31) rounding to nearest, ties to even. */
static uint32_t shift_rne(uint32_t m, unsigned s)
{
    uint32_t q = m >> s;
    uint32_t rem = m & ((1u << s) - 1);
    uint32_t half = 1u << (s - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    return q;
}

uint16_t syn_f32_to_f16(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    x &= 0x7fffffffu;
    if (x > 0x7f800000u) /* NaN: keep the top payload bits, force quiet so it stays a NaN */
        return (uint16_t)(sign | 0x7e00 | ((x >> 13) & 0x3ff));
    if (x >= 0x477ff000u) /* 65520 and up round to infinity (65504 is the largest finite) */
        return (uint16_t)(sign | 0x7c00);
    uint32_t e = x >> 23;
    if (e < 113) {
        /* below 2^-14: an f16 subnormal (or zero), in units of 2^-24 */
        if (e < 101) return sign; /* < 2^-26: rounds to zero whatever the mantissa */
        uint32_t mant = (x & 0x7fffffu) | 0x800000u;
        /* value = mant * 2^(e-150); in units of 2^-24: mant * 2^(e-126) */
        return (uint16_t)(sign | shift_rne(mant, 126 - e));
    }
    /* normal: rebias the exponent, round the mantissa from 23 to 10 bits; a carry out of the
     * mantissa correctly bumps the exponent */
    uint32_t h = ((e - 112) << 10) | ((x & 0x7fffffu) >> 13);
    uint32_t rem = x & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

float syn_bf16_to_f32(uint16_t h)
{
    return bits_f32((uint32_t)h << 16);
}

uint16_t syn_f32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) /* NaN: truncate and force quiet, never round to inf */
        return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* ---- reference dequantisation ---- */

static uint16_t load_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

int syn_dequantize_row(int type, const void *src, float *dst, uint64_t n)
{
    const uint8_t *p = src;
    switch (type) {
    case SYN_DT_F32:
        memcpy(dst, src, n * sizeof(float));
        return 0;
    case SYN_DT_F16:
        for (uint64_t i = 0; i < n; i++) dst[i] = syn_f16_to_f32(load_le16(p + 2 * i));
        return 0;
    case SYN_DT_BF16:
        for (uint64_t i = 0; i < n; i++) dst[i] = syn_bf16_to_f32(load_le16(p + 2 * i));
        return 0;
    case SYN_DT_Q8_0:
        if (n % SYN_QK8_0) return SYN_EINVAL;
        for (uint64_t b = 0; b < n / SYN_QK8_0; b++, p += sizeof(struct syn_block_q8_0)) {
            float d = syn_f16_to_f32(load_le16(p));
            for (int j = 0; j < SYN_QK8_0; j++)
                dst[b * SYN_QK8_0 + j] = d * (float)(int8_t)p[2 + j];
        }
        return 0;
    case SYN_DT_Q4_0:
        if (n % SYN_QK4_0) return SYN_EINVAL;
        for (uint64_t b = 0; b < n / SYN_QK4_0; b++, p += sizeof(struct syn_block_q4_0)) {
            float d = syn_f16_to_f32(load_le16(p));
            float *y = dst + b * SYN_QK4_0;
            for (int j = 0; j < SYN_QK4_0 / 2; j++) {
                y[j] = d * (float)((p[2 + j] & 0x0f) - 8);
                y[j + SYN_QK4_0 / 2] = d * (float)((p[2 + j] >> 4) - 8);
            }
        }
        return 0;
    default:
        return SYN_EUNSUPPORTED;
    }
}
