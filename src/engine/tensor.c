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
    static const int parseable[] = {SYN_DT_F32,  SYN_DT_F16,  SYN_DT_BF16, SYN_DT_Q8_0,
                                    SYN_DT_Q4_0, SYN_DT_Q4_1, SYN_DT_Q5_0, SYN_DT_Q5_1,
                                    SYN_DT_Q4_K, SYN_DT_Q5_K, SYN_DT_Q6_K};
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
    case SYN_DT_Q4_1:
    case SYN_DT_Q5_0:
    case SYN_DT_Q5_1: {
        if (n % 32) return SYN_EINVAL;
        const int has_m = type != SYN_DT_Q5_0, has_h = type != SYN_DT_Q4_1;
        const int bb = syn_dtype_block_bytes(type);
        for (uint64_t b = 0; b < n / 32; b++, p += bb) {
            const float d = syn_f16_to_f32(load_le16(p));
            const float m = has_m ? syn_f16_to_f32(load_le16(p + 2)) : 0.0f;
            const uint8_t *hp = p + (has_m ? 4 : 2), *q = hp + (has_h ? 4 : 0);
            const uint32_t qh = has_h ? (uint32_t)hp[0] | (uint32_t)hp[1] << 8 |
                                            (uint32_t)hp[2] << 16 | (uint32_t)hp[3] << 24
                                      : 0;
            float *y = dst + b * 32;
            for (int j = 0; j < 32; j++) {
                int v = (j < 16 ? q[j] & 15 : q[j - 16] >> 4) | (int)((qh >> j) & 1) << 4;
                y[j] = type == SYN_DT_Q5_0 ? d * (float)(v - 16) : d * (float)v + m;
            }
        }
        return 0;
    }
    case SYN_DT_Q4_K:
    case SYN_DT_Q5_K:
        if (n % SYN_QK_K) return SYN_EINVAL;
        for (uint64_t b = 0; b < n / SYN_QK_K; b++) {
            const int q5 = type == SYN_DT_Q5_K;
            const uint8_t *blk = p + b * (q5 ? SYN_Q5K_BYTES : SYN_Q4K_BYTES);
            const uint8_t *qh = blk + 16, *qs = blk + (q5 ? 48 : 16);
            float d = syn_f16_to_f32(load_le16(blk)), dmin = syn_f16_to_f32(load_le16(blk + 2));
            float *y = dst + b * SYN_QK_K;
            for (int j = 0; j < 8; j++) { /* sub-block j: elements 32j .. 32j + 31 */
                uint8_t sc, m;
                syn_kquant_scale_min(blk + 4, j, &sc, &m);
                const float ds = d * (float)sc, dm = dmin * (float)m;
                const uint8_t *q = qs + 32 * (j / 2);
                for (int l = 0; l < 32; l++) {
                    int v = j % 2 ? q[l] >> 4 : q[l] & 15;
                    if (q5) v += ((qh[l] >> j) & 1) << 4;
                    y[32 * j + l] = ds * (float)v - dm;
                }
            }
        }
        return 0;
    case SYN_DT_Q6_K:
        if (n % SYN_QK_K) return SYN_EINVAL;
        for (uint64_t b = 0; b < n / SYN_QK_K; b++) {
            const uint8_t *blk = p + b * SYN_Q6K_BYTES;
            const int8_t *sc = (const int8_t *)(blk + 192);
            float d = syn_f16_to_f32(load_le16(blk + 208));
            float *y = dst + b * SYN_QK_K;
            for (int e = 0; e < SYN_QK_K; e++) {
                int half = e / 128, i = (e % 128) / 32, l = e % 32;
                uint8_t lo = blk[64 * half + l + 32 * (i & 1)];
                uint8_t hi = blk[128 + 32 * half + l];
                int q = (i < 2 ? lo & 15 : lo >> 4) | (((hi >> (2 * i)) & 3) << 4);
                y[e] = d * (float)sc[e / 16] * (float)(q - 32);
            }
        }
        return 0;
    default:
        return SYN_EUNSUPPORTED;
    }
}

