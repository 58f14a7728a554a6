/*
 * libFuzzer driver for the tokenizers: every input is encoded (the first byte picks add_bos and
 * parse_special, the rest is the text) with each vocab loaded at start-up, then decoded exactly
 * and through the streaming decoder. Nothing may crash, hang, leak or read out of bounds; the
 * streaming decoder must emit valid UTF-8; a vocab with a token for every byte must give the
 * input back byte for byte.
 *
 * Vocabs, loaded once: $SYNAPSE_FUZZ_VOCAB (default the shared llama-spm vocab), the shared
 * gpt-2 and deepseek-llm vocabs, and gpt-2's vocab again under the llama3, qwen2 and smollm
 * pre-tokenizers (rewritten to temporary GGUF files), so that every pre-tokenizer runs. Shared
 * paths are relative to the repository root ($SYNAPSE_SHARED overrides ../shared).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "synapse/gguf.h"
#include "synapse/tokenizer.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_VOCABS 8

static struct syn_tokenizer *vocabs[MAX_VOCABS]; /* loaded at start-up, never freed */
static int exact[MAX_VOCABS];                    /* 1: decode(encode(x)) must equal x */
static int n_vocabs;

static struct syn_tokenizer *load(const char *path, const char *pre)
{
    struct syn_gguf *g = NULL;
    struct syn_tokenizer *t = NULL;
    char err[512], tmp[] = "/tmp/fuzz_tokenizer_XXXXXX";
    if (syn_gguf_open(path, &g, err, sizeof err)) return NULL;
    if (pre) {
        /* the same vocab with another pre-tokenizer: copy every key but the pre-tokenizer's */
        struct syn_gguf_writer *w = syn_gguf_writer_new();
        int fd = mkstemp(tmp);
        if (!w || fd < 0) goto out;
        close(fd);
        for (int64_t i = 0; i < syn_gguf_n_kv(g); i++)
            if (strcmp(syn_gguf_key(g, i), "tokenizer.ggml.pre") != 0)
                syn_gguf_writer_copy_kv(w, g, i);
        syn_gguf_writer_add_str(w, "tokenizer.ggml.pre", pre);
        int rc = syn_gguf_writer_write(w, tmp, err, sizeof err);
        syn_gguf_writer_free(w);
        syn_gguf_free(g);
        g = NULL;
        if (rc == 0) syn_gguf_open(tmp, &g, err, sizeof err);
        unlink(tmp);
        if (!g) goto out;
    }
    if (syn_tokenizer_from_gguf(g, &t, err, sizeof err)) t = NULL;
out:
    syn_gguf_free(g);
    return t;
}

static void add(struct syn_tokenizer *t, int is_exact, const char *what)
{
    if (!t) {
        fprintf(stderr, "fuzz_tokenizer: could not load %s; skipping it\n", what);
        return;
    }
    if (n_vocabs < MAX_VOCABS) {
        exact[n_vocabs] = is_exact;
        vocabs[n_vocabs++] = t;
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *shared = getenv("SYNAPSE_SHARED");
    char spm[1024], gpt2[1024], ds[1024];
    if (!shared || !*shared) shared = "../shared";
    const char *v = getenv("SYNAPSE_FUZZ_VOCAB");
    if (v && *v)
        snprintf(spm, sizeof spm, "%s", v);
    else
        snprintf(spm, sizeof spm, "%s/testdata/tokenizer/ggml-vocab-llama-spm.gguf", shared);
    snprintf(gpt2, sizeof gpt2, "%s/testdata/tokenizer/ggml-vocab-gpt-2.gguf", shared);
    snprintf(ds, sizeof ds, "%s/testdata/tokenizer/ggml-vocab-deepseek-llm.gguf", shared);
    add(load(spm, NULL), 0, spm); /* exact but for "▁" in the input, which decodes as a space */
    add(load(gpt2, NULL), 1, gpt2);
    add(load(ds, NULL), 0, ds); /* lacks tokens for the bytes that never occur in UTF-8 */
    add(load(gpt2, "llama-bpe"), 1, "gpt-2 as llama-bpe");
    add(load(gpt2, "qwen2"), 1, "gpt-2 as qwen2");
    add(load(gpt2, "smollm"), 1, "gpt-2 as smollm");
    if (n_vocabs == 0) {
        fprintf(stderr, "fuzz_tokenizer: no vocab found (set SYNAPSE_FUZZ_VOCAB or run from the "
                        "repository root)\n");
        abort();
    }
    return 0;
}

/* Whether s[0..n) is valid UTF-8. */
static int valid_utf8(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
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
            if ((s[i + j] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += k;
    }
    return 1;
}

static void one(const struct syn_tokenizer *t, int is_exact, const char *text, size_t len,
                int add_bos, int special)
{
    int cap = (int)(3 * len + 8);
    int32_t *ids = malloc(sizeof *ids * (size_t)cap);
    char *back = malloc(4 * len + 64);
    char piece[4096];
    if (!ids || !back) goto out;
    int n = syn_tokenizer_encode(t, text, len, add_bos, special, ids, cap);
    if (n < 0 || n > cap) __builtin_trap();
    if (syn_tokenizer_encode(t, text, len, add_bos, special, NULL, 0) != n) __builtin_trap();
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= syn_tokenizer_n_vocab(t)) __builtin_trap();

    int m = syn_tokenizer_decode(t, ids, n, back, 4 * len + 64);
    if (m < 0 || (size_t)m > 4 * len + 64) __builtin_trap();
    if (is_exact && !special && ((size_t)m != len || memcmp(back, text, len) != 0))
        __builtin_trap();

    struct syn_detok d;
    syn_detok_init(&d);
    for (int i = 0; i <= n; i++) {
        int k = i < n ? syn_detok_push(t, &d, ids[i], piece, sizeof piece)
                      : syn_detok_flush(t, &d, piece, sizeof piece);
        if (k < 0 || !valid_utf8((const uint8_t *)piece, (size_t)k)) __builtin_trap();
    }
    if (d.n_pending != 0) __builtin_trap();
out:
    free(ids);
    free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    int add_bos = data[0] & 1, special = data[0] >> 1 & 1;
    const char *text = (const char *)data + 1;
    for (int v = 0; v < n_vocabs; v++) one(vocabs[v], exact[v], text, size - 1, add_bos, special);
    return 0;
}
