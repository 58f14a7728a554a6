/*
 * The GGUF reader and writer, the dtype helpers and `synapse model info`: the real stories260K
 * file, writer round trips, hostile files (built here byte by byte, then corrupted), exact
 * f16/bf16 rounding, hand-built quantised blocks, and the command's output and exit codes.
 */
#include "harness.h"

#include "synapse/error.h"
#include "synapse/gguf.h"
#include "synapse/tensor.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <sys/stat.h>

/* ---- helpers ---- */

static const char *stories_path(void)
{
    const char *p = syn_test_shared("models/stories260K.gguf");
    if (access(p, R_OK) != 0) SKIP("%s is missing", p);
    return p;
}

/* A growable byte buffer for building files by hand. */
struct bb {
    uint8_t *p; /* malloc'ed */
    size_t len; /* bytes used */
    size_t cap; /* bytes allocated */
};

static void bb_raw(struct bb *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        CHECK(b->p);
    }
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void bb_u32(struct bb *b, uint32_t v)
{
    uint8_t x[4];
    for (int k = 0; k < 4; k++) x[k] = (uint8_t)(v >> (8 * k));
    bb_raw(b, x, 4);
}

static void bb_u64(struct bb *b, uint64_t v)
{
    uint8_t x[8];
    for (int k = 0; k < 8; k++) x[k] = (uint8_t)(v >> (8 * k));
    bb_raw(b, x, 8);
}

static void bb_str(struct bb *b, const char *s)
{
    bb_u64(b, strlen(s));
    bb_raw(b, s, strlen(s));
}

static void bb_pad(struct bb *b, size_t align)
{
    while (b->len % align) bb_raw(b, "", 1);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int k = 0; k < 4; k++) p[k] = (uint8_t)(v >> (8 * k));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int k = 0; k < 8; k++) p[k] = (uint8_t)(v >> (8 * k));
}

/* The small valid file the hostile tests corrupt, with the offsets of the fields they patch. */
struct small {
    struct bb b;
    size_t version, n_tensors, n_kv;    /* header fields */
    size_t key0_len, key0;              /* "general.architecture": its length field, its bytes */
    size_t key0_type, str_len;          /* its value type and the string value's length */
    size_t arr_type, arr_n;             /* "test.ids" = [u32; 3]: element type and count */
    size_t align_type, align_val;       /* "general.alignment" = u32 32 */
    size_t t0_name, t0_ndims, t0_ne[2]; /* tensor "tok.weight": f32 [4, 2] at 0 */
    size_t t0_type, t0_off;
    size_t t1_ndims, t1_ne0, t1_type, t1_off; /* tensor "out.weight": f16 [8] at 32 */
    size_t data;                              /* start of the data section */
};

static void build_small(struct small *s)
{
    struct bb *b = &s->b;
    memset(s, 0, sizeof *s);
    bb_raw(b, "GGUF", 4);
    s->version = b->len, bb_u32(b, 3);
    s->n_tensors = b->len, bb_u64(b, 2);
    s->n_kv = b->len, bb_u64(b, 4);
    s->key0_len = b->len, bb_u64(b, 20);
    s->key0 = b->len, bb_raw(b, "general.architecture", 20);
    s->key0_type = b->len, bb_u32(b, SYN_GGUF_STRING);
    s->str_len = b->len, bb_str(b, "llama");
    bb_str(b, "test.ids");
    bb_u32(b, SYN_GGUF_ARRAY);
    s->arr_type = b->len, bb_u32(b, SYN_GGUF_UINT32);
    s->arr_n = b->len, bb_u64(b, 3);
    for (uint32_t v = 7; v < 10; v++) bb_u32(b, v);
    bb_str(b, "tokenizer.ggml.tokens");
    bb_u32(b, SYN_GGUF_ARRAY);
    bb_u32(b, SYN_GGUF_STRING);
    bb_u64(b, 3);
    bb_str(b, "a");
    bb_str(b, "bc");
    bb_str(b, "d\u00e9f"); /* UTF-8 */
    bb_str(b, "general.alignment");
    s->align_type = b->len, bb_u32(b, SYN_GGUF_UINT32);
    s->align_val = b->len, bb_u32(b, 32);

    s->t0_name = b->len, bb_str(b, "tok.weight");
    s->t0_ndims = b->len, bb_u32(b, 2);
    s->t0_ne[0] = b->len, bb_u64(b, 4);
    s->t0_ne[1] = b->len, bb_u64(b, 2);
    s->t0_type = b->len, bb_u32(b, SYN_DT_F32);
    s->t0_off = b->len, bb_u64(b, 0);
    bb_str(b, "out.weight");
    s->t1_ndims = b->len, bb_u32(b, 1);
    s->t1_ne0 = b->len, bb_u64(b, 8);
    s->t1_type = b->len, bb_u32(b, SYN_DT_F16);
    s->t1_off = b->len, bb_u64(b, 32);
    bb_pad(b, 32);
    s->data = b->len;
    for (int i = 0; i < 8; i++) {
        float f = (float)i + 0.5f;
        bb_raw(b, &f, 4);
    }
    for (int i = 0; i < 8; i++) {
        uint8_t h[2] = {0x00, 0x3c}; /* 1.0 */
        bb_raw(b, h, 2);
    }
}

/* Parses a private copy of exactly len bytes (so that ASan flags any read past the end) and
 * checks the error code and that the message contains want. */
static void expect_error_at(int line, const void *data, size_t len, int code, const char *want)
{
    char err[600] = "";
    struct syn_gguf *g = NULL;
    uint8_t *copy = malloc(len ? len : 1);
    CHECK(copy);
    if (len) memcpy(copy, data, len);
    int rc = syn_gguf_parse(copy, len, &g, err, sizeof err);
    if (rc != code)
        FAIL("line %d: expected %d (%s), got %d (%s): %s", line, code, syn_strerror(code), rc,
             syn_strerror(rc), err);
    if (g) FAIL("line %d: handle set on failure", line);
    if (!strstr(err, want)) FAIL("line %d: message \"%s\" lacks \"%s\"", line, err, want);
    free(copy);
}
#define EXPECT_ERROR(data, len, code, want) expect_error_at(__LINE__, data, len, code, want)

/* Reads every part of a parsed file the way a user of the API would, so that ASan sees any
 * pointer the reader got wrong. */
static volatile uint8_t sink;

static void walk(const struct syn_gguf *g)
{
    char buf[512];
    for (int64_t i = 0; i < syn_gguf_n_kv(g); i++) {
        CHECK(syn_gguf_key(g, i));
        CHECK_EQ_INT(syn_gguf_find_key(g, syn_gguf_key(g, i)), i);
        size_t n = syn_gguf_format_value(g, i, buf, sizeof buf, 40);
        CHECK(n < sizeof buf && strlen(buf) == n);
        if (syn_gguf_kv_type(g, i) == SYN_GGUF_ARRAY &&
            syn_gguf_arr_type(g, i) == SYN_GGUF_STRING) {
            for (uint64_t j = 0; j < syn_gguf_arr_n(g, i); j++) {
                const char *s;
                size_t len;
                CHECK_EQ_INT(syn_gguf_arr_str(g, i, j, &s, &len), 0);
                if (len) sink = (uint8_t)(s[0] ^ s[len - 1]);
            }
        }
    }
    for (int64_t i = 0; i < syn_gguf_n_tensors(g); i++) {
        const struct syn_tensor *t = syn_gguf_tensor(g, i);
        const uint8_t *d = t->data;
        CHECK(t->nbytes > 0);
        sink = d[0] ^ d[t->nbytes - 1];
        CHECK(syn_gguf_find_tensor(g, t->name) == t);
    }
}

/* ---- the real file ---- */