/* ---- K-quant quantisation (for random-weight models) ---- */

static int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* Rounds half away from zero without libm's roundf (this runs over every weight of a model). */
static int round_i(float v)
{
    return (int)(v + (v < 0.0f ? -0.5f : 0.5f));
}

static void store_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* One Q4_K (levels 15) or Q5_K (levels 31) super-block: each sub-block's range [min(0, lo), hi]
 * is cut into `levels` steps; the steps and mins are then themselves quantised to 6 bits against
 * the super-block's largest, and the values rounded on the quantised grid. */
static void quantize_q45_k(const float *x, uint8_t *blk, int levels)
{
    const int q5 = levels == 31;
    float step[8], mins[8], max_step = 0.0f, max_min = 0.0f;
    for (int j = 0; j < 8; j++) {
        float lo = 0.0f, hi = 0.0f;
        for (int l = 0; l < 32; l++) {
            float v = x[32 * j + l];
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        step[j] = (hi - lo) / (float)levels;
        mins[j] = -lo;
        max_step = step[j] > max_step ? step[j] : max_step;
        max_min = mins[j] > max_min ? mins[j] : max_min;
    }
    uint16_t hd = syn_f32_to_f16(max_step / 63.0f), hm = syn_f32_to_f16(max_min / 63.0f);
    float d = syn_f16_to_f32(hd), dmin = syn_f16_to_f32(hm);
    uint8_t sc[8], m[8];
    for (int j = 0; j < 8; j++) {
        sc[j] = (uint8_t)(d > 0.0f ? clampi(round_i(step[j] / d), 0, 63) : 0);
        m[j] = (uint8_t)(dmin > 0.0f ? clampi(round_i(mins[j] / dmin), 0, 63) : 0);
    }
    memset(blk, 0, q5 ? SYN_Q5K_BYTES : SYN_Q4K_BYTES);
    store_le16(blk, hd);
    store_le16(blk + 2, hm);
    uint8_t *scales = blk + 4, *qh = blk + 16, *qs = blk + (q5 ? 48 : 16);
    for (int j = 0; j < 4; j++) {
        scales[j] = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);
        scales[j + 4] = (uint8_t)(m[j] | (m[j + 4] >> 4) << 6);
        scales[j + 8] = (uint8_t)((sc[j + 4] & 15) | (m[j + 4] & 15) << 4);
    }
    for (int j = 0; j < 8; j++) {
        const float ds = d * (float)sc[j], dm = dmin * (float)m[j];
        const float inv = ds > 0.0f ? 1.0f / ds : 0.0f;
        uint8_t *q = qs + 32 * (j / 2);
        for (int l = 0; l < 32; l++) {
            int v = clampi(round_i((x[32 * j + l] + dm) * inv), 0, levels);
            q[l] |= (uint8_t)((v & 15) << (j % 2 ? 4 : 0));
            if (q5) qh[l] |= (uint8_t)((v >> 4) << j);
        }
    }
}

/* One Q6_K super-block: each sub-block of 16 gets a step of max|x| / 31 (quants -32..31), the
 * steps quantised to int8 against the super-block's largest. */
