/*
 * The Hugging Face tokenizer.json loader, for model.type "BPE" in its two common forms:
 *
 *   byte-level   pre_tokenizer ByteLevel (alone or after a Split regex): GPT-2, Llama 3,
 *                SmolLM, Qwen 2. The Split pattern picks which of our pre-tokenizers runs.
 *   SentencePiece-converted   byte_fallback, a "▁" Replace/Metaspace, usually a Prepend("▁")
 *                normalizer: Llama 2, TinyLlama, Mistral. Merges come from the file (by rank)
 *                instead of scores.
 *
 * added_tokens become control tokens ("special": true) or user-defined ones. BOS, EOS and
 * add_bos come from tokenizer_config.json beside the file when it exists (bos_token may be a
 * string or an object with "content"), else from the post-processor's template and the usual
 * token names.
 *
 * Not handled: WordPiece and Unigram models, normalizers other than the "▁" ones (NFC, lower
 * case), and ByteLevel's add_prefix_space.
 */
#include "tokenizer_impl.h"

#include "synapse/error.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_ID ((1 << 24) - 1)

/* Whether node, or any node nested in it through the Sequence lists, has "type": type and (when
 * key is given) a string member key equal to value. */
static int has_node(const json_t *node, const char *type, const char *key, const char *value)
{
    if (json_is_array(node)) {
        for (size_t i = 0; i < json_array_size(node); i++)
            if (has_node(json_array_get(node, i), type, key, value)) return 1;
        return 0;
    }
    if (!json_is_object(node)) return 0;
    const char *t = json_string_value(json_object_get(node, "type"));
    if (t && !strcmp(t, type)) {
        if (!key) return 1;
        const char *v = json_string_value(json_object_get(node, key));
        if (v && !strcmp(v, value)) return 1;
    }
    static const char *const lists[] = {"pretokenizers", "decoders", "normalizers", "processors"};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++)
        if (has_node(json_object_get(node, lists[i]), type, key, value)) return 1;
    return 0;
}

/* The first node of the given type inside node (as has_node searches), or NULL. */
static const json_t *find_node(const json_t *node, const char *type)
{
    if (json_is_array(node)) {
        for (size_t i = 0; i < json_array_size(node); i++) {
            const json_t *r = find_node(json_array_get(node, i), type);
            if (r) return r;
        }
        return NULL;
    }
    if (!json_is_object(node)) return NULL;
    const char *t = json_string_value(json_object_get(node, "type"));
    if (t && !strcmp(t, type)) return node;
    static const char *const lists[] = {"pretokenizers", "decoders", "normalizers", "processors"};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        const json_t *r = find_node(json_object_get(node, lists[i]), type);
        if (r) return r;
    }
    return NULL;
}

/* Which pre-tokenizer a byte-level file's Split regex (if any) amounts to. */
static enum tok_pre json_pre(const json_t *pre)
{
    int digits = 0;
    const json_t *d = find_node(pre, "Digits");
    if (d && json_is_true(json_object_get(d, "individual_digits"))) digits = 1;
    if (json_is_object(pre) || json_is_array(pre)) {
        /* look at every Split's pattern */
        const json_t *list = json_object_get(pre, "pretokenizers");
        size_t n = json_is_array(list) ? json_array_size(list) : 1;
        for (size_t i = 0; i < n; i++) {
            const json_t *node = json_is_array(list) ? json_array_get(list, i) : pre;
            const char *t = json_string_value(json_object_get(node, "type"));
            if (!t || strcmp(t, "Split")) continue;
            const char *re =
                json_string_value(json_object_get(json_object_get(node, "pattern"), "Regex"));
            if (!re) continue;
            if (strstr(re, "\\p{N}{1,3}")) return TOK_PRE_LLAMA3;
            if (strstr(re, "\\s?[A-Za-z")) return TOK_PRE_DEEPSEEK;
            if (strstr(re, "\\p{L}+|\\p{N}|")) return TOK_PRE_QWEN2;
        }
    }
    return digits ? TOK_PRE_DIGITS_GPT2 : TOK_PRE_GPT2;
}