TEST(gguf_reads_stories260k)
{
    struct syn_gguf *g = NULL;
    char err[512] = "";
    int rc = syn_gguf_open(stories_path(), &g, err, sizeof err);
    if (rc) FAIL("open: %d %s", rc, err);
    CHECK_EQ_INT(syn_gguf_version(g), 3);
    CHECK_EQ_INT(syn_gguf_alignment(g), 32);
    CHECK_EQ_INT(syn_gguf_size(g), 1185376);
    CHECK_EQ_INT(syn_gguf_data_offset(g), 14176);
    CHECK_EQ_INT(syn_gguf_n_kv(g), 19);
    CHECK_EQ_INT(syn_gguf_n_tensors(g), 48);

    const char *s;
    size_t len;
    CHECK_EQ_INT(syn_gguf_get_str(g, "general.architecture", &s, &len), 0);
    CHECK(len == 5 && !memcmp(s, "llama", 5));
    uint32_t u;
    CHECK_EQ_INT(syn_gguf_get_u32(g, "llama.embedding_length", &u), 0);
    CHECK_EQ_INT(u, 64);
    CHECK_EQ_INT(syn_gguf_get_u32(g, "llama.block_count", &u), 0);
    CHECK_EQ_INT(u, 5);
    CHECK_EQ_INT(syn_gguf_get_u32(g, "llama.attention.head_count_kv", &u), 0);
    CHECK_EQ_INT(u, 4);
    uint64_t u64;
    CHECK_EQ_INT(syn_gguf_get_u64(g, "tokenizer.ggml.padding_token_id", &u64), 0);
    CHECK_EQ_INT(u64, 4294967295u);
    float eps;
    CHECK_EQ_INT(syn_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &eps), 0);
    CHECK_NEAR(eps, 1e-5, 1e-12);
    /* absent keys and wrong types */
    CHECK_EQ_INT(syn_gguf_find_key(g, "llama.rope.freq_base"), -1);
    CHECK_EQ_INT(syn_gguf_get_u32(g, "llama.rope.freq_base", &u), SYN_ENOTFOUND);
    CHECK_EQ_INT(syn_gguf_get_u32(g, "general.architecture", &u), SYN_EFORMAT);
    CHECK_EQ_INT(syn_gguf_get_f32(g, "llama.block_count", &eps), SYN_EFORMAT);
    int b;
    CHECK_EQ_INT(syn_gguf_get_bool(g, "llama.block_count", &b), SYN_EFORMAT);

    /* the vocabulary: a string array with O(1) elements */
    int64_t tok = syn_gguf_find_key(g, "tokenizer.ggml.tokens");
    CHECK_EQ_INT(tok, 0);
    CHECK_EQ_STR(syn_gguf_key(g, tok), "tokenizer.ggml.tokens");
    CHECK_EQ_INT(syn_gguf_kv_type(g, tok), SYN_GGUF_ARRAY);
    CHECK_EQ_INT(syn_gguf_arr_type(g, tok), SYN_GGUF_STRING);
    CHECK_EQ_INT(syn_gguf_arr_n(g, tok), 512);
    CHECK(syn_gguf_arr_data(g, tok) == NULL);
    CHECK_EQ_INT(syn_gguf_arr_str(g, tok, 1, &s, &len), 0);
    CHECK(len == 3 && !memcmp(s, "<s>", 3));
    CHECK_EQ_INT(syn_gguf_arr_str(g, tok, 510, &s, &len), 0);
    CHECK(len == 1 && s[0] == '~');
    CHECK_EQ_INT(syn_gguf_arr_str(g, tok, 512, &s, &len), SYN_ERANGE);
    int64_t types = syn_gguf_find_key(g, "tokenizer.ggml.token_type");
    CHECK_EQ_INT(syn_gguf_arr_type(g, types), SYN_GGUF_INT32);
    const uint8_t *tt = syn_gguf_arr_data(g, types);
    CHECK(tt && tt[0] == 2 && tt[4] == 3 && tt[12] == 6);
    CHECK_EQ_INT(syn_gguf_arr_str(g, types, 0, &s, &len), SYN_EFORMAT);

    /* tensors: shape, type, size, and data where the file has it */
    const struct syn_tensor *t = syn_gguf_find_tensor(g, "token_embd.weight");
    CHECK(t && t == syn_gguf_tensor(g, 0));
    CHECK_EQ_STR(t->name, "token_embd.weight");
    CHECK_EQ_INT(t->type, SYN_DT_F32);
    CHECK_EQ_INT(t->n_dims, 2);
    CHECK(t->ne[0] == 64 && t->ne[1] == 512 && t->ne[2] == 1 && t->ne[3] == 1);
    CHECK_EQ_INT(t->nbytes, 64 * 512 * 4);
    CHECK(t->data == (const uint8_t *)syn_gguf_base(g) + 14176);
    float f;
    memcpy(&f, t->data, 4);
    CHECK_NEAR(f, -0.29474878, 1e-7);
    t = syn_gguf_find_tensor(g, "blk.3.attn_q.weight");
    CHECK(t && t->ne[0] == 64 && t->ne[1] == 64 && t->nbytes == 16384);
    CHECK(t->data == (const uint8_t *)syn_gguf_base(g) + 14176 + 807680);
    CHECK(syn_gguf_find_tensor(g, "blk.5.attn_q.weight") == NULL);
    CHECK(syn_gguf_tensor(g, 48) == NULL && syn_gguf_tensor(g, -1) == NULL);
    walk(g);
    syn_gguf_free(g);
    syn_gguf_free(NULL);
}

TEST(gguf_reads_vocab_only_file_without_padding)
{
    /* tokenizer test files have no tensors and end right after the header, unpadded */
    const char *p = syn_test_shared("testdata/tokenizer/ggml-vocab-llama-spm.gguf");
    if (access(p, R_OK) != 0) SKIP("%s is missing", p);
    struct syn_gguf *g = NULL;
    char err[512] = "";
    int rc = syn_gguf_open(p, &g, err, sizeof err);
    if (rc) FAIL("open: %d %s", rc, err);
    CHECK_EQ_INT(syn_gguf_n_tensors(g), 0);
    CHECK_EQ_INT(syn_gguf_data_offset(g), syn_gguf_size(g));
    int64_t tok = syn_gguf_find_key(g, "tokenizer.ggml.tokens");
    CHECK_EQ_INT(syn_gguf_arr_n(g, tok), 32000);
    const char *s;
    size_t len;
    CHECK_EQ_INT(syn_gguf_arr_str(g, tok, 2, &s, &len), 0);
    CHECK(len == 4 && !memcmp(s, "</s>", 4));
    int add_bos = 0;
    CHECK_EQ_INT(syn_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos), 0);
    CHECK_EQ_INT(add_bos, 1);
    syn_gguf_free(g);
}

TEST(gguf_open_errors)
{
    struct syn_gguf *g = NULL;
    char err[512] = "";
    char path[600];
    CHECK_EQ_INT(syn_gguf_open("/nonexistent/x.gguf", &g, err, sizeof err), SYN_EIO);
    CHECK(strstr(err, "/nonexistent/x.gguf"));
    CHECK_EQ_INT(syn_gguf_open(syn_test_tmpdir(), &g, err, sizeof err), SYN_EUNSUPPORTED);
    CHECK(strstr(err, "not a GGUF file"));
    snprintf(path, sizeof path, "%s/empty.gguf", syn_test_tmpdir());
    FILE *f = fopen(path, "wb");
    CHECK(f);
    fclose(f);
    CHECK_EQ_INT(syn_gguf_open(path, &g, err, sizeof err), SYN_EFORMAT);
    CHECK(strstr(err, "0 bytes"));
    CHECK(g == NULL);
}

/* ---- the writer ---- */