static void quantize_q6_k(const float *x, uint8_t *blk)
{
    float step[16], max_step = 0.0f;
    for (int k = 0; k < 16; k++) {
        float a = 0.0f;
        for (int l = 0; l < 16; l++) {
            float v = x[16 * k + l] < 0.0f ? -x[16 * k + l] : x[16 * k + l];
            a = v > a ? v : a;
        }
        step[k] = a / 31.0f;
        max_step = step[k] > max_step ? step[k] : max_step;
    }
    uint16_t hd = syn_f32_to_f16(max_step / 127.0f);
    float d = syn_f16_to_f32(hd);
    memset(blk, 0, SYN_Q6K_BYTES);
    int8_t *sc = (int8_t *)(blk + 192);
    for (int k = 0; k < 16; k++)
        sc[k] = (int8_t)(d > 0.0f ? clampi(round_i(step[k] / d), 0, 127) : 0);
    store_le16(blk + 208, hd);
    for (int e = 0; e < SYN_QK_K; e++) {
        const float s = d * (float)sc[e / 16];
        int q = s > 0.0f ? clampi(round_i(x[e] / s), -32, 31) + 32 : 32;
        int half = e / 128, i = (e % 128) / 32, l = e % 32;
        blk[64 * half + l + 32 * (i & 1)] |= (uint8_t)((q & 15) << (i < 2 ? 0 : 4));
        blk[128 + 32 * half + l] |= (uint8_t)((q >> 4) << (2 * i));
    }
}

/* One Q4_1 / Q5_1 block (range [lo, hi] in 15 or 31 steps from m = lo) or Q5_0 block (steps of
 * max|x| / 16, quants -16..15). */
static void quantize_legacy(const float *x, uint8_t *blk, int type)
{
    const int has_m = type != SYN_DT_Q5_0, has_h = type != SYN_DT_Q4_1;
    const int levels = type == SYN_DT_Q4_1 ? 15 : 31;
    float lo = x[0], hi = x[0], amax = 0.0f, vmax = 0.0f;
    for (int j = 0; j < 32; j++) {
        lo = x[j] < lo ? x[j] : lo;
        hi = x[j] > hi ? x[j] : hi;
        float a = x[j] < 0.0f ? -x[j] : x[j];
        if (a > amax) amax = a, vmax = x[j];
    }
    /* Q5_0: the largest magnitude maps to -16, as llama.cpp's writer does */
    uint16_t hd = syn_f32_to_f16(has_m ? (hi - lo) / (float)levels : vmax / -16.0f);
    uint16_t hm = syn_f32_to_f16(lo);
    const float d = syn_f16_to_f32(hd), m = syn_f16_to_f32(hm), inv = d != 0.0f ? 1.0f / d : 0.0f;
    memset(blk, 0, (size_t)syn_dtype_block_bytes(type));
    store_le16(blk, hd);
    if (has_m) store_le16(blk + 2, hm);
    uint8_t *hp = blk + (has_m ? 4 : 2), *q = hp + (has_h ? 4 : 0);
    uint32_t qh = 0;
    for (int j = 0; j < 32; j++) {
        int v = has_m ? clampi(round_i((x[j] - m) * inv), 0, levels)
                      : clampi(round_i(x[j] * inv) + 16, 0, 31);
        q[j % 16] |= (uint8_t)((v & 15) << (j < 16 ? 0 : 4));
        qh |= (uint32_t)(v >> 4) << j;
    }
    if (has_h)
        for (int i = 0; i < 4; i++) hp[i] = (uint8_t)(qh >> (8 * i));
}

size_t syn_quantize_row(int type, const float *src, void *dst, uint64_t n)
{
    const int elems = syn_dtype_block_elems(type), bytes = syn_dtype_block_bytes(type);
    if (!elems || n % (uint64_t)elems) return 0;
    uint8_t *out = dst;
    for (uint64_t b = 0; b < n / (uint64_t)elems; b++) {
        const float *x = src + b * (uint64_t)elems;
        uint8_t *blk = out + b * (uint64_t)bytes;
        switch (type) {
        case SYN_DT_Q4_1:
        case SYN_DT_Q5_0:
        case SYN_DT_Q5_1:
            quantize_legacy(x, blk, type);
            break;
        case SYN_DT_Q4_K:
            quantize_q45_k(x, blk, 15);
            break;
        case SYN_DT_Q5_K:
            quantize_q45_k(x, blk, 31);
            break;
        case SYN_DT_Q6_K:
            quantize_q6_k(x, blk);
            break;
        default:
            return 0;
        }
    }
    return n / (uint64_t)elems * (size_t)bytes;
}
