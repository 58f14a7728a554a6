/*
 * `synapse model random`, run as a user would: the file it writes parses, holds the hyperparameters
 * under llama.cpp's key names and every tensor with the shape and type the engine expects, its
 * weights are scaled as documented, the same seed gives the same bytes, the tokenizer is copied
 * or synthesised as promised (and the synthesised one round-trips text), and bad flags are usage
 * errors (exit 2). The forward pass on these files is checked in test_reference.c.
 */
#include "harness.h"

#include "synapse/gguf.h"
#include "synapse/tensor.h"
#include "synapse/tokenizer.h"

#include <math.h>

/* Runs `synapse model random ARGS -o DIR/name` and returns the output path (static buffer per
 * call site is not needed: the caller copies it). Fails the test unless the command exits 0. */
static const char *make_model(const char *name, const char *args)
{
    static char path[4][700];
    static int k;
    char *p = path[k++ & 3];
    snprintf(p, sizeof path[0], "%s/%s", syn_test_tmpdir(), name);
    char *out = NULL;
    int rc = syn_test_sh(&out, "'%s' model random %s -o '%s' 2>&1", syn_test_bin(), args, p);
    if (rc != 0) FAIL("model random %s: exit %d\n%s", args, rc, out ? out : "");
    free(out);
    return p;
}

static struct syn_gguf *open_model(const char *path)
{
    struct syn_gguf *g = NULL;
    char err[512];
    if (syn_gguf_open(path, &g, err, sizeof err) < 0) FAIL("syn_gguf_open(%s): %s", path, err);
    return g;
}

static uint32_t get_u32(const struct syn_gguf *g, const char *key)
{
    uint32_t v = 0;
    if (syn_gguf_get_u32(g, key, &v) < 0) FAIL("key %s missing or not an integer", key);
    return v;
}

/* Checks tensor name's type and 2-D (or 1-D when rows == 0) shape in GGUF order. */
static const struct syn_tensor *check_tensor(const struct syn_gguf *g, const char *name, int type,
                                             uint64_t k, uint64_t rows)
{
    const struct syn_tensor *t = syn_gguf_find_tensor(g, name);
    if (!t) FAIL("tensor %s missing", name);
    if (t->type != type) FAIL("%s: type %d, expected %d", name, t->type, type);
    if (t->n_dims != (rows ? 2 : 1))
        FAIL("%s: %d dims, expected %d", name, t->n_dims, rows ? 2 : 1);
    if (t->ne[0] != k || (rows && t->ne[1] != rows))
        FAIL("%s: ne = [%llu, %llu], expected [%llu, %llu]", name, (unsigned long long)t->ne[0],
             (unsigned long long)t->ne[1], (unsigned long long)k, (unsigned long long)rows);
    if (t->nbytes != syn_dtype_row_bytes(type, k) * (rows ? rows : 1))
        FAIL("%s: %llu bytes", name, (unsigned long long)t->nbytes);
    return t;
}

/* Checks every tensor of a Llama of the given shape; returns how many the file should have. */
static int64_t check_llama_tensors(const struct syn_gguf *g, int dtype, int dim, int layers,
                                   int heads, int kv, int hd, int ffn, int vocab, int tied)
{
    char name[64];
    check_tensor(g, "token_embd.weight", dtype, dim, vocab);
    check_tensor(g, "output_norm.weight", SYN_DT_F32, dim, 0);
    if (tied)
        CHECK(syn_gguf_find_tensor(g, "output.weight") == NULL);
    else
        check_tensor(g, "output.weight", dtype, dim, vocab);
    for (int i = 0; i < layers; i++) {
#define T(part, type, k, rows)                                                                     \
    snprintf(name, sizeof name, "blk.%d.%s.weight", i, part);                                      \
    check_tensor(g, name, type, k, rows)
        T("attn_norm", SYN_DT_F32, dim, 0);
        T("attn_q", dtype, dim, heads * hd);
        T("attn_k", dtype, dim, kv * hd);
        T("attn_v", dtype, dim, kv * hd);
        T("attn_output", dtype, heads * hd, dim);
        T("ffn_norm", SYN_DT_F32, dim, 0);
        T("ffn_gate", dtype, dim, ffn);
        T("ffn_up", dtype, dim, ffn);
        T("ffn_down", dtype, ffn, dim);
#undef T
    }
    return 2 + !tied + 9LL * layers;
}

