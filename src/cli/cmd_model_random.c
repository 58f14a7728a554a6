/*
 * `synapse model random`: writes a Llama-architecture GGUF v3 file whose weights are
 * deterministic pseudo-random numbers, for a named shape (stories15m, tinyllama-1.1b, ...) or a
 * shape given dimension by dimension. It lets tests and benchmarks run the engine on shapes and
 * dtypes we cannot download (odd sizes, GQA, tied embeddings, 1B-class layouts) and compare it
 * with scripts/ref_llama.py. The file is a complete model: the hyperparameters under the llama.*
 * keys llama.cpp uses, every tensor the engine reads, and a tokenizer (the tokenizer.* keys of a
 * vocab GGUF of the same size, or a synthesised byte-fallback SentencePiece vocab). It is not a
 * converter, and what the model writes is noise.
 *
 * Metadata goes through syn_gguf_writer; tensor data does not, because the writer copies each
 * tensor into memory and a 1.1B model would then be held whole. The writer's output (with no
 * tensors) supplies the header's key/value section; this file appends the tensor infos and then
 * streams every tensor, generated and converted in small chunks, straight to the file.
 */
#include "cli.h"

#include "synapse/error.h"
#include "synapse/gguf.h"
#include "synapse/tensor.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "model random writes float and block data in host order, which must be little-endian"
#endif

#define CMD       "model random"
#define ALIGNMENT 32u
#define CHUNK     (32 * 1024) /* elements generated and converted at a time; a multiple of 256 */

/* ---- shapes ---- */

struct shape {
    const char *name; /* --shape NAME, also general.name */
    int dim;          /* hidden size (llama.embedding_length) */
    int n_layer;      /* transformer blocks */
    int n_head;       /* query heads */
    int n_kv_head;    /* key/value heads (== n_head without GQA) */
    int ffn;          /* SwiGLU hidden size */
    int vocab;        /* token embedding rows */
    int head_dim;     /* 0: dim / n_head */
    int ctx;          /* llama.context_length */
    float rope_theta; /* llama.rope.freq_base */
    int tied;         /* no output.weight: the output projection is token_embd */
    int llama3_rope;  /* writes rope_freqs.weight with Llama 3.1 frequency scaling */
};

/* The published hyperparameters of each model (its config.json / llama2.c header). */
static const struct shape shapes[] = {
    {"stories260k", 64, 5, 8, 4, 172, 512, 0, 512, 10000.0f, 0, 0},
    {"stories15m", 288, 6, 6, 6, 768, 32000, 0, 256, 10000.0f, 0, 0},
    {"stories42m", 512, 8, 8, 8, 1376, 32000, 0, 1024, 10000.0f, 0, 0},
    {"stories110m", 768, 12, 12, 12, 2048, 32000, 0, 1024, 10000.0f, 0, 0},
    {"tinyllama-1.1b", 2048, 22, 32, 4, 5632, 32000, 0, 2048, 10000.0f, 0, 0},
    {"llama-3.2-1b", 2048, 16, 32, 8, 8192, 128256, 64, 131072, 500000.0f, 1, 1},
};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])

/* Llama 3.1/3.2 rope scaling constants (their config.json "rope_scaling"). */
#define L3_FACTOR           32.0
#define L3_LOW_FREQ_FACTOR  1.0
#define L3_HIGH_FREQ_FACTOR 4.0
#define L3_ORIG_CTX         8192.0

/* Everything the command line decided. */
struct cfg {
    struct shape s;         /* the shape, after --shape and the per-dimension flags */
    int dtype;              /* enum syn_dtype of every matrix (norms are always F32) */
    int q4_k_m;             /* --dtype q4_K_M: Q4_K, with Q6_K where llama.cpp's Q4_K_M has it,
                               and its fallbacks for rows that are not whole super-blocks */
    uint64_t seed;          /* --seed */
    float norm_eps;         /* llama.attention.layer_norm_rms_epsilon */
    const char *vocab_from; /* --vocab-from, or NULL to search the shared data */
    const char *out;        /* -o */
};

/* ---- pseudo-random numbers ---- */

/* splitmix64's output function (Steele, Lea and Flood, 2014): a bijective 64-bit mixer. A
 * counter passed through it is a fast, statistically sound stream; each tensor has its own,
 * keyed by the seed and the tensor's name, so its values depend on nothing else. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

struct rng {
    uint64_t ctr; /* advanced by the golden-ratio increment before each draw */
};

static void rng_init(struct rng *r, uint64_t seed, const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a over the name */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    r->ctr = mix64(seed ^ mix64(h));
}

/* x[i] = offset + scale * u_i for i < n, u uniform in [-1, 1) with 24 bits of resolution (exact
 * in a float). Each 64-bit draw gives two values, so element i of a tensor always comes from
 * draw i / 2, however the tensor is cut into chunks (chunks have even sizes). */
static void rng_fill(struct rng *r, float *x, size_t n, float scale, float offset)
{
    const float unit = 1.0f / 8388608.0f;
    for (size_t i = 0; i < n; i += 2) {
        r->ctr += 0x9e3779b97f4a7c15ull;
        uint64_t z = mix64(r->ctr);
        x[i] = offset + scale * ((float)((int32_t)(z >> 40) - 0x800000) * unit);
        if (i + 1 < n)
            x[i + 1] = offset + scale * ((float)((int32_t)((z >> 8) & 0xffffff) - 0x800000) * unit);
    }
}

/* ---- the tensor plan ---- */

enum fill_kind {
    FILL_MATRIX, /* uniform in [-scale, scale) */
    FILL_NORM,   /* 1 + uniform in [-0.1, 0.1): a trained RMSNorm weight's typical range */
    FILL_ROPE,   /* Llama 3.1 frequency divisors, computed, not random */
};

struct tplan {
    char name[64];   /* "blk.12.ffn_gate.weight" */
    int type;        /* enum syn_dtype as stored */
    int n_dims;      /* 1 (norms, rope_freqs) or 2 (matrices) */
    uint64_t ne[2];  /* GGUF order: ne[0] = K (inputs, contiguous), ne[1] = output rows */
    int kind;        /* enum fill_kind */
    float scale;     /* FILL_MATRIX: half-width of the distribution */
    uint64_t nbytes; /* bytes in the file */
    uint64_t offset; /* from the start of the data section, a multiple of ALIGNMENT */
};