TEST(gguf_writer_round_trip_every_type)
{
    struct syn_gguf_writer *w = syn_gguf_writer_new();
    CHECK(w);
    CHECK_EQ_INT(syn_gguf_writer_add_u32(w, "t.u32", 0xdeadbeefu), 0);
    CHECK_EQ_INT(syn_gguf_writer_add_i32(w, "t.i32", -123456), 0);
    CHECK_EQ_INT(syn_gguf_writer_add_f32(w, "t.f32", 3.5f), 0);
    CHECK_EQ_INT(syn_gguf_writer_add_bool(w, "t.bool", 7), 0);
    CHECK_EQ_INT(syn_gguf_writer_add_str(w, "t.str", "h\xc3\xa9llo\n\"x\"\x1b"), 0);
    const uint8_t a_u8[] = {1, 2, 255};
    const int8_t a_i8[] = {-1, 0, 127};
    const uint16_t a_u16[] = {0, 65535};
    const int16_t a_i16[] = {-32768, 5};
    const uint32_t a_u32[] = {1, 2, 3, 4};
    const int32_t a_i32[] = {-7};
    const float a_f32[] = {1.5f, -2.0f};
    const uint64_t a_u64[] = {(1ull << 63) + 5};
    const int64_t a_i64[] = {-(1ll << 62)};
    const double a_f64[] = {3.25};
    const uint8_t a_bool[] = {1, 0, 1};
    CHECK_EQ_INT(syn_gguf_writer_add_arr(w, "a.u8", SYN_GGUF_UINT8, a_u8, 3), 0);
    CHECK_EQ_INT(syn_gguf_writer_add_arr(w, "a.i8", SYN_GGUF_INT8, a_i8, 3), 0);
    CHECK_EQ_INT(syn_gguf_writer_add_arr(w, "a.u16", SYN_GGUF_UINT16, a_u16, 2), 0);
    CHECK_EQ_INT(syn_gguf_writer_add_arr(w, "a.i16", SYN_GGUF_INT16, a_i16, 2), 0);
    CHECK_EQ_INT(syn_gguf_writer_add_arr(w, "a.u32", SYN_GGUF_UINT32, a_u32, 4), 0);
    CHECK_EQ_INT(syn_gguf_writer_add_arr(w, "a.i32", SYN_GGUF_INT32, a_i32, 1), 0);
    CHECK_EQ_INT(syn_gguf_writer_add_arr(w, "a.f32", SYN_GGUF_FLOAT32, a_f32, 2), 0);
    CHECK_EQ_INT(syn_gguf_writer_add_arr(w, "a.u64", SYN_GGUF_UINT64, a_u64, 1), 0);
    CHECK_EQ_INT(syn_gguf_writer_add_arr(w, "a.i64", SYN_GGUF_INT64, a_i64, 1), 0);
    CHECK_EQ_INT(syn_gguf_writer_add_arr(w, "a.f64", SYN_GGUF_FLOAT64, a_f64, 1), 0);
    CHECK_EQ_INT(syn_gguf_writer_add_arr(w, "a.bool", SYN_GGUF_BOOL, a_bool, 3), 0);
    CHECK_EQ_INT(syn_gguf_writer_add_arr(w, "a.empty", SYN_GGUF_UINT32, NULL, 0), 0);
    const char *strs[] = {"a", "", "x\0y", "\xff"};
    const size_t lens[] = {1, 0, 3, 1};
    CHECK_EQ_INT(syn_gguf_writer_add_arr_str(w, "a.str", strs, lens, 4), 0);
    CHECK_EQ_INT(syn_gguf_writer_set_alignment(w, 64), 0);

    /* the writer refuses what would make a bad file */
    CHECK_EQ_INT(syn_gguf_writer_add_u32(w, "t.u32", 1), SYN_EINVAL);
    CHECK_EQ_INT(syn_gguf_writer_add_u32(w, "", 1), SYN_EINVAL);
    CHECK_EQ_INT(syn_gguf_writer_add_u32(w, "bad.\xc0\xaf", 1), SYN_EINVAL);
    CHECK_EQ_INT(syn_gguf_writer_add_arr(w, "a.s", SYN_GGUF_STRING, strs, 1), SYN_EINVAL);
    CHECK_EQ_INT(syn_gguf_writer_set_alignment(w, 48), SYN_EINVAL);

    /* tensors of several types, with recognisable bytes */
    struct {
        const char *name;
        int type, n_dims;
        uint64_t ne[4];
        uint64_t nbytes;
    } ts[] = {
        {"w.f32", SYN_DT_F32, 2, {3, 2, 1, 1}, 24},
        {"w.f16", SYN_DT_F16, 1, {4, 1, 1, 1}, 8},
        {"w.bf16", SYN_DT_BF16, 3, {2, 2, 2, 1}, 16},
        {"w.q8_0", SYN_DT_Q8_0, 2, {64, 2, 1, 1}, 4 * 34},
        {"w.q4_0", SYN_DT_Q4_0, 2, {32, 3, 1, 1}, 3 * 18},
        {"w.q4_k", SYN_DT_Q4_K, 1, {256, 1, 1, 1}, 144},
        {"w.i32", SYN_DT_I32, 1, {5, 1, 1, 1}, 20},
        {"w.4d", SYN_DT_F32, 4, {1, 2, 1, 3}, 24},
    };
    const int nt = (int)(sizeof ts / sizeof ts[0]);
    uint8_t data[8][160];
    for (int i = 0; i < nt; i++) {
        for (size_t k = 0; k < sizeof data[i]; k++) data[i][k] = (uint8_t)(i * 31 + k * 7 + 1);
        CHECK_EQ_INT(syn_gguf_writer_add_tensor(w, ts[i].name, ts[i].type, ts[i].n_dims, ts[i].ne,
                                                data[i], ts[i].nbytes),
                     0);
    }
    uint64_t ne[4] = {32, 1, 1, 1};
    CHECK_EQ_INT(syn_gguf_writer_add_tensor(w, "w.f32", SYN_DT_F32, 1, ne, data[0], 128),
                 SYN_EINVAL); /* duplicate */
    CHECK_EQ_INT(syn_gguf_writer_add_tensor(w, "x", SYN_DT_F32, 1, ne, data[0], 100), SYN_EINVAL);
    CHECK_EQ_INT(syn_gguf_writer_add_tensor(w, "x", SYN_DT_F32, 5, ne, data[0], 128), SYN_EINVAL);
    CHECK_EQ_INT(syn_gguf_writer_add_tensor(w, "x", 99, 1, ne, data[0], 128), SYN_EINVAL);
    ne[0] = 16;
    CHECK_EQ_INT(syn_gguf_writer_add_tensor(w, "x", SYN_DT_Q8_0, 1, ne, data[0], 17), SYN_EINVAL);
    ne[0] = 0;
    CHECK_EQ_INT(syn_gguf_writer_add_tensor(w, "x", SYN_DT_F32, 1, ne, data[0], 0), SYN_EINVAL);

    char path[600], err[512] = "";
    snprintf(path, sizeof path, "%s/all.gguf", syn_test_tmpdir());
    int rc = syn_gguf_writer_write(w, path, err, sizeof err);
    if (rc) FAIL("write: %d %s", rc, err);
    syn_gguf_writer_free(w);

    struct syn_gguf *g = NULL;
    rc = syn_gguf_open(path, &g, err, sizeof err);
    if (rc) FAIL("open: %d %s", rc, err);
    CHECK_EQ_INT(syn_gguf_version(g), 3);
    CHECK_EQ_INT(syn_gguf_alignment(g), 64);
    CHECK_EQ_INT(syn_gguf_n_kv(g), 19); /* 18 added + general.alignment */
    CHECK_EQ_INT(syn_gguf_data_offset(g) % 64, 0);

    uint32_t u;
    int64_t i64;
    uint64_t u64;
    float f;
    int b;
    const char *s;
    size_t len;
    char buf[256];
    CHECK_EQ_INT(syn_gguf_get_u32(g, "general.alignment", &u), 0);
    CHECK_EQ_INT(u, 64);
    CHECK_EQ_INT(syn_gguf_get_u32(g, "t.u32", &u), 0);
    CHECK_EQ_INT(u, 0xdeadbeefu);
    CHECK_EQ_INT(syn_gguf_get_i64(g, "t.i32", &i64), 0);
    CHECK_EQ_INT(i64, -123456);
    CHECK_EQ_INT(syn_gguf_get_u64(g, "t.i32", &u64), SYN_EFORMAT); /* negative */
    CHECK_EQ_INT(syn_gguf_get_u64(g, "t.u32", &u64), 0);
    CHECK_EQ_INT(u64, 0xdeadbeefu);
    CHECK_EQ_INT(syn_gguf_get_f32(g, "t.f32", &f), 0);
    CHECK(f == 3.5f);
    CHECK_EQ_INT(syn_gguf_get_bool(g, "t.bool", &b), 0);
    CHECK_EQ_INT(b, 1);
    CHECK_EQ_INT(syn_gguf_get_str(g, "t.str", &s, &len), 0);
    CHECK(len == 11 && !memcmp(s, "h\xc3\xa9llo\n\"x\"\x1b", 11));

    /* display: values in full, strings escaped, arrays with their type and count */
#define SHOWS(key, max, want)                                                                      \
    do {                                                                                           \
        syn_gguf_format_value(g, syn_gguf_find_key(g, key), buf, sizeof buf, max);                 \
        CHECK_EQ_STR(buf, want);                                                                   \
    } while (0)
    SHOWS("t.u32", 0, "3735928559");
    SHOWS("t.i32", 0, "-123456");
    SHOWS("t.f32", 0, "3.5");
    SHOWS("t.bool", 0, "true");
    SHOWS("t.str", 0, "\"h\xc3\xa9llo\\n\\\"x\\\"\\x1b\"");
    SHOWS("t.str", 3, "\"h\xc3\xa9\"...(11 bytes)");
    SHOWS("a.u8", 0, "[u8; 3] 1, 2, 255");
    SHOWS("a.i8", 0, "[i8; 3] -1, 0, 127");
    SHOWS("a.u16", 0, "[u16; 2] 0, 65535");
    SHOWS("a.i16", 0, "[i16; 2] -32768, 5");
    SHOWS("a.u32", 0, "[u32; 4] 1, 2, 3, 4");
    SHOWS("a.u32", 3, "[u32; 4] 1, 2 ...");
    SHOWS("a.i32", 0, "[i32; 1] -7");
    SHOWS("a.f32", 0, "[f32; 2] 1.5, -2");
    SHOWS("a.u64", 0, "[u64; 1] 9223372036854775813");
    SHOWS("a.i64", 0, "[i64; 1] -4611686018427387904");
    SHOWS("a.f64", 0, "[f64; 1] 3.25");
    SHOWS("a.bool", 0, "[bool; 3] true, false, true");
    SHOWS("a.empty", 0, "[u32; 0]");
    SHOWS("a.str", 0, "[string; 4] \"a\", \"\", \"x\\x00y\", \"\\xff\"");
    /* a buffer too small never ends in half an element */
    size_t n = syn_gguf_format_value(g, syn_gguf_find_key(g, "a.u32"), buf, 14, 0);
    CHECK_EQ_STR(buf, "[u32; 4] 1, 2");
    CHECK_EQ_INT(n, 13);

    int64_t ai = syn_gguf_find_key(g, "a.u16");
    CHECK(!memcmp(syn_gguf_arr_data(g, ai), "\x00\x00\xff\xff", 4));
    ai = syn_gguf_find_key(g, "a.str");
    CHECK_EQ_INT(syn_gguf_arr_str(g, ai, 2, &s, &len), 0);
    CHECK(len == 3 && !memcmp(s, "x\0y", 3));
    CHECK_EQ_INT(syn_gguf_arr_str(g, ai, 4, &s, &len), SYN_ERANGE);

    CHECK_EQ_INT(syn_gguf_n_tensors(g), nt);
    const uint8_t *base = syn_gguf_base(g);
    for (int i = 0; i < nt; i++) {
        const struct syn_tensor *t = syn_gguf_tensor(g, i);
        CHECK_EQ_STR(t->name, ts[i].name);
        CHECK_EQ_INT(t->type, ts[i].type);
        CHECK_EQ_INT(t->n_dims, ts[i].n_dims);
        for (int d = 0; d < 4; d++) CHECK_EQ_INT(t->ne[d], ts[i].ne[d]);
        CHECK_EQ_INT(t->nbytes, ts[i].nbytes);
        CHECK_EQ_INT(((const uint8_t *)t->data - base) % 64, 0);
        CHECK(!memcmp(t->data, data[i], ts[i].nbytes));
    }
    /* no padding after the last tensor */
    const struct syn_tensor *last = syn_gguf_tensor(g, nt - 1);
    CHECK_EQ_INT((const uint8_t *)last->data + last->nbytes - base, syn_gguf_size(g));
    walk(g);
    syn_gguf_free(g);
}