/* Dequantises a whole tensor into a malloc'ed float array. */
static float *tensor_floats(const struct syn_tensor *t)
{
    uint64_t n = t->ne[0] * t->ne[1];
    float *x = malloc(n * sizeof *x);
    CHECK(x);
    CHECK_EQ_INT(syn_dequantize_row(t->type, t->data, x, n), 0);
    return x;
}

TEST(model_random_custom_shape_has_llama_keys_and_tensors)
{
    const char *p = make_model("m.gguf", "--dim 80 --layers 2 --heads 4 --kv-heads 2 --head-dim 24 "
                                         "--ffn 100 --vocab 300 --dtype f16 --seed 7");
    struct syn_gguf *g = open_model(p);
    CHECK_EQ_INT(syn_gguf_version(g), 3);
    CHECK_EQ_INT(syn_gguf_alignment(g), 32);
    const char *s;
    size_t len;
    CHECK_EQ_INT(syn_gguf_get_str(g, "general.architecture", &s, &len), 0);
    CHECK(len == 5 && !memcmp(s, "llama", 5));
    CHECK_EQ_INT(get_u32(g, "llama.embedding_length"), 80);
    CHECK_EQ_INT(get_u32(g, "llama.block_count"), 2);
    CHECK_EQ_INT(get_u32(g, "llama.feed_forward_length"), 100);
    CHECK_EQ_INT(get_u32(g, "llama.attention.head_count"), 4);
    CHECK_EQ_INT(get_u32(g, "llama.attention.head_count_kv"), 2);
    CHECK_EQ_INT(get_u32(g, "llama.rope.dimension_count"), 24);
    CHECK_EQ_INT(get_u32(g, "llama.attention.key_length"), 24);
    CHECK_EQ_INT(get_u32(g, "llama.context_length"), 2048);
    CHECK_EQ_INT(get_u32(g, "general.alignment"), 32);
    float eps = 0, theta = 0;
    CHECK_EQ_INT(syn_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &eps), 0);
    CHECK_EQ_INT(syn_gguf_get_f32(g, "llama.rope.freq_base", &theta), 0);
    CHECK_NEAR(eps, 1e-5, 1e-12);
    CHECK_NEAR(theta, 10000.0, 0);
    int64_t n = check_llama_tensors(g, SYN_DT_F16, 80, 2, 4, 2, 24, 100, 300, 0);
    CHECK_EQ_INT(syn_gguf_n_tensors(g), n);
    syn_gguf_free(g);
}

TEST(model_random_tied_q8_0_has_no_output_and_whole_blocks)
{
    const char *p = make_model("q.gguf", "--dim 96 --layers 1 --heads 3 --kv-heads 1 --ffn 160 "
                                         "--vocab 300 --dtype q8_0 --tied");
    struct syn_gguf *g = open_model(p);
    int64_t n = check_llama_tensors(g, SYN_DT_Q8_0, 96, 1, 3, 1, 32, 160, 300, 1);
    CHECK_EQ_INT(syn_gguf_n_tensors(g), n);
    uint32_t ft = get_u32(g, "general.file_type");
    CHECK_EQ_INT(ft, 7); /* llama.cpp's MOSTLY_Q8_0 */
    /* d * q reproduces uniform weights in [-sqrt(3/K), sqrt(3/K)): no block is all zeros and
     * every block uses its full range (some |q| is 127) */
    const struct syn_tensor *t = syn_gguf_find_tensor(g, "blk.0.ffn_down.weight");
    const struct syn_block_q8_0 *b = t->data;
    for (uint64_t i = 0; i < t->nbytes / sizeof *b; i++) {
        int maxq = 0;
        for (int j = 0; j < 32; j++) maxq = abs(b[i].q[j]) > maxq ? abs(b[i].q[j]) : maxq;
        if (maxq != 127) FAIL("block %llu: max |q| = %d", (unsigned long long)i, maxq);
        float d = syn_f16_to_f32(b[i].d);
        CHECK(d > 0 && d * 127 <= sqrtf(3.0f / 160) * 1.001f);
    }
    syn_gguf_free(g);
}

