/*
 * The safetensors reader/writer, HF model directories and config.json: round trips through the
 * writer, sharded indexes, config variants, and hostile files that must give a clear error (never
 * a crash). Files are written into the test's scratch directory.
 */
#include "harness.h"
#include "synapse/error.h"
#include "synapse/safetensors.h"

#include <stdint.h>

/* ---- helpers ---- */

static const char *tmp_path(const char *name)
{
    static char buf[4][1024];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", syn_test_tmpdir(), name);
    return b;
}

/* Builds u64 length + header + data in a malloc'ed buffer; *size gets its length. */
static uint8_t *raw_file(const char *header, const void *data, size_t dlen, size_t *size)
{
    size_t hl = strlen(header);
    uint8_t *b = malloc(8 + hl + dlen + 1);
    CHECK(b);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, header, hl);
    if (dlen) memcpy(b + 8 + hl, data, dlen);
    *size = 8 + hl + dlen;
    return b;
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECK(f);
    CHECK(fwrite(data, 1, n, f) == n);
    CHECK(fclose(f) == 0);
}

static void write_text(const char *path, const char *text)
{
    write_bytes(path, text, strlen(text));
}

/* Parses header+data expecting failure rc with msg_part in the message. */
static void expect_parse_error(const char *header, size_t dlen, int rc_expected,
                               const char *msg_part)
{
    static uint8_t zeros[4096];
    size_t size;
    uint8_t *b = raw_file(header, zeros, dlen, &size);
    struct syn_safetensors *st = (struct syn_safetensors *)1;
    char err[512] = "";
    int rc = syn_safetensors_parse(b, size, &st, err, sizeof err);
    if (rc != rc_expected || !strstr(err, msg_part))
        FAIL("header %s: rc %d (expected %d), message \"%s\" (expected to contain \"%s\")", header,
             rc, rc_expected, err, msg_part);
    CHECK(st == NULL);
    free(b);
}

static struct syn_tensor tensor(const char *name, int type, int n_dims, uint64_t ne0, uint64_t ne1,
                                const void *data, uint64_t nbytes)
{
    struct syn_tensor t = {name, type, n_dims, {ne0, ne1, 1, 1}, data, nbytes};
    return t;
}

/* ---- single files ---- */

TEST(safetensors_round_trip)
{
    float w[3][4]; /* [R=3, K=4] row-major */
    uint16_t h[5] = {0x3c00, 0x4000, 0x4200, 0x4400, 0x4500};
    uint16_t bf[2] = {0x3f80, 0xc000};
    for (int r = 0; r < 3; r++)
        for (int k = 0; k < 4; k++) w[r][k] = (float)(r * 10 + k);
    struct syn_tensor ts[3] = {
        tensor("model.layers.0.self_attn.q_proj.weight", SYN_DT_F32, 2, 4, 3, w, sizeof w),
        tensor("model.norm.weight", SYN_DT_F16, 1, 5, 1, h, sizeof h),
        tensor("b", SYN_DT_BF16, 1, 2, 1, bf, sizeof bf),
    };
    const char *mk[] = {"format"}, *mv[] = {"pt"};
    char err[512] = "";
    const char *path = tmp_path("model.safetensors");
    CHECK_EQ_INT(syn_safetensors_write(path, ts, 3, mk, mv, 1, err, sizeof err), 0);

    struct syn_safetensors *st = NULL;
    CHECK_EQ_INT(syn_safetensors_open(path, &st, err, sizeof err), 0);
    CHECK_EQ_INT(syn_safetensors_n_tensors(st), 3);
    /* file order = the writer's order */
    CHECK_EQ_STR(syn_safetensors_tensor(st, 0)->name, "model.layers.0.self_attn.q_proj.weight");
    CHECK_EQ_STR(syn_safetensors_tensor(st, 1)->name, "model.norm.weight");
    CHECK_EQ_STR(syn_safetensors_dtype_str(st, 2), "BF16");
    CHECK(syn_safetensors_tensor(st, 3) == NULL);
    CHECK(syn_safetensors_tensor(st, -1) == NULL);

    const struct syn_tensor *q = syn_safetensors_find(st, "model.layers.0.self_attn.q_proj.weight");
    CHECK(q);
    CHECK_EQ_INT(q->type, SYN_DT_F32);
    CHECK_EQ_INT(q->n_dims, 2);
    CHECK_EQ_INT(q->ne[0], 4); /* K, innermost */
    CHECK_EQ_INT(q->ne[1], 3); /* R */
    CHECK_EQ_INT(q->ne[2], 1);
    CHECK_EQ_INT(q->nbytes, sizeof w);
    CHECK(memcmp(q->data, w, sizeof w) == 0);
    float x;
    memcpy(&x, (const float *)q->data + 1 * 4 + 2, sizeof x); /* row 1, column 2 */
    CHECK_NEAR(x, 12.0, 0);

    const struct syn_tensor *n = NULL;
    CHECK_EQ_INT(syn_safetensors_get(st, "model.norm.weight", &n, err, sizeof err), 0);
    CHECK_EQ_INT(n->type, SYN_DT_F16);
    CHECK_EQ_INT(n->ne[0], 5);
    CHECK(memcmp(n->data, h, sizeof h) == 0);
    CHECK(memcmp(syn_safetensors_find(st, "b")->data, bf, sizeof bf) == 0);
    CHECK(syn_safetensors_find(st, "model.norm") == NULL);

    CHECK_EQ_INT(syn_safetensors_get(st, "lm_head.weight", &n, err, sizeof err), SYN_ENOTFOUND);
    CHECK(n == NULL);
    CHECK(strstr(err, "no tensor named 'lm_head.weight'"));

    CHECK_EQ_INT(syn_safetensors_n_meta(st), 1);
    CHECK_EQ_STR(syn_safetensors_meta_key(st, 0), "format");
    CHECK_EQ_STR(syn_safetensors_meta_get(st, "format"), "pt");
    CHECK(syn_safetensors_meta_get(st, "other") == NULL);
    syn_safetensors_free(st);

    /* the data section is 8-byte aligned by our writer */
    size_t len;
    uint8_t *raw = (uint8_t *)syn_test_read_file(path, &len);
    CHECK(raw);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | raw[i];
    CHECK_EQ_INT((8 + hl) % 8, 0);
    CHECK_EQ_INT(len, 8 + hl + sizeof w + sizeof h + sizeof bf);
    free(raw);
}