static uint64_t align_up(uint64_t x, uint64_t a)
{
    return (x + a - 1) / a * a;
}

static void plan_add(struct tplan *t, int *n, const char *name, int type, uint64_t k, uint64_t rows,
                     int kind)
{
    struct tplan *p = &t[(*n)++];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->type = type;
    p->kind = kind;
    p->n_dims = rows ? 2 : 1;
    p->ne[0] = k;
    p->ne[1] = rows ? rows : 1;
    /* Variance 1/K per weight keeps every projection's output at the scale of its input (a
     * unit-RMS vector in, unit-RMS out), so attention scores, the SwiGLU product and the logits
     * all stay O(1) through any number of layers: neither saturated nor flat. */
    p->scale = (float)sqrt(3.0 / (double)k);
    p->nbytes = syn_dtype_row_bytes(type, k) * p->ne[1];
}

/* The type of a matrix of k-element rows: q4_K_M falls back as llama.cpp does where k is not a
 * whole number of super-blocks (Q4_K to Q5_0, Q6_K to Q8_0). */
static int fit_type(const struct cfg *c, int type, uint64_t k)
{
    if (!c->q4_k_m || k % SYN_QK_K == 0) return type;
    return type == SYN_DT_Q6_K ? SYN_DT_Q8_0 : SYN_DT_Q5_0;
}

/* Fills t (room for 9 * n_layer + 5 entries) in file order; returns the count. */
static int plan_tensors(const struct cfg *c, struct tplan *t)
{
    const struct shape *s = &c->s;
    uint64_t q_dim = (uint64_t)s->n_head * s->head_dim,
             kv_dim = (uint64_t)s->n_kv_head * s->head_dim;
    int n = 0, dt = c->dtype;
    /* q4_K_M: llama.cpp gives attn_v and ffn_down Q6_K in the first and last eighth of the
     * layers and in every third layer between, and the output matrix Q6_K. */
    const int n8 = s->n_layer / 8;
    char name[64];
    plan_add(t, &n, "token_embd.weight", fit_type(c, dt, s->dim), s->dim, s->vocab, FILL_MATRIX);
    if (s->llama3_rope)
        plan_add(t, &n, "rope_freqs.weight", SYN_DT_F32, s->head_dim / 2, 0, FILL_ROPE);
    for (int i = 0; i < s->n_layer; i++) {
        static const char *const parts[] = {"attn_norm", "attn_q",      "attn_k",
                                            "attn_v",    "attn_output", "ffn_norm",
                                            "ffn_gate",  "ffn_up",      "ffn_down"};
        const uint64_t k[] = {s->dim, s->dim, s->dim, s->dim, q_dim,
                              s->dim, s->dim, s->dim, s->ffn};
        const uint64_t rows[] = {0, q_dim, kv_dim, kv_dim, s->dim, 0, s->ffn, s->ffn, s->dim};
        const int more_bits = c->q4_k_m && (i < n8 || i >= s->n_layer - n8 || (i - n8) % 3 == 2);
        for (int j = 0; j < 9; j++) {
            snprintf(name, sizeof name, "blk.%d.%s.weight", i, parts[j]);
            int jt = more_bits && (j == 3 || j == 8) ? SYN_DT_Q6_K : dt; /* attn_v, ffn_down */
            if (rows[j])
                plan_add(t, &n, name, fit_type(c, jt, k[j]), k[j], rows[j], FILL_MATRIX);
            else
                plan_add(t, &n, name, SYN_DT_F32, k[j], 0, FILL_NORM);
        }
    }
    plan_add(t, &n, "output_norm.weight", SYN_DT_F32, s->dim, 0, FILL_NORM);
    if (!s->tied)
        plan_add(t, &n, "output.weight", fit_type(c, c->q4_k_m ? SYN_DT_Q6_K : dt, s->dim), s->dim,
                 s->vocab, FILL_MATRIX);
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        t[i].offset = off;
        off = align_up(off + t[i].nbytes, ALIGNMENT);
    }
    return n;
}

/* ---- tokenizer ---- */

/* The shared data directory: $SYNAPSE_SHARED, else ../shared beside the repository that holds
 * the binary (./synapse at its root, or build/asan/synapse below it). 0 or -1. */
static int shared_dir(char *buf, size_t cap)
{
    const char *env = getenv("SYNAPSE_SHARED");
    if (env && *env) {
        snprintf(buf, cap, "%s", env);
        return 0;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return -1;
    exe[n] = 0;
    for (int up = 0; up < 4; up++) {
        char *slash = strrchr(exe, '/');
        if (!slash) break;
        *slash = 0;
        char shared[PATH_MAX + 16], real[PATH_MAX];
        snprintf(shared, sizeof shared, "%s/../shared", exe);
        if (snprintf(buf, cap, "%s/testdata/tokenizer", shared) < (int)cap &&
            access(buf, R_OK) == 0 && realpath(shared, real))
            return snprintf(buf, cap, "%s", real) < (int)cap ? 0 : -1;
    }
    return -1;
}

/* Tokens in a GGUF's tokenizer.ggml.tokens, or -1 when it has none. */
static int64_t vocab_size_of(const struct syn_gguf *g)
{
    int64_t i = syn_gguf_find_key(g, "tokenizer.ggml.tokens");
    if (i < 0 || syn_gguf_kv_type(g, i) != SYN_GGUF_ARRAY ||
        syn_gguf_arr_type(g, i) != SYN_GGUF_STRING)
        return -1;
    return (int64_t)syn_gguf_arr_n(g, i);
}

/* Opens the vocab source into *out, or leaves it NULL when the vocab is to be synthesised
 * (no --vocab-from and no shared file of the right size). path gets the file used. 0, or 1
 * after printing why an explicit --vocab-from cannot be used. */
static int open_vocab(const struct cfg *c, struct syn_gguf **out, char *path, size_t cap)
{
    char err[512];
    *out = NULL;
    if (c->vocab_from) {
        struct syn_gguf *g;
        if (syn_gguf_open(c->vocab_from, &g, err, sizeof err) < 0) {
            fprintf(stderr, "synapse %s: --vocab-from %s: %s\n", CMD, c->vocab_from, err);
            return 1;
        }
        int64_t nv = vocab_size_of(g);
        if (nv != c->s.vocab) {
            if (nv < 0)
                fprintf(stderr, "synapse %s: --vocab-from %s has no tokenizer.ggml.tokens\n", CMD,
                        c->vocab_from);
            else
                fprintf(stderr,
                        "synapse %s: --vocab-from %s has %lld tokens but the model's vocab is %d "
                        "(give --vocab %lld, or leave out --vocab-from to synthesise one)\n",
                        CMD, c->vocab_from, (long long)nv, c->s.vocab, (long long)nv);
            syn_gguf_free(g);
            return 1;
        }
        snprintf(path, cap, "%s", c->vocab_from);
        *out = g;
        return 0;
    }
    static const char *const candidates[] = {
        "testdata/tokenizer/ggml-vocab-llama-spm.gguf", /* 32000, SentencePiece (Llama 2) */
        "models/stories260K.gguf",                      /* 512, SentencePiece */
        "testdata/tokenizer/ggml-vocab-gpt-2.gguf",     /* 50257, byte-level BPE */
        "testdata/tokenizer/ggml-vocab-deepseek-llm.gguf",
    };
    char dir[PATH_MAX];
    if (shared_dir(dir, sizeof dir) < 0) return 0;
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++) {
        struct syn_gguf *g;
        if (snprintf(path, cap, "%s/%s", dir, candidates[i]) >= (int)cap ||
            access(path, R_OK) != 0 || syn_gguf_open(path, &g, err, sizeof err) < 0)
            continue;
        if (vocab_size_of(g) == c->s.vocab) {
            *out = g;
            return 0;
        }
        syn_gguf_free(g);
    }
    path[0] = 0;
    return 0;
}