/* A token given as "text" or {"content": "text"}; NULL otherwise. */
static const char *token_text(const json_t *v)
{
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_object(v)) return json_string_value(json_object_get(v, "content"));
    return NULL;
}

/* Reads tokenizer_config.json beside path, if there is one: bos/eos texts and add_bos (-1 when
 * unset). Returns the parsed root (caller decrefs) or NULL. */
static json_t *load_config(const char *path, const char **bos, const char **eos, int *add_bos)
{
    *bos = *eos = NULL;
    *add_bos = -1;
    const char *slash = strrchr(path, '/');
    size_t dlen = slash ? (size_t)(slash - path) + 1 : 0;
    static const char name[] = "tokenizer_config.json";
    char *cpath = malloc(dlen + sizeof name);
    if (!cpath) return NULL;
    memcpy(cpath, path, dlen);
    memcpy(cpath + dlen, name, sizeof name);
    json_t *cfg = json_load_file(cpath, 0, NULL);
    free(cpath);
    if (!json_is_object(cfg)) {
        json_decref(cfg);
        return NULL;
    }
    *bos = token_text(json_object_get(cfg, "bos_token"));
    *eos = token_text(json_object_get(cfg, "eos_token"));
    const json_t *ab = json_object_get(cfg, "add_bos_token");
    if (json_is_boolean(ab)) *add_bos = json_is_true(ab);
    return cfg;
}

/* Reads an id member: 0..JSON_MAX_ID, else -1. */
static int32_t json_id(const json_t *v)
{
    if (!json_is_integer(v)) return -1;
    json_int_t i = json_integer_value(v);
    return i >= 0 && i <= JSON_MAX_ID ? (int32_t)i : -1;
}