TEST(safetensors_reads_hand_written_file)
{
    /* keys out of offset order, a scalar, a 5-D tensor, an I64 buffer, spaces after the JSON */
    const char *hdr = "{\"z\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"__metadata__\":{\"a\":\"1\",\"b\":\"2\"},"
                      "\"five\":{\"dtype\":\"U8\",\"shape\":[1,2,1,1,3],\"data_offsets\":[24,30]},"
                      "\"pos\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[16,24]},"
                      "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[8,12]},"
                      "\"e\":{\"dtype\":\"F16\",\"shape\":[0,4],\"data_offsets\":[12,12]}}    ";
    uint8_t data[30] = {0};
    size_t size;
    uint8_t *b = raw_file(hdr, data, sizeof data, &size);
    struct syn_safetensors *st = NULL;
    char err[512] = "";
    CHECK_EQ_INT(syn_safetensors_parse(b, size, &st, err, sizeof err), 0);
    CHECK_EQ_INT(syn_safetensors_n_tensors(st), 5);
    CHECK_EQ_INT(syn_safetensors_n_meta(st), 2);
    CHECK_EQ_STR(syn_safetensors_tensor(st, 0)->name, "z");
    CHECK_EQ_STR(syn_safetensors_tensor(st, 4)->name, "five");

    const struct syn_tensor *s = syn_safetensors_find(st, "s");
    CHECK_EQ_INT(s->n_dims, 1);
    CHECK_EQ_INT(s->ne[0], 1);
    CHECK(s->data == b + size - 30 + 8);
    const struct syn_tensor *e = syn_safetensors_find(st, "e");
    CHECK_EQ_INT(e->ne[0], 4);
    CHECK_EQ_INT(e->ne[1], 0);
    CHECK_EQ_INT(e->nbytes, 0);

    const struct syn_tensor *f = syn_safetensors_find(st, "five");
    CHECK_EQ_INT(f->type, -1);
    CHECK_EQ_INT(f->n_dims, 4);
    CHECK_EQ_INT(f->ne[0], 3);
    CHECK_EQ_INT(f->ne[1], 1);
    CHECK_EQ_INT(f->ne[2], 1);
    CHECK_EQ_INT(f->ne[3], 2); /* outer dims 1*2 folded */

    /* dtypes we cannot compute with are reported when asked for, not at open */
    const struct syn_tensor *out = (const struct syn_tensor *)1;
    CHECK_EQ_INT(syn_safetensors_get(st, "pos", &out, err, sizeof err), SYN_EUNSUPPORTED);
    CHECK(out == NULL);
    CHECK(strstr(err, "tensor 'pos' has dtype I64"));
    CHECK(strstr(err, "expected F32, F16 or BF16"));
    CHECK_EQ_INT(syn_safetensors_find(st, "pos")->type, SYN_DT_I64);
    CHECK_EQ_INT(syn_safetensors_get(st, "five", NULL, err, sizeof err), SYN_EUNSUPPORTED);
    CHECK(strstr(err, "dtype U8"));
    CHECK_EQ_INT(syn_safetensors_get(st, "z", NULL, err, sizeof err), 0);
    syn_safetensors_free(st);
    free(b);
}

TEST(safetensors_unknown_dtype_parses_but_is_refused)
{
    size_t size;
    uint8_t data[6] = {0};
    uint8_t *b = raw_file("{\"q\":{\"dtype\":\"F4_MX\",\"shape\":[12],\"data_offsets\":[0,6]},"
                          "\"f8\":{\"dtype\":\"F8_E4M3\",\"shape\":[0],\"data_offsets\":[6,6]}}",
                          data, sizeof data, &size);
    struct syn_safetensors *st = NULL;
    char err[512] = "";
    CHECK_EQ_INT(syn_safetensors_parse(b, size, &st, err, sizeof err), 0);
    CHECK_EQ_INT(syn_safetensors_find(st, "q")->nbytes, 6);
    CHECK_EQ_STR(syn_safetensors_dtype_str(st, 0), "F4_MX");
    CHECK_EQ_INT(syn_safetensors_get(st, "q", NULL, err, sizeof err), SYN_EUNSUPPORTED);
    CHECK(strstr(err, "tensor 'q' has dtype F4_MX, which synapse cannot compute with"));
    CHECK_EQ_INT(syn_safetensors_get(st, "f8", NULL, err, sizeof err), SYN_EUNSUPPORTED);
    CHECK(strstr(err, "dtype F8_E4M3"));
    syn_safetensors_free(st);
    free(b);
}