#define SYNTH_MIN_VOCAB 259 /* <unk>, <s>, </s> and the 256 byte tokens */

/* Writes the UTF-8 of U+2581 ("▁", SentencePiece's space) and returns 3. */
static int put_spm_space(char *p)
{
    p[0] = (char)0xe2;
    p[1] = (char)0x96;
    p[2] = (char)0x81;
    return 3;
}

/* A SentencePiece-style vocab of n tokens: <unk>, <s>, </s>, the 256 byte-fallback tokens
 * <0x00>..<0xFF>, then filler pieces, all distinct: every printable ASCII character, "▁" and
 * "▁" + each of them, then lower-case words of two letters and up in shortlex order, bare and
 * with "▁". Any text therefore encodes (through bytes if nothing else) and decodes. */
static int synth_vocab(struct syn_gguf_writer *w, int n)
{
    int rc = SYN_ENOMEM;
    char **pieces = calloc((size_t)n, sizeof *pieces);
    size_t *lens = calloc((size_t)n, sizeof *lens);
    float *scores = calloc((size_t)n, sizeof *scores);
    int32_t *types = calloc((size_t)n, sizeof *types);
    char *text = malloc((size_t)n * 16); /* every piece is shorter than 16 bytes */
    if (!pieces || !lens || !scores || !types || !text) goto out;

    char *p = text;
    int k = 0;
#define PIECE_BEGIN() (pieces[k] = p)
#define PIECE_END(type, score)                                                                     \
    do {                                                                                           \
        lens[k] = (size_t)(p - pieces[k]);                                                         \
        types[k] = (type);                                                                         \
        scores[k] = (score);                                                                       \
        k++;                                                                                       \
    } while (0)
    static const char *const ctl[] = {"<unk>", "<s>", "</s>"};
    for (int i = 0; i < 3; i++) {
        PIECE_BEGIN();
        p += sprintf(p, "%s", ctl[i]);
        PIECE_END(i == 0 ? 2 : 3, 0.0f); /* UNKNOWN, CONTROL */
    }
    for (int b = 0; b < 256; b++) {
        PIECE_BEGIN();
        p += sprintf(p, "<0x%02X>", b);
        PIECE_END(6, 0.0f); /* BYTE */
    }
    /* Scores fall with each piece, so earlier (shorter) pieces win SentencePiece's merges. */
    int normal = 0;
    for (int c = 0x20; c < 0x7f && k < n; c++) { /* 0x20 stands for "▁" alone */
        PIECE_BEGIN();
        if (c == 0x20)
            p += put_spm_space(p);
        else
            *p++ = (char)c;
        PIECE_END(1, (float)-normal++);
    }
    for (int c = 0x21; c < 0x7f && k < n; c++) {
        PIECE_BEGIN();
        p += put_spm_space(p);
        *p++ = (char)c;
        PIECE_END(1, (float)-normal++);
    }
    uint64_t count = 26 * 26; /* words of len letters */
    for (int len = 2; k < n && len <= 8; len++, count *= 26) {
        for (uint64_t idx = 0; idx < count && k < n; idx++) {
            for (int spaced = 0; spaced < 2 && k < n; spaced++) {
                PIECE_BEGIN();
                if (spaced) p += put_spm_space(p);
                uint64_t v = idx;
                char word[8];
                for (int j = len - 1; j >= 0; j--, v /= 26) word[j] = (char)('a' + v % 26);
                memcpy(p, word, (size_t)len);
                p += len;
                PIECE_END(1, (float)-normal++);
            }
        }
    }
#undef PIECE_BEGIN
#undef PIECE_END
    if (k != n) { /* cannot happen below the --vocab limit; guards the arithmetic above */
        rc = SYN_EINVAL;
        goto out;
    }
    if ((rc = syn_gguf_writer_add_str(w, "tokenizer.ggml.model", "llama")) < 0 ||
        (rc = syn_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)pieces,
                                          lens, (uint64_t)n)) < 0 ||
        (rc = syn_gguf_writer_add_arr(w, "tokenizer.ggml.scores", SYN_GGUF_FLOAT32, scores,
                                      (uint64_t)n)) < 0 ||
        (rc = syn_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", SYN_GGUF_INT32, types,
                                      (uint64_t)n)) < 0 ||
        (rc = syn_gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", 0)) < 0 ||
        (rc = syn_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 1)) < 0 ||
        (rc = syn_gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 2)) < 0 ||
        (rc = syn_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", 1)) < 0 ||
        (rc = syn_gguf_writer_add_bool(w, "tokenizer.ggml.add_eos_token", 0)) < 0)
        goto out;
    rc = 0;
