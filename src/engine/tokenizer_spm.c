/*
 * SentencePiece-style encoding (tokenizer.ggml.model = "llama"): spaces become U+2581 "▁", a
 * "▁" is prepended where the model asks for it, the text is split into UTF-8 characters, and
 * adjacent pieces merge, best vocab score first (the leftmost on ties), for as long as the merged
 * text is itself a token. Characters left without a token fall back to <0xNN> byte tokens.
 *
 * The candidate merges wait in a priority queue; a merge that went stale (one of its symbols has
 * grown or gone since it was queued) is dropped when it comes out. Each merge queues at most two
 * more, so a text of n characters costs O(n log n) time and O(n) memory.
 *
 * SentencePiece vocabularies converted to tokenizer.json carry merges instead of scores; those
 * merge by rank through tok_merge_by_rank (tokenizer.c) after the same escaping.
 */
#include "tokenizer_impl.h"

#include "synapse/error.h"

#include <string.h>

/* Queues the merge of symbols l and r if their concatenation is a token, at that token's score. */
static int score_try(const struct syn_tokenizer *t, struct tok_work *w, int32_t l, int32_t r)
{
    if (l < 0 || r < 0) return 0;
    size_t n = (size_t)w->sym[l].n + (size_t)w->sym[r].n;
    if (n > t->max_len) return 0;
    /* adjacent symbols are adjacent bytes of the buffer: the concatenation is in place */
    int32_t id = tok_lookup(t, w->buf + w->sym[l].start, n);
    if (id < 0) return 0;
    struct tok_bigram bg = {t->scores ? (double)t->scores[id] : 0.0, l, r, (int32_t)n, id};
    return tok_heap_push(w, &bg);
}

static int merge_by_score(const struct syn_tokenizer *t, struct tok_work *w, struct tok_out *o)
{
    int rc;
    w->n_heap = 0;
    for (int32_t i = 1; i < w->n_sym; i++)
        if ((rc = score_try(t, w, i - 1, i))) return rc;
    struct tok_bigram bg;
    while (tok_heap_pop(w, &bg)) {
        struct tok_sym *l = &w->sym[bg.left], *r = &w->sym[bg.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != bg.size) continue; /* stale */
        l->n += r->n;
        l->id = bg.id;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) w->sym[r->next].prev = bg.left;
        if ((rc = score_try(t, w, l->prev, bg.left))) return rc;
        if ((rc = score_try(t, w, bg.left, l->next))) return rc;
    }
    for (int32_t i = w->n_sym ? 0 : -1; i >= 0; i = w->sym[i].next) {
        const struct tok_sym *s = &w->sym[i];
        if (s->id >= 0) {
            tok_emit(o, s->id);
            continue;
        }
        /* a character without a token: its bytes */
        for (int32_t j = 0; j < s->n; j++) {
            int32_t b = t->byte_id[(uint8_t)w->buf[s->start + j]];
            if (b >= 0)
                tok_emit(o, b);
            else if (t->unk >= 0)
                tok_emit(o, t->unk);
        }
    }
    return 0;
}

static void sym_push(struct tok_work *w, int32_t start, int32_t n, int32_t id)
{
    struct tok_sym *s = &w->sym[w->n_sym];
    s->start = start;
    s->n = n;
    s->prev = w->n_sym - 1;
    s->next = w->n_sym + 1;
    s->id = id;
    w->n_sym++;
}

int tok_spm_encode(const struct syn_tokenizer *t, struct tok_work *w, const char *text, size_t len,
                   int prev_special, struct tok_out *o)
{
    static const char space[3] = {(char)0xE2, (char)0x96, (char)0x81}; /* U+2581 */
    size_t n = 0;
    if (t->add_space_prefix && prev_special) {
        memcpy(w->buf, space, 3);
        n = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(w->buf + n, space, 3);
            n += 3;
        } else {
            w->buf[n++] = text[i];
        }
    }

    w->n_sym = 0;
    for (size_t pos = 0; pos < n;) {
        uint32_t cp;
        size_t l = syn_utf8_next((const uint8_t *)w->buf + pos, n - pos, &cp);
        int32_t id = tok_lookup(t, w->buf + pos, l);
        if (id < 0 && t->by_rank && t->byte_fallback) {
            /* merging by rank works on token ids: an unknown character enters as its bytes */
            for (size_t j = 0; j < l; j++)
                sym_push(w, (int32_t)(pos + j), 1, t->byte_id[(uint8_t)w->buf[pos + j]]);
        } else {
            sym_push(w, (int32_t)pos, (int32_t)l, id);
        }
        pos += l;
    }
    if (w->n_sym == 0) return 0;
    w->sym[w->n_sym - 1].next = -1;
    if (t->by_rank) return tok_merge_by_rank(t, w, o);
    return merge_by_score(t, w, o);
}
