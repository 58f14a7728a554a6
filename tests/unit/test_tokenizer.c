/*
 * The tokenizers: llama.cpp's reference vectors for every vocab found (SentencePiece, GPT-2,
 * deepseek-llm), stories260K round trips, streaming decode of characters split across byte
 * tokens, tokenizer.json files of both kinds written here, special tokens, hostile input (random
 * bytes, invalid UTF-8, very long runs) and `synapse model tokenize`.
 */
#include "harness.h"

#include "synapse/error.h"
#include "synapse/gguf.h"
#include "synapse/tokenizer.h"

#include <dirent.h>
#include <stdint.h>
#include <time.h>

/* ---- helpers ---- */

/* Loads the tokenizer of a GGUF file; skips the test when the file is missing. The GGUF handle
 * is freed at once: the tokenizer must not point into it. */
static struct syn_tokenizer *load_gguf(const char *path)
{
    if (access(path, R_OK) != 0) SKIP("%s is missing", path);
    struct syn_gguf *g = NULL;
    struct syn_tokenizer *t = NULL;
    char err[512];
    if (syn_gguf_open(path, &g, err, sizeof err)) FAIL("%s: %s", path, err);
    if (syn_tokenizer_from_gguf(g, &t, err, sizeof err)) FAIL("%s: %s", path, err);
    syn_gguf_free(g);
    return t;
}

static struct syn_tokenizer *load_vocab(const char *name)
{
    char rel[256];
    snprintf(rel, sizeof rel, "testdata/tokenizer/ggml-vocab-%s.gguf", name);
    return load_gguf(syn_test_shared(rel));
}

/* Encodes into a malloc'ed array (caller frees); *n gets the count. */
static int32_t *encode(const struct syn_tokenizer *t, const char *s, size_t len, int bos,
                       int special, int *n)
{
    /* at most 3 tokens a byte (SPM's "▁" as byte tokens), a prefix and BOS: one call does */
    int cap = (int)(3 * len + 8);
    int32_t *ids = malloc(sizeof *ids * (size_t)cap);
    CHECK(ids);
    int got = syn_tokenizer_encode(t, s, len, bos, special, ids, cap);
    if (got < 0) FAIL("encode failed: %s", syn_strerror(got));
    CHECK(got <= cap);
    *n = got;
    return ids;
}

/* Exact decode into a malloc'ed NUL-terminated buffer; *len gets the length. */
static char *decode(const struct syn_tokenizer *t, const int32_t *ids, int n, size_t *len)
{
    int need = syn_tokenizer_decode(t, ids, n, NULL, 0);
    if (need < 0) FAIL("decode failed: %s", syn_strerror(need));
    char *s = malloc((size_t)need + 1);
    CHECK(s);
    CHECK_EQ_INT(syn_tokenizer_decode(t, ids, n, s, (size_t)need), need);
    s[need] = '\0';
    *len = (size_t)need;
    return s;
}

/* Decodes through the streaming decoder, checking that each push emits valid UTF-8. */
static char *stream_decode(const struct syn_tokenizer *t, const int32_t *ids, int n, size_t *len);

/* Whether s[0..n) is valid UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
static int valid_utf8(const char *s, size_t n)
{
    const uint8_t *u = (const uint8_t *)s;
    for (size_t i = 0; i < n;) {
        uint8_t c = u[i];
        size_t k;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF)
            k = 2, cp = c & 0x1F, min = 0x80;
        else if (c >= 0xE0 && c <= 0xEF)
            k = 3, cp = c & 0x0F, min = 0x800;
        else if (c >= 0xF0 && c <= 0xF4)
            k = 4, cp = c & 0x07, min = 0x10000;
        else
            return 0;
        if (i + k > n) return 0;
        for (size_t j = 1; j < k; j++) {
            if ((u[i + j] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (u[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += k;
    }
    return 1;
}

static char *stream_decode(const struct syn_tokenizer *t, const int32_t *ids, int n, size_t *len)
{
    size_t cap = 64, used = 0;
    char *s = malloc(cap);
    char piece[4096];
    struct syn_detok d;
    CHECK(s);
    syn_detok_init(&d);
    for (int i = 0; i <= n; i++) {
        int k = i < n ? syn_detok_push(t, &d, ids[i], piece, sizeof piece)
                      : syn_detok_flush(t, &d, piece, sizeof piece);
        if (k < 0) FAIL("detok failed at token %d: %s", i, syn_strerror(k));
        if (!valid_utf8(piece, (size_t)k)) FAIL("detok emitted invalid UTF-8 at token %d", i);
        if (used + (size_t)k + 1 > cap) {
            cap = (used + (size_t)k + 1) * 2;
            s = realloc(s, cap);
            CHECK(s);
        }
        memcpy(s + used, piece, (size_t)k);
        used += (size_t)k;
    }
    s[used] = '\0';
    *len = used;
    return s;
}

/* Appends ids to a line buffer as "1 2 3". */
static void ids_str(const int32_t *ids, int n, char *buf, size_t cap)
{
    size_t at = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && at + 16 < cap; i++)
        at += (size_t)snprintf(buf + at, cap - at, "%s%d", i ? " " : "", ids[i]);
}

