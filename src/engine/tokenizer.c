/*
 * Tokenizer core: the vocabulary (pieces, piece -> id index, merge table), the GGUF loader
 * (tokenizer.ggml.*), special-token splitting, the encode entry point that hands each fragment of
 * plain text to the model's encoder (tokenizer_spm.c, tokenizer_bpe.c), and decoding, both exact
 * (syn_tokenizer_decode) and streaming (syn_detok, which only ever emits whole UTF-8 characters).
 *
 * Not here: the merge algorithms and pre-tokenizers (tokenizer_spm.c, tokenizer_bpe.c) and the
 * tokenizer.json reader (tokenizer_json.c).
 *
 * Behaviour follows llama.cpp where the two differ from the Hugging Face libraries, because the
 * reference vectors (shared/testdata/tokenizer) come from it: user-defined tokens (those a model
 * added without marking them special) are recognised in the text even when parse_special is off,
 * and SentencePiece adds its "▁" prefix to the first fragment and to every fragment that follows
 * a special token.
 */
#include "tokenizer_impl.h"

#include "synapse/error.h"
#include "synapse/gguf.h"
#include "synapse/log.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* The largest vocabulary accepted (ids must fit the merge key's 32-bit halves with room). */
#define TOK_MAX_VOCAB (1 << 24)

/* ---- hashing and the piece index ---- */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static uint64_t hash_pair(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    return k ^ (k >> 33);
}

/* The smallest power of two >= 2n (load factor at most 1/2), at least 16. */
static uint32_t table_size(size_t n)
{
    uint32_t s = 16;
    while (s < 2 * n) s <<= 1;
    return s;
}

int32_t tok_lookup(const struct syn_tokenizer *t, const char *s, size_t n)
{
    if (n > t->max_len) return -1;
    uint32_t i = (uint32_t)hash_bytes(s, n) & t->index_mask;
    for (;;) {
        int32_t id = t->index[i];
        if (id < 0) return -1;
        if (t->len[id] == n && memcmp(t->blob + t->off[id], s, n) == 0) return id;
        i = (i + 1) & t->index_mask;
    }
}

/* ---- building ---- */

struct syn_tokenizer *tok_alloc(int32_t n_vocab, char *err, size_t errlen, int *rc)
{
    struct syn_tokenizer *t = NULL;
    if (n_vocab <= 0 || n_vocab > TOK_MAX_VOCAB) {
        *rc = syn_seterr(err, errlen, SYN_EFORMAT,
                         "tokenizer: expected between 1 and %d tokens but the vocab has %ld",
                         TOK_MAX_VOCAB, (long)n_vocab);
        return NULL;
    }
    t = calloc(1, sizeof *t);
    if (!t) goto nomem;
    t->n_vocab = n_vocab;
    t->off = calloc((size_t)n_vocab, sizeof *t->off);
    t->len = calloc((size_t)n_vocab, sizeof *t->len);
    t->types = malloc((size_t)n_vocab);
    if (!t->off || !t->len || !t->types) goto nomem;
    memset(t->types, SYN_TOKT_NORMAL, (size_t)n_vocab);
    t->bos = t->eos = t->eot = t->unk = -1;
    t->add_space_prefix = 0;
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    *rc = 0;
    return t;
nomem:
    syn_tokenizer_free(t);
    *rc = syn_seterr(err, errlen, SYN_ENOMEM, "tokenizer: out of memory for %ld tokens",
                     (long)n_vocab);
    return NULL;
}

int tok_set_pieces(struct syn_tokenizer *t, const char *const *texts, const size_t *lens, char *err,
                   size_t errlen)
{
    size_t total = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        size_t n = texts[i] ? lens[i] : 0;
        if (n > UINT32_MAX / 2)
            return syn_seterr(err, errlen, SYN_EFORMAT,
                              "tokenizer: token %ld is %zu bytes long, expected under 2 GiB",
                              (long)i, n);
        total += n + 1;
    }
    t->blob = malloc(total);
    t->index_mask = table_size((size_t)t->n_vocab) - 1;
    t->index = malloc(sizeof *t->index * ((size_t)t->index_mask + 1));
    if (!t->blob || !t->index)
        return syn_seterr(err, errlen, SYN_ENOMEM, "tokenizer: out of memory for the vocab");
    memset(t->index, 0xff, sizeof *t->index * ((size_t)t->index_mask + 1));
    size_t at = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        size_t n = texts[i] ? lens[i] : 0;
        if (n) memcpy(t->blob + at, texts[i], n);
        t->blob[at + n] = '\0';
        t->off[i] = at;
        t->len[i] = (uint32_t)n;
        if (n > t->max_len) t->max_len = (uint32_t)n;
        at += n + 1;
        if (!n) continue; /* an empty piece is never looked up */
        /* a later duplicate replaces an earlier one, as in llama.cpp */
        uint32_t h = (uint32_t)hash_bytes(texts[i], n) & t->index_mask;
        while (t->index[h] >= 0) {
            int32_t o = t->index[h];
            if (t->len[o] == n && memcmp(t->blob + t->off[o], texts[i], n) == 0) break;
            h = (h + 1) & t->index_mask;
        }
        t->index[h] = i;
    }
    return 0;
}