int syn_tokenizer_from_json(const char *path, struct syn_tokenizer **out, char *err, size_t errlen)
{
    struct syn_tokenizer *t = NULL;
    json_t *root = NULL, *cfg = NULL;
    const char **texts = NULL;
    size_t *lens = NULL;
    int rc = 0;
    json_error_t je;

    if (!path || !out) return syn_seterr(err, errlen, SYN_EINVAL, "tokenizer: no path given");
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return syn_seterr(err, errlen, SYN_EIO, "tokenizer: cannot open %s: %s", path,
                          strerror(errno));
    root = json_loadf(f, 0, &je);
    fclose(f);
    if (!root)
        return syn_seterr(err, errlen, SYN_EFORMAT, "tokenizer: %s:%d:%d: %s", path, je.line,
                          je.column, je.text);

    const json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) {
        rc = syn_seterr(err, errlen, SYN_EFORMAT,
                        "tokenizer: %s: expected a \"model\" object, found none", path);
        goto out;
    }
    const char *type = json_string_value(json_object_get(model, "type"));
    if (type && strcmp(type, "BPE")) {
        rc =
            syn_seterr(err, errlen, SYN_EUNSUPPORTED,
                       "tokenizer: %s: model.type is '%s' but only 'BPE' is supported", path, type);
        goto out;
    }
    const json_t *vocab = json_object_get(model, "vocab");
    if (!json_is_object(vocab)) {
        rc = syn_seterr(err, errlen, SYN_EFORMAT,
                        "tokenizer: %s: expected model.vocab to be an object of piece: id", path);
        goto out;
    }
    const json_t *merges = json_object_get(model, "merges");
    const json_t *added = json_object_get(root, "added_tokens");
    const json_t *pre = json_object_get(root, "pre_tokenizer");
    const json_t *dec = json_object_get(root, "decoder");
    const json_t *norm = json_object_get(root, "normalizer");
    int byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));

    enum syn_tok_model kind;
    if (has_node(pre, "ByteLevel", NULL, NULL) || has_node(dec, "ByteLevel", NULL, NULL)) {
        kind = SYN_TOK_BPE;
    } else if (byte_fallback || has_node(pre, "Metaspace", NULL, NULL) ||
               has_node(dec, "Metaspace", NULL, NULL) ||
               has_node(norm, "Replace", "content", "\xe2\x96\x81") ||
               has_node(dec, "Replace", "content", " ")) {
        kind = SYN_TOK_SPM;
    } else {
        rc = syn_seterr(err, errlen, SYN_EUNSUPPORTED,
                        "tokenizer: %s: expected a byte-level BPE (a ByteLevel pre-tokenizer or "
                        "decoder) or a SentencePiece-style BPE (byte_fallback, \"▁\" decoding) "
                        "but found neither",
                        path);
        goto out;
    }

    /* ids: the vocab's and the added tokens', which may lie past the vocab (Llama 3) */
    int32_t n = 0;
    void *it;
    for (it = json_object_iter((json_t *)vocab); it;
         it = json_object_iter_next((json_t *)vocab, it)) {
        int32_t id = json_id(json_object_iter_value(it));
        if (id < 0) {
            rc = syn_seterr(err, errlen, SYN_EFORMAT,
                            "tokenizer: %s: vocab entry '%.64s' should have an id from 0 to %d",
                            path, json_object_iter_key(it), JSON_MAX_ID);
            goto out;
        }
        if (id + 1 > n) n = id + 1;
    }
    size_t i;
    const json_t *v;
    for (i = 0; i < json_array_size(added); i++) {
        v = json_array_get(added, i);
        int32_t id = json_id(json_object_get(v, "id"));
        if (id < 0 || !json_is_string(json_object_get(v, "content"))) {
            rc = syn_seterr(err, errlen, SYN_EFORMAT,
                            "tokenizer: %s: added_tokens[%zu] should have an \"id\" from 0 to %d "
                            "and a string \"content\"",
                            path, i, JSON_MAX_ID);
            goto out;
        }
        if (id + 1 > n) n = id + 1;
    }
    if (n == 0) {
        rc = syn_seterr(err, errlen, SYN_EFORMAT, "tokenizer: %s: the vocab is empty", path);
        goto out;
    }
    if (!(t = tok_alloc(n, err, errlen, &rc))) goto out;
    t->model = kind;
    texts = calloc((size_t)n, sizeof *texts);
    lens = calloc((size_t)n, sizeof *lens);
    if (!texts || !lens) {
        rc = syn_seterr(err, errlen, SYN_ENOMEM, "tokenizer: out of memory");
        goto out;
    }
    for (it = json_object_iter((json_t *)vocab); it;
         it = json_object_iter_next((json_t *)vocab, it)) {
        int32_t id = json_id(json_object_iter_value(it));
        texts[id] = json_object_iter_key(it);
        lens[id] = json_object_iter_key_len(it);
    }
    for (i = 0; i < json_array_size(added); i++) {
        v = json_array_get(added, i);
        const json_t *c = json_object_get(v, "content");
        int32_t id = json_id(json_object_get(v, "id"));
        texts[id] = json_string_value(c);
        lens[id] = json_string_length(c);
    }
    if ((rc = tok_set_pieces(t, texts, lens, err, errlen))) goto out;
    for (int32_t k = 0; k < n; k++) {
        if (!texts[k])
            t->types[k] = SYN_TOKT_UNUSED;
        else if (kind == SYN_TOK_SPM && byte_fallback &&
                 tok_parse_byte_piece(texts[k], lens[k]) >= 0)
            t->types[k] = SYN_TOKT_BYTE;
    }
    for (i = 0; i < json_array_size(added); i++) {
        v = json_array_get(added, i);
        int32_t id = json_id(json_object_get(v, "id"));
        t->types[id] =
            json_is_true(json_object_get(v, "special")) ? SYN_TOKT_CONTROL : SYN_TOKT_USER_DEFINED;
    }
    const char *unk = json_string_value(json_object_get(model, "unk_token"));
    if (unk && (t->unk = tok_lookup(t, unk, strlen(unk))) >= 0) t->types[t->unk] = SYN_TOKT_UNKNOWN;

    /* merges: "a b" strings or ["a", "b"] pairs; rank = position */
    size_t nm = json_is_array(merges) ? json_array_size(merges) : 0;
    if (nm > INT32_MAX / 2) {
        rc = syn_seterr(err, errlen, SYN_EFORMAT, "tokenizer: %s: %zu merges, expected fewer", path,
                        nm);
        goto out;
    }
    if (tok_merges_reserve(t, nm)) {
        rc = syn_seterr(err, errlen, SYN_ENOMEM, "tokenizer: out of memory for %zu merges", nm);
        goto out;
    }
    size_t skipped = 0;
    for (i = 0; i < json_array_size(merges); i++) {
        v = json_array_get(merges, i);
        if (json_is_string(v)) {
            const char *m = json_string_value(v);
            size_t ml = json_string_length(v);
            const char *sp = ml > 1 ? memchr(m + 1, ' ', ml - 1) : NULL;
            if (sp)
                tok_merge_add(t, m, (size_t)(sp - m), sp + 1, ml - (size_t)(sp - m) - 1, (int32_t)i,
                              &skipped);
            else
                skipped++;
        } else if (json_is_array(v) && json_array_size(v) == 2 &&
                   json_is_string(json_array_get(v, 0)) && json_is_string(json_array_get(v, 1))) {
            const json_t *a = json_array_get(v, 0), *b = json_array_get(v, 1);
            tok_merge_add(t, json_string_value(a), json_string_length(a), json_string_value(b),
                          json_string_length(b), (int32_t)i, &skipped);
        } else {
            rc = syn_seterr(err, errlen, SYN_EFORMAT,
                            "tokenizer: %s: merges[%zu] should be \"a b\" or [\"a\", \"b\"]", path,
                            i);
            goto out;
        }
    }
    t->by_rank = 1;
    t->byte_fallback = byte_fallback;
    if (kind == SYN_TOK_SPM) {
        t->add_space_prefix = has_node(norm, "Prepend", "prepend", "\xe2\x96\x81");
        const json_t *ms = find_node(pre, "Metaspace");
        if (ms) {
            const char *scheme = json_string_value(json_object_get(ms, "prepend_scheme"));
            if (scheme ? strcmp(scheme, "never") != 0
                       : json_is_true(json_object_get(ms, "add_prefix_space")))
                t->add_space_prefix = 1;
        }
    } else {
        t->pre = json_pre(pre);
        t->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    }

    /* BOS / EOS / add_bos: the config file, else the post-processor and the usual names */
    const char *bos_text, *eos_text;
    int add_bos;
    cfg = load_config(path, &bos_text, &eos_text, &add_bos);
    if (kind == SYN_TOK_SPM) {
        t->bos = tok_lookup(t, "<s>", 3);
        t->eos = tok_lookup(t, "</s>", 4);
        t->add_bos = 1;
    } else {
        const json_t *tp = find_node(json_object_get(root, "post_processor"), "TemplateProcessing");
        const json_t *first = json_array_get(json_object_get(tp, "single"), 0);
        const char *sp =
            json_string_value(json_object_get(json_object_get(first, "SpecialToken"), "id"));
        if (sp && (t->bos = tok_lookup(t, sp, strlen(sp))) >= 0) t->add_bos = 1;
        static const char *const eos_names[] = {"<|endoftext|>", "<|end_of_text|>"};
        for (size_t k = 0; k < 2 && t->eos < 0; k++)
            t->eos = tok_lookup(t, eos_names[k], strlen(eos_names[k]));
    }
    if (bos_text) t->bos = tok_lookup(t, bos_text, strlen(bos_text));
    if (eos_text) t->eos = tok_lookup(t, eos_text, strlen(eos_text));
    if (add_bos >= 0) t->add_bos = add_bos;
    rc = tok_finish(t, err, errlen);
out:
    free(texts);
    free(lens);
    json_decref(cfg);
    json_decref(root);
    if (rc) {
        syn_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}