TEST(model_random_weights_are_scaled_to_keep_activations_unit)
{
    const char *p = make_model("w.gguf", "--dim 128 --layers 1 --heads 4 --ffn 256 --vocab 300 "
                                         "--dtype f32");
    struct syn_gguf *g = open_model(p);
    /* matrices: uniform with variance 1/K; norms: 1 +- 0.1 */
    static const char *const mats[] = {"blk.0.attn_q.weight", "blk.0.ffn_down.weight",
                                       "token_embd.weight", "output.weight"};
    for (int m = 0; m < 4; m++) {
        const struct syn_tensor *t = syn_gguf_find_tensor(g, mats[m]);
        CHECK(t);
        float *x = tensor_floats(t);
        uint64_t n = t->ne[0] * t->ne[1];
        double sum = 0, sq = 0, lim = sqrt(3.0 / (double)t->ne[0]);
        for (uint64_t i = 0; i < n; i++) {
            if (fabs(x[i]) > lim)
                FAIL("%s[%llu] = %g outside +-%g", mats[m], (unsigned long long)i, x[i], lim);
            sum += x[i];
            sq += (double)x[i] * x[i];
        }
        double mean = sum / (double)n, var = sq / (double)n - mean * mean;
        if (fabs(var * (double)t->ne[0] - 1.0) > 0.05 || fabs(mean) > 0.05 * sqrt(var))
            FAIL("%s: mean %g, variance * K = %g (expected 0 and 1)", mats[m], mean,
                 var * (double)t->ne[0]);
        free(x);
    }
    const struct syn_tensor *t = syn_gguf_find_tensor(g, "blk.0.attn_norm.weight");
    float *x = tensor_floats(t);
    int distinct = 0;
    for (int i = 0; i < 128; i++) {
        CHECK(x[i] >= 0.9f && x[i] <= 1.1f);
        distinct += i > 0 && x[i] != x[i - 1];
    }
    CHECK(distinct > 100); /* random, not a constant */
    free(x);
    syn_gguf_free(g);
}

TEST(model_random_same_seed_same_bytes)
{
    const char *args = "--dim 64 --layers 2 --heads 4 --kv-heads 2 --vocab 300 --dtype q8_0";
    char a[700], b[700], c[700], cmd[800];
    snprintf(a, sizeof a, "%s", make_model("a.gguf", args));
    snprintf(b, sizeof b, "%s", make_model("b.gguf", args));
    snprintf(cmd, sizeof cmd, "%s --seed 2", args);
    snprintf(c, sizeof c, "%s", make_model("c.gguf", cmd));
    CHECK_EQ_INT(syn_test_sh(NULL, "cmp -s '%s' '%s'", a, b), 0);
    CHECK(syn_test_sh(NULL, "cmp -s '%s' '%s'", a, c) != 0);
    /* a different seed changes every matrix, not just some */
    struct syn_gguf *ga = open_model(a), *gc = open_model(c);
    for (int64_t i = 0; i < syn_gguf_n_tensors(ga); i++) {
        const struct syn_tensor *ta = syn_gguf_tensor(ga, i), *tc = syn_gguf_tensor(gc, i);
        CHECK_EQ_STR(ta->name, tc->name);
        CHECK(ta->nbytes == tc->nbytes);
        if (!memcmp(ta->data, tc->data, ta->nbytes))
            FAIL("%s is the same for seeds 1 and 2", ta->name);
    }
    syn_gguf_free(ga);
    syn_gguf_free(gc);
}