int tok_merges_reserve(struct syn_tokenizer *t, size_t n)
{
    size_t size = table_size(n);
    t->merge_key = malloc(sizeof *t->merge_key * size);
    t->merge_rank = malloc(sizeof *t->merge_rank * size);
    t->merge_id = malloc(sizeof *t->merge_id * size);
    if (!t->merge_key || !t->merge_rank || !t->merge_id) return SYN_ENOMEM;
    memset(t->merge_key, 0xff, sizeof *t->merge_key * size);
    t->merge_mask = (uint32_t)(size - 1);
    return 0;
}

void tok_merge_add(struct syn_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen,
                   int32_t rank, size_t *skipped)
{
    int32_t ia = tok_lookup(t, a, alen), ib = tok_lookup(t, b, blen), ic = -1;
    if (ia >= 0 && ib >= 0 && alen + blen <= t->max_len) {
        /* the result is the concatenation; look it up without a copy when it is short */
        char tmp[256];
        if (alen + blen <= sizeof tmp) {
            memcpy(tmp, a, alen);
            memcpy(tmp + alen, b, blen);
            ic = tok_lookup(t, tmp, alen + blen);
        } else {
            char *big = malloc(alen + blen);
            if (big) {
                memcpy(big, a, alen);
                memcpy(big + alen, b, blen);
                ic = tok_lookup(t, big, alen + blen);
                free(big);
            }
        }
    }
    if (ic < 0) {
        (*skipped)++;
        return;
    }
    uint64_t key = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib;
    uint32_t h = (uint32_t)hash_pair(key) & t->merge_mask;
    while (t->merge_key[h] != UINT64_MAX) {
        if (t->merge_key[h] == key) return; /* the first (best-ranked) duplicate wins */
        h = (h + 1) & t->merge_mask;
    }
    t->merge_key[h] = key;
    t->merge_rank[h] = rank;
    t->merge_id[h] = ic;
    t->n_merges++;
}

/* The rank and result of merging tokens a and b; 0 if they do not merge. */
static int merge_find(const struct syn_tokenizer *t, int32_t a, int32_t b, int32_t *rank,
                      int32_t *id)
{
    if (!t->merge_key) return 0;
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint32_t h = (uint32_t)hash_pair(key) & t->merge_mask;
    for (;;) {
        uint64_t k = t->merge_key[h];
        if (k == UINT64_MAX) return 0;
        if (k == key) {
            *rank = t->merge_rank[h];
            *id = t->merge_id[h];
            return 1;
        }
        h = (h + 1) & t->merge_mask;
    }
}

static int special_cmp(const void *pa, const void *pb)
{
    const struct tok_special *a = pa, *b = pb;
    uint32_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->text, b->text, n);
    if (c) return c;
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

static int is_special_type(uint8_t type)
{
    return type == SYN_TOKT_CONTROL || type == SYN_TOKT_USER_DEFINED || type == SYN_TOKT_UNKNOWN;
}

static void eog_add(struct syn_tokenizer *t, int32_t id)
{
    if (id < 0) return;
    for (int i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id) return;
    if (t->n_eog < (int)(sizeof t->eog / sizeof t->eog[0])) t->eog[t->n_eog++] = id;
}

/* Texts that end a turn or a document in the chat formats we know. A control token with one of
 * these texts ends generation even when the metadata names another EOS. */
static const char *const eog_texts[] = {
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "</s>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "<|end_of_text|>",
    "<\xef\xbd\234end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", /* deepseek's */
};
/* Candidates for EOT when the metadata does not name one, best first. */
static const char *const eot_texts[] = {"<|eot_id|>", "<|im_end|>", "<end_of_turn>", "<|end|>",
                                        "<EOT>"};

static int32_t find_control(const struct syn_tokenizer *t, const char *s)
{
    int32_t id = tok_lookup(t, s, strlen(s));
    return id >= 0 && t->types[id] == SYN_TOKT_CONTROL ? id : -1;
}