out:
    free(pieces);
    free(lens);
    free(scores);
    free(types);
    free(text);
    return rc;
}

/* ---- the header: metadata through the writer, tensor infos here ---- */

/* Bytes a GGUF value of type t occupies at p (at most end - p), or 0 if malformed. */
static uint64_t value_size(const uint8_t *p, const uint8_t *end, uint32_t t, int depth)
{
    static const uint8_t fixed[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8}; /* by enum value */
    uint64_t avail = (uint64_t)(end - p), n, len;
    if (t > SYN_GGUF_FLOAT64 || depth > 2) return 0;
    if (fixed[t]) return fixed[t] <= avail ? fixed[t] : 0;
    if (t == SYN_GGUF_STRING) {
        if (avail < 8) return 0;
        memcpy(&len, p, 8);
        return len <= avail - 8 ? 8 + len : 0;
    }
    /* an array: u32 element type, u64 count, the elements */
    if (avail < 12) return 0;
    uint32_t et;
    memcpy(&et, p, 4);
    memcpy(&n, p + 4, 8);
    if (et > SYN_GGUF_FLOAT64) return 0;
    uint64_t used = 12;
    if (fixed[et]) return n <= (avail - used) / fixed[et] ? used + n * fixed[et] : 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t sz = value_size(p + used, end, et, depth + 1);
        if (!sz) return 0;
        used += sz;
    }
    return used;
}

/* The key/value section of a tensor-less GGUF the writer produced: its bytes [24, *kv_end)
 * and *n_kv. 0, or -1 if the layout is not what the format says. */
static int kv_section(const uint8_t *buf, size_t size, uint64_t *n_kv, size_t *kv_end)
{
    uint32_t magic, version;
    uint64_t n_t;
    if (size < 24) return -1;
    memcpy(&magic, buf, 4);
    memcpy(&version, buf + 4, 4);
    memcpy(&n_t, buf + 8, 8);
    memcpy(n_kv, buf + 16, 8);
    if (magic != SYN_GGUF_MAGIC || version != 3 || n_t != 0) return -1;
    const uint8_t *p = buf + 24, *end = buf + size;
    for (uint64_t i = 0; i < *n_kv; i++) {
        uint64_t ks = value_size(p, end, SYN_GGUF_STRING, 0);
        if (!ks || end - p - (ptrdiff_t)ks < 4) return -1;
        uint32_t t;
        memcpy(&t, p + ks, 4);
        uint64_t vs = value_size(p + ks + 4, end, t, 0);
        if (!vs) return -1;
        p += ks + 4 + vs;
    }
    *kv_end = (size_t)(p - buf);
    return 0;
}

static int put(FILE *f, const void *p, size_t n)
{
    return fwrite(p, 1, n, f) == n ? 0 : -1;
}
static int put_u32(FILE *f, uint32_t v)
{
    return put(f, &v, 4);
}
static int put_u64(FILE *f, uint64_t v)
{
    return put(f, &v, 8);
}
static int put_zeros(FILE *f, uint64_t n)
{
    static const char zeros[ALIGNMENT];
    return put(f, zeros, (size_t)n);
}

/* Adds every key except the tokenizer's: general.* and the llama.* hyperparameters. */
static int add_model_keys(struct syn_gguf_writer *w, const struct cfg *c)
{
    const struct shape *s = &c->s;
    uint32_t file_type = c->q4_k_m                 ? 15 /* llama.cpp's LLAMA_FTYPE numbers */
                         : c->dtype == SYN_DT_F32  ? 0
                         : c->dtype == SYN_DT_F16  ? 1
                         : c->dtype == SYN_DT_Q8_0 ? 7
                         : c->dtype == SYN_DT_Q4_1 ? 3
                         : c->dtype == SYN_DT_Q5_0 ? 8
                         : c->dtype == SYN_DT_Q5_1 ? 9
                         : c->dtype == SYN_DT_Q4_K ? 14 /* "mostly Q4_K_S" */
                         : c->dtype == SYN_DT_Q5_K ? 16 /* "mostly Q5_K_S" */
                         : c->dtype == SYN_DT_Q6_K ? 18
                                                   : 32; /* BF16 */
    const int quantised =
        c->dtype != SYN_DT_F32 && c->dtype != SYN_DT_F16 && c->dtype != SYN_DT_BF16;
    int rc;
    if ((rc = syn_gguf_writer_add_str(w, "general.architecture", "llama")) < 0 ||
        (rc = syn_gguf_writer_add_str(w, "general.name", s->name)) < 0 ||
        (rc = syn_gguf_writer_add_u32(w, "general.alignment", ALIGNMENT)) < 0 ||
        (rc = syn_gguf_writer_add_u32(w, "general.file_type", file_type)) < 0 ||
        (quantised && (rc = syn_gguf_writer_add_u32(w, "general.quantization_version", 2)) < 0) ||
        (rc = syn_gguf_writer_add_u32(w, "llama.vocab_size", (uint32_t)s->vocab)) < 0 ||
        (rc = syn_gguf_writer_add_u32(w, "llama.context_length", (uint32_t)s->ctx)) < 0 ||
        (rc = syn_gguf_writer_add_u32(w, "llama.embedding_length", (uint32_t)s->dim)) < 0 ||
        (rc = syn_gguf_writer_add_u32(w, "llama.block_count", (uint32_t)s->n_layer)) < 0 ||
        (rc = syn_gguf_writer_add_u32(w, "llama.feed_forward_length", (uint32_t)s->ffn)) < 0 ||
        (rc = syn_gguf_writer_add_u32(w, "llama.rope.dimension_count", (uint32_t)s->head_dim)) <
            0 ||
        (rc = syn_gguf_writer_add_u32(w, "llama.attention.head_count", (uint32_t)s->n_head)) < 0 ||
        (rc = syn_gguf_writer_add_u32(w, "llama.attention.head_count_kv", (uint32_t)s->n_kv_head)) <
            0 ||
        (rc = syn_gguf_writer_add_u32(w, "llama.attention.key_length", (uint32_t)s->head_dim)) <
            0 ||
        (rc = syn_gguf_writer_add_u32(w, "llama.attention.value_length", (uint32_t)s->head_dim)) <
            0 ||
        (rc = syn_gguf_writer_add_f32(w, "llama.attention.layer_norm_rms_epsilon", c->norm_eps)) <
            0 ||
        (rc = syn_gguf_writer_add_f32(w, "llama.rope.freq_base", s->rope_theta)) < 0)
        return rc;
    return 0;
}