/* ---- hostile files ---- */

TEST(safetensors_rejects_every_truncation)
{
    float w[6] = {1, 2, 3, 4, 5, 6};
    uint16_t h[3] = {1, 2, 3};
    struct syn_tensor ts[2] = {tensor("w", SYN_DT_F32, 2, 3, 2, w, sizeof w),
                               tensor("h", SYN_DT_F16, 1, 3, 1, h, sizeof h)};
    char err[512];
    const char *path = tmp_path("t.safetensors");
    CHECK_EQ_INT(syn_safetensors_write(path, ts, 2, NULL, NULL, 0, err, sizeof err), 0);
    size_t len;
    char *full = syn_test_read_file(path, &len);
    CHECK(full);
    for (size_t n = 0; n < len; n++) {
        uint8_t *copy = malloc(n ? n : 1); /* exact size so ASan sees any over-read */
        CHECK(copy);
        memcpy(copy, full, n);
        struct syn_safetensors *st = NULL;
        err[0] = 0;
        int rc = syn_safetensors_parse(copy, n, &st, err, sizeof err);
        if (rc != SYN_EFORMAT || st != NULL || !strstr(err, "safetensors: "))
            FAIL("prefix of %zu/%zu bytes: rc %d, message \"%s\"", n, len, rc, err);
        free(copy);
    }
    /* a few representative messages */
    struct syn_safetensors *st = NULL;
    CHECK_EQ_INT(syn_safetensors_parse(full, 5, &st, err, sizeof err), SYN_EFORMAT);
    CHECK(strstr(err, "file has 5 bytes, expected at least 8"));
    CHECK_EQ_INT(syn_safetensors_parse(full, 20, &st, err, sizeof err), SYN_EFORMAT);
    CHECK(strstr(err, "but the file has 20 bytes"));
    CHECK_EQ_INT(syn_safetensors_parse(full, len - 1, &st, err, sizeof err), SYN_EFORMAT);
    CHECK(strstr(err, "tensor 'h' ends at data offset 30 but the data section has 29 bytes"));
    CHECK_EQ_INT(syn_safetensors_parse(full, len, &st, err, sizeof err), 0);
    syn_safetensors_free(st);

    /* a truncated file on disk says which file */
    write_bytes(path, full, len - 3);
    CHECK_EQ_INT(syn_safetensors_open(path, &st, err, sizeof err), SYN_EFORMAT);
    CHECK(strstr(err, "t.safetensors: tensor 'h' ends at data offset 30"));
    write_bytes(path, full, 3);
    CHECK_EQ_INT(syn_safetensors_open(path, &st, err, sizeof err), SYN_EFORMAT);
    CHECK(strstr(err, "expected at least 8"));
    free(full);
}

TEST(safetensors_rejects_huge_header_length)
{
    uint8_t b[64] = {0};
    struct syn_safetensors *st = NULL;
    char err[512] = "";
    /* 2^63 and 100 MB + 1: absurd, rejected before any allocation */
    b[7] = 0x80;
    CHECK_EQ_INT(syn_safetensors_parse(b, sizeof b, &st, err, sizeof err), SYN_EFORMAT);
    CHECK(strstr(err, "header length is 9223372036854775808 bytes, expected at most 100000000"));
    memset(b, 0, 8);
    uint64_t n = 100000001;
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(n >> (8 * i));
    CHECK_EQ_INT(syn_safetensors_parse(b, sizeof b, &st, err, sizeof err), SYN_EFORMAT);
    CHECK(strstr(err, "expected at most 100000000"));
    /* within the limit but past the end */
    memset(b, 0, 8);
    b[0] = 57;
    CHECK_EQ_INT(syn_safetensors_parse(b, sizeof b, &st, err, sizeof err), SYN_EFORMAT);
    CHECK(strstr(err, "header of 57 bytes ends at byte 65 but the file has 64 bytes"));
    CHECK(st == NULL);
}

TEST(safetensors_rejects_bad_json)
{
    expect_parse_error("{\"a\":", 0, SYN_EFORMAT, "header is not valid JSON");
    expect_parse_error("", 0, SYN_EFORMAT, "header is not valid JSON");
    expect_parse_error("[1,2]", 0, SYN_EFORMAT, "header is a JSON array, expected an object");
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                       "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                       8, SYN_EFORMAT, "duplicate object key");
    expect_parse_error("{\"a\":[1]}", 0, SYN_EFORMAT,
                       "tensor 'a' is described by a JSON array, expected an object");
    expect_parse_error("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, SYN_EFORMAT,
                       "tensor 'a': no dtype, expected a dtype string");
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}", 4,
                       SYN_EFORMAT, "tensor 'a': shape is not an array");
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
                       SYN_EFORMAT, "shape[0] is not a non-negative integer");
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4,
                       SYN_EFORMAT, "shape[0] is not a non-negative integer");
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, SYN_EFORMAT,
                       "data_offsets missing, expected [begin, end]");
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8,
                       SYN_EFORMAT, "does not have 2 entries");
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[\"0\",4]}}", 4,
                       SYN_EFORMAT, "data_offsets are not non-negative integers");
    expect_parse_error("{\"__metadata__\":{\"k\":1}}", 0, SYN_EFORMAT,
                       "__metadata__ value of 'k' is not a string");
    expect_parse_error("{\"__metadata__\":[]}", 0, SYN_EFORMAT,
                       "__metadata__ is a JSON array, expected an object of strings");
    expect_parse_error("{\"a\\u0000b\":{}}", 0, SYN_EFORMAT, "header is not valid JSON");
}