/* A small deterministic generator for hostile inputs. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* ---- reference vectors ---- */

/* Runs every case of one vocab; returns the number of failures (each printed). */
static int run_vectors(const char *dir, const char *name)
{
    char path[1024], inp[1100], outp[1100];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(inp, sizeof inp, "%s.inp", path);
    snprintf(outp, sizeof outp, "%s.out", path);
    if (access(inp, R_OK) || access(outp, R_OK)) return 0; /* a vocab without vectors */
    struct syn_tokenizer *t = load_gguf(path);
    size_t in_len, out_len;
    char *in = syn_test_read_file(inp, &in_len), *out = syn_test_read_file(outp, &out_len);
    CHECK(in && out);
    static const char sep[] = "\n__ggml_vocab_test__\n";
    int failures = 0, cases = 0;
    char *cur = in, *line = out;
    for (;;) {
        char *end = strstr(cur, sep);
        if (!end) break;
        char *nl = strchr(line, '\n');
        if (!nl) FAIL("%s: fewer lines in .out than cases in .inp (case %d)", name, cases);
        *nl = '\0';
        /* expected ids */
        int32_t want[4096];
        int n_want = 0;
        for (char *p = line; *p;) {
            char *e;
            long v = strtol(p, &e, 10);
            if (e == p) break;
            CHECK(n_want < 4096);
            want[n_want++] = (int32_t)v;
            p = e;
        }
        size_t len = (size_t)(end - cur);
        int n_got;
        int32_t *got = encode(t, cur, len, 0, 0, &n_got);
        int same = n_got == n_want;
        for (int i = 0; same && i < n_got; i++) same = got[i] == want[i];
        if (!same) {
            static char a[65536], b[65536];
            ids_str(got, n_got, a, sizeof a);
            ids_str(want, n_want, b, sizeof b);
            fprintf(stderr, "  %s case %d \"%.*s\":\n    got      %s\n    expected %s\n", name,
                    cases, (int)len, cur, a, b);
            failures++;
        } else {
            /* and back: decoding gives the text again, exactly */
            size_t dl;
            char *back = decode(t, got, n_got, &dl);
            if (dl != len || memcmp(back, cur, len) != 0) {
                fprintf(stderr, "  %s case %d \"%.*s\": decodes to \"%s\"\n", name, cases, (int)len,
                        cur, back);
                failures++;
            }
            free(back);
        }
        free(got);
        cases++;
        cur = end + sizeof sep - 1;
        line = nl + 1;
    }
    if (cases == 0) FAIL("%s: no cases found", inp);
    fprintf(stderr, "  %s: %d cases, %d failed\n", name, cases, failures);
    free(in);
    free(out);
    syn_tokenizer_free(t);
    return failures;
}

static int run_vector_dir(const char *dir, int *n_vocabs)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int failures = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n > 5 && !strcmp(e->d_name + n - 5, ".gguf")) {
            failures += run_vectors(dir, e->d_name);
            (*n_vocabs)++;
        }
    }
    closedir(d);
    return failures;
}

TEST(tokenizer_reference_vectors)
{
    int n_vocabs = 0, failures = 0;
    failures += run_vector_dir(syn_test_shared("testdata/tokenizer"), &n_vocabs);
    const char *extra = getenv("SYNAPSE_TOKENIZER_VECTORS");
    if (extra && *extra) failures += run_vector_dir(extra, &n_vocabs);
    if (n_vocabs == 0) SKIP("no vocab files found");
    CHECK_EQ_INT(failures, 0);
}

/* ---- metadata ---- */

TEST(tokenizer_gguf_metadata)
{
    struct syn_tokenizer *spm = load_vocab("llama-spm");
    CHECK_EQ_INT(syn_tokenizer_model(spm), SYN_TOK_SPM);
    CHECK_EQ_INT(syn_tokenizer_n_vocab(spm), 32000);
    CHECK_EQ_INT(syn_tokenizer_bos(spm), 1);
    CHECK_EQ_INT(syn_tokenizer_eos(spm), 2);
    CHECK_EQ_INT(syn_tokenizer_add_bos(spm), 1);
    CHECK(syn_tokenizer_is_eog(spm, 2));
    CHECK(!syn_tokenizer_is_eog(spm, 1));
    CHECK_EQ_STR(syn_tokenizer_piece(spm, 13), "<0x0A>");
    CHECK(syn_tokenizer_piece(spm, 32000) == NULL);
    CHECK(syn_tokenizer_piece(spm, -1) == NULL);
    CHECK_EQ_INT(syn_tokenizer_find(spm, "<0x0A>"), 13);
    CHECK_EQ_INT(syn_tokenizer_find(spm, "no such piece"), -1);
    CHECK_EQ_INT(syn_tokenizer_token_type(spm, 13), SYN_TOKT_BYTE);
    CHECK_EQ_INT(syn_tokenizer_token_type(spm, 1), SYN_TOKT_CONTROL);
    syn_tokenizer_free(spm);

    struct syn_tokenizer *gpt2 = load_vocab("gpt-2");
    CHECK_EQ_INT(syn_tokenizer_model(gpt2), SYN_TOK_BPE);
    CHECK_EQ_INT(syn_tokenizer_add_bos(gpt2), 0); /* no add_bos_token key: BPE says no */
    CHECK_EQ_INT(syn_tokenizer_eos(gpt2), 50256);
    CHECK(syn_tokenizer_is_eog(gpt2, 50256));
    CHECK_EQ_INT(syn_tokenizer_find(gpt2, "\xc4\xa0the"), 262); /* "Ġthe" */
    syn_tokenizer_free(gpt2);

    struct syn_tokenizer *ds = load_vocab("deepseek-llm");
    CHECK_EQ_INT(syn_tokenizer_add_bos(ds), 1); /* the key says so */
    CHECK_EQ_INT(syn_tokenizer_bos(ds), 100000);
    CHECK(syn_tokenizer_is_eog(ds, 100001));
    syn_tokenizer_free(ds);
}