/* Writes the metadata (model keys, then the tokenizer's) with the writer to a file in a private
 * directory under $TMPDIR (or /tmp), never beside the output, which may be a device, and
 * returns the file's bytes in *buf (malloc'ed, caller frees). 0, or 1 after printing why. */
static int build_metadata(const struct cfg *c, uint8_t **buf, size_t *size, char *vocab_desc,
                          size_t cap)
{
    char err[512], vpath[PATH_MAX], dir[PATH_MAX], meta_path[PATH_MAX + 16];
    const char *tmpdir = getenv("TMPDIR");
    struct syn_gguf *vg = NULL;
    struct syn_gguf_writer *w = NULL;
    int rc = 1, e;
    *buf = NULL;
    if (open_vocab(c, &vg, vpath, sizeof vpath)) return 1;
    if (!vg && c->s.vocab < SYNTH_MIN_VOCAB) {
        fprintf(stderr,
                "synapse %s: no vocab file has %d tokens, and a synthesised vocab needs at least "
                "%d (3 control and 256 byte tokens)\n",
                CMD, c->s.vocab, SYNTH_MIN_VOCAB);
        return 1;
    }
    if (snprintf(dir, sizeof dir, "%s/synapse-random-XXXXXX",
                 tmpdir && *tmpdir ? tmpdir : "/tmp") >= (int)sizeof dir ||
        !mkdtemp(dir)) {
        fprintf(stderr, "synapse %s: cannot create a temporary directory in %s: %s\n", CMD,
                tmpdir && *tmpdir ? tmpdir : "/tmp", strerror(errno));
        syn_gguf_free(vg);
        return 1;
    }
    snprintf(meta_path, sizeof meta_path, "%s/meta.gguf", dir);
    if (!(w = syn_gguf_writer_new())) {
        e = SYN_ENOMEM;
        goto fail;
    }
    if ((e = add_model_keys(w, c)) < 0) goto fail;
    if (vg) {
        for (int64_t i = 0; i < syn_gguf_n_kv(vg); i++)
            if (!strncmp(syn_gguf_key(vg, i), "tokenizer.", 10) &&
                (e = syn_gguf_writer_copy_kv(w, vg, i)) < 0)
                goto fail;
        snprintf(vocab_desc, cap, "tokenizer from %s", vpath);
    } else {
        if ((e = synth_vocab(w, c->s.vocab)) < 0) goto fail;
        snprintf(vocab_desc, cap, "synthesised byte-fallback SentencePiece vocab");
    }
    if (syn_gguf_writer_write(w, meta_path, err, sizeof err) < 0) {
        fprintf(stderr, "synapse %s: writing the metadata: %s\n", CMD, err);
        goto out;
    }
    FILE *f = fopen(meta_path, "rb");
    long n = -1;
    if (f && fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    if (f && n >= 0 && (*buf = malloc((size_t)n + 1)) && fseek(f, 0, SEEK_SET) == 0 &&
        fread(*buf, 1, (size_t)n, f) == (size_t)n) {
        *size = (size_t)n;
        rc = 0;
    } else {
        fprintf(stderr, "synapse %s: reading back %s: %s\n", CMD, meta_path, strerror(errno));
        free(*buf);
        *buf = NULL;
    }
    if (f) fclose(f);
    goto out;
fail:
    fprintf(stderr, "synapse %s: building the metadata: %s\n", CMD, syn_strerror(e));
out:
    unlink(meta_path);
    rmdir(dir);
    syn_gguf_writer_free(w);
    syn_gguf_free(vg);
    return rc;
}

/* ---- tensor data ---- */

/* Llama 3.1 rope scaling as divisors of each rotary frequency (what llama.cpp stores in
 * rope_freqs.weight): wavelengths shorter than orig_ctx / high_freq_factor are kept, those
 * longer than orig_ctx / low_freq_factor are divided by the factor, and the band between is
 * interpolated smoothly. */
static float llama3_divisor(int i, int head_dim, float theta)
{
    double freq = pow(theta, -2.0 * i / head_dim), wavelen = 2.0 * M_PI / freq;
    double low_wavelen = L3_ORIG_CTX / L3_LOW_FREQ_FACTOR;
    double high_wavelen = L3_ORIG_CTX / L3_HIGH_FREQ_FACTOR;
    if (wavelen < high_wavelen) return 1.0f;
    if (wavelen > low_wavelen) return (float)L3_FACTOR;
    double smooth =
        (L3_ORIG_CTX / wavelen - L3_LOW_FREQ_FACTOR) / (L3_HIGH_FREQ_FACTOR - L3_LOW_FREQ_FACTOR);
    return (float)(1.0 / ((1.0 - smooth) / L3_FACTOR + smooth));
}

/* Converts n floats (n a multiple of 32 for Q8_0, 256 for the K-quants) to type at dst;
 * returns the bytes written. */
static size_t convert(int type, const float *x, size_t n, uint8_t *dst)
{
    if (type != SYN_DT_Q8_0 && syn_dtype_block_elems(type) > 1)
        return syn_quantize_row(type, x, dst, n);
    if (type == SYN_DT_F32) {
        memcpy(dst, x, n * 4);
        return n * 4;
    }
    if (type == SYN_DT_F16 || type == SYN_DT_BF16) {
        for (size_t i = 0; i < n; i++) {
            uint16_t h = type == SYN_DT_F16 ? syn_f32_to_f16(x[i]) : syn_f32_to_bf16(x[i]);
            memcpy(dst + 2 * i, &h, 2);
        }
        return n * 2;
    }
    /* Q8_0: per block of 32, d = max|x| / 127 stored as f16 and q = round(x / d), dividing by
     * the f16 value the reader will multiply by, so that d * q is as close to x as it can be.
     * Written as plain selects (no fmaxf, roundf: libm calls) so that it vectorises; this loop
     * runs a billion times for a 1B model. */
    struct syn_block_q8_0 b;
    for (size_t i = 0; i < n; i += SYN_QK8_0) {
        const float *xb = x + i;
        float m[8] = {0}; /* eight running maxima, so the compiler can use vector registers */
        for (int j = 0; j < SYN_QK8_0; j += 8)
            for (int l = 0; l < 8; l++) {
                float a = fabsf(xb[j + l]);
                m[l] = a > m[l] ? a : m[l];
            }
        float amax = 0.0f;
        for (int l = 0; l < 8; l++) amax = m[l] > amax ? m[l] : amax;
        b.d = syn_f32_to_f16(amax / 127.0f);
        float d = syn_f16_to_f32(b.d), id = d > 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < SYN_QK8_0; j++) {
            float v = xb[j] * id;
            v += v < 0.0f ? -0.5f : 0.5f; /* then truncation rounds half away from zero */
            v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
            b.q[j] = (int8_t)(int)v;
        }
        memcpy(dst, &b.d, 2);
        memcpy(dst + 2, b.q, SYN_QK8_0);
        dst += 2 + SYN_QK8_0;
    }
    return n / SYN_QK8_0 * (2 + SYN_QK8_0);
}