TEST(gguf_writer_copies_stories260k_byte_for_byte)
{
    struct syn_gguf *src = NULL, *g = NULL;
    char err[512] = "", path[600];
    int rc = syn_gguf_open(stories_path(), &src, err, sizeof err);
    if (rc) FAIL("open: %s", err);
    struct syn_gguf_writer *w = syn_gguf_writer_new();
    for (int64_t i = 0; i < syn_gguf_n_kv(src); i++)
        CHECK_EQ_INT(syn_gguf_writer_copy_kv(w, src, i), 0);
    for (int64_t i = 0; i < syn_gguf_n_tensors(src); i++) {
        const struct syn_tensor *t = syn_gguf_tensor(src, i);
        CHECK_EQ_INT(
            syn_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, t->nbytes),
            0);
    }
    snprintf(path, sizeof path, "%s/copy.gguf", syn_test_tmpdir());
    rc = syn_gguf_writer_write(w, path, err, sizeof err);
    if (rc) FAIL("write: %s", err);
    syn_gguf_writer_free(w);
    rc = syn_gguf_open(path, &g, err, sizeof err);
    if (rc) FAIL("reopen: %s", err);
    /* same layout rules as the converter that made it: the files are identical */
    CHECK_EQ_INT(syn_gguf_size(g), syn_gguf_size(src));
    CHECK(!memcmp(syn_gguf_base(g), syn_gguf_base(src), syn_gguf_size(src)));
    syn_gguf_free(g);
    syn_gguf_free(src);
}

/* ---- hostile files ---- */

TEST(gguf_small_file_parses)
{
    struct small s;
    build_small(&s);
    struct syn_gguf *g = NULL;
    char err[512] = "";
    int rc = syn_gguf_parse(s.b.p, s.b.len, &g, err, sizeof err);
    if (rc) FAIL("parse: %s", err);
    CHECK_EQ_INT(syn_gguf_n_kv(g), 4);
    CHECK_EQ_INT(syn_gguf_n_tensors(g), 2);
    CHECK_EQ_INT(syn_gguf_data_offset(g), s.data);
    CHECK(syn_gguf_find_tensor(g, "out.weight")->data == s.b.p + s.data + 32);
    walk(g);
    syn_gguf_free(g);
    free(s.b.p);
}

TEST(gguf_rejects_every_truncation)
{
    /* every strict prefix of a valid file is an error, never a crash or a success */
    struct small s;
    build_small(&s);
    for (size_t len = 0; len < s.b.len; len++) {
        char err[600] = "";
        struct syn_gguf *g = NULL;
        uint8_t *copy = malloc(len ? len : 1);
        memcpy(copy, s.b.p, len);
        int rc = syn_gguf_parse(copy, len, &g, err, sizeof err);
        if (rc != SYN_EFORMAT) FAIL("prefix of %zu bytes: rc %d (%s)", len, rc, err);
        if (g || !err[0] || strncmp(err, "gguf: ", 6))
            FAIL("prefix of %zu bytes: bad message \"%s\"", len, err);
        free(copy);
    }
    EXPECT_ERROR(s.b.p, 0, SYN_EFORMAT, "0 bytes, too short");
    EXPECT_ERROR(s.b.p, 10, SYN_EFORMAT, "the tensor count needs 8 bytes at offset 8");
    char want[160];
    snprintf(want, sizeof want,
             "gguf: tensor 'tok.weight': a dimension needs 8 bytes at offset %zu but the file has "
             "%zu bytes",
             s.t0_ne[1], s.t0_ne[1] + 4);
    EXPECT_ERROR(s.b.p, s.t0_ne[1] + 4, SYN_EFORMAT, want);
    EXPECT_ERROR(s.b.p, s.t0_name + 3, SYN_EFORMAT, "tensor #0: the name needs 8 bytes at offset");
    EXPECT_ERROR(s.b.p, s.b.len - 1, SYN_EFORMAT, "tensor 'out.weight' ends at");
    free(s.b.p);
}

TEST(gguf_rejects_bad_header)
{
    struct small s;
    build_small(&s);
    uint8_t *p = s.b.p;
    size_t n = s.b.len;

    p[0] = 'X';
    EXPECT_ERROR(p, n, SYN_EFORMAT,
                 "not a GGUF file: expected the magic \"GGUF\" at offset 0, found \"XGUF\"");
    p[0] = 'G';
    put32(p + s.version, 1);
    EXPECT_ERROR(p, n, SYN_EUNSUPPORTED, "version 1 is not supported");
    put32(p + s.version, 4);
    EXPECT_ERROR(p, n, SYN_EUNSUPPORTED, "version 4 is not supported");
    put32(p + s.version, 0);
    EXPECT_ERROR(p, n, SYN_EFORMAT, "version 0");
    put32(p + s.version, 0x03000000);
    EXPECT_ERROR(p, n, SYN_EUNSUPPORTED, "big-endian");
    put32(p + s.version, 2); /* v2 has the same layout */
    struct syn_gguf *g = NULL;
    CHECK_EQ_INT(syn_gguf_parse(p, n, &g, NULL, 0), 0);
    CHECK_EQ_INT(syn_gguf_version(g), 2);
    syn_gguf_free(g);
    put32(p + s.version, 3);

    put64(p + s.n_kv, 1ull << 62);
    EXPECT_ERROR(p, n, SYN_EFORMAT, "4611686018427387904 key/value pairs need at least 14 bytes");
    put64(p + s.n_kv, UINT64_MAX);
    EXPECT_ERROR(p, n, SYN_EFORMAT, "key/value pairs need");
    put64(p + s.n_kv, 4);
    put64(p + s.n_tensors, 1ull << 40);
    EXPECT_ERROR(p, n, SYN_EFORMAT, "1099511627776 tensors");
    put64(p + s.n_tensors, 2);
    /* a count that fits the file but runs into the tensor section */
    put64(p + s.n_kv, 5);
    EXPECT_ERROR(p, n, SYN_EFORMAT, "gguf: ");
    put64(p + s.n_kv, 4);
    free(p);
}