int tok_finish(struct syn_tokenizer *t, char *err, size_t errlen)
{
    /* byte tokens */
    for (int b = 0; b < 256; b++) {
        char buf[8];
        if (t->model == SYN_TOK_BPE) {
            size_t n = syn_utf8_put(tok_byte_to_cp((uint8_t)b), buf);
            t->byte_id[b] = tok_lookup(t, buf, n);
        } else {
            static const char hex[] = "0123456789ABCDEF";
            char p[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
            t->byte_id[b] = tok_lookup(t, p, 6);
            if (t->byte_id[b] < 0 && b < 0x80) {
                buf[0] = (char)b;
                t->byte_id[b] = tok_lookup(t, buf, 1);
            }
        }
    }

    /* special tokens, sorted for the matcher */
    int32_t n = 0;
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (is_special_type(t->types[i]) && t->len[i] > 0) n++;
    if (n) {
        t->special = malloc(sizeof *t->special * (size_t)n);
        if (!t->special)
            return syn_seterr(err, errlen, SYN_ENOMEM, "tokenizer: out of memory for %ld specials",
                              (long)n);
        n = 0;
        for (int32_t i = 0; i < t->n_vocab; i++) {
            if (!is_special_type(t->types[i]) || t->len[i] == 0) continue;
            t->special[n].text = t->blob + t->off[i];
            t->special[n].len = t->len[i];
            t->special[n].id = i;
            uint8_t c = (uint8_t)t->special[n].text[0];
            t->special_first[c >> 3] |= (uint8_t)(1u << (c & 7));
            n++;
        }
        qsort(t->special, (size_t)n, sizeof *t->special, special_cmp);
    }
    t->n_special = n;

    if (t->eot < 0)
        for (size_t i = 0; i < sizeof eot_texts / sizeof eot_texts[0] && t->eot < 0; i++)
            t->eot = find_control(t, eot_texts[i]);
    eog_add(t, t->eos);
    eog_add(t, t->eot);
    for (size_t i = 0; i < sizeof eog_texts / sizeof eog_texts[0]; i++)
        eog_add(t, find_control(t, eog_texts[i]));
    return 0;
}

/* ---- the GGUF loader ---- */

/* Reads a token id key: absent leaves *id as is; a value past the vocab (other than the
 * 0xFFFFFFFF that converters write for "none") is ignored with a warning. */
static void gguf_token_id(const struct syn_gguf *g, const char *key, int32_t n_vocab, int32_t *id)
{
    uint32_t v;
    if (syn_gguf_get_u32(g, key, &v) != 0) return;
    if (v < (uint32_t)n_vocab) {
        *id = (int32_t)v;
    } else {
        if (v != UINT32_MAX)
            syn_warn("tokenizer", "%s is %u but the vocab has %ld tokens; ignored", key, v,
                     (long)n_vocab);
        *id = -1;
    }
}

/* The array kv for key with elements of type et and exactly n of them (n < 0: any count), or -1
 * with an error when it is present but malformed, -2 when absent. */
static int64_t gguf_array(const struct syn_gguf *g, const char *key, enum syn_gguf_type et,
                          int64_t n, char *err, size_t errlen, int *rc)
{
    int64_t i = syn_gguf_find_key(g, key);
    if (i < 0) return -2;
    if (syn_gguf_kv_type(g, i) != SYN_GGUF_ARRAY || syn_gguf_arr_type(g, i) != et) {
        *rc = syn_seterr(err, errlen, SYN_EFORMAT,
                         "tokenizer: %s should be an array of type %d, found type %d", key, (int)et,
                         syn_gguf_kv_type(g, i) == SYN_GGUF_ARRAY ? (int)syn_gguf_arr_type(g, i)
                                                                  : (int)syn_gguf_kv_type(g, i));
        return -1;
    }
    if (n >= 0 && syn_gguf_arr_n(g, i) != (uint64_t)n) {
        *rc = syn_seterr(err, errlen, SYN_EFORMAT,
                         "tokenizer: %s has %llu entries but tokenizer.ggml.tokens has %lld", key,
                         (unsigned long long)syn_gguf_arr_n(g, i), (long long)n);
        return -1;
    }
    return i;
}

static enum tok_pre pre_from_name(const char *s, size_t n)
{
    static const struct {
        const char *name;
        enum tok_pre pre;
    } names[] = {
        {"gpt-2", TOK_PRE_GPT2},         {"gpt2", TOK_PRE_GPT2},
        {"default", TOK_PRE_GPT2},       {"mpt", TOK_PRE_GPT2},
        {"olmo", TOK_PRE_GPT2},          {"llama-bpe", TOK_PRE_LLAMA3},
        {"llama3", TOK_PRE_LLAMA3},      {"llama-v3", TOK_PRE_LLAMA3},
        {"dbrx", TOK_PRE_LLAMA3},        {"smaug-bpe", TOK_PRE_LLAMA3},
        {"qwen2", TOK_PRE_QWEN2},        {"deepseek-llm", TOK_PRE_DEEPSEEK},
        {"smollm", TOK_PRE_DIGITS_GPT2}, {"starcoder", TOK_PRE_DIGITS_GPT2},
        {"refact", TOK_PRE_DIGITS_GPT2}, {"command-r", TOK_PRE_DIGITS_GPT2},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i].name) == n && memcmp(names[i].name, s, n) == 0) return names[i].pre;
    syn_warn("tokenizer",
             "unknown pre-tokenizer '%.*s'; using gpt-2's (words may split "
             "differently from the model's own tokenizer)",
             (int)(n > 64 ? 64 : n), s);
    return TOK_PRE_GPT2;
}