/* Writes a GGUF vocab into the tmpdir: pieces, scores, types and the given model name, plus
 * add_space_prefix when asp >= 0. Returns its path (static buffer). */
static const char *write_vocab(const char *name, const char *model, const char *const *pieces,
                               const float *scores, const int32_t *types, int n, int asp)
{
    static char path[1024];
    char err[512];
    size_t lens[16];
    CHECK(n <= 16);
    for (int i = 0; i < n; i++) lens[i] = strlen(pieces[i]);
    struct syn_gguf_writer *w = syn_gguf_writer_new();
    CHECK(w);
    CHECK_EQ_INT(syn_gguf_writer_add_str(w, "tokenizer.ggml.model", model), 0);
    if (n) {
        CHECK_EQ_INT(
            syn_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", pieces, lens, (uint64_t)n), 0);
        CHECK_EQ_INT(syn_gguf_writer_add_arr(w, "tokenizer.ggml.scores", SYN_GGUF_FLOAT32, scores,
                                             (uint64_t)n),
                     0);
        CHECK_EQ_INT(syn_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", SYN_GGUF_INT32, types,
                                             (uint64_t)n),
                     0);
    }
    if (asp >= 0)
        CHECK_EQ_INT(syn_gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix", asp), 0);
    snprintf(path, sizeof path, "%s/%s", syn_test_tmpdir(), name);
    if (syn_gguf_writer_write(w, path, err, sizeof err)) FAIL("%s", err);
    syn_gguf_writer_free(w);
    return path;
}

static int gguf_load_rc(const char *path, char *err, size_t errlen)
{
    struct syn_gguf *g = NULL;
    struct syn_tokenizer *t = NULL;
    CHECK_EQ_INT(syn_gguf_open(path, &g, err, errlen), 0);
    int rc = syn_tokenizer_from_gguf(g, &t, err, errlen);
    CHECK(rc == 0 ? t != NULL : t == NULL);
    syn_tokenizer_free(t);
    syn_gguf_free(g);
    return rc;
}

TEST(tokenizer_gguf_small_vocabs)
{
    /* "▁a" outscores "aa", so "aaa" with a prefix is ▁a + aa; the highest score merges first */
    static const char *const pieces[] = {"<unk>", "<s>",           "</s>", "\xe2\x96\x81",
                                         "a",     "\342\226\201a", "aa",   "b"};
    static const float scores[] = {0, 0, 0, -1, -2, -0.5f, -0.7f, -3};
    static const int32_t types[] = {2, 3, 3, 1, 1, 1, 1, 1};
    char err[512], buf[64];
    int n;
    const char *p = write_vocab("spm.gguf", "llama", pieces, scores, types, 8, -1);
    struct syn_tokenizer *t = load_gguf(p);
    int32_t *ids = encode(t, "aaa", 3, 1, 0, &n);
    ids_str(ids, n, buf, sizeof buf);
    CHECK_EQ_STR(buf, "1 5 6");
    free(ids);
    /* no byte tokens and no "c": the unknown token stands in */
    ids = encode(t, "c", 1, 0, 0, &n);
    ids_str(ids, n, buf, sizeof buf);
    CHECK_EQ_STR(buf, "3 0");
    free(ids);
    syn_tokenizer_free(t);

    /* add_space_prefix = false is honoured */
    p = write_vocab("spm2.gguf", "llama", pieces, scores, types, 8, 0);
    t = load_gguf(p);
    ids = encode(t, "aab", 3, 0, 0, &n);
    ids_str(ids, n, buf, sizeof buf);
    CHECK_EQ_STR(buf, "6 7");
    free(ids);
    size_t len;
    char *back = stream_decode(t, (const int32_t[]){5, 6}, 2, &len);
    CHECK_EQ_STR(back, " aaa"); /* no prefix to drop */
    free(back);
    syn_tokenizer_free(t);

    /* unsupported and malformed vocabs are errors that say what was found */
    p = write_vocab("bert.gguf", "bert", pieces, scores, types, 8, -1);
    CHECK_EQ_INT(gguf_load_rc(p, err, sizeof err), SYN_EUNSUPPORTED);
    CHECK(strstr(err, "'bert'"));
    p = write_vocab("nomerges.gguf", "gpt2", pieces, scores, types, 8, -1);
    CHECK_EQ_INT(gguf_load_rc(p, err, sizeof err), SYN_EFORMAT);
    CHECK(strstr(err, "merges"));
    p = write_vocab("notokens.gguf", "llama", pieces, scores, types, 0, -1);
    CHECK_EQ_INT(gguf_load_rc(p, err, sizeof err), SYN_EFORMAT);
    CHECK(strstr(err, "tokenizer.ggml.tokens"));
}

/* ---- stories260K ---- */

TEST(tokenizer_stories260k_round_trips)
{
    struct syn_tokenizer *t = load_gguf(syn_test_shared("models/stories260K.gguf"));
    CHECK_EQ_INT(syn_tokenizer_n_vocab(t), 512);
    static const char *const texts[] = {
        "Once upon a time, there was a little girl named Lily.",
        "She liked to play outside.\nThe sun was hot!\n\n  Two spaces, then a tab:\t.",
        " a leading space",
        "Numbers 12345, caf\xc3\xa9 \xe2\x82\xac 42 \xf0\x9f\xa6\x99 \xe6\x97\xa5\xe6\x9c\xac",
        "",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        int n;
        int32_t *ids = encode(t, texts[i], strlen(texts[i]), 1, 0, &n);
        CHECK(n >= 1);
        CHECK_EQ_INT(ids[0], 1); /* BOS */
        size_t len;
        char *back = stream_decode(t, ids, n, &len);
        CHECK_EQ_STR(back, texts[i]);
        free(back);
        back = decode(t, ids, n, &len);
        CHECK_EQ_STR(back, texts[i]);
        free(back);
        free(ids);
    }
    /* "Once" is a single token after BOS, and the leading space is SentencePiece's */
    int n;
    int32_t *ids = encode(t, "Once", 4, 0, 0, &n);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_STR(syn_tokenizer_piece(t, ids[0]), "\xe2\x96\x81Once");
    free(ids);
    syn_tokenizer_free(t);
}

/* ---- streaming decode ---- */

TEST(tokenizer_detok_holds_back_partial_characters)
{
    struct syn_tokenizer *t = load_gguf(syn_test_shared("models/stories260K.gguf"));
    /* U+65E5 U+672C (日本) and U+1F999: none is in this 512-token vocab, so each arrives as
     * byte tokens, one byte per token */
    const char *text = "\xe6\x97\xa5\xe6\x9c\xac\xf0\x9f\xa6\x99";
    int n;
    int32_t *ids = encode(t, text, strlen(text), 0, 0, &n);
    CHECK(n >= 10);
    struct syn_detok d;
    syn_detok_init(&d);
    char out[256], all[256];
    size_t used = 0;
    int pushes_with_output = 0;
    for (int i = 0; i < n; i++) {
        int k = syn_detok_push(t, &d, ids[i], out, sizeof out);
        CHECK(k >= 0);
        CHECK(valid_utf8(out, (size_t)k));
        if (k > 0) pushes_with_output++;
        CHECK(used + (size_t)k < sizeof all);
        memcpy(all + used, out, (size_t)k);
        used += (size_t)k;
    }
    CHECK_EQ_INT(syn_detok_flush(t, &d, out, sizeof out), 0);
    all[used] = '\0';
    /* "▁" prefix dropped, then three characters, each emitted whole */
    CHECK_EQ_STR(all, text);
    CHECK(pushes_with_output <= 4);

    /* an incomplete character at the end flushes as U+FFFD */
    syn_detok_init(&d);
    int32_t e6 = syn_tokenizer_find(t, "<0xE6>"), x97 = syn_tokenizer_find(t, "<0x97>");
    CHECK(e6 >= 0 && x97 >= 0);
    CHECK_EQ_INT(syn_detok_push(t, &d, e6, out, sizeof out), 0);
    CHECK_EQ_INT(syn_detok_push(t, &d, x97, out, sizeof out), 0);
    CHECK_EQ_INT(d.n_pending, 2);
    CHECK_EQ_INT(syn_detok_flush(t, &d, out, sizeof out), 3);
    CHECK(!memcmp(out, "\xef\xbf\xbd", 3));
    CHECK_EQ_INT(d.n_pending, 0);

    /* a character cut short by an ASCII token: U+FFFD, then the text */
    syn_detok_init(&d);
    d.n_tokens = 1; /* continuing a text: keep the space */
    int32_t the = syn_tokenizer_find(t, "\xe2\x96\x81the");
    CHECK(the >= 0);
    CHECK_EQ_INT(syn_detok_push(t, &d, e6, out, sizeof out), 0);
    int k = syn_detok_push(t, &d, the, out, sizeof out);
    CHECK_EQ_INT(k, 7);
    CHECK(!memcmp(out, "\xef\xbf\xbd the", 7));

    /* a buffer too small is an error that leaves the state as it was */
    syn_detok_init(&d);
    d.n_tokens = 1;
    CHECK_EQ_INT(syn_detok_push(t, &d, the, out, 2), SYN_ERANGE);
    CHECK_EQ_INT(d.n_tokens, 1);
    CHECK_EQ_INT(syn_detok_push(t, &d, the, out, 4), 4);
    CHECK_EQ_INT(syn_detok_push(t, &d, 99999, out, sizeof out), SYN_ERANGE);

    /* control tokens produce nothing and do not count: the space after BOS is still dropped */
    syn_detok_init(&d);
    CHECK_EQ_INT(syn_detok_push(t, &d, 1, out, sizeof out), 0);
    CHECK_EQ_INT(syn_detok_push(t, &d, the, out, sizeof out), 3);
    CHECK(!memcmp(out, "the", 3));
    free(ids);
    syn_tokenizer_free(t);
}

/* ---- special tokens ---- */

TEST(tokenizer_special_tokens_only_when_asked)
{
    struct syn_tokenizer *t = load_vocab("llama-spm");
    int n;
    int32_t *ids = encode(t, "<s>Hi</s>", 9, 0, 1, &n);
    CHECK(n >= 3);
    CHECK_EQ_INT(ids[0], 1);
    CHECK_EQ_INT(ids[n - 1], 2);
    free(ids);
    ids = encode(t, "<s>Hi</s>", 9, 0, 0, &n);
    for (int i = 0; i < n; i++) CHECK(ids[i] != 1 && ids[i] != 2);
    free(ids);
    syn_tokenizer_free(t);

    /* GPT-2: <|endoftext|> is a control token */
    t = load_vocab("gpt-2");
    const char *s = "a<|endoftext|>b";
    ids = encode(t, s, strlen(s), 0, 1, &n);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT(ids[1], 50256);
    free(ids);
    ids = encode(t, s, strlen(s), 0, 0, &n);
    CHECK(n > 3);
    for (int i = 0; i < n; i++) CHECK(ids[i] != 50256);
    size_t len;
    char *back = decode(t, ids, n, &len);
    CHECK_EQ_STR(back, s);
    free(back);
    free(ids);
    /* BOS is added only when asked, and the count comes back even when cap is short */
    int32_t two[2];
    CHECK_EQ_INT(syn_tokenizer_encode(t, "hello world", 11, 1, 0, two, 2), 3);
    CHECK_EQ_INT(two[0], 50256);
    CHECK_EQ_INT(syn_tokenizer_encode(t, "x", 1, 0, 0, NULL, 5), SYN_EINVAL);
    syn_tokenizer_free(t);
}

/* ---- tokenizer.json ---- */

static void write_file(const char *name, const char *text)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", syn_test_tmpdir(), name);
    FILE *f = fopen(path, "wb");
    CHECK(f);
    CHECK(fwrite(text, 1, strlen(text), f) == strlen(text));
    fclose(f);
}