TEST(gguf_rejects_bad_keys_and_values)
{
    struct small s;
    build_small(&s);
    uint8_t *p = s.b.p;
    size_t n = s.b.len;

    put64(p + s.key0_len, 1ull << 63);
    EXPECT_ERROR(p, n, SYN_EFORMAT, "the key is 9223372036854775808 bytes long at offset 32");
    put64(p + s.key0_len, 0);
    EXPECT_ERROR(p, n, SYN_EFORMAT, "the key is empty");
    put64(p + s.key0_len, 20);

    p[s.key0 + 7] = 0xff;
    EXPECT_ERROR(p, n, SYN_EFORMAT,
                 "\"general\\xffarchitecture\" is not valid UTF-8 (bad byte 0xff");
    p[s.key0 + 7] = 0xc0; /* an overlong encoding of '.' */
    p[s.key0 + 8] = 0xae;
    EXPECT_ERROR(p, n, SYN_EFORMAT, "is not valid UTF-8");
    p[s.key0 + 7] = 0xed; /* a UTF-16 surrogate, U+D800 */
    p[s.key0 + 8] = 0xa0;
    p[s.key0 + 9] = 0x80;
    EXPECT_ERROR(p, n, SYN_EFORMAT, "is not valid UTF-8");
    memcpy(p + s.key0, "general.architecture", 20);
    p[s.key0 + 7] = 0;
    EXPECT_ERROR(p, n, SYN_EFORMAT, "contains a NUL byte");
    memcpy(p + s.key0, "general.architecture", 20);
    /* valid UTF-8 beyond ASCII is fine in a key */
    memcpy(p + s.key0, "general.\u00e9chitecture", 20);
    struct syn_gguf *g = NULL;
    CHECK_EQ_INT(syn_gguf_parse(p, n, &g, NULL, 0), 0);
    CHECK(syn_gguf_find_key(g, "general.\u00e9chitecture") == 0);
    syn_gguf_free(g);
    memcpy(p + s.key0, "general.architecture", 20);

    put32(p + s.key0_type, 13);
    EXPECT_ERROR(p, n, SYN_EFORMAT, "key 'general.architecture' has unknown value type 13");
    put32(p + s.key0_type, SYN_GGUF_STRING);
    put64(p + s.str_len, 1ull << 60);
    EXPECT_ERROR(p, n, SYN_EFORMAT, "the string value is 1152921504606846976 bytes long");
    put64(p + s.str_len, 5);

    put64(p + s.arr_n, 1ull << 61);
    EXPECT_ERROR(p, n, SYN_EFORMAT, "array of 2305843009213693952 u32 elements");
    put64(p + s.arr_n, 3);
    put32(p + s.arr_type, 77);
    EXPECT_ERROR(p, n, SYN_EFORMAT, "array element type 77 is unknown");
    put32(p + s.arr_type, SYN_GGUF_UINT32);

    put32(p + s.align_val, 48);
    EXPECT_ERROR(p, n, SYN_EFORMAT, "general.alignment must be a power of two, found 48");
    put32(p + s.align_val, 0);
    EXPECT_ERROR(p, n, SYN_EFORMAT, "general.alignment must be a power of two, found 0");
    put32(p + s.align_val, 32);
    put32(p + s.align_type, SYN_GGUF_FLOAT32);
    EXPECT_ERROR(p, n, SYN_EFORMAT,
                 "general.alignment must be an unsigned 32-bit integer, found a f32");
    put32(p + s.align_type, SYN_GGUF_UINT32);
    free(p);
}

TEST(gguf_rejects_bad_tensors)
{
    struct small s;
    build_small(&s);
    uint8_t *p = s.b.p;
    size_t n = s.b.len;

    put32(p + s.t0_ndims, 0);
    EXPECT_ERROR(p, n, SYN_EFORMAT, "tensor 'tok.weight' has 0 dimensions (expected 1 to 4)");
    put32(p + s.t0_ndims, 5);
    EXPECT_ERROR(p, n, SYN_EFORMAT, "tensor 'tok.weight' has 5 dimensions (expected 1 to 4)");
    put32(p + s.t0_ndims, 2);
    put64(p + s.t0_ne[1], 0);
    EXPECT_ERROR(p, n, SYN_EFORMAT, "tensor 'tok.weight' has size 0 in dimension 1");
    put64(p + s.t0_ne[0], 1ull << 40);
    put64(p + s.t0_ne[1], 1ull << 40);
    EXPECT_ERROR(p, n, SYN_EFORMAT, "more than 2^63 elements");
    put64(p + s.t0_ne[0], 1ull << 60);
    put64(p + s.t0_ne[1], 1);
    EXPECT_ERROR(p, n, SYN_EFORMAT, "ends at"); /* 2^62 bytes */
    put64(p + s.t0_ne[0], 4);
    put64(p + s.t0_ne[1], 2);

    put32(p + s.t1_type, 99);
    EXPECT_ERROR(p, n, SYN_EFORMAT, "tensor 'out.weight' has unknown type 99");
    put32(p + s.t1_type, 31);
    EXPECT_ERROR(p, n, SYN_EUNSUPPORTED, "type 31 (q4_0_4_4)");
    put32(p + s.t1_type, SYN_DT_Q8_0);
    EXPECT_ERROR(p, n, SYN_EFORMAT,
                 "rows of 8 elements, which is not a multiple of the q8_0 block size 32");
    put32(p + s.t1_type, SYN_DT_F16);

    put64(p + s.t1_off, 33);
    EXPECT_ERROR(
        p, n, SYN_EFORMAT,
        "tensor 'out.weight' is at data offset 33, which is not a multiple of the alignment 32");
    put64(p + s.t1_off, 64);
    EXPECT_ERROR(p, n, SYN_EFORMAT, "tensor 'out.weight' starts at data offset 64");
    put64(p + s.t1_off, 0xffffffffffffffe0ull);
    EXPECT_ERROR(p, n, SYN_EFORMAT, "starts at data offset 18446744073709551584");
    put64(p + s.t1_off, 32);
    put64(p + s.t1_ne0, 16);
    char want[128];
    snprintf(want, sizeof want, "gguf: tensor 'out.weight' ends at %zu but the file has %zu bytes",
             s.data + 64, n);
    EXPECT_ERROR(p, n, SYN_EFORMAT, want);
    put64(p + s.t1_ne0, 8);

    put64(p + s.t1_off, 0);
    EXPECT_ERROR(p, n, SYN_EFORMAT, "overlap");
    put64(p + s.t1_off, 32);
    put64(p + s.t0_ne[1], 3); /* tok.weight now 0..48, into out.weight at 32..48 */
    EXPECT_ERROR(
        p, n, SYN_EFORMAT,
        "tensors 'tok.weight' (data bytes 0..48) and 'out.weight' (data bytes 32..48) overlap");
    put64(p + s.t0_ne[1], 2);

    /* the second tensor renamed to the first */
    memcpy(p + s.t1_ndims - 10, "tok.weight", 10);
    EXPECT_ERROR(p, n, SYN_EFORMAT, "tensor 'tok.weight' appears twice (tensors #0 and #1)");
    memcpy(p + s.t1_ndims - 10, "out.weight", 10);
    p[s.t0_name + 8] = 0x80;
    EXPECT_ERROR(p, n, SYN_EFORMAT, "tensor #0: the name \"\\x80ok.weight\" is not valid UTF-8");
    free(p);
}

TEST(gguf_duplicate_keys_and_nested_arrays)
{
    struct bb b = {0};
    bb_raw(&b, "GGUF", 4);
    bb_u32(&b, 3);
    bb_u64(&b, 0);
    bb_u64(&b, 2);
    bb_str(&b, "a.b");
    bb_u32(&b, SYN_GGUF_UINT8);
    bb_raw(&b, "\x01", 1);
    bb_str(&b, "a.b");
    bb_u32(&b, SYN_GGUF_UINT8);
    bb_raw(&b, "\x02", 1);
    EXPECT_ERROR(b.p, b.len, SYN_EFORMAT, "key 'a.b' appears twice (pairs #0 and #1)");
    free(b.p);

    /* arrays of arrays are legal: [[u16; 2], [string; 1]] */
    memset(&b, 0, sizeof b);
    bb_raw(&b, "GGUF", 4);
    bb_u32(&b, 3);
    bb_u64(&b, 0);
    bb_u64(&b, 2);
    bb_str(&b, "nested");
    bb_u32(&b, SYN_GGUF_ARRAY);
    bb_u32(&b, SYN_GGUF_ARRAY);
    bb_u64(&b, 2);
    bb_u32(&b, SYN_GGUF_UINT16);
    bb_u64(&b, 2);
    bb_u32(&b, 0x00050004);
    bb_u32(&b, SYN_GGUF_STRING);
    bb_u64(&b, 1);
    bb_str(&b, "hi");
    bb_str(&b, "after");
    bb_u32(&b, SYN_GGUF_BOOL);
    bb_raw(&b, "\x01", 1);
    struct syn_gguf *g = NULL;
    char err[512] = "", buf[128];
    int rc = syn_gguf_parse(b.p, b.len, &g, err, sizeof err);
    if (rc) FAIL("nested: %s", err);
    CHECK_EQ_INT(syn_gguf_arr_type(g, 0), SYN_GGUF_ARRAY);
    CHECK_EQ_INT(syn_gguf_arr_n(g, 0), 2);
    CHECK(syn_gguf_arr_data(g, 0) == NULL);
    syn_gguf_format_value(g, 0, buf, sizeof buf, 0);
    CHECK_EQ_STR(buf, "[array; 2] [u16; 2], [string; 1]");
    int v = 0;
    CHECK_EQ_INT(syn_gguf_get_bool(g, "after", &v), 0);
    CHECK_EQ_INT(v, 1);
    syn_gguf_free(g);
    free(b.p);

    /* but not nested without end: a chain of arrays deeper than the reader allows */
    memset(&b, 0, sizeof b);
    bb_raw(&b, "GGUF", 4);
    bb_u32(&b, 3);
    bb_u64(&b, 0);
    bb_u64(&b, 1);
    bb_str(&b, "deep");
    bb_u32(&b, SYN_GGUF_ARRAY);
    for (int d = 0; d < 100; d++) {
        bb_u32(&b, SYN_GGUF_ARRAY);
        bb_u64(&b, 1);
    }
    bb_u32(&b, SYN_GGUF_UINT8);
    bb_u64(&b, 0);
    EXPECT_ERROR(b.p, b.len, SYN_EFORMAT, "arrays nested more than 8 deep");
    free(b.p);
}