TEST(model_random_named_shape_copies_the_vocab_of_its_size)
{
    /* stories260k: 512 tokens, the vocab of the shared stories260K.gguf */
    const char *src = syn_test_shared("models/stories260K.gguf");
    if (access(src, R_OK) != 0) SKIP("%s not found", src);
    const char *p = make_model("s.gguf", "--shape stories260k --dtype f32");
    struct syn_gguf *g = open_model(p), *ref = open_model(src);
    CHECK_EQ_INT(get_u32(g, "llama.attention.head_count"), 8);
    CHECK_EQ_INT(get_u32(g, "llama.attention.head_count_kv"), 4);
    CHECK_EQ_INT(get_u32(g, "llama.feed_forward_length"), 172);
    CHECK_EQ_INT(syn_gguf_n_tensors(g),
                 check_llama_tensors(g, SYN_DT_F32, 64, 5, 8, 4, 8, 172, 512, 0));
    int64_t ti = syn_gguf_find_key(g, "tokenizer.ggml.tokens");
    int64_t ri = syn_gguf_find_key(ref, "tokenizer.ggml.tokens");
    CHECK(ti >= 0 && ri >= 0);
    CHECK_EQ_INT(syn_gguf_arr_n(g, ti), 512);
    for (uint64_t j = 0; j < 512; j++) {
        const char *a, *b;
        size_t la, lb;
        CHECK_EQ_INT(syn_gguf_arr_str(g, ti, j, &a, &la), 0);
        CHECK_EQ_INT(syn_gguf_arr_str(ref, ri, j, &b, &lb), 0);
        if (la != lb || memcmp(a, b, la)) FAIL("token %llu differs", (unsigned long long)j);
    }
    /* every tokenizer.* key of the source, nothing else from it */
    for (int64_t i = 0; i < syn_gguf_n_kv(ref); i++) {
        const char *k = syn_gguf_key(ref, i);
        if (!strncmp(k, "tokenizer.", 10) && syn_gguf_find_key(g, k) < 0) FAIL("%s not copied", k);
    }
    syn_gguf_free(g);
    syn_gguf_free(ref);
}

TEST(model_random_vocab_from_must_match_the_vocab_size)
{
    const char *src = syn_test_shared("testdata/tokenizer/ggml-vocab-llama-spm.gguf");
    if (access(src, R_OK) != 0) SKIP("%s not found", src);
    char *out = NULL;
    int rc = syn_test_sh(&out,
                         "'%s' model random --dim 64 --layers 1 --heads 2 --vocab 300 "
                         "--dtype f32 --vocab-from '%s' -o '%s/x.gguf' 2>&1",
                         syn_test_bin(), src, syn_test_tmpdir());
    CHECK_EQ_INT(rc, 1);
    CHECK(out && strstr(out, "32000 tokens") && strstr(out, "300"));
    free(out);
    char path[700];
    snprintf(path, sizeof path, "%s/x.gguf", syn_test_tmpdir());
    CHECK(access(path, F_OK) != 0); /* nothing left behind */
    char args[900];
    snprintf(args, sizeof args, "--dim 64 --layers 1 --heads 2 --dtype bf16 --vocab-from '%s'",
             src);
    struct syn_gguf *g = open_model(make_model("y.gguf", args));
    CHECK_EQ_INT(syn_gguf_arr_n(g, syn_gguf_find_key(g, "tokenizer.ggml.tokens")), 32000);
    check_llama_tensors(g, SYN_DT_BF16, 64, 1, 2, 2, 32, 192, 32000, 0);
    syn_gguf_free(g);
}

TEST(model_random_synthesised_vocab_round_trips_text)
{
    const char *p = make_model("v.gguf", "--dim 32 --layers 1 --heads 2 --vocab 1000 --dtype f32");
    struct syn_gguf *g = open_model(p);
    struct syn_tokenizer *tok = NULL;
    char err[512];
    if (syn_tokenizer_from_gguf(g, &tok, err, sizeof err) < 0) FAIL("tokenizer: %s", err);
    CHECK_EQ_INT(syn_tokenizer_n_vocab(tok), 1000);
    CHECK_EQ_INT(syn_tokenizer_bos(tok), 1);
    CHECK_EQ_INT(syn_tokenizer_eos(tok), 2);
    CHECK_EQ_STR(syn_tokenizer_piece(tok, 3), "<0x00>");
    const char *text = "Hello, world! caf\xc3\xa9 \xe2\x82\xac 42\n\ttabs";
    int32_t ids[256];
    int n = syn_tokenizer_encode(tok, text, strlen(text), 1, 0, ids, 256);
    CHECK(n > 1 && n < 256);
    CHECK_EQ_INT(ids[0], 1);
    char back[512];
    size_t len = 0;
    struct syn_detok d;
    syn_detok_init(&d);
    for (int i = 0; i < n; i++) {
        CHECK(ids[i] >= 0 && ids[i] < 1000);
        int w = syn_detok_push(tok, &d, ids[i], back + len, sizeof back - len);
        CHECK(w >= 0);
        len += (size_t)w;
    }
    int w = syn_detok_flush(tok, &d, back + len, sizeof back - len);
    CHECK(w >= 0);
    len += (size_t)w;
    back[len] = 0;
    CHECK_EQ_STR(back, text);
    syn_tokenizer_free(tok);
    syn_gguf_free(g);
}