int syn_tokenizer_from_gguf(const struct syn_gguf *g, struct syn_tokenizer **out, char *err,
                            size_t errlen)
{
    struct syn_tokenizer *t = NULL;
    const char **texts = NULL;
    size_t *lens = NULL;
    const char *s;
    size_t slen;
    int rc = 0;
    enum syn_tok_model model;

    if (!g || !out) return syn_seterr(err, errlen, SYN_EINVAL, "tokenizer: no GGUF given");
    *out = NULL;
    if (syn_gguf_get_str(g, "tokenizer.ggml.model", &s, &slen) != 0)
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "tokenizer: expected a string tokenizer.ggml.model (\"llama\" or "
                          "\"gpt2\") but the file has none");
    if (slen == 5 && !memcmp(s, "llama", 5)) {
        model = SYN_TOK_SPM;
    } else if (slen == 4 && !memcmp(s, "gpt2", 4)) {
        model = SYN_TOK_BPE;
    } else {
        return syn_seterr(err, errlen, SYN_EUNSUPPORTED,
                          "tokenizer: tokenizer.ggml.model is '%.*s' but only 'llama' "
                          "(SentencePiece) and 'gpt2' (byte-level BPE) are supported",
                          (int)(slen > 64 ? 64 : slen), s);
    }

    int64_t ki = gguf_array(g, "tokenizer.ggml.tokens", SYN_GGUF_STRING, -1, err, errlen, &rc);
    if (ki == -2)
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "tokenizer: expected a string array tokenizer.ggml.tokens but the "
                          "file has none");
    if (ki < 0) return rc;
    uint64_t n64 = syn_gguf_arr_n(g, ki);
    if (n64 == 0 || n64 > TOK_MAX_VOCAB)
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "tokenizer: expected between 1 and %d tokens but "
                          "tokenizer.ggml.tokens has %llu",
                          TOK_MAX_VOCAB, (unsigned long long)n64);
    int32_t n = (int32_t)n64;
    if (!(t = tok_alloc(n, err, errlen, &rc))) goto out;
    t->model = model;

    texts = malloc(sizeof *texts * (size_t)n);
    lens = malloc(sizeof *lens * (size_t)n);
    if (!texts || !lens) {
        rc = syn_seterr(err, errlen, SYN_ENOMEM, "tokenizer: out of memory");
        goto out;
    }
    for (int32_t i = 0; i < n; i++) {
        if ((rc = syn_gguf_arr_str(g, ki, (uint64_t)i, &texts[i], &lens[i])) != 0) {
            rc = syn_seterr(err, errlen, rc, "tokenizer: cannot read token %ld of %ld", (long)i,
                            (long)n);
            goto out;
        }
    }
    if ((rc = tok_set_pieces(t, texts, lens, err, errlen))) goto out;

    /* token types: absent means normal, except that SPM's <0xNN> pieces are bytes */
    int64_t ti = gguf_array(g, "tokenizer.ggml.token_type", SYN_GGUF_INT32, n, err, errlen, &rc);
    if (ti == -1) goto out;
    if (ti >= 0) {
        const uint8_t *p = syn_gguf_arr_data(g, ti);
        for (int32_t i = 0; i < n; i++) {
            int32_t v = (int32_t)((uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
                                  (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24);
            t->types[i] = v >= SYN_TOKT_NORMAL && v <= SYN_TOKT_BYTE ? (uint8_t)v : SYN_TOKT_NORMAL;
        }
    } else if (model == SYN_TOK_SPM) {
        for (int32_t i = 0; i < n; i++)
            if (tok_parse_byte_piece(t->blob + t->off[i], t->len[i]) >= 0)
                t->types[i] = SYN_TOKT_BYTE;
    }

    if (model == SYN_TOK_SPM) {
        t->scores = calloc((size_t)n, sizeof *t->scores);
        if (!t->scores) {
            rc = syn_seterr(err, errlen, SYN_ENOMEM, "tokenizer: out of memory");
            goto out;
        }
        int64_t si = gguf_array(g, "tokenizer.ggml.scores", SYN_GGUF_FLOAT32, n, err, errlen, &rc);
        if (si == -1) goto out;
        if (si >= 0) {
            const uint8_t *p = syn_gguf_arr_data(g, si);
            for (int32_t i = 0; i < n; i++) {
                uint32_t bits = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
                                (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
                memcpy(&t->scores[i], &bits, sizeof bits);
            }
        }
        t->add_space_prefix = 1;
        t->byte_fallback = 1;
        int b;
        if (syn_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &b) == 0)
            t->add_space_prefix = b;
        t->add_bos = 1;
        t->bos = tok_lookup(t, "<s>", 3);
        t->eos = tok_lookup(t, "</s>", 4);
        t->unk = tok_lookup(t, "<unk>", 5);
    } else {
        t->by_rank = 1;
        int64_t mi = gguf_array(g, "tokenizer.ggml.merges", SYN_GGUF_STRING, -1, err, errlen, &rc);
        if (mi == -1) goto out;
        if (mi == -2) {
            rc = syn_seterr(err, errlen, SYN_EFORMAT,
                            "tokenizer: a gpt2 tokenizer needs tokenizer.ggml.merges but the "
                            "file has none");
            goto out;
        }
        uint64_t nm = syn_gguf_arr_n(g, mi);
        if (nm > INT32_MAX / 2) {
            rc = syn_seterr(err, errlen, SYN_EFORMAT,
                            "tokenizer: tokenizer.ggml.merges has %llu entries, expected fewer "
                            "than %d",
                            (unsigned long long)nm, INT32_MAX / 2);
            goto out;
        }
        if (tok_merges_reserve(t, (size_t)nm)) {
            rc = syn_seterr(err, errlen, SYN_ENOMEM, "tokenizer: out of memory for merges");
            goto out;
        }
        size_t skipped = 0;
        for (uint64_t j = 0; j < nm; j++) {
            const char *m;
            size_t ml;
            if ((rc = syn_gguf_arr_str(g, mi, j, &m, &ml))) {
                rc = syn_seterr(err, errlen, rc, "tokenizer: cannot read merge %llu",
                                (unsigned long long)j);
                goto out;
            }
            /* "a b": split at the first space after the first byte (a may be a lone space) */
            const char *sp = ml > 1 ? memchr(m + 1, ' ', ml - 1) : NULL;
            if (!sp) {
                skipped++;
                continue;
            }
            tok_merge_add(t, m, (size_t)(sp - m), sp + 1, ml - (size_t)(sp - m) - 1, (int32_t)j,
                          &skipped);
        }
        if (skipped)
            syn_warn("tokenizer",
                     "%zu of %llu merges name pieces that are not in the vocab; "
                     "skipped",
                     skipped, (unsigned long long)nm);
        t->pre = TOK_PRE_GPT2;
        if (syn_gguf_get_str(g, "tokenizer.ggml.pre", &s, &slen) == 0)
            t->pre = pre_from_name(s, slen);
        t->ignore_merges = t->pre == TOK_PRE_LLAMA3;
        t->add_bos = 0;
        t->eos = find_control(t, "<|endoftext|>");
        t->unk = -1;
    }
    gguf_token_id(g, "tokenizer.ggml.bos_token_id", n, &t->bos);
    gguf_token_id(g, "tokenizer.ggml.eos_token_id", n, &t->eos);
    gguf_token_id(g, "tokenizer.ggml.eot_token_id", n, &t->eot);
    gguf_token_id(g, "tokenizer.ggml.unknown_token_id", n, &t->unk);
    int b;
    if (syn_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b) == 0) t->add_bos = b;

    rc = tok_finish(t, err, errlen);
out:
    free(texts);
    free(lens);
    if (rc) {
        syn_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void syn_tokenizer_free(struct syn_tokenizer *t)
{
    if (!t) return;
    free(t->blob);
    free(t->off);
    free(t->len);
    free(t->scores);
    free(t->types);
    free(t->index);
    free(t->merge_key);
    free(t->merge_rank);
    free(t->merge_id);
    free(t->special);
    free(t);
}

/* ---- accessors ---- */

enum syn_tok_model syn_tokenizer_model(const struct syn_tokenizer *t)
{
    return t->model;
}

int32_t syn_tokenizer_n_vocab(const struct syn_tokenizer *t)
{
    return t->n_vocab;
}

int32_t syn_tokenizer_bos(const struct syn_tokenizer *t)
{
    return t->bos;
}

int32_t syn_tokenizer_eos(const struct syn_tokenizer *t)
{
    return t->eos;
}

int32_t syn_tokenizer_eot(const struct syn_tokenizer *t)
{
    return t->eot;
}

int syn_tokenizer_add_bos(const struct syn_tokenizer *t)
{
    return t->add_bos;
}

int syn_tokenizer_is_eog(const struct syn_tokenizer *t, int32_t id)
{
    for (int i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id) return 1;
    return 0;
}

const char *syn_tokenizer_piece(const struct syn_tokenizer *t, int32_t id)
{
    if (id < 0 || id >= t->n_vocab) return NULL;
    return t->blob + t->off[id];
}

int32_t syn_tokenizer_find(const struct syn_tokenizer *t, const char *piece)
{
    return piece ? tok_lookup(t, piece, strlen(piece)) : -1;
}

int syn_tokenizer_token_type(const struct syn_tokenizer *t, int32_t id)
{
    if (id < 0 || id >= t->n_vocab) return SYN_ERANGE;
    return t->types[id];
}

/* ---- encoding ---- */

int tok_work_init(struct tok_work *w, const struct syn_tokenizer *t, size_t len)
{
    memset(w, 0, sizeof *w);
    size_t nsym;
    if (t->model == SYN_TOK_SPM) {
        /* the escaped text: "▁" prefix plus each space as 3 bytes */
        w->buf = malloc(3 * len + 4);
        /* a symbol per character; merging by rank splits unknown characters into bytes */
        nsym = t->by_rank ? 3 * len + 4 : len + 2;
    } else {
        w->buf = malloc(2 * len + 1); /* a word as byte-level characters (<= 2 bytes each) */
        w->cp = malloc(sizeof *w->cp * (len + 1));
        w->cpoff = malloc(sizeof *w->cpoff * (len + 1));
        w->cpfl = malloc(len + 1);
        w->cut = malloc(len + 1);
        if (!w->cp || !w->cpoff || !w->cpfl || !w->cut) goto nomem;
        nsym = len + 1;
    }
    w->sym = malloc(sizeof *w->sym * nsym);
    /* the queue grows as needed (at most three entries a symbol); start modestly */
    w->cap_heap = nsym < 16 ? 16 : nsym > 65536 ? 65536 : (int32_t)nsym;
    w->heap = malloc(sizeof *w->heap * (size_t)w->cap_heap);
    if (!w->buf || !w->sym || !w->heap) goto nomem;
    return 0;
nomem:
    tok_work_release(w);
    return SYN_ENOMEM;
}

void tok_work_release(struct tok_work *w)
{
    free(w->sym);
    free(w->heap);
    free(w->buf);
    free(w->cp);
    free(w->cpoff);
    free(w->cpfl);
    free(w->cut);
    memset(w, 0, sizeof *w);
}

/* a pops before b: higher priority, then the leftmost */
static int bigram_before(const struct tok_bigram *a, const struct tok_bigram *b)
{
    return a->prio > b->prio || (a->prio == b->prio && a->left < b->left);
}

int tok_heap_push(struct tok_work *w, const struct tok_bigram *b)
{
    if (w->n_heap == w->cap_heap) {
        if (w->cap_heap > INT32_MAX / 2) return SYN_ENOMEM;
        struct tok_bigram *nh = realloc(w->heap, sizeof *nh * (size_t)w->cap_heap * 2);
        if (!nh) return SYN_ENOMEM;
        w->heap = nh;
        w->cap_heap *= 2;
    }
    int32_t i = w->n_heap++;
    while (i > 0) {
        int32_t parent = (i - 1) / 2;
        if (!bigram_before(b, &w->heap[parent])) break;
        w->heap[i] = w->heap[parent];
        i = parent;
    }
    w->heap[i] = *b;
    return 0;
}

int tok_heap_pop(struct tok_work *w, struct tok_bigram *b)
{
    if (w->n_heap == 0) return 0;
    *b = w->heap[0];
    struct tok_bigram last = w->heap[--w->n_heap];
    int32_t i = 0, n = w->n_heap;
    for (;;) {
        int32_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && bigram_before(&w->heap[c + 1], &w->heap[c])) c++;
        if (!bigram_before(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = last;
    return 1;
}

/* Queues the merge of symbols l and r if their tokens merge. */
static int rank_try(const struct syn_tokenizer *t, struct tok_work *w, int32_t l, int32_t r)
{
    if (l < 0 || r < 0) return 0;
    int32_t a = w->sym[l].id, b = w->sym[r].id, rank, id;
    if (a < 0 || b < 0 || !merge_find(t, a, b, &rank, &id)) return 0;
    struct tok_bigram bg = {-(double)rank, l, r, w->sym[l].n + w->sym[r].n, id};
    return tok_heap_push(w, &bg);
}

int tok_merge_by_rank(const struct syn_tokenizer *t, struct tok_work *w, struct tok_out *o)
{
    int rc;
    w->n_heap = 0;
    for (int32_t i = 1; i < w->n_sym; i++)
        if ((rc = rank_try(t, w, i - 1, i))) return rc;
    struct tok_bigram bg;
    while (tok_heap_pop(w, &bg)) {
        struct tok_sym *l = &w->sym[bg.left], *r = &w->sym[bg.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != bg.size) continue; /* stale */
        l->n += r->n;
        l->id = bg.id;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) w->sym[r->next].prev = bg.left;
        if ((rc = rank_try(t, w, l->prev, bg.left))) return rc;
        if ((rc = rank_try(t, w, bg.left, l->next))) return rc;
    }
    for (int32_t i = w->n_sym ? 0 : -1; i >= 0; i = w->sym[i].next) {
        if (w->sym[i].id >= 0)
            tok_emit(o, w->sym[i].id);
        else if (t->unk >= 0)
            tok_emit(o, t->unk);
    }
    return 0;
}

/* The longest special token at text[0..n) that the caller may match, or -1; *mlen its length.
 * The table is sorted bytewise, so the tokens sharing the first k bytes with the text form one
 * range, narrowed a byte at a time; within it the token of length exactly k comes first. */
static int32_t special_match(const struct syn_tokenizer *t, const char *text, size_t n,
                             int parse_special, size_t *mlen)
{
    int32_t lo = 0, hi = t->n_special, best = -1;
    for (size_t k = 0; lo < hi; k++) {
        /* tokens of exactly k bytes (equal texts included) match in full */
        for (; lo < hi && t->special[lo].len == k; lo++) {
            int32_t id = t->special[lo].id;
            if (best < 0 || *mlen < k)
                if (parse_special || t->types[id] == SYN_TOKT_USER_DEFINED) {
                    best = id;
                    *mlen = k;
                }
        }
        if (k == n || lo == hi) break;
        uint8_t c = (uint8_t)text[k];
        /* lower bound: first token whose byte k is >= c (all in range are longer than k now) */
        int32_t a = lo, b = hi;
        while (a < b) {
            int32_t m = a + (b - a) / 2;
            if ((uint8_t)t->special[m].text[k] < c)
                a = m + 1;
            else
                b = m;
        }
        lo = a;
        b = hi;
        while (a < b) {
            int32_t m = a + (b - a) / 2;
            if ((uint8_t)t->special[m].text[k] <= c)
                a = m + 1;
            else
                b = m;
        }
        hi = a;
    }
    return best;
}

static int encode_fragment(const struct syn_tokenizer *t, struct tok_work *w, const char *text,
                           size_t len, int prev_special, struct tok_out *o)
{
    if (t->model == SYN_TOK_SPM) return tok_spm_encode(t, w, text, len, prev_special, o);
    return tok_bpe_encode(t, w, text, len, o);
}

int syn_tokenizer_encode(const struct syn_tokenizer *t, const char *text, size_t len, int add_bos,
                         int parse_special, int32_t *out, int cap)
{
    struct tok_work w;
    struct tok_out o = {out, cap, 0};
    int rc = 0;
    if (!t || (!text && len) || cap < 0 || (cap > 0 && !out)) return SYN_EINVAL;
    /* every byte becomes at most 3 tokens ("▁" as byte tokens), and the count is an int */
    if (len > (size_t)(INT_MAX - 16) / 3) return SYN_EINVAL;
    if (add_bos && t->bos >= 0) tok_emit(&o, t->bos);
    if (len == 0) return o.n;
    if (tok_work_init(&w, t, len)) return SYN_ENOMEM;

    int prev_special = 1;
    size_t start = 0, pos = 0;
    while (pos < len) {
        uint8_t c = (uint8_t)text[pos];
        size_t mlen = 0;
        int32_t id;
        if (t->n_special && (t->special_first[c >> 3] >> (c & 7) & 1) &&
            (id = special_match(t, text + pos, len - pos, parse_special, &mlen)) >= 0) {
            if (pos > start &&
                (rc = encode_fragment(t, &w, text + start, pos - start, prev_special, &o)))
                goto out;
            tok_emit(&o, id);
            prev_special = 1;
            pos += mlen;
            start = pos;
            continue;
        }
        pos++;
    }
    if (start < len) rc = encode_fragment(t, &w, text + start, len - start, prev_special, &o);
out:
    tok_work_release(&w);
    return rc ? rc : o.n;
}

/* ---- decoding ---- */

/* Where decoded bytes go: raw (exact bytes) or through the UTF-8 repair of a syn_detok. */
struct tok_sink {
    char *out;           /* the caller's buffer */
    size_t cap;          /* its size */
    size_t n;            /* bytes produced (may pass cap: then overflow is set) */
    int overflow;        /* something did not fit */
    struct syn_detok *d; /* NULL: raw bytes; else hold back partial characters in d */
};

static void sink_raw(struct tok_sink *s, const char *p, size_t n)
{
    if (s->n + n > s->cap) {
        s->overflow = 1;
        size_t room = s->cap > s->n ? s->cap - s->n : 0;
        if (room) memcpy(s->out + s->n, p, room);
    } else if (n) {
        memcpy(s->out + s->n, p, n);
    }
    s->n += n;
}

/* Length of the UTF-8 character a lead byte starts (2..4), 0 if it cannot start one. */
static int utf8_lead_len(uint8_t c)
{
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 0;
}

/* Whether b may follow lead at position i (1..3) of its character: the second byte's range
 * depends on the lead, which rules out overlongs, surrogates and code points past U+10FFFF. */
static int utf8_cont_ok(uint8_t lead, int i, uint8_t b)
{
    if (i == 1) {
        if (lead == 0xE0) return b >= 0xA0 && b <= 0xBF;
        if (lead == 0xED) return b >= 0x80 && b <= 0x9F;
        if (lead == 0xF0) return b >= 0x90 && b <= 0xBF;
        if (lead == 0xF4) return b >= 0x80 && b <= 0x8F;
    }
    return b >= 0x80 && b <= 0xBF;
}

static const char replacement[3] = {(char)0xEF, (char)0xBF, (char)0xBD}; /* U+FFFD */

static void sink_byte(struct tok_sink *s, uint8_t b)
{
    struct syn_detok *d = s->d;
    if (!d) {
        char c = (char)b;
        sink_raw(s, &c, 1);
        return;
    }
    for (;;) {
        if (d->n_pending == 0) {
            if (b < 0x80) {
                char c = (char)b;
                sink_raw(s, &c, 1);
            } else if (utf8_lead_len(b)) {
                d->pending[0] = b;
                d->n_pending = 1;
            } else {
                sink_raw(s, replacement, 3); /* a byte that cannot start a character */
            }
            return;
        }
        if (utf8_cont_ok(d->pending[0], d->n_pending, b)) {
            d->pending[d->n_pending++] = b;
            if (d->n_pending == utf8_lead_len(d->pending[0])) {
                sink_raw(s, (const char *)d->pending, (size_t)d->n_pending);
                d->n_pending = 0;
            }
            return;
        }
        /* the held character is cut short: replace it, then look at b afresh */
        sink_raw(s, replacement, 3);
        d->n_pending = 0;
    }
}

static void sink_bytes(struct tok_sink *s, const char *p, size_t n)
{
    if (!s->d) {
        sink_raw(s, p, n);
        return;
    }
    for (size_t i = 0; i < n; i++) sink_byte(s, (uint8_t)p[i]);
}

/* Writes the text of token id. first: no text token came before it in this sequence (SPM drops
 * the space its "▁" prefix stands for). Returns 1 if the token is text (counts as decoded), 0
 * for control and unused tokens. */
static int decode_token(const struct syn_tokenizer *t, int32_t id, int first, struct tok_sink *s)
{
    const char *p = t->blob + t->off[id];
    size_t n = t->len[id];
    switch (t->types[id]) {
    case SYN_TOKT_CONTROL:
    case SYN_TOKT_UNUSED:
        return 0;
    case SYN_TOKT_BYTE: {
        int b = tok_parse_byte_piece(p, n);
        if (b >= 0)
            sink_byte(s, (uint8_t)b);
        else
            sink_bytes(s, p, n);
        return 1;
    }
    case SYN_TOKT_UNKNOWN:
        if (t->model == SYN_TOK_SPM)
            sink_bytes(s, " \xe2\x81\x87 ", 5); /* SentencePiece's " ⁇ " */
        else
            sink_bytes(s, p, n);
        return 1;
    default:
        break;
    }
    if (t->model == SYN_TOK_SPM) {
        size_t i = 0;
        if (first && t->add_space_prefix && n >= 3 && !memcmp(p, "\xe2\x96\x81", 3)) i = 3;
        size_t run = i;
        for (; i < n; i++) {
            if (i + 3 <= n && !memcmp(p + i, "\xe2\x96\x81", 3)) {
                sink_bytes(s, p + run, i - run);
                sink_byte(s, ' ');
                i += 2;
                run = i + 1;
            }
        }
        sink_bytes(s, p + run, n - run);
        return 1;
    }
    if (t->types[id] == SYN_TOKT_USER_DEFINED) { /* stored as plain text, not byte-mapped */
        sink_bytes(s, p, n);
        return 1;
    }
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = syn_utf8_next((const uint8_t *)p + i, n - i, &cp);
        int b = l > 1 || cp < 0x80 ? tok_cp_to_byte(cp) : -1;
        if (b >= 0)
            sink_byte(s, (uint8_t)b);
        else
            sink_bytes(s, p + i, l);
        i += l;
    }
    return 1;
}

int syn_tokenizer_decode(const struct syn_tokenizer *t, const int32_t *ids, int n_ids, char *out,
                         size_t cap)
{
    struct tok_sink s = {out, out ? cap : 0, 0, 0, NULL};
    int first = 1;
    if (!t || n_ids < 0 || (n_ids && !ids)) return SYN_EINVAL;
    for (int i = 0; i < n_ids; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab) return SYN_ERANGE;
        if (decode_token(t, ids[i], first, &s)) first = 0;
        if (s.n > INT_MAX) return SYN_ERANGE;
    }
    return (int)s.n;
}

void syn_detok_init(struct syn_detok *d)
{
    memset(d, 0, sizeof *d);
}

int syn_detok_push(const struct syn_tokenizer *t, struct syn_detok *d, int32_t id, char *out,
                   size_t cap)
{
    if (!t || !d || (!out && cap)) return SYN_EINVAL;
    if (id < 0 || id >= t->n_vocab) return SYN_ERANGE;
    if (d->n_pending < 0 || d->n_pending > 3) return SYN_EINVAL;
    if (cap > INT_MAX) cap = INT_MAX;
    struct syn_detok saved = *d; /* restored if the output does not fit */
    struct tok_sink s = {out, cap, 0, 0, d};
    if (decode_token(t, id, d->n_tokens == 0, &s)) d->n_tokens++;
    if (s.overflow) {
        *d = saved;
        return SYN_ERANGE;
    }
    return (int)s.n;
}

int syn_detok_flush(const struct syn_tokenizer *t, struct syn_detok *d, char *out, size_t cap)
{
    (void)t;
    if (!d || (!out && cap)) return SYN_EINVAL;
    if (d->n_pending == 0) return 0;
    if (cap < 3) return SYN_ERANGE;
    memcpy(out, replacement, 3);
    d->n_pending = 0;
    return 3;
}