TEST(safetensors_rejects_wrong_offsets)
{
    /* size disagrees with shape x dtype */
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 24,
                       SYN_EFORMAT,
                       "tensor 'a': data_offsets [0, 20] span 20 bytes but shape and dtype F32 "
                       "need 24");
    expect_parse_error("{\"a\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,4]}}", 8,
                       SYN_EFORMAT, "need 8");
    /* end before begin */
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8,
                       SYN_EFORMAT, "data_offsets [8, 4] end before they begin");
    /* past the end of the data */
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[4,20]}}", 16,
                       SYN_EFORMAT,
                       "tensor 'a' ends at data offset 20 but the data section has 16 bytes");
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
                       "\"data_offsets\":[9223372036854775807,9223372036854775807]}}",
                       16, SYN_EFORMAT, "ends at data offset 9223372036854775807");
    /* unknown dtypes are checked against the file too */
    expect_parse_error("{\"a\":{\"dtype\":\"X9\",\"shape\":[4],\"data_offsets\":[0,99]}}", 16,
                       SYN_EFORMAT, "tensor 'a' ends at data offset 99");
}

TEST(safetensors_rejects_overlap)
{
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                       16, SYN_EFORMAT, "tensor 'b' [4, 12) overlaps tensor 'a' which ends at 8");
    /* the same range twice, and one tensor inside another */
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"b\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}",
                       16, SYN_EFORMAT, "overlaps tensor");
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                       16, SYN_EFORMAT, "tensor 'b' [4, 8) overlaps tensor 'a' which ends at 16");
    /* adjacent is fine, and so is an empty tensor anywhere */
    size_t size;
    uint8_t zeros[16] = {0};
    uint8_t *b = raw_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                          "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
                          "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
                          zeros, sizeof zeros, &size);
    struct syn_safetensors *st = NULL;
    char err[512] = "";
    CHECK_EQ_INT(syn_safetensors_parse(b, size, &st, err, sizeof err), 0);
    CHECK_EQ_INT(syn_safetensors_n_tensors(st), 3);
    syn_safetensors_free(st);
    free(b);
}

TEST(safetensors_rejects_shape_overflow)
{
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
                       "\"data_offsets\":[0,0]}}",
                       0, SYN_EFORMAT, "tensor 'a': the shape's element count overflows 64 bits");
    expect_parse_error("{\"a\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],"
                       "\"data_offsets\":[0,0]}}",
                       0, SYN_EFORMAT, "tensor 'a': the shape's byte size overflows 64 bits");
    /* a zero dimension makes any product zero, without overflow */
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[0,9223372036854775807,4],"
                       "\"data_offsets\":[0,4]}}",
                       4, SYN_EFORMAT, "need 0");
}

TEST(safetensors_open_errors)
{
    struct syn_safetensors *st = NULL;
    char err[512] = "";
    CHECK_EQ_INT(syn_safetensors_open(tmp_path("absent.safetensors"), &st, err, sizeof err),
                 SYN_ENOTFOUND);
    CHECK(strstr(err, "cannot open"));
    CHECK(strstr(err, "absent.safetensors"));
    CHECK_EQ_INT(syn_safetensors_open(syn_test_tmpdir(), &st, err, sizeof err), SYN_EIO);
    CHECK(strstr(err, "is not a regular file"));
    CHECK(st == NULL);
}

TEST(safetensors_writer_rejects_bad_tensors)
{
    float w[4] = {0};
    char err[512] = "";
    struct syn_tensor t = tensor("w", SYN_DT_F32, 2, 2, 2, w, 12);
    CHECK_EQ_INT(
        syn_safetensors_write(tmp_path("w.safetensors"), &t, 1, NULL, NULL, 0, err, sizeof err),
        SYN_EINVAL);
    CHECK(strstr(err, "tensor 'w' has 12 bytes of data, expected 16"));
    struct syn_tensor two[2] = {tensor("w", SYN_DT_F32, 1, 4, 1, w, 16),
                                tensor("w", SYN_DT_F32, 1, 4, 1, w, 16)};
    CHECK_EQ_INT(
        syn_safetensors_write(tmp_path("w.safetensors"), two, 2, NULL, NULL, 0, err, sizeof err),
        SYN_EINVAL);
    CHECK(strstr(err, "tensor 'w' appears twice"));
    t = tensor("q", SYN_DT_Q8_0, 1, 32, 1, w, 34);
    CHECK_EQ_INT(
        syn_safetensors_write(tmp_path("w.safetensors"), &t, 1, NULL, NULL, 0, err, sizeof err),
        SYN_EINVAL);
    CHECK(strstr(err, "tensor 0 ('q')"));
}

/* ---- model directories ---- */

