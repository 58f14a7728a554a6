/*
 * Tokenizers: SentencePiece-style (scores, byte fallback, the U+2581 "▁" space prefix) and
 * byte-level BPE (GPT-2-style merges with each model's pre-tokenizer: gpt-2, llama-3,
 * deepseek-llm), built from GGUF metadata (tokenizer.ggml.*) or from a Hugging Face
 * tokenizer.json.
 *
 * Encoding never fails on any byte string (invalid UTF-8 included: SPM falls back to byte
 * tokens, BPE maps raw bytes). Decoding is streaming-safe: syn_detok emits only complete UTF-8
 * characters, holding back a partial multi-byte sequence until the token that completes it.
 *
 * A tokenizer is immutable after creation and may be shared between threads.
 */
#ifndef SYNAPSE_TOKENIZER_H
#define SYNAPSE_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

struct syn_gguf;
struct syn_tokenizer;

enum syn_tok_model {
    SYN_TOK_SPM = 1, /* tokenizer.ggml.model = "llama" */
    SYN_TOK_BPE = 2, /* tokenizer.ggml.model = "gpt2" */
};

/* Token attributes (tokenizer.ggml.token_type values). */
enum syn_tok_type {
    SYN_TOKT_NORMAL = 1,
    SYN_TOKT_UNKNOWN = 2,
    SYN_TOKT_CONTROL = 3,
    SYN_TOKT_USER_DEFINED = 4,
    SYN_TOKT_UNUSED = 5,
    SYN_TOKT_BYTE = 6,
};

/* Builds a tokenizer from tokenizer.ggml.* keys. Returns 0 or a negative syn_err. */
int syn_tokenizer_from_gguf(const struct syn_gguf *g, struct syn_tokenizer **out, char *err,
                            size_t errlen);

/* Builds a tokenizer from a Hugging Face tokenizer.json (and, when present beside it,
 * tokenizer_config.json for bos/eos and add_bos). */
int syn_tokenizer_from_json(const char *path, struct syn_tokenizer **out, char *err, size_t errlen);

void syn_tokenizer_free(struct syn_tokenizer *t);

enum syn_tok_model syn_tokenizer_model(const struct syn_tokenizer *t);
int32_t syn_tokenizer_n_vocab(const struct syn_tokenizer *t);
int32_t syn_tokenizer_bos(const struct syn_tokenizer *t); /* -1 if none */
int32_t syn_tokenizer_eos(const struct syn_tokenizer *t); /* -1 if none */
int32_t syn_tokenizer_eot(const struct syn_tokenizer *t); /* end of turn, -1 if none */
int syn_tokenizer_add_bos(const struct syn_tokenizer *t); /* model's default for add_bos */
/* True for tokens that end generation (EOS, EOT, and any other end-of-generation token). */
int syn_tokenizer_is_eog(const struct syn_tokenizer *t, int32_t id);
/* The token's piece as stored in the vocab (e.g. "▁the", "<0x0A>", "Ġthe"); NULL if out of range. */
const char *syn_tokenizer_piece(const struct syn_tokenizer *t, int32_t id);
/* Looks up a token by its exact piece; -1 if absent. */
int32_t syn_tokenizer_find(const struct syn_tokenizer *t, const char *piece);
/* The token's enum syn_tok_type, or SYN_ERANGE for an id out of range. */
int syn_tokenizer_token_type(const struct syn_tokenizer *t, int32_t id);

/* Encodes len bytes of text. add_bos prepends BOS (when the vocab has one). parse_special
 * recognises control token texts (e.g. "<|eot_id|>") in the input; otherwise they are tokenized
 * as plain text. User-defined tokens (added to a vocab without being marked special) are always
 * recognised, as llama.cpp does. Writes at most cap ids to out and returns the total number of
 * tokens (which may exceed cap: call again with a larger buffer), or a negative syn_err. */
int syn_tokenizer_encode(const struct syn_tokenizer *t, const char *text, size_t len, int add_bos,
                         int parse_special, int32_t *out, int cap);

/* Decodes n ids to their exact bytes, with no UTF-8 repair (the inverse of
 * syn_tokenizer_encode: byte-level BPE gives back any input byte for byte; SPM drops the space
 * of the first token's "▁" prefix). Control tokens produce nothing. Writes at most cap bytes (not
 * NUL-terminated) and returns the total length, which may exceed cap (call again with a larger
 * buffer), or a negative syn_err (SYN_ERANGE for an id out of range). */
int syn_tokenizer_decode(const struct syn_tokenizer *t, const int32_t *ids, int n, char *out,
                         size_t cap);

/* Streaming decoder state; zero it (or syn_detok_init) before the first token of a sequence. */
struct syn_detok {
    uint8_t pending[8]; /* bytes of an incomplete UTF-8 character held back */
    int n_pending;      /* how many */
    int n_tokens;       /* tokens decoded so far (SPM drops the leading space of the first) */
};
void syn_detok_init(struct syn_detok *d);

/* Appends the text of token id to out (at most cap bytes, not NUL-terminated) and returns the
 * number of bytes written; only complete UTF-8 characters are written, an incomplete tail is held
 * in d; bytes that cannot form a character come out as U+FFFD. Control tokens (BOS/EOS) produce
 * no text and are not counted in n_tokens. To continue a text rather than start one (keeping the
 * SPM leading space), set n_tokens to 1. Returns a negative syn_err for an id out of range or
 * cap too small, leaving d unchanged (cap >= 64 + longest piece is enough when the bytes are
 * valid UTF-8, and 3 * (longest piece + 3) always is). */
int syn_detok_push(const struct syn_tokenizer *t, struct syn_detok *d, int32_t id, char *out,
                   size_t cap);

/* Flushes held-back bytes at the end of a sequence, as U+FFFD for each incomplete character. */
int syn_detok_flush(const struct syn_tokenizer *t, struct syn_detok *d, char *out, size_t cap);

#endif