TEST(model_random_llama3_shape_has_rope_freqs)
{
    const char *p = make_model("l3.gguf", "--shape llama-3.2-1b --dim 64 --layers 1 --heads 4 "
                                          "--kv-heads 2 --head-dim 16 --ffn 64 --vocab 300 "
                                          "--dtype bf16");
    struct syn_gguf *g = open_model(p);
    float theta = 0;
    CHECK_EQ_INT(syn_gguf_get_f32(g, "llama.rope.freq_base", &theta), 0);
    CHECK_NEAR(theta, 500000.0, 0);
    CHECK(syn_gguf_find_tensor(g, "output.weight") == NULL); /* tied */
    const struct syn_tensor *t = check_tensor(g, "rope_freqs.weight", SYN_DT_F32, 8, 0);
    const float *f = t->data;
    CHECK_NEAR(f[0], 1.0, 0);  /* the highest frequency is kept */
    CHECK_NEAR(f[7], 32.0, 0); /* the lowest, wavelength > 8192, is divided by the factor */
    for (int i = 1; i < 8; i++) CHECK(f[i] >= f[i - 1]);
    syn_gguf_free(g);
}

TEST(model_random_usage_errors_exit_2)
{
    static const char *const bad[] = {
        "--dim 64 --layers 1 --heads 2 --dtype f32 --bogus",
        "--dim 64 --layers 1 --heads 2 -o",
        "--dim 64 --layers 1 --heads 2 --dtype f32",                      /* no -o */
        "--dim 64 --layers 1 --dtype f32 -o x.gguf",                      /* no --heads */
        "--dim 64 --layers 1 --heads 2 -o x.gguf",                        /* no --dtype */
        "--dim 64 --layers 1 --heads 2 --dtype q2_K -o x.gguf",           /* unsupported dtype */
        "--dim 64 --layers 1 --heads 2 --dtype q4_K -o x.gguf",           /* not whole 256s */
        "--dim 64 --layers 1 --heads 2 --dtype q8_0 --ffn 100 -o x.gguf", /* not whole blocks */
        "--dim 64 --layers 1 --heads 4 --kv-heads 3 --dtype f32 -o x.gguf",
        "--dim 60 --layers 1 --heads 8 --dtype f32 -o x.gguf", /* 60 / 8 is not whole */
        "--dim 64 --layers 1 --heads 2 --head-dim 7 --dtype f32 -o x.gguf",
        "--dim 0 --layers 1 --heads 2 --dtype f32 -o x.gguf",
        "--shape gpt-5 --dtype f32 -o x.gguf",
        "--dim 64 --layers 1 --heads 2 --dtype f32 --seed -1 -o x.gguf",
        "--dim 64 --layers 1 --heads 2 --dtype f32 -o x.gguf extra",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *out = NULL;
        int rc = syn_test_sh(&out, "cd '%s' && '%s' model random %s 2>&1", syn_test_tmpdir(),
                             syn_test_bin(), bad[i]);
        if (rc != 2) FAIL("'%s': exit %d, expected 2\n%s", bad[i], rc, out ? out : "");
        if (!out || !strstr(out, "synapse model random: "))
            FAIL("'%s': no usage message: %s", bad[i], out ? out : "");
        free(out);
    }
    char path[700];
    snprintf(path, sizeof path, "%s/x.gguf", syn_test_tmpdir());
    CHECK(access(path, F_OK) != 0);
    char *out = NULL;
    CHECK_EQ_INT(syn_test_sh(&out, "'%s' model random --help", syn_test_bin()), 0);
    CHECK(out && strstr(out, "Usage: synapse model random") && strstr(out, "tinyllama-1.1b"));
    free(out);
}