TEST(safetensors_dir_single_file)
{
    float w[2] = {1, 2};
    struct syn_tensor t = tensor("model.norm.weight", SYN_DT_F32, 1, 2, 1, w, sizeof w);
    char err[512] = "";
    CHECK_EQ_INT(
        syn_safetensors_write(tmp_path("model.safetensors"), &t, 1, NULL, NULL, 0, err, sizeof err),
        0);
    struct syn_hf_dir *d = NULL;
    CHECK_EQ_INT(syn_hf_dir_open(syn_test_tmpdir(), &d, err, sizeof err), 0);
    CHECK_EQ_INT(syn_hf_dir_n_shards(d), 1);
    CHECK_EQ_STR(syn_hf_dir_shard_name(d, 0), "model.safetensors");
    CHECK(syn_hf_dir_find_tensor(d, "model.norm.weight"));
    CHECK_EQ_INT(syn_hf_dir_get(d, "lm_head.weight", NULL, err, sizeof err), SYN_ENOTFOUND);
    CHECK(strstr(err, "no tensor named 'lm_head.weight'"));
    syn_hf_dir_free(d);

    char sub[1100];
    snprintf(sub, sizeof sub, "%s/empty", syn_test_tmpdir());
    CHECK_EQ_INT(syn_test_sh(NULL, "mkdir -p '%s'", sub), 0);
    CHECK_EQ_INT(syn_hf_dir_open(sub, &d, err, sizeof err), SYN_ENOTFOUND);
    CHECK(strstr(err, "has neither model.safetensors nor model.safetensors.index.json"));
    CHECK(d == NULL);
}

static void write_two_shards(void)
{
    float a[4] = {1, 2, 3, 4}, b[2] = {5, 6}, c[3] = {7, 8, 9};
    struct syn_tensor s1[2] = {
        tensor("model.embed_tokens.weight", SYN_DT_F32, 2, 2, 2, a, 16),
        tensor("model.layers.0.input_layernorm.weight", SYN_DT_F32, 1, 2, 1, b, 8)};
    struct syn_tensor s2[1] = {tensor("model.norm.weight", SYN_DT_F32, 1, 3, 1, c, 12)};
    char err[512] = "";
    CHECK_EQ_INT(syn_safetensors_write(tmp_path("model-00001-of-00002.safetensors"), s1, 2, NULL,
                                       NULL, 0, err, sizeof err),
                 0);
    CHECK_EQ_INT(syn_safetensors_write(tmp_path("model-00002-of-00002.safetensors"), s2, 1, NULL,
                                       NULL, 0, err, sizeof err),
                 0);
}

TEST(safetensors_dir_sharded_index)
{
    write_two_shards();
    write_text(
        tmp_path("model.safetensors.index.json"),
        "{\"metadata\": {\"total_size\": 36},\n \"weight_map\": {\n"
        "  \"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\",\n"
        "  \"model.layers.0.input_layernorm.weight\": \"model-00001-of-00002.safetensors\",\n"
        "  \"model.norm.weight\": \"model-00002-of-00002.safetensors\"\n}}\n");
    struct syn_hf_dir *d = NULL;
    char err[512] = "";
    CHECK_EQ_INT(syn_hf_dir_open(syn_test_tmpdir(), &d, err, sizeof err), 0);
    CHECK_EQ_INT(syn_hf_dir_n_shards(d), 2);
    CHECK_EQ_STR(syn_hf_dir_shard_name(d, 1), "model-00002-of-00002.safetensors");
    CHECK_EQ_INT(syn_safetensors_n_tensors(syn_hf_dir_shard(d, 0)), 2);
    const struct syn_tensor *t = NULL;
    CHECK_EQ_INT(syn_hf_dir_get(d, "model.norm.weight", &t, err, sizeof err), 0);
    CHECK_EQ_INT(t->ne[0], 3);
    float x;
    memcpy(&x, (const float *)t->data + 2, sizeof x);
    CHECK_NEAR(x, 9.0, 0);
    t = syn_hf_dir_find_tensor(d, "model.embed_tokens.weight");
    CHECK(t);
    CHECK_EQ_INT(t->ne[1], 2);
    CHECK(syn_hf_dir_find_tensor(d, "lm_head.weight") == NULL);
    syn_hf_dir_free(d);
}

TEST(safetensors_dir_rejects_bad_index)
{
    write_two_shards();
    const char *idx = tmp_path("model.safetensors.index.json");
    struct syn_hf_dir *d = NULL;
    char err[512] = "";

    write_text(idx,
               "{\"weight_map\": {\"model.norm.weight\": \"model-00001-of-00002.safetensors\"}}");
    CHECK_EQ_INT(syn_hf_dir_open(syn_test_tmpdir(), &d, err, sizeof err), SYN_EFORMAT);
    CHECK(strstr(err, "the index says tensor 'model.norm.weight' is in "
                      "model-00001-of-00002.safetensors, but that shard has no such tensor"));

    write_text(idx, "{\"weight_map\": {\"x\": \"../model-00001-of-00002.safetensors\"}}");
    CHECK_EQ_INT(syn_hf_dir_open(syn_test_tmpdir(), &d, err, sizeof err), SYN_EFORMAT);
    CHECK(strstr(err, "expected a file name inside the model directory"));

    write_text(idx, "{\"weight_map\": {\"x\": \"model-00009-of-00009.safetensors\"}}");
    CHECK_EQ_INT(syn_hf_dir_open(syn_test_tmpdir(), &d, err, sizeof err), SYN_ENOTFOUND);
    CHECK(strstr(err, "model-00009-of-00009.safetensors"));

    write_text(idx, "{\"weight_map\": {\"x\": 7}}");
    CHECK_EQ_INT(syn_hf_dir_open(syn_test_tmpdir(), &d, err, sizeof err), SYN_EFORMAT);
    CHECK(strstr(err, "maps 'x' to a non-string"));

    write_text(idx, "{\"metadata\": {}}");
    CHECK_EQ_INT(syn_hf_dir_open(syn_test_tmpdir(), &d, err, sizeof err), SYN_EFORMAT);
    CHECK(strstr(err, "has no \"weight_map\""));

    write_text(idx, "{\"weight_map\": ");
    CHECK_EQ_INT(syn_hf_dir_open(syn_test_tmpdir(), &d, err, sizeof err), SYN_EFORMAT);
    CHECK(strstr(err, "is not valid JSON"));

    /* the same tensor in two shards */
    float c[3] = {0};
    struct syn_tensor dup[2] = {tensor("model.norm.weight", SYN_DT_F32, 1, 3, 1, c, 12),
                                tensor("other", SYN_DT_F32, 1, 3, 1, c, 12)};
    CHECK_EQ_INT(syn_safetensors_write(tmp_path("model-00001-of-00002.safetensors"), dup, 2, NULL,
                                       NULL, 0, err, sizeof err),
                 0);
    write_text(idx, "{\"weight_map\": {"
                    "\"model.norm.weight\": \"model-00002-of-00002.safetensors\","
                    "\"other\": \"model-00001-of-00002.safetensors\"}}");
    CHECK_EQ_INT(syn_hf_dir_open(syn_test_tmpdir(), &d, err, sizeof err), SYN_EFORMAT);
    CHECK(strstr(err, "tensor 'model.norm.weight' is in both model-00002-of-00002.safetensors "
                      "and model-00001-of-00002.safetensors"));
    CHECK(d == NULL);
}