TEST(gguf_survives_byte_corruption)
{
    /* every byte of the small file set to a handful of values: any outcome but a crash */
    struct small s;
    build_small(&s);
    static const int vals[] = {0x00, 0xff, 0x7f, 0x80, -1, -2};
    int ok = 0, failed = 0;
    uint8_t *copy = malloc(s.b.len);
    for (size_t i = 0; i < s.b.len; i++) {
        for (size_t v = 0; v < sizeof vals / sizeof vals[0]; v++) {
            memcpy(copy, s.b.p, s.b.len);
            copy[i] = vals[v] == -1   ? (uint8_t)(s.b.p[i] ^ 1)
                      : vals[v] == -2 ? (uint8_t)(s.b.p[i] + 0x10)
                                      : (uint8_t)vals[v];
            struct syn_gguf *g = NULL;
            char err[600] = "";
            int rc = syn_gguf_parse(copy, s.b.len, &g, err, sizeof err);
            if (rc == 0) {
                walk(g);
                syn_gguf_free(g);
                ok++;
            } else {
                if (!err[0]) FAIL("byte %zu = %d: error %d without a message", i, vals[v], rc);
                failed++;
            }
        }
    }
    CHECK(ok > 0 && failed > 0);
    free(copy);
    free(s.b.p);
}

/* ---- dtypes ---- */

TEST(gguf_dtype_table)
{
    CHECK_EQ_STR(syn_dtype_name(SYN_DT_F32), "f32");
    CHECK_EQ_STR(syn_dtype_name(SYN_DT_Q8_0), "q8_0");
    CHECK_EQ_STR(syn_dtype_name(SYN_DT_Q4_K), "q4_K");
    CHECK_EQ_STR(syn_dtype_name(SYN_DT_BF16), "bf16");
    CHECK(syn_dtype_name(4) == NULL && syn_dtype_name(-1) == NULL);
    CHECK(syn_dtype_name(SYN_DT_COUNT) == NULL && syn_dtype_name(1000) == NULL);
    static const int sizes[][3] = {
        {SYN_DT_F32, 1, 4},      {SYN_DT_F16, 1, 2},      {SYN_DT_BF16, 1, 2},
        {SYN_DT_Q4_0, 32, 18},   {SYN_DT_Q4_1, 32, 20},   {SYN_DT_Q5_0, 32, 22},
        {SYN_DT_Q5_1, 32, 24},   {SYN_DT_Q8_0, 32, 34},   {SYN_DT_Q8_1, 32, 36},
        {SYN_DT_Q2_K, 256, 84},  {SYN_DT_Q3_K, 256, 110}, {SYN_DT_Q4_K, 256, 144},
        {SYN_DT_Q5_K, 256, 176}, {SYN_DT_Q6_K, 256, 210}, {SYN_DT_Q8_K, 256, 292},
        {SYN_DT_I8, 1, 1},       {SYN_DT_I64, 1, 8},      {SYN_DT_F64, 1, 8},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        CHECK_EQ_INT(syn_dtype_block_elems(sizes[i][0]), sizes[i][1]);
        CHECK_EQ_INT(syn_dtype_block_bytes(sizes[i][0]), sizes[i][2]);
    }
    CHECK_EQ_INT(syn_dtype_block_bytes(99), 0);
    CHECK_EQ_INT(syn_dtype_row_bytes(SYN_DT_Q4_K, 512), 288);
    CHECK_EQ_INT(syn_dtype_row_bytes(SYN_DT_Q4_K, 100), 0);
    CHECK_EQ_INT(syn_dtype_row_bytes(SYN_DT_F16, 7), 14);
    CHECK_EQ_INT(syn_dtype_row_bytes(SYN_DT_Q8_0, 4096), 4352);
    CHECK_EQ_INT(syn_dtype_row_bytes(99, 32), 0);
    CHECK_EQ_INT(syn_dtype_parse("F16"), SYN_DT_F16);
    CHECK_EQ_INT(syn_dtype_parse("bf16"), SYN_DT_BF16);
    CHECK_EQ_INT(syn_dtype_parse("q8_0"), SYN_DT_Q8_0);
    CHECK_EQ_INT(syn_dtype_parse("Q4_0"), SYN_DT_Q4_0);
    CHECK_EQ_INT(syn_dtype_parse("f32"), SYN_DT_F32);
    CHECK_EQ_INT(syn_dtype_parse("q4_k"), SYN_DT_Q4_K);
    CHECK_EQ_INT(syn_dtype_parse("Q6_K"), SYN_DT_Q6_K);
    CHECK_EQ_INT(syn_dtype_parse("q2_K"), -1); /* not computed with */
    CHECK_EQ_INT(syn_dtype_parse(""), -1);
    CHECK_EQ_INT(syn_dtype_parse(NULL), -1);
}

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

TEST(gguf_f16_conversions_exact)
{
    /* every f16 value survives the round trip; NaNs stay NaN */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = syn_f16_to_f32((uint16_t)h);
        uint16_t back = syn_f32_to_f16(f);
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) {
            if (!isnan(f) || (back & 0x7c00) != 0x7c00 || !(back & 0x3ff))
                FAIL("NaN 0x%04x -> %g -> 0x%04x", h, (double)f, back);
        } else if (back != h) {
            FAIL("0x%04x -> %.9g -> 0x%04x", h, (double)f, back);
        }
    }
    CHECK(syn_f16_to_f32(0x3c00) == 1.0f);
    CHECK(syn_f16_to_f32(0x7bff) == 65504.0f);
    CHECK(syn_f16_to_f32(0x0001) == 0x1p-24f);
    CHECK(syn_f16_to_f32(0x03ff) == 1023 * 0x1p-24f);
    CHECK(syn_f16_to_f32(0x0400) == 0x1p-14f);
    CHECK(syn_f16_to_f32(0xfc00) == -INFINITY);
    CHECK(bits(syn_f16_to_f32(0x8000)) == 0x80000000u);
    /* rounding to nearest, ties to even */
    CHECK_EQ_INT(syn_f32_to_f16(65519.0f), 0x7bff);
    CHECK_EQ_INT(syn_f32_to_f16(65520.0f), 0x7c00);
    CHECK_EQ_INT(syn_f32_to_f16(1e10f), 0x7c00);
    CHECK_EQ_INT(syn_f32_to_f16(-1e10f), 0xfc00);
    CHECK_EQ_INT(syn_f32_to_f16(INFINITY), 0x7c00);
    CHECK_EQ_INT(syn_f32_to_f16(-0.0f), 0x8000);
    CHECK_EQ_INT(syn_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);     /* tie, down to even */
    CHECK_EQ_INT(syn_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02); /* tie, up to even */
    CHECK_EQ_INT(syn_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);
    CHECK_EQ_INT(syn_f32_to_f16(0x1p-25f), 0x0000);                   /* tie to 0 */
    CHECK_EQ_INT(syn_f32_to_f16(nextafterf(0x1p-25f, 1.0f)), 0x0001); /* above the tie */
    CHECK_EQ_INT(syn_f32_to_f16(3 * 0x1p-25f), 0x0002);               /* 1.5 units: even */
    CHECK_EQ_INT(syn_f32_to_f16(0x1p-14f - 0x1p-26f), 0x0400);        /* rounds to normal */
    CHECK_EQ_INT(syn_f32_to_f16(FLT_MIN / 2), 0x0000);                /* f32 subnormal */
    CHECK_EQ_INT(syn_f32_to_f16(-0x1p-30f), 0x8000);
    uint16_t qn = syn_f32_to_f16(from_bits(0x7f800001u)); /* signalling NaN, tiny payload */
    CHECK((qn & 0x7c00) == 0x7c00 && (qn & 0x3ff));
}