static struct syn_tokenizer *load_json(const char *name)
{
    char path[1024], err[512];
    struct syn_tokenizer *t = NULL;
    snprintf(path, sizeof path, "%s/%s", syn_test_tmpdir(), name);
    if (syn_tokenizer_from_json(path, &t, err, sizeof err)) FAIL("%s: %s", path, err);
    return t;
}

TEST(tokenizer_json_byte_level)
{
    /* A GPT-2-style file: byte characters, a few merges (both spellings), one special token. */
    write_file("tokenizer.json",
               "{\"version\": \"1.0\", \"added_tokens\": ["
               " {\"id\": 20, \"content\": \"<|end|>\", \"special\": true}],"
               " \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false,"
               "   \"trim_offsets\": true, \"use_regex\": true},"
               " \"decoder\": {\"type\": \"ByteLevel\"},"
               " \"model\": {\"type\": \"BPE\", \"vocab\": {"
               "  \"h\": 0, \"e\": 1, \"l\": 2, \"o\": 3, \"\\u0120\": 4, \"w\": 5, \"r\": 6,"
               "  \"d\": 7, \"he\": 8, \"ll\": 9, \"llo\": 10, \"hello\": 11, \"\\u0120w\": 12,"
               "  \"or\": 13, \"\\u0120wor\": 14, \"\\u0120worl\": 15, \"\\u0120world\": 16,"
               "  \"!\": 17},"
               "  \"merges\": [\"h e\", \"l l\", [\"ll\", \"o\"], \"he llo\", \"\\u0120 w\","
               "   \"o r\", [\"\\u0120w\", \"or\"], \"\\u0120wor l\", \"\\u0120worl d\"]}}");
    struct syn_tokenizer *t = load_json("tokenizer.json");
    CHECK_EQ_INT(syn_tokenizer_model(t), SYN_TOK_BPE);
    CHECK_EQ_INT(syn_tokenizer_n_vocab(t), 21);
    int n;
    int32_t *ids = encode(t, "hello world!", 12, 0, 0, &n);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT(ids[0], 11);
    CHECK_EQ_INT(ids[1], 16);
    CHECK_EQ_INT(ids[2], 17);
    free(ids);
    ids = encode(t, "hello<|end|>", 12, 0, 1, &n);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(ids[1], 20);
    free(ids);
    /* "hel lo": merges stop at word boundaries */
    ids = encode(t, "hel lo", 6, 0, 0, &n);
    char buf[256];
    ids_str(ids, n, buf, sizeof buf);
    CHECK_EQ_STR(buf, "8 2 4 2 3");
    size_t len;
    char *back = stream_decode(t, ids, n, &len);
    CHECK_EQ_STR(back, "hel lo");
    free(back);
    free(ids);
    CHECK(syn_tokenizer_is_eog(t, 20)); /* a control "<|end|>" ends generation */
    syn_tokenizer_free(t);

    /* the command takes the directory as MODEL */
    char *got = NULL;
    CHECK_EQ_INT(syn_test_sh(&got, "printf 'hello world!' | %s model tokenize %s", syn_test_bin(),
                             syn_test_tmpdir()),
                 0);
    CHECK_EQ_STR(got, "11 16 17\n");
    free(got);
}