/* ---- config.json ---- */

static int cfg(const char *json, struct syn_hparams *hp, char *err, size_t errlen)
{
    return syn_hf_config_parse(json, strlen(json), "m", hp, err, errlen);
}

TEST(safetensors_config_llama_gqa)
{
    /* TinyLlama-1.1B-Chat-v1.0's config.json, abridged */
    const char *j = "{\"architectures\": [\"LlamaForCausalLM\"], \"bos_token_id\": 1,"
                    " \"hidden_act\": \"silu\", \"hidden_size\": 2048,"
                    " \"intermediate_size\": 5632, \"max_position_embeddings\": 2048,"
                    " \"model_type\": \"llama\", \"num_attention_heads\": 32,"
                    " \"num_hidden_layers\": 22, \"num_key_value_heads\": 4,"
                    " \"rms_norm_eps\": 1e-05, \"rope_scaling\": null,"
                    " \"rope_theta\": 10000.0, \"tie_word_embeddings\": false,"
                    " \"torch_dtype\": \"bfloat16\", \"vocab_size\": 32000}";
    struct syn_hparams hp;
    char err[512] = "";
    CHECK_EQ_INT(cfg(j, &hp, err, sizeof err), 0);
    CHECK_EQ_STR(hp.arch, "llama");
    CHECK_EQ_STR(hp.name, "m");
    CHECK_EQ_INT(hp.n_vocab, 32000);
    CHECK_EQ_INT(hp.dim, 2048);
    CHECK_EQ_INT(hp.n_layer, 22);
    CHECK_EQ_INT(hp.n_head, 32);
    CHECK_EQ_INT(hp.n_kv_head, 4);
    CHECK_EQ_INT(hp.head_dim, 64);
    CHECK_EQ_INT(hp.ffn_dim, 5632);
    CHECK_EQ_INT(hp.n_ctx_train, 2048);
    CHECK_NEAR(hp.norm_eps, 1e-5, 1e-12);
    CHECK_NEAR(hp.rope_theta, 10000, 0);
    CHECK_EQ_INT(hp.rope_neox, 1);
    CHECK_EQ_INT(hp.rope_scaling, SYN_ROPE_SCALING_NONE);
    CHECK_EQ_INT(hp.tied_embeddings, 0);
    CHECK_EQ_INT(hp.qkv_bias, 0);
}

TEST(safetensors_config_defaults_and_tied)
{
    /* SmolLM-style: tied embeddings, no kv heads, no rope_theta, no eps */
    const char *j = "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 576,"
                    " \"intermediate_size\": 1536, \"num_attention_heads\": 9,"
                    " \"num_hidden_layers\": 30, \"tie_word_embeddings\": true,"
                    " \"vocab_size\": 49152}";
    struct syn_hparams hp;
    char err[512] = "";
    CHECK_EQ_INT(cfg(j, &hp, err, sizeof err), 0);
    CHECK_EQ_INT(hp.n_kv_head, 9);
    CHECK_EQ_INT(hp.head_dim, 64);
    CHECK_EQ_INT(hp.tied_embeddings, 1);
    CHECK_NEAR(hp.rope_theta, 10000, 0);
    CHECK_NEAR(hp.norm_eps, 1e-6, 1e-12);
    CHECK_EQ_INT(hp.n_ctx_train, 2048);

    /* an explicit head_dim wins, even when hidden/heads is not whole */
    j = "{\"model_type\": \"llama\", \"hidden_size\": 100, \"intermediate_size\": 64,"
        " \"num_attention_heads\": 3, \"num_hidden_layers\": 1, \"vocab_size\": 10,"
        " \"head_dim\": 40}";
    CHECK_EQ_INT(cfg(j, &hp, err, sizeof err), 0);
    CHECK_EQ_INT(hp.head_dim, 40);
    j = "{\"model_type\": \"llama\", \"hidden_size\": 100, \"intermediate_size\": 64,"
        " \"num_attention_heads\": 3, \"num_hidden_layers\": 1, \"vocab_size\": 10}";
    CHECK_EQ_INT(cfg(j, &hp, err, sizeof err), SYN_EFORMAT);
    CHECK(strstr(err, "hidden_size 100 is not a multiple of num_attention_heads 3"));
}