TEST(gguf_bf16_conversions_exact)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = syn_bf16_to_f32((uint16_t)h);
        CHECK_EQ_INT(bits(f), h << 16);
        uint16_t back = syn_f32_to_bf16(f);
        if (isnan(f)) {
            if ((back & 0x7f80) != 0x7f80 || !(back & 0x7f)) FAIL("NaN 0x%04x -> 0x%04x", h, back);
        } else if (back != h) {
            FAIL("0x%04x -> 0x%04x", h, back);
        }
    }
    CHECK_EQ_INT(syn_f32_to_bf16(1.0f), 0x3f80);
    CHECK_EQ_INT(syn_f32_to_bf16(from_bits(0x3f808000u)), 0x3f80); /* tie, down to even */
    CHECK_EQ_INT(syn_f32_to_bf16(from_bits(0x3f818000u)), 0x3f82); /* tie, up to even */
    CHECK_EQ_INT(syn_f32_to_bf16(from_bits(0x3f808001u)), 0x3f81);
    CHECK_EQ_INT(syn_f32_to_bf16(FLT_MAX), 0x7f80); /* rounds to infinity */
    CHECK_EQ_INT(syn_f32_to_bf16(-INFINITY), 0xff80);
    uint16_t qn = syn_f32_to_bf16(from_bits(0x7f800001u)); /* must not become infinity */
    CHECK((qn & 0x7f80) == 0x7f80 && (qn & 0x7f));
    CHECK_EQ_INT(syn_f32_to_bf16(from_bits(0x00000001u)), 0x0000); /* smallest subnormal */
}

TEST(gguf_dequantize_hand_built_blocks)
{
    /* q8_0: two blocks, scales 0.5 and -2 */
    uint8_t q8[2 * 34];
    float y[64];
    q8[0] = 0x00, q8[1] = 0x38;   /* 0.5 */
    q8[34] = 0x00, q8[35] = 0xc0; /* -2 */
    for (int j = 0; j < 32; j++) {
        q8[2 + j] = (uint8_t)(int8_t)(j - 16);
        q8[36 + j] = (uint8_t)(int8_t)(j == 0 ? -128 : 127 - j);
    }
    CHECK_EQ_INT(syn_dequantize_row(SYN_DT_Q8_0, q8, y, 64), 0);
    for (int j = 0; j < 32; j++) {
        CHECK(y[j] == 0.5f * (float)(j - 16));
        CHECK(y[32 + j] == -2.0f * (float)(j == 0 ? -128 : 127 - j));
    }
    CHECK_EQ_INT(syn_dequantize_row(SYN_DT_Q8_0, q8, y, 33), SYN_EINVAL);

    /* q4_0: scale 2, low nibble j, high nibble 15 - j */
    uint8_t q4[18];
    q4[0] = 0x00, q4[1] = 0x40;
    for (int j = 0; j < 16; j++) q4[2 + j] = (uint8_t)(j | (15 - j) << 4);
    CHECK_EQ_INT(syn_dequantize_row(SYN_DT_Q4_0, q4, y, 32), 0);
    for (int j = 0; j < 16; j++) {
        CHECK(y[j] == 2.0f * (float)(j - 8));
        CHECK(y[16 + j] == 2.0f * (float)(15 - j - 8));
    }

    uint8_t h[6] = {0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00}; /* f16 1, -2, 2^-24 */
    CHECK_EQ_INT(syn_dequantize_row(SYN_DT_F16, h, y, 3), 0);
    CHECK(y[0] == 1.0f && y[1] == -2.0f && y[2] == 0x1p-24f);
    uint8_t bf[4] = {0x80, 0x3f, 0x49, 0x40}; /* bf16 1, 3.140625 */
    CHECK_EQ_INT(syn_dequantize_row(SYN_DT_BF16, bf, y, 2), 0);
    CHECK(y[0] == 1.0f && y[1] == 3.140625f);
    float f[2] = {1.25f, -7.0f};
    CHECK_EQ_INT(syn_dequantize_row(SYN_DT_F32, f, y, 2), 0);
    CHECK(y[0] == 1.25f && y[1] == -7.0f);
    uint8_t k[84] = {0};
    CHECK_EQ_INT(syn_dequantize_row(SYN_DT_Q2_K, k, y, 256), SYN_EUNSUPPORTED);
}

/* The K-quants, one super-block each, bytes laid out by hand from llama.cpp's block layouts (the
 * packing written out here byte by byte, not through tensor.c's helpers). */
TEST(gguf_dequantize_hand_built_k_quants)
{
    /* Sub-block scales and mins with high bits set for j >= 4, so the 6-bit packing shows. */
    static const uint8_t sc[8] = {1, 2, 3, 4, 17, 33, 50, 63},
                         mn[8] = {0, 5, 10, 15, 20, 40, 60, 63};
    uint8_t scales[12];
    for (int j = 0; j < 4; j++) {
        scales[j] = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);     /* low 6 bits: sc_j */
        scales[j + 4] = (uint8_t)(mn[j] | (mn[j + 4] >> 4) << 6); /* low 6 bits: m_j */
        scales[j + 8] = (uint8_t)((sc[j + 4] & 15) | (mn[j + 4] & 15) << 4);
    }
    float y[256];

    /* q4_K: d = 0.5, dmin = 0.25; qs[32c + l] = (l % 16) | (15 - l % 16) << 4 */
    uint8_t q4[144];
    q4[0] = 0x00, q4[1] = 0x38; /* 0.5 */
    q4[2] = 0x00, q4[3] = 0x34; /* 0.25 */
    memcpy(q4 + 4, scales, 12);
    for (int i = 0; i < 128; i++) q4[16 + i] = (uint8_t)((i % 16) | (15 - i % 16) << 4);
    CHECK_EQ_INT(syn_dequantize_row(SYN_DT_Q4_K, q4, y, 256), 0);
    for (int e = 0; e < 256; e++) {
        int j = e / 32, l = e % 32, q = j % 2 ? 15 - l % 16 : l % 16;
        float want = 0.5f * (float)sc[j] * (float)q - 0.25f * (float)mn[j];
        if (y[e] != want) FAIL("q4_K element %d: %g, want %g", e, y[e], want);
    }

    /* q5_K: the same, with qh[l] = l * 37 (mod 256) giving bit j of element 32j + l */
    uint8_t q5[176];
    memcpy(q5, q4, 16);
    for (int l = 0; l < 32; l++) q5[16 + l] = (uint8_t)(l * 37);
    memcpy(q5 + 48, q4 + 16, 128);
    CHECK_EQ_INT(syn_dequantize_row(SYN_DT_Q5_K, q5, y, 256), 0);
    for (int e = 0; e < 256; e++) {
        int j = e / 32, l = e % 32,
            q = (j % 2 ? 15 - l % 16 : l % 16) + 16 * (((l * 37) & 255) >> j & 1);
        float want = 0.5f * (float)sc[j] * (float)q - 0.25f * (float)mn[j];
        if (y[e] != want) FAIL("q5_K element %d: %g, want %g", e, y[e], want);
    }

    /* q6_K: element e has the 6-bit quant q(e) = (e * 7) % 64, scale of sub-block e / 16 is
     * 8 - e / 16 * 3 (negative ones included), d = 2. Half n, 32-element quarter i, index l:
     * low 4 bits in ql[64n + 32 (i % 2) + l] (low nibble for i < 2), top 2 in bits 2i of
     * qh[32n + l]. */
    uint8_t q6[210] = {0};
    for (int e = 0; e < 256; e++) {
        int q = (e * 7) % 64, n = e / 128, i = (e % 128) / 32, l = e % 32;
        q6[64 * n + 32 * (i % 2) + l] |= (uint8_t)((q & 15) << (i < 2 ? 0 : 4));
        q6[128 + 32 * n + l] |= (uint8_t)((q >> 4) << (2 * i));
    }
    for (int k = 0; k < 16; k++) q6[192 + k] = (uint8_t)(int8_t)(8 - 3 * k);
    q6[208] = 0x00, q6[209] = 0x40; /* 2 */
    CHECK_EQ_INT(syn_dequantize_row(SYN_DT_Q6_K, q6, y, 256), 0);
    for (int e = 0; e < 256; e++) {
        float want = 2.0f * (float)(8 - 3 * (e / 16)) * (float)((e * 7) % 64 - 32);
        if (y[e] != want) FAIL("q6_K element %d: %g, want %g", e, y[e], want);
    }
    CHECK_EQ_INT(syn_dequantize_row(SYN_DT_Q4_K, q4, y, 255), SYN_EINVAL);
}