/* Generates tensor t chunk by chunk and appends it to f. 0 or -1 (write error). */
static int write_tensor(FILE *f, const struct cfg *c, const struct tplan *t, float *x,
                        uint8_t *bytes)
{
    struct rng r;
    rng_init(&r, c->seed, t->name);
    uint64_t total = t->ne[0] * t->ne[1];
    for (uint64_t done = 0; done < total;) {
        size_t n = total - done < CHUNK ? (size_t)(total - done) : CHUNK;
        if (t->kind == FILL_MATRIX)
            rng_fill(&r, x, n, t->scale, 0.0f);
        else if (t->kind == FILL_NORM)
            rng_fill(&r, x, n, 0.1f, 1.0f);
        else
            for (size_t i = 0; i < n; i++)
                x[i] = llama3_divisor((int)(done + i), c->s.head_dim, c->s.rope_theta);
        if (put(f, bytes, convert(t->type, x, n, bytes)) < 0) return -1;
        done += n;
    }
    return 0;
}

/* Writes the whole file to path. 0, or 1 after printing why. */
static int write_model(const struct cfg *c, const char *path, const struct tplan *t, int n_t,
                       const uint8_t *meta, size_t kv_end, uint64_t n_kv)
{
    FILE *f = fopen(path, "wb");
    float *x = malloc(CHUNK * sizeof *x);
    uint8_t *bytes = malloc(CHUNK * sizeof *x);
    int rc = 1;
    if (!f || !x || !bytes) goto out;
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    if (put_u32(f, SYN_GGUF_MAGIC) || put_u32(f, 3) || put_u64(f, (uint64_t)n_t) ||
        put_u64(f, n_kv) || put(f, meta + 24, kv_end - 24))
        goto out;
    uint64_t pos = kv_end;
    for (int i = 0; i < n_t; i++) {
        size_t len = strlen(t[i].name);
        if (put_u64(f, len) || put(f, t[i].name, len) || put_u32(f, (uint32_t)t[i].n_dims) ||
            put(f, t[i].ne, 8 * (size_t)t[i].n_dims) || put_u32(f, (uint32_t)t[i].type) ||
            put_u64(f, t[i].offset))
            goto out;
        pos += 8 + len + 4 + 8 * (uint64_t)t[i].n_dims + 4 + 8;
    }
    uint64_t data_start = align_up(pos, ALIGNMENT);
    if (put_zeros(f, data_start - pos)) goto out;
    for (int i = 0; i < n_t; i++) {
        uint64_t end = i + 1 < n_t ? t[i + 1].offset : t[i].offset + t[i].nbytes;
        if (write_tensor(f, c, &t[i], x, bytes) || put_zeros(f, end - t[i].offset - t[i].nbytes))
            goto out;
    }
    if (fflush(f) == 0) rc = 0;
out:
    if (rc) fprintf(stderr, "synapse %s: writing %s: %s\n", CMD, path, strerror(errno));
    if (f && fclose(f) != 0 && !rc) {
        fprintf(stderr, "synapse %s: writing %s: %s\n", CMD, path, strerror(errno));
        rc = 1;
    }
    free(x);
    free(bytes);
    return rc;
}

/* ---- the command ---- */

static void usage(FILE *f)
{
    fprintf(
        f,
        "Usage: synapse model random (--shape NAME | --dim N --layers N --heads N [--kv-heads N]\n"
        "                            [--ffn N] [--vocab N] [--head-dim N])\n"
        "                            --dtype f32|f16|bf16|q8_0|q4_1|q5_0|q5_1|q4_K|q5_K|q6_K|\n"
        "                                    q4_K_M\n"
        "                            [--tied] [--seed S]\n"
        "                            [--vocab-from FILE] -o FILE\n\n"
        "Writes a Llama-architecture GGUF v3 model with deterministic pseudo-random weights\n"
        "(the same seed gives the same bytes), for tests and benchmarks.\n\n"
        "Options:\n"
        "  --shape NAME       a published shape (flags below override its dimensions):\n");
    for (size_t i = 0; i < N_SHAPES; i++) {
        const struct shape *s = &shapes[i];
        fprintf(f,
                "                       %-15s dim %d, %d layers, %d/%d heads, ffn %d, vocab %d%s\n",
                s->name, s->dim, s->n_layer, s->n_head, s->n_kv_head, s->ffn, s->vocab,
                s->tied ? ", tied" : "");
    }
    fprintf(f,
            "  --dim N            hidden size\n"
            "  --layers N         transformer blocks\n"
            "  --heads N          query heads\n"
            "  --kv-heads N       key/value heads, dividing --heads (default: --heads, no GQA)\n"
            "  --head-dim N       per-head size, even (default: dim / heads)\n"
            "  --ffn N            SwiGLU hidden size (default: 8*dim/3 rounded up to 32)\n"
            "  --vocab N          vocabulary size (default 32000)\n"
            "  --ctx N            llama.context_length (default: the shape's, else 2048)\n"
            "  --rope-theta X     llama.rope.freq_base (default: the shape's, else 10000)\n"
            "  --llama3-rope      add rope_freqs.weight with Llama 3.1 scaling (factor 32)\n"
            "  --dtype T          f32, f16, bf16, q8_0, q4_1, q5_0, q5_1, q4_K, q5_K or q6_K\n"
            "                     for every matrix; norms stay f32. q4_K_M: q4_K, with q6_K\n"
            "                     for the output and for attn_v and ffn_down in the layers\n"
            "                     llama.cpp's Q4_K_M gives more bits, and its fallbacks (q5_0,\n"
            "                     q8_0) where rows are not whole 256s. The 32-element types\n"
            "                     (and q4_K_M) need dim, heads*head-dim and ffn to be multiples\n"
            "                     of 32, the K-quants of 256. Quantised types are fitted by\n"
            "                     plain min/max per block, not llama.cpp's error-minimising\n"
            "                     search\n"
            "  --tied             no output.weight: the output projection is token_embd\n"
            "  --seed S           seed of the weights (default 1)\n"
            "  --vocab-from FILE  copy the tokenizer.* keys of this GGUF (its token count must be\n"
            "                     the vocab size). Default: a shared vocab file of that size\n"
            "                     ($SYNAPSE_SHARED or ../shared beside the repository), else a\n"
            "                     synthesised byte-fallback SentencePiece vocab (needs >= 259)\n"
            "  -o, --output FILE  where to write the model\n"
            "  -h, --help         show this help\n");
}

