/*
 * Inside the tokenizers: the vocabulary shared by both models, the per-call scratch space, the
 * merge queue, and the pieces of Unicode the pre-tokenizers need. Only src/engine/tokenizer*.c and
 * unicode.c include this; everyone else goes through include/synapse/tokenizer.h.
 *
 * Encoding is split across files by model: tokenizer_spm.c (SentencePiece: "▁" escaping and
 * merging by score), tokenizer_bpe.c (byte-level BPE: pre-tokenizers and merging by rank; the
 * rank merge also serves SentencePiece-converted tokenizer.json files), tokenizer_json.c (the
 * Hugging Face loader), tokenizer.c (the GGUF loader, special tokens, decoding).
 */
#ifndef SYNAPSE_TOKENIZER_IMPL_H
#define SYNAPSE_TOKENIZER_IMPL_H

#include "synapse/tokenizer.h"

#include <stddef.h>
#include <stdint.h>

/* Byte-level BPE pre-tokenizers (how text is cut into words before merging). */
enum tok_pre {
    TOK_PRE_GPT2 = 0,    /* 's|'t|... ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    TOK_PRE_LLAMA3,      /* Llama 3: letters with one leading non-letter, \p{N}{1,3}, ... */
    TOK_PRE_QWEN2,       /* Llama 3's expression with single digits, \p{N} */
    TOK_PRE_DEEPSEEK,    /* deepseek-llm: six expressions applied one after another */
    TOK_PRE_DIGITS_GPT2, /* every digit alone, then GPT-2 (smollm, starcoder) */
};

/* One special token for the matcher (control, user-defined and unknown tokens). */
struct tok_special {
    const char *text; /* its piece, points into syn_tokenizer.blob */
    uint32_t len;     /* bytes in text, > 0 */
    int32_t id;       /* the token */
};

struct syn_tokenizer {
    enum syn_tok_model model; /* SPM or BPE: which encoder runs and how pieces decode */
    int32_t n_vocab;          /* ids are 0 .. n_vocab-1 */
    char *blob;               /* every piece, NUL-terminated, back to back (owned) */
    size_t *off;              /* (n_vocab) where each piece starts in blob (owned) */
    uint32_t *len;            /* (n_vocab) each piece's length in bytes, without the NUL (owned) */
    float *scores;            /* (n_vocab) SentencePiece scores; NULL when merging by rank */
    uint8_t *types;           /* (n_vocab) enum syn_tok_type of each token (owned) */
    uint32_t max_len;         /* the longest piece, in bytes */

    int32_t *index;      /* (index_mask + 1) open-addressing piece -> id table, -1 empty (owned) */
    uint32_t index_mask; /* table size - 1, a power of two minus one */

    uint64_t *merge_key;  /* (merge_mask + 1) left id << 32 | right id; UINT64_MAX empty (owned) */
    int32_t *merge_rank;  /* (merge_mask + 1) the merge's rank: lower merges first (owned) */
    int32_t *merge_id;    /* (merge_mask + 1) the token the pair merges into (owned) */
    uint32_t merge_mask;  /* table size - 1; 0 with merge_key NULL when there are no merges */
    int32_t n_merges;     /* merges loaded */
    int by_rank;          /* 1: merge adjacent pairs by rank (BPE, tokenizer.json SPM) */
    enum tok_pre pre;     /* BPE only: the pre-tokenizer */
    int ignore_merges;    /* BPE: a word that is itself a token is not merged (Llama 3) */
    int byte_fallback;    /* SPM: characters not in the vocab become <0xNN> byte tokens */
    int add_space_prefix; /* SPM: prepend "▁" to text that starts the input or follows a special */

    int add_bos;    /* the model's default for add_bos */
    int32_t bos;    /* beginning of sequence, -1 if none */
    int32_t eos;    /* end of sequence, -1 if none */
    int32_t eot;    /* end of turn, -1 if none */
    int32_t unk;    /* unknown token, -1 if none */
    int32_t eog[8]; /* every end-of-generation token (eos, eot, <|im_end|>, ...) */
    int n_eog;      /* entries used in eog */

    int32_t byte_id[256]; /* SPM: the <0xNN> token of each byte; BPE: the token of its byte
                             character (Ġ for 0x20); -1 where the vocab lacks it */

    struct tok_special *special; /* (n_special) sorted by text, bytewise (owned) */
    int32_t n_special;           /* entries in special */
    uint8_t special_first[32];   /* bitmap of the first bytes of the special texts */
};

/* ---- building a tokenizer (tokenizer.c) ---- */

/* Allocates a tokenizer for n_vocab tokens with all arrays zeroed / -1. */
struct syn_tokenizer *tok_alloc(int32_t n_vocab, char *err, size_t errlen, int *rc);
/* Stores the pieces: texts[i]/lens[i] are copied into the blob; a NULL text is an empty piece. */
int tok_set_pieces(struct syn_tokenizer *t, const char *const *texts, const size_t *lens, char *err,
                   size_t errlen);
/* Builds the piece index, the byte tokens, the special-token table and the EOG list, once pieces,
 * types, bos/eos/eot and model are set. */