TEST(safetensors_config_llama3_rope_scaling)
{
    /* Llama-3.2-1B-Instruct */
    const char *j = "{\"architectures\": [\"LlamaForCausalLM\"], \"attention_bias\": false,"
                    " \"head_dim\": 64, \"hidden_act\": \"silu\", \"hidden_size\": 2048,"
                    " \"intermediate_size\": 8192, \"max_position_embeddings\": 131072,"
                    " \"mlp_bias\": false, \"num_attention_heads\": 32,"
                    " \"num_hidden_layers\": 16, \"num_key_value_heads\": 8,"
                    " \"rms_norm_eps\": 1e-05, \"rope_scaling\": {\"factor\": 32.0,"
                    " \"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0,"
                    " \"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"},"
                    " \"rope_theta\": 500000.0, \"tie_word_embeddings\": true,"
                    " \"vocab_size\": 128256}";
    struct syn_hparams hp;
    char err[512] = "";
    CHECK_EQ_INT(cfg(j, &hp, err, sizeof err), 0);
    CHECK_EQ_INT(hp.rope_scaling, SYN_ROPE_SCALING_LLAMA3);
    CHECK_NEAR(hp.rope_factor, 32, 0);
    CHECK_NEAR(hp.rope_low_freq_factor, 1, 0);
    CHECK_NEAR(hp.rope_high_freq_factor, 4, 0);
    CHECK_EQ_INT(hp.rope_orig_ctx, 8192);
    CHECK_NEAR(hp.rope_theta, 500000, 0);
    CHECK_EQ_INT(hp.n_ctx_train, 131072);
    CHECK_EQ_INT(hp.tied_embeddings, 1);

    const char *lin = "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 64,"
                      " \"num_attention_heads\": 4, \"num_hidden_layers\": 1, \"vocab_size\": 10,"
                      " \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}}";
    CHECK_EQ_INT(cfg(lin, &hp, err, sizeof err), 0);
    CHECK_EQ_INT(hp.rope_scaling, SYN_ROPE_SCALING_LINEAR);
    CHECK_NEAR(hp.rope_factor, 2, 0);

    const char *yarn = "{\"model_type\": \"llama\", \"hidden_size\": 64,"
                       " \"intermediate_size\": 64, \"num_attention_heads\": 4,"
                       " \"num_hidden_layers\": 1, \"vocab_size\": 10,"
                       " \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4.0}}";
    CHECK_EQ_INT(cfg(yarn, &hp, err, sizeof err), SYN_EUNSUPPORTED);
    CHECK(strstr(err, "rope_scaling type 'yarn' is not supported (expected linear or llama3)"));

    const char *partial = "{\"model_type\": \"llama\", \"hidden_size\": 64,"
                          " \"intermediate_size\": 64, \"num_attention_heads\": 4,"
                          " \"num_hidden_layers\": 1, \"vocab_size\": 10,"
                          " \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0}}";
    CHECK_EQ_INT(cfg(partial, &hp, err, sizeof err), SYN_EFORMAT);
    CHECK(strstr(err, "rope_scaling is missing \"low_freq_factor\""));
}

TEST(safetensors_config_qwen2)
{
    /* Qwen2.5-0.5B-Instruct, abridged: its sliding window is declared but not used */
    const char *j = "{\"architectures\": [\"Qwen2ForCausalLM\"], \"hidden_act\": \"silu\","
                    " \"hidden_size\": 896, \"intermediate_size\": 4864,"
                    " \"max_position_embeddings\": 32768, \"max_window_layers\": 21,"
                    " \"model_type\": \"qwen2\", \"num_attention_heads\": 14,"
                    " \"num_hidden_layers\": 24, \"num_key_value_heads\": 2,"
                    " \"rms_norm_eps\": 1e-06, \"rope_theta\": 1000000.0,"
                    " \"sliding_window\": 4096, \"tie_word_embeddings\": true,"
                    " \"use_sliding_window\": false, \"vocab_size\": 151936}";
    struct syn_hparams hp;
    char err[512] = "";
    CHECK_EQ_INT(cfg(j, &hp, err, sizeof err), 0);
    CHECK_EQ_STR(hp.arch, "qwen2");
    CHECK_EQ_INT(hp.qkv_bias, 1);
    CHECK_EQ_INT(hp.head_dim, 64);
    CHECK_EQ_INT(hp.n_kv_head, 2);
    CHECK_EQ_INT(hp.rope_neox, 1);
    CHECK_NEAR(hp.rope_theta, 1000000, 0);
    CHECK_EQ_INT(hp.tied_embeddings, 1);
}