enum {
    OPT_SHAPE = 256,
    OPT_DIM,
    OPT_LAYERS,
    OPT_HEADS,
    OPT_KV_HEADS,
    OPT_FFN,
    OPT_VOCAB,
    OPT_HEAD_DIM,
    OPT_CTX,
    OPT_ROPE_THETA,
    OPT_LLAMA3_ROPE,
    OPT_DTYPE,
    OPT_TIED,
    OPT_SEED,
    OPT_VOCAB_FROM,
};

/* Parses argv into c. 0, 2 (usage error, printed), or -1 (--help printed). */
static int parse_args(int argc, char **argv, struct cfg *c)
{
    static const struct option longopts[] = {
        {"shape", required_argument, 0, OPT_SHAPE},
        {"dim", required_argument, 0, OPT_DIM},
        {"layers", required_argument, 0, OPT_LAYERS},
        {"heads", required_argument, 0, OPT_HEADS},
        {"kv-heads", required_argument, 0, OPT_KV_HEADS},
        {"ffn", required_argument, 0, OPT_FFN},
        {"vocab", required_argument, 0, OPT_VOCAB},
        {"head-dim", required_argument, 0, OPT_HEAD_DIM},
        {"ctx", required_argument, 0, OPT_CTX},
        {"rope-theta", required_argument, 0, OPT_ROPE_THETA},
        {"llama3-rope", no_argument, 0, OPT_LLAMA3_ROPE},
        {"dtype", required_argument, 0, OPT_DTYPE},
        {"tied", no_argument, 0, OPT_TIED},
        {"seed", required_argument, 0, OPT_SEED},
        {"vocab-from", required_argument, 0, OPT_VOCAB_FROM},
        {"output", required_argument, 0, 'o'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    /* -1 = not given; the shape (if any) fills what the flags leave */
    long dim = -1, layers = -1, heads = -1, kv = -1, ffn = -1, vocab = -1, hd = -1, ctx = -1;
    double theta = -1;
    int tied = 0, l3 = 0, opt;
    const char *shape = NULL, *dtype = NULL;
    memset(c, 0, sizeof *c);
    c->seed = 1;
    c->norm_eps = 1e-5f;
    while ((opt = cli_getopt(CMD, argc, argv, "o:h", longopts)) != -1) {
        long v;
        switch (opt) {
        case OPT_SHAPE:
            shape = optarg;
            break;
        case OPT_DIM:
            if (cli_parse_long(CMD, "--dim", optarg, 1, 65536, &dim) < 0) return 2;
            break;
        case OPT_LAYERS:
            if (cli_parse_long(CMD, "--layers", optarg, 1, 1024, &layers) < 0) return 2;
            break;
        case OPT_HEADS:
            if (cli_parse_long(CMD, "--heads", optarg, 1, 1024, &heads) < 0) return 2;
            break;
        case OPT_KV_HEADS:
            if (cli_parse_long(CMD, "--kv-heads", optarg, 1, 1024, &kv) < 0) return 2;
            break;
        case OPT_FFN:
            if (cli_parse_long(CMD, "--ffn", optarg, 1, 1 << 20, &ffn) < 0) return 2;
            break;
        case OPT_VOCAB:
            if (cli_parse_long(CMD, "--vocab", optarg, 1, 1 << 20, &vocab) < 0) return 2;
            break;
        case OPT_HEAD_DIM:
            if (cli_parse_long(CMD, "--head-dim", optarg, 2, 1024, &hd) < 0) return 2;
            break;
        case OPT_CTX:
            if (cli_parse_long(CMD, "--ctx", optarg, 1, 1 << 24, &ctx) < 0) return 2;
            break;
        case OPT_ROPE_THETA:
            if (cli_parse_double(CMD, "--rope-theta", optarg, 1.0, 1e9, &theta) < 0) return 2;
            break;
        case OPT_LLAMA3_ROPE:
            l3 = 1;
            break;
        case OPT_DTYPE:
            dtype = optarg;
            break;
        case OPT_TIED:
            tied = 1;
            break;
        case OPT_SEED:
            if (cli_parse_long(CMD, "--seed", optarg, 0, LONG_MAX, &v) < 0) return 2;
            c->seed = (uint64_t)v;
            break;
        case OPT_VOCAB_FROM:
            c->vocab_from = optarg;
            break;
        case 'o':
            c->out = optarg;
            break;
        case 'h':
            usage(stdout);
            return -1;
        default:
            return 2;
        }
    }
    if (optind < argc) return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);

    struct shape *s = &c->s;
    if (shape) {
        size_t i = 0;
        while (i < N_SHAPES && strcmp(shapes[i].name, shape)) i++;
        if (i == N_SHAPES) return cli_usage_error(CMD, "unknown --shape '%s'", shape);
        *s = shapes[i];
    } else {
        if (dim < 0 || layers < 0 || heads < 0)
            return cli_usage_error(CMD, "give --shape NAME, or --dim, --layers and --heads");
        s->name = "random";
        s->vocab = 32000;
        s->ctx = 2048;
        s->rope_theta = 10000.0f;
    }
    if (dim > 0) s->dim = (int)dim;
    if (layers > 0) s->n_layer = (int)layers;
    if (heads > 0) {
        s->n_head = (int)heads;
        if (shape && kv < 0) s->n_kv_head = (int)heads;
        if (shape && hd < 0) s->head_dim = 0;
    }
    if (kv > 0) s->n_kv_head = (int)kv;
    if (!s->n_kv_head) s->n_kv_head = s->n_head;
    if (hd > 0) s->head_dim = (int)hd;
    if (ffn > 0) s->ffn = (int)ffn;
    if (!s->ffn) s->ffn = (int)align_up(((uint64_t)s->dim * 8 + 2) / 3, 32);
    if (vocab > 0) s->vocab = (int)vocab;
    if (ctx > 0) s->ctx = (int)ctx;
    if (theta > 0) s->rope_theta = (float)theta;
    if (tied) s->tied = 1;
    if (l3) s->llama3_rope = 1;

    if (!s->head_dim) {
        if (s->dim % s->n_head)
            return cli_usage_error(CMD, "--dim %d is not a multiple of --heads %d; give --head-dim",
                                   s->dim, s->n_head);
        s->head_dim = s->dim / s->n_head;
    }
    if (s->head_dim % 2)
        return cli_usage_error(CMD, "head_dim must be even for RoPE, got %d", s->head_dim);
    if (s->n_head % s->n_kv_head)
        return cli_usage_error(CMD, "--kv-heads %d must divide --heads %d", s->n_kv_head,
                               s->n_head);
    if (!dtype)
        return cli_usage_error(CMD, "--dtype is required (f32, f16, bf16, q8_0, q4_1, q5_0, q5_1, "
                                    "q4_K, q5_K, q6_K or q4_K_M)");
    c->q4_k_m = !strcasecmp(dtype, "q4_K_M");
    c->dtype = c->q4_k_m ? SYN_DT_Q4_K : syn_dtype_parse(dtype);
    if (c->dtype < 0 || c->dtype == SYN_DT_Q4_0) /* q4_0 has no writer here */
        return cli_usage_error(CMD,
                               "--dtype must be f32, f16, bf16, q8_0, q4_1, q5_0, q5_1, q4_K, "
                               "q5_K, q6_K or q4_K_M, got '%s'",
                               dtype);
    /* q4_K_M falls back to 32-element blocks where rows are not whole super-blocks */
    const int block = c->q4_k_m ? 32 : syn_dtype_block_elems(c->dtype);
    if (block > 1) {
        /* every matrix is quantised along its rows (ne[0]), in whole blocks */
        const char *what[] = {"dim", "heads * head_dim", "ffn"};
        long k[] = {s->dim, (long)s->n_head * s->head_dim, s->ffn};
        for (int i = 0; i < 3; i++)
            if (k[i] % block)
                return cli_usage_error(CMD,
                                       "%s quantises each matrix row in blocks of %d, so %s "
                                       "must be a multiple of %d, got %ld",
                                       dtype, block, what[i], block, k[i]);
    }
    if (!c->out) return cli_usage_error(CMD, "-o FILE is required");
    return 0;
}

int cmd_model_random(int argc, char **argv)
{
    struct cfg c;
    int rc = parse_args(argc, argv, &c);
    if (rc) return rc < 0 ? 0 : rc;

    const struct shape *s = &c.s;
    char tmp_path[PATH_MAX], vocab_desc[PATH_MAX + 64];
    uint8_t *meta = NULL;
    size_t meta_size = 0, kv_end;
    uint64_t n_kv;
    struct stat st;
    struct tplan *t = calloc((size_t)s->n_layer * 9 + 5, sizeof *t);
    rc = 1;
    if (!t) {
        fprintf(stderr, "synapse %s: out of memory\n", CMD);
        return 1;
    }
    /* A regular file is written beside itself and renamed into place, so that a failure never
     * leaves half a model under the name; anything else (/dev/null, a pipe) is written as is. */
    int in_place = stat(c.out, &st) == 0 && !S_ISREG(st.st_mode);
    if (snprintf(tmp_path, sizeof tmp_path, "%s.tmp.%d", c.out, (int)getpid()) >=
        (int)sizeof tmp_path) {
        fprintf(stderr, "synapse %s: output path too long\n", CMD);
        goto out;
    }
    int n_t = plan_tensors(&c, t);
    if (build_metadata(&c, &meta, &meta_size, vocab_desc, sizeof vocab_desc)) goto out;
    if (kv_section(meta, meta_size, &n_kv, &kv_end) < 0) {
        fprintf(stderr, "synapse %s: the GGUF writer's output has an unexpected layout\n", CMD);
        goto out;
    }
    if (write_model(&c, in_place ? c.out : tmp_path, t, n_t, meta, kv_end, n_kv)) {
        if (!in_place) unlink(tmp_path);
        goto out;
    }
    if (!in_place && rename(tmp_path, c.out) != 0) {
        fprintf(stderr, "synapse %s: renaming %s to %s: %s\n", CMD, tmp_path, c.out,
                strerror(errno));
        unlink(tmp_path);
        goto out;
    }
    uint64_t params = 0, bytes = 0;
    for (int i = 0; i < n_t; i++) {
        params += t[i].ne[0] * t[i].ne[1];
        bytes = t[i].offset + t[i].nbytes;
    }
    printf("wrote %s: %s, dim %d, %d layers, %d heads / %d kv heads of %d, ffn %d, vocab %d%s, "
           "%s, seed %llu, %.2f M parameters, %.1f MiB of tensors; %s\n",
           c.out, s->name, s->dim, s->n_layer, s->n_head, s->n_kv_head, s->head_dim, s->ffn,
           s->vocab, s->tied ? " (tied)" : "", c.q4_k_m ? "q4_K_M" : syn_dtype_name(c.dtype),
           (unsigned long long)c.seed, (double)params / 1e6, (double)bytes / (1024.0 * 1024.0),
           vocab_desc);
    rc = 0;
out:
    free(meta);
    free(t);
    return rc;
}