TEST(tokenizer_json_sentencepiece_converted)
{
    /* A Llama-2-style file: <unk> <s> </s>, 256 byte tokens, "▁" pieces, merges by rank. */
    size_t cap = 65536, at = 0;
    char *j = malloc(cap);
    CHECK(j);
    at += (size_t)snprintf(j + at, cap - at,
                           "{\"added_tokens\": ["
                           " {\"id\": 0, \"content\": \"<unk>\", \"special\": true},"
                           " {\"id\": 1, \"content\": \"<s>\", \"special\": true},"
                           " {\"id\": 2, \"content\": \"</s>\", \"special\": true}],"
                           " \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": ["
                           "  {\"type\": \"Prepend\", \"prepend\": \"\\u2581\"},"
                           "  {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"},"
                           "   \"content\": \"\\u2581\"}]},"
                           " \"pre_tokenizer\": null,"
                           " \"decoder\": {\"type\": \"Sequence\", \"decoders\": ["
                           "  {\"type\": \"Replace\", \"pattern\": {\"String\": \"\\u2581\"},"
                           "   \"content\": \" \"}, {\"type\": \"ByteFallback\"},"
                           "  {\"type\": \"Fuse\"}, {\"type\": \"Strip\", \"content\": \" \","
                           "   \"start\": 1, \"stop\": 0}]},"
                           " \"model\": {\"type\": \"BPE\", \"byte_fallback\": true,"
                           "  \"unk_token\": \"<unk>\", \"vocab\": {\"<unk>\": 0, \"<s>\": 1,"
                           " \"</s>\": 2");
    for (int b = 0; b < 256; b++)
        at += (size_t)snprintf(j + at, cap - at, ", \"<0x%02X>\": %d", b, 3 + b);
    at += (size_t)snprintf(j + at, cap - at,
                           ", \"\\u2581\": 259, \"h\": 260, \"i\": 261, \"t\": 262, \"e\": 263,"
                           " \"r\": 264, \"\\u2581h\": 265, \"\\u2581hi\": 266, \"\\u2581t\": 267,"
                           " \"he\": 268, \"\\u2581the\": 269, \"re\": 270, \"\\u2581there\": 271},"
                           " \"merges\": [\"\\u2581 h\", \"\\u2581h i\", \"\\u2581 t\", \"h e\","
                           " \"\\u2581t he\", \"r e\", \"\\u2581the re\"]}}");
    CHECK(at < cap);
    write_file("tokenizer.json", j);
    free(j);
    write_file("tokenizer_config.json", "{\"add_bos_token\": true, \"add_eos_token\": false,"
                                        " \"bos_token\": {\"content\": \"<s>\", \"lstrip\": false},"
                                        " \"eos_token\": \"</s>\", \"unk_token\": \"<unk>\"}");
    struct syn_tokenizer *t = load_json("tokenizer.json");
    CHECK_EQ_INT(syn_tokenizer_model(t), SYN_TOK_SPM);
    CHECK_EQ_INT(syn_tokenizer_bos(t), 1);
    CHECK_EQ_INT(syn_tokenizer_eos(t), 2);
    CHECK_EQ_INT(syn_tokenizer_add_bos(t), 1);
    int n;
    const char *text = "hi there \xc3\xa9";
    int32_t *ids = encode(t, text, strlen(text), 1, 0, &n);
    char buf[256];
    ids_str(ids, n, buf, sizeof buf);
    /* BOS ▁hi ▁there ▁ <0xC3> <0xA9> */
    CHECK_EQ_STR(buf, "1 266 271 259 198 172");
    size_t len;
    char *back = stream_decode(t, ids, n, &len);
    CHECK_EQ_STR(back, text);
    free(back);
    free(ids);
    syn_tokenizer_free(t);
}