TEST(safetensors_config_mistral_sliding_window)
{
    /* Mistral-7B-v0.1 uses a 4096-token window over a 32768 context: refused */
    const char *j = "{\"architectures\": [\"MistralForCausalLM\"], \"hidden_act\": \"silu\","
                    " \"hidden_size\": 4096, \"intermediate_size\": 14336,"
                    " \"max_position_embeddings\": 32768, \"model_type\": \"mistral\","
                    " \"num_attention_heads\": 32, \"num_hidden_layers\": 32,"
                    " \"num_key_value_heads\": 8, \"rms_norm_eps\": 1e-05,"
                    " \"rope_theta\": 10000.0, \"sliding_window\": 4096,"
                    " \"tie_word_embeddings\": false, \"vocab_size\": 32000}";
    struct syn_hparams hp;
    char err[512] = "";
    CHECK_EQ_INT(cfg(j, &hp, err, sizeof err), SYN_EUNSUPPORTED);
    CHECK(strstr(err, "sliding_window is 4096 but max_position_embeddings is 32768"));
    CHECK(strstr(err, "sliding-window attention is not supported"));

    /* Mistral-7B-Instruct-v0.2 has no window: a llama */
    const char *v2 = "{\"architectures\": [\"MistralForCausalLM\"], \"hidden_size\": 4096,"
                     " \"intermediate_size\": 14336, \"max_position_embeddings\": 32768,"
                     " \"num_attention_heads\": 32, \"num_hidden_layers\": 32,"
                     " \"num_key_value_heads\": 8, \"rope_theta\": 1000000.0,"
                     " \"sliding_window\": null, \"vocab_size\": 32000}";
    CHECK_EQ_INT(cfg(v2, &hp, err, sizeof err), 0);
    CHECK_EQ_STR(hp.arch, "llama");
    CHECK_EQ_INT(hp.qkv_bias, 0);
}

TEST(safetensors_config_rejects)
{
    struct syn_hparams hp;
    char err[512] = "";
    CHECK_EQ_INT(
        cfg("{\"architectures\": [\"GPT2LMHeadModel\"], \"vocab_size\": 5}", &hp, err, sizeof err),
        SYN_EUNSUPPORTED);
    CHECK(strstr(err, "architecture 'GPT2LMHeadModel' is not supported (expected "
                      "LlamaForCausalLM, MistralForCausalLM or Qwen2ForCausalLM)"));
    CHECK_EQ_INT(cfg("{\"model_type\": \"gemma\"}", &hp, err, sizeof err), SYN_EUNSUPPORTED);
    CHECK(strstr(err, "model_type 'gemma' is not supported"));
    CHECK_EQ_INT(cfg("{\"vocab_size\": 5}", &hp, err, sizeof err), SYN_EFORMAT);
    CHECK(strstr(err, "neither \"architectures\" nor \"model_type\""));
    CHECK_EQ_INT(cfg("{\"model_type\": \"llama\", \"vocab_size\": 5}", &hp, err, sizeof err),
                 SYN_EFORMAT);
    CHECK(strstr(err, "missing \"hidden_size\""));
    CHECK_EQ_INT(cfg("{\"model_type\": \"llama\", \"vocab_size\": \"5\"}", &hp, err, sizeof err),
                 SYN_EFORMAT);
    CHECK(strstr(err, "\"vocab_size\" is not a number"));
    CHECK_EQ_INT(cfg("{\"model_type\": \"llama\", \"vocab_size\": 1e300}", &hp, err, sizeof err),
                 SYN_EFORMAT);
    CHECK(strstr(err, "\"vocab_size\" is 1e+300, expected an integer"));
    CHECK_EQ_INT(cfg("{\"model_type\": ", &hp, err, sizeof err), SYN_EFORMAT);
    CHECK(strstr(err, "not valid JSON"));

    const char *base = "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 64,"
                       " \"num_attention_heads\": 4, \"num_hidden_layers\": 1, \"vocab_size\": 10,";
    char j[1024];
    snprintf(j, sizeof j, "%s \"num_key_value_heads\": 3}", base);
    CHECK_EQ_INT(cfg(j, &hp, err, sizeof err), SYN_EFORMAT);
    CHECK(strstr(err, "num_attention_heads 4 is not a multiple of num_key_value_heads 3"));
    snprintf(j, sizeof j, "%s \"hidden_act\": \"gelu\"}", base);
    CHECK_EQ_INT(cfg(j, &hp, err, sizeof err), SYN_EUNSUPPORTED);
    CHECK(strstr(err, "hidden_act is 'gelu', expected silu"));
    snprintf(j, sizeof j, "%s \"attention_bias\": true}", base);
    CHECK_EQ_INT(cfg(j, &hp, err, sizeof err), SYN_EUNSUPPORTED);
    CHECK(strstr(err, "\"attention_bias\" is true"));
    snprintf(j, sizeof j, "%s \"rms_norm_eps\": -1}", base);
    CHECK_EQ_INT(cfg(j, &hp, err, sizeof err), SYN_EFORMAT);
    CHECK(strstr(err, "\"rms_norm_eps\" is not positive"));
}

TEST(safetensors_config_load_from_dir)
{
    char dir[1100], path[1200];
    struct syn_hparams hp;
    char err[512] = "";
    snprintf(dir, sizeof dir, "%s/TinyStories-hf/", syn_test_tmpdir());
    CHECK_EQ_INT(syn_test_sh(NULL, "mkdir -p '%s'", dir), 0);
    CHECK_EQ_INT(syn_hf_config_load(dir, &hp, err, sizeof err), SYN_ENOTFOUND);
    CHECK(strstr(err, "config.json"));
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_text(path, "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64,"
                     " \"intermediate_size\": 172, \"num_attention_heads\": 8,"
                     " \"num_hidden_layers\": 5, \"vocab_size\": 512}");
    CHECK_EQ_INT(syn_hf_config_load(dir, &hp, err, sizeof err), 0);
    CHECK_EQ_STR(hp.name, "TinyStories-hf");
    CHECK_EQ_INT(hp.head_dim, 8);
    CHECK_EQ_INT(hp.ffn_dim, 172);
}