int tok_finish(struct syn_tokenizer *t, char *err, size_t errlen);
/* Adds the merge "a b" (rank = its position). Merges whose parts or result are not tokens are
 * skipped and counted in *skipped. Returns 0 or SYN_ENOMEM. Call tok_merges_reserve first. */
int tok_merges_reserve(struct syn_tokenizer *t, size_t n);
void tok_merge_add(struct syn_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen,
                   int32_t rank, size_t *skipped);
/* The id of a piece, or -1. */
int32_t tok_lookup(const struct syn_tokenizer *t, const char *s, size_t n);

/* ---- encoding scratch (one per syn_tokenizer_encode call, sized by the input) ---- */

/* A symbol: a run of bytes of the text being merged, in a doubly linked list. */
struct tok_sym {
    int32_t start; /* first byte in the merge buffer */
    int32_t n;     /* bytes; 0 once merged into its left neighbour */
    int32_t prev;  /* index of the previous live symbol, -1 at the start */
    int32_t next;  /* index of the next live symbol, -1 at the end */
    int32_t id;    /* its token, -1 if the vocab has none (emitted as byte tokens) */
};

/* A candidate merge of two adjacent symbols. */
struct tok_bigram {
    double prio;   /* higher merges first: the SPM score, or -rank */
    int32_t left;  /* left symbol */
    int32_t right; /* right symbol */
    int32_t size;  /* left.n + right.n when queued; stale if that has changed */
    int32_t id;    /* the token the two become */
};

/* Where encoded ids go: the caller's buffer, with a count that keeps going past cap. */
struct tok_out {
    int32_t *ids; /* the caller's buffer */
    int cap;      /* its capacity */
    int n;        /* ids produced so far (may exceed cap) */
};

struct tok_work {
    struct tok_sym *sym;     /* symbols of the current word (owned) */
    int32_t n_sym;           /* in use */
    struct tok_bigram *heap; /* max-heap of candidate merges (owned, grows) */
    int32_t n_heap;          /* in use */
    int32_t cap_heap;        /* allocated */
    char *buf;               /* SPM: the escaped text; BPE: a word's byte-level string (owned) */
    uint32_t *cp;            /* BPE: code points of the fragment (owned) */
    uint32_t *cpoff;         /* BPE: byte offset of each code point, plus one past the end */
    uint8_t *cpfl;           /* BPE: SYN_UC_* class of each code point */
    uint8_t *cut;            /* BPE: 1 where a word starts */
};

static inline void tok_emit(struct tok_out *o, int32_t id)
{
    if (o->n < o->cap) o->ids[o->n] = id;
    o->n++;
}

/* Allocates scratch for encoding len bytes of text. Returns 0 or SYN_ENOMEM. */
int tok_work_init(struct tok_work *w, const struct syn_tokenizer *t, size_t len);
void tok_work_release(struct tok_work *w);

/* The merge queue: push keeps the heap property; pop takes the best (highest prio, then the
 * leftmost). Return 0 or SYN_ENOMEM / 0 when empty. */
int tok_heap_push(struct tok_work *w, const struct tok_bigram *b);
int tok_heap_pop(struct tok_work *w, struct tok_bigram *b);

/* Merges w->sym[0 .. n_sym) over w->buf (already split into characters with ids) by rank and
 * emits the resulting ids; symbols without a token emit t->unk (when there is one). */
int tok_merge_by_rank(const struct syn_tokenizer *t, struct tok_work *w, struct tok_out *o);

/* Model encoders for one fragment of raw text (no special tokens in it). prev_special says the
 * fragment starts the input or follows a special token (SPM adds its "▁" prefix there). */
int tok_spm_encode(const struct syn_tokenizer *t, struct tok_work *w, const char *text, size_t len,
                   int prev_special, struct tok_out *o);
int tok_bpe_encode(const struct syn_tokenizer *t, struct tok_work *w, const char *text, size_t len,
                   struct tok_out *o);

/* ---- byte-level BPE's byte <-> character mapping (tokenizer_bpe.c) ---- */

/* The code point GPT-2 uses for byte b: printable Latin-1 stays, the rest map to U+0100... */
uint32_t tok_byte_to_cp(uint8_t b);
/* The byte a code point stands for, or -1 if it is not one of the 256. */
int tok_cp_to_byte(uint32_t cp);
/* Parses "<0xNN>": returns the byte or -1. */
int tok_parse_byte_piece(const char *s, size_t n);

/* ---- Unicode (unicode.c) ---- */

/* Class bits, as in the generated unicode_tables.h (identical definitions). */
#define SYN_UC_LETTER 1
#define SYN_UC_NUMBER 2
#define SYN_UC_SPACE  4

/* Decodes one UTF-8 character at s[0..n) (n > 0). Returns its length (1..4) and sets *cp; an
 * invalid or truncated sequence, an overlong form or a surrogate is a 1-byte character with
 * *cp = U+FFFD, so that every byte belongs to exactly one character. */
size_t syn_utf8_next(const uint8_t *s, size_t n, uint32_t *cp);
/* Encodes cp (<= 0x10FFFF) into out (4 bytes room); returns the length. */
size_t syn_utf8_put(uint32_t cp, char *out);
/* The SYN_UC_* class bits of a code point (letter, number, whitespace), 0 for anything else. */
uint32_t syn_uc_flags(uint32_t cp);

#endif