TEST(tokenizer_json_errors_name_the_problem)
{
    char path[1024], err[512];
    struct syn_tokenizer *t = NULL;
    snprintf(path, sizeof path, "%s/missing.json", syn_test_tmpdir());
    CHECK_EQ_INT(syn_tokenizer_from_json(path, &t, err, sizeof err), SYN_EIO);
    CHECK(strstr(err, "missing.json"));
    write_file("bad.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": ");
    snprintf(path, sizeof path, "%s/bad.json", syn_test_tmpdir());
    CHECK_EQ_INT(syn_tokenizer_from_json(path, &t, err, sizeof err), SYN_EFORMAT);
    write_file("uni.json", "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}");
    snprintf(path, sizeof path, "%s/uni.json", syn_test_tmpdir());
    CHECK_EQ_INT(syn_tokenizer_from_json(path, &t, err, sizeof err), SYN_EUNSUPPORTED);
    CHECK(strstr(err, "Unigram"));
    write_file("neg.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -3}, "
                           "\"merges\": []}, \"decoder\": {\"type\": \"ByteLevel\"}}");
    snprintf(path, sizeof path, "%s/neg.json", syn_test_tmpdir());
    CHECK_EQ_INT(syn_tokenizer_from_json(path, &t, err, sizeof err), SYN_EFORMAT);
    CHECK(t == NULL);
}

/* ---- hostile input ---- */

/* Encodes and decodes buf with t; byte-level BPE and SPM (with byte fallback) must both give
 * back exactly the input, except that SentencePiece reads a "▁" in the input as a space. Also
 * runs the streaming decoder, which must emit valid UTF-8. */
static void round_trip(const struct syn_tokenizer *t, const char *buf, size_t n, int exact,
                       const char *what)
{
    int k;
    int32_t *ids = encode(t, buf, n, 0, 0, &k);
    CHECK(k <= (int)(3 * n + 3));
    char *want = malloc(n + 1);
    size_t wn = 0;
    CHECK(want);
    for (size_t i = 0; i < n; i++) {
        if (syn_tokenizer_model(t) == SYN_TOK_SPM && i + 3 <= n &&
            !memcmp(buf + i, "\xe2\x96\x81", 3)) {
            want[wn++] = ' ';
            i += 2;
        } else {
            want[wn++] = buf[i];
        }
    }
    size_t len;
    char *back = decode(t, ids, k, &len);
    if (exact && (len != wn || memcmp(back, want, wn) != 0))
        FAIL("%s: %zu bytes decode to %zu different bytes", what, n, len);
    free(back);
    free(want);
    back = stream_decode(t, ids, k, &len);
    free(back);
    free(ids);
}

/* GPT-2's byte characters, written independently of the tokenizer's own table. */
static uint32_t gpt2_byte_cp(int b)
{
    int n = 0;
    for (int c = 0; c < 256; c++) {
        int printable = (c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE;
        if (c == b) return printable ? (uint32_t)c : (uint32_t)(256 + n);
        if (!printable) n++;
    }
    return 0;
}

/* Whether every byte has a normal token, so that any byte string survives a round trip. SPM
 * needs the 256 <0xNN> tokens; byte-level BPE the 256 byte characters (deepseek-llm lacks the 13
 * bytes that never occur in UTF-8 and has user-defined tokens with the same text instead). */
static int has_all_bytes(const struct syn_tokenizer *t)
{
    for (int b = 0; b < 256; b++) {
        char p[8];
        if (syn_tokenizer_model(t) == SYN_TOK_SPM) {
            snprintf(p, sizeof p, "<0x%02X>", b);
        } else {
            uint32_t cp = gpt2_byte_cp(b);
            if (cp < 0x80) {
                p[0] = (char)cp, p[1] = 0;
            } else {
                p[0] = (char)(0xC0 | cp >> 6), p[1] = (char)(0x80 | (cp & 0x3F)), p[2] = 0;
            }
        }
        int32_t id = syn_tokenizer_find(t, p);
        int type = syn_tokenizer_token_type(t, id);
        if (id < 0 || (type != SYN_TOKT_NORMAL && type != SYN_TOKT_BYTE)) return 0;
    }
    return 1;
}

/* Random valid UTF-8 of n bytes or a little less: code points from every plane's busy parts. */
static size_t random_utf8(char *buf, size_t n, uint64_t *seed)
{
    size_t at = 0;
    while (at + 4 <= n) {
        uint64_t r = rng_next(seed);
        uint32_t cp;
        switch (r % 4) {
        case 0:
            cp = (uint32_t)(r >> 8) % 0x80;
            break;
        case 1:
            cp = 0x80 + (uint32_t)(r >> 8) % 0x780;
            break;
        case 2:
            cp = 0x800 + (uint32_t)(r >> 8) % 0xF800;
            break;
        default:
            cp = 0x10000 + (uint32_t)(r >> 8) % 0x100000;
            break;
        }
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        if (cp < 0x80) {
            buf[at++] = (char)cp;
        } else if (cp < 0x800) {
            buf[at++] = (char)(0xC0 | cp >> 6);
            buf[at++] = (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            buf[at++] = (char)(0xE0 | cp >> 12);
            buf[at++] = (char)(0x80 | (cp >> 6 & 0x3F));
            buf[at++] = (char)(0x80 | (cp & 0x3F));
        } else {
            buf[at++] = (char)(0xF0 | cp >> 18);
            buf[at++] = (char)(0x80 | (cp >> 12 & 0x3F));
            buf[at++] = (char)(0x80 | (cp >> 6 & 0x3F));
            buf[at++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    return at;
}

TEST(tokenizer_hostile_input)
{
    static const char *const vocabs[] = {"gpt-2", "llama-spm", "deepseek-llm"};
    const size_t big = 1 << 16;
    char *buf = malloc(big);
    CHECK(buf);
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    for (size_t v = 0; v < sizeof vocabs / sizeof vocabs[0]; v++) {
        struct syn_tokenizer *t = load_vocab(vocabs[v]);
        int all = has_all_bytes(t);
        if (!all) fprintf(stderr, "  %s lacks tokens for some bytes\n", vocabs[v]);
        /* random bytes, many short strings and one long one */
        for (int r = 0; r < 200; r++) {
            size_t n = rng_next(&seed) % 64;
            for (size_t i = 0; i < n; i++) buf[i] = (char)rng_next(&seed);
            round_trip(t, buf, n, all, "random bytes");
        }
        for (size_t i = 0; i < 20000; i++) buf[i] = (char)rng_next(&seed);
        round_trip(t, buf, 20000, all, "20000 random bytes");
        /* random valid UTF-8 comes back whatever the vocab */
        for (int r = 0; r < 100; r++) {
            size_t n = random_utf8(buf, rng_next(&seed) % 200, &seed);
            round_trip(t, buf, n, 1, "random UTF-8");
        }
        /* invalid UTF-8 of every kind: lone continuations, truncated, overlong, surrogates */
        const char *bad = "\x80\xbf\xc0\xaf\xc1\x81\xe0\x80\xaf\xed\xa0\x80\xf4\x90\x80\x80"
                          "\xf5\xff\xfe\xe6\x97 a\xe6\x97\xa5\xf0\x9f\xa6";
        round_trip(t, bad, strlen(bad), all, "invalid UTF-8");
        /* long runs of one character */
        static const char *const runs[] = {"a",    " ", "\n", "1", "\xe2\x96\x81", "\xe6\x97\xa5",
                                           "\xff", "'", "!"};
        for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
            size_t l = strlen(runs[r]), n = 0;
            while (n + l <= big) {
                memcpy(buf + n, runs[r], l);
                n += l;
            }
            round_trip(t, buf, n, all || (uint8_t)runs[r][0] < 0x80, "a long run");
        }
        /* random token ids through the streaming decoder: valid UTF-8 whatever comes */
        int32_t ids[512];
        for (int i = 0; i < 512; i++)
            ids[i] = (int32_t)(rng_next(&seed) % (uint64_t)syn_tokenizer_n_vocab(t));
        size_t len;
        free(stream_decode(t, ids, 512, &len));
        syn_tokenizer_free(t);
    }
    free(buf);
}

TEST(tokenizer_long_input_is_not_quadratic)
{
    struct syn_tokenizer *t = load_vocab("llama-spm");
    /* 256 KiB of text with few spaces: one long SentencePiece fragment */
    size_t n = 1 << 18;
    char *buf = malloc(n);
    CHECK(buf);
    static const char words[] = "thequickbrownfoxjumpsoverthelazydog";
    for (size_t i = 0; i < n; i++) buf[i] = words[i % (sizeof words - 1)];
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int k = syn_tokenizer_encode(t, buf, n, 0, 0, NULL, 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    CHECK(k > 0);
    double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
    fprintf(stderr, "  %zu bytes -> %d tokens in %.3f s\n", n, k, s);
    CHECK(s < 3.0);
    free(buf);
    syn_tokenizer_free(t);
}

/* ---- synapse model tokenize ---- */

TEST(tokenizer_cli_model_tokenize)
{
    const char *model = syn_test_shared("models/stories260K.gguf");
    if (access(model, R_OK) != 0) SKIP("%s is missing", model);
    struct syn_tokenizer *t = load_gguf(model);
    const char *text = "Once upon a time";
    int n;
    int32_t *ids = encode(t, text, strlen(text), 1, 0, &n);
    char want[1024];
    ids_str(ids, n, want, sizeof want);
    strcat(want, "\n");
    char *got = NULL;
    CHECK_EQ_INT(
        syn_test_sh(&got, "printf '%s' | %s model tokenize %s", text, syn_test_bin(), model), 0);
    CHECK_EQ_STR(got, want);
    free(got);
    free(ids);

    ids = encode(t, text, strlen(text), 0, 0, &n);
    ids_str(ids, n, want, sizeof want);
    strcat(want, "\n");
    CHECK_EQ_INT(syn_test_sh(&got, "printf '%s' | %s model tokenize --no-bos %s", text,
                             syn_test_bin(), model),
                 0);
    CHECK_EQ_STR(got, want);
    free(got);
    free(ids);

    /* --special turns "</s>" into EOS */
    CHECK_EQ_INT(syn_test_sh(&got, "printf 'a</s>' | %s model tokenize --special --no-bos %s",
                             syn_test_bin(), model),
                 0);
    CHECK(got && strstr(got, " 2\n"));
    free(got);

    CHECK_EQ_INT(syn_test_sh(&got, "%s model tokenize --help", syn_test_bin()), 0);
    CHECK(got && strstr(got, "Usage"));
    free(got);
    CHECK_EQ_INT(syn_test_sh(NULL, "%s model tokenize --bogus %s </dev/null 2>/dev/null",
                             syn_test_bin(), model),
                 2);
    CHECK_EQ_INT(syn_test_sh(NULL, "%s model tokenize </dev/null 2>/dev/null", syn_test_bin()), 2);
    CHECK_EQ_INT(syn_test_sh(NULL, "%s model tokenize /nonexistent.gguf </dev/null 2>/dev/null",
                             syn_test_bin()),
                 1);
    syn_tokenizer_free(t);
}