/* Q4_1, Q5_0, Q5_1: one block each, laid out by hand. */
TEST(gguf_dequantize_hand_built_q4_1_q5_0_q5_1)
{
    float y[32];
    /* d = 0.5, m = -2, nibbles: element j < 16 low nibble of byte j = j, element j + 16 high
     * nibble = 15 - j; qh = 0xa5a5f00f (bit j: element j's fifth bit) */
    const uint32_t qh = 0xa5a5f00fu;
    uint8_t q41[20] = {0x00, 0x38, 0x00, 0xc0}, q50[22] = {0x00, 0x38},
            q51[24] = {0x00, 0x38, 0x00, 0xc0};
    for (int i = 0; i < 4; i++) q50[2 + i] = q51[4 + i] = (uint8_t)(qh >> (8 * i));
    for (int j = 0; j < 16; j++)
        q41[4 + j] = q50[6 + j] = q51[8 + j] = (uint8_t)(j | (15 - j) << 4);
    CHECK_EQ_INT(syn_dequantize_row(SYN_DT_Q4_1, q41, y, 32), 0);
    for (int e = 0; e < 32; e++) CHECK(y[e] == 0.5f * (float)(e < 16 ? e : 31 - e) - 2.0f);
    CHECK_EQ_INT(syn_dequantize_row(SYN_DT_Q5_0, q50, y, 32), 0);
    for (int e = 0; e < 32; e++) {
        int q = (e < 16 ? e : 31 - e) + 16 * (int)(qh >> e & 1);
        if (y[e] != 0.5f * (float)(q - 16)) FAIL("q5_0 element %d: %g", e, y[e]);
    }
    CHECK_EQ_INT(syn_dequantize_row(SYN_DT_Q5_1, q51, y, 32), 0);
    for (int e = 0; e < 32; e++) {
        int q = (e < 16 ? e : 31 - e) + 16 * (int)(qh >> e & 1);
        if (y[e] != 0.5f * (float)q - 2.0f) FAIL("q5_1 element %d: %g", e, y[e]);
    }
    CHECK_EQ_INT(syn_dequantize_row(SYN_DT_Q5_0, q50, y, 31), SYN_EINVAL);
}

/* What the quantiser writes reads back close to its input, for every type it writes. */
TEST(gguf_quantize_round_trip)
{
    const int types[] = {SYN_DT_Q4_K, SYN_DT_Q5_K, SYN_DT_Q6_K,
                         SYN_DT_Q4_1, SYN_DT_Q5_0, SYN_DT_Q5_1};
    /* worst |error| / max |x| per super-block: half a step of 15, 31 or 63 levels over the
     * range, plus the 6-bit (8-bit) rounding of the step itself; the 32-element types: half a
     * step of 15 or 31 levels over the range, whose f16 min adds a little */
    const float bound[] = {0.08f, 0.04f, 0.03f, 0.07f, 0.04f, 0.04f};
    float x[512], y[512];
    uint8_t buf[2 * 210]; /* the largest: two Q6_K super-blocks (16 Q5_1 blocks take 384) */
    for (int i = 0; i < 512; i++)
        x[i] = sinf((float)i * 0.37f) * (i < 256 ? 1.0f : 0.01f) + (i % 7 == 0 ? 0.3f : 0.0f);
    for (int i = 0; i < 32; i++) x[256 + 64 + i] = 0.0f; /* an all-zero sub-block */
    for (int t = 0; t < 6; t++) {
        size_t n = syn_quantize_row(types[t], x, buf, 512);
        CHECK_EQ_INT((int)n,
                     512 / syn_dtype_block_elems(types[t]) * syn_dtype_block_bytes(types[t]));
        CHECK_EQ_INT(syn_dequantize_row(types[t], buf, y, 512), 0);
        for (int b = 0; b < 2; b++) {
            float amax = 0, worst = 0;
            for (int i = 256 * b; i < 256 * b + 256; i++) {
                amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
                worst = fabsf(y[i] - x[i]) > worst ? fabsf(y[i] - x[i]) : worst;
            }
            if (!(worst <= bound[t] * amax))
                FAIL("%s block %d: worst error %g against max |x| %g", syn_dtype_name(types[t]), b,
                     worst, amax);
        }
    }
    CHECK_EQ_INT((int)syn_quantize_row(SYN_DT_Q8_0, x, buf, 256), 0);
    CHECK_EQ_INT((int)syn_quantize_row(SYN_DT_Q4_K, x, buf, 255), 0);
}

/* ---- synapse model info ---- */

/* The line of out that contains needle, copied into line (empty if none). */
static const char *line_with(const char *out, const char *needle, char *line, size_t cap)
{
    const char *p = strstr(out, needle);
    line[0] = '\0';
    if (!p) return line;
    while (p > out && p[-1] != '\n') p--;
    size_t n = strcspn(p, "\n");
    if (n >= cap) n = cap - 1;
    memcpy(line, p, n);
    line[n] = '\0';
    return line;
}

TEST(gguf_cli_model_info)
{
    char *out = NULL, line[512];
    const char *path = stories_path();
    int rc = syn_test_sh(&out, "%s model info %s", syn_test_bin(), path);
    CHECK_EQ_INT(rc, 0);
    CHECK(strstr(out, "gguf version: 3\n"));
    CHECK(strstr(out, "alignment: 32\n"));
    CHECK(strstr(out, "data offset: 14176\n"));
    CHECK(strstr(out, "metadata: 19 keys\n"));
    char k[128], t[32], v[256];
    CHECK_EQ_INT(sscanf(line_with(out, "general.architecture", line, sizeof line),
                        " %127s %31s %255[^\n]", k, t, v),
                 3);
    CHECK_EQ_STR(t, "string");
    CHECK_EQ_STR(v, "\"llama\"");
    CHECK_EQ_INT(sscanf(line_with(out, "llama.block_count", line, sizeof line),
                        " %127s %31s %255[^\n]", k, t, v),
                 3);
    CHECK_EQ_STR(t, "u32");
    CHECK_EQ_STR(v, "5");
    CHECK_EQ_INT(sscanf(line_with(out, "llama.attention.layer_norm_rms_epsilon", line, sizeof line),
                        " %127s %31s %255[^\n]", k, t, v),
                 3);
    CHECK_EQ_STR(v, "1e-05");
    /* a long array is abbreviated */
    line_with(out, "tokenizer.ggml.tokens", line, sizeof line);
    CHECK(strstr(line, "array   [string; 512] \"<unk>\", \"<s>\", \"</s>\""));
    CHECK(strstr(line, " ..."));
    CHECK(strlen(line) < 200);
    CHECK(strstr(out, "tensors: 48\n"));
    line_with(out, "blk.3.attn_q.weight", line, sizeof line);
    CHECK(strstr(line, " f32 "));
    CHECK(strstr(line, " 64 x 64 "));
    CHECK(strstr(line, " 16384 "));
    CHECK(strstr(line, " 807680"));
    CHECK(strstr(out, "total: 48 tensors, 292800 elements, 1171200 bytes (1.12 MiB)\n"));
    free(out);

    /* --all prints the vocabulary in full */
    CHECK_EQ_INT(syn_test_sh(&out, "%s model info --all %s", syn_test_bin(), path), 0);
    line_with(out, "tokenizer.ggml.tokens", line, sizeof line);
    CHECK(strstr(out, "\"[\", \"]\", \"~\", \"\xe2\x80\x8a\"\n"));
    free(out);

    CHECK_EQ_INT(syn_test_sh(&out, "%s model info --help", syn_test_bin()), 0);
    CHECK(strstr(out, "Usage: synapse model info MODEL [--all]"));
    free(out);
}

TEST(gguf_cli_model_info_errors)
{
    char *out = NULL;
    CHECK_EQ_INT(syn_test_sh(&out, "%s model info --bogus %s 2>&1", syn_test_bin(), stories_path()),
                 2);
    CHECK(strstr(out, "unknown option '--bogus'"));
    free(out);
    CHECK_EQ_INT(syn_test_sh(&out, "%s model info 2>&1", syn_test_bin()), 2);
    CHECK(strstr(out, "missing the MODEL argument"));
    free(out);
    CHECK_EQ_INT(syn_test_sh(&out, "%s model info a b 2>&1", syn_test_bin()), 2);
    free(out);
    CHECK_EQ_INT(syn_test_sh(&out, "%s model info %s 2>&1", syn_test_bin(), syn_test_tmpdir()), 1);
    CHECK(strstr(out, "is a directory, not a GGUF file"));
    free(out);
    CHECK_EQ_INT(syn_test_sh(&out, "%s model info /nonexistent.gguf 2>&1", syn_test_bin()), 1);
    CHECK(strstr(out, "cannot open"));
    free(out);

    /* a truncated copy of the real model: the reader's message, exit 1 */
    char path[600];
    snprintf(path, sizeof path, "%s/cut.gguf", syn_test_tmpdir());
    size_t len = 0;
    char *data = syn_test_read_file(stories_path(), &len);
    CHECK(data && len > 20000);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(data, 1, 20000, f) == 20000);
    fclose(f);
    free(data);
    CHECK_EQ_INT(syn_test_sh(&out, "%s model info %s 2>&1", syn_test_bin(), path), 1);
    CHECK(strstr(out, "cut.gguf: gguf: tensor 'token_embd.weight' ends at 145248"));
    CHECK(strstr(out, "but the file has 20000 bytes"));
    free(out);
}
