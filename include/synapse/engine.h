/*
 * The inference engine: load a Llama-family model (a GGUF file or a Hugging Face directory),
 * then run forward passes over batches of sequences that share a paged KV cache.
 *
 * One call to syn_engine_step() is one pass over the weights for every token in the batch:
 * each sequence contributes one decode token or a chunk of prompt (prefill) tokens, and sequences
 * join and leave between steps (continuous batching). A sequence's logits do not depend on what
 * else was in its batch (batch invariance), bit for bit.
 *
 * Usage:
 *   struct syn_engine_params p = syn_engine_default_params();
 *   p.model_path = "model.gguf";
 *   struct syn_engine *e;  char err[256];
 *   if (syn_engine_load(&p, &e, err, sizeof err) < 0) ... err says why ...
 *   int s = syn_engine_seq_new(e);
 *   struct syn_step_item it = {s, prompt_ids, n_prompt, SYN_LOGITS_LAST};
 *   syn_engine_step(e, &it, 1);  const float *logits = syn_engine_logits(e, 0);
 *
 * Threading: an engine is driven from one thread at a time; it runs its own thread pool inside
 * each step. Nothing is allocated per step or per token: every buffer is sized at load.
 * No function calls exit(); errors are negative enum syn_err values with a message.
 */
#ifndef SYNAPSE_ENGINE_H
#define SYNAPSE_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "synapse/error.h"
#include "synapse/model.h"

struct syn_engine;
struct syn_sampler;
struct syn_tokenizer;

struct syn_engine_params {
    const char *model_path;    /* a GGUF file, or a directory with config.json + safetensors */
    const char *backend;       /* "cpu" or "cuda" (built with CUDA=1; without a usable GPU it
                                  logs why and runs on the CPU); default $SYNAPSE_BACKEND, else
                                  "cpu" */
    int n_threads;             /* threads for the CPU backend; 0 = online CPUs */
    int max_seqs;              /* sequences alive at once (default 64) */
    int max_batch_tokens;      /* tokens in one step, all sequences together (default 512) */
    int max_logit_rows;        /* logits rows one step can return (default max_seqs) */
    int n_ctx;                 /* positions per sequence; 0 = the model's own, capped at 4096 */
    size_t kv_cache_bytes;     /* KV pool size; 0 = max_seqs full-length sequences, capped at
                                  1 GiB (or one full-length sequence if that is larger) */
    int kv_block_tokens;       /* tokens per KV block (default 16) */
    const char *chat_template; /* NULL: from the model's metadata; else a template name */
    const char *weights;       /* "resident": the model's files read into memory on 2 MiB huge
                                  pages; "mapped": mmap'ed, shared with other processes through
                                  the page cache. Default $SYNAPSE_WEIGHTS, else resident for the
                                  CPU backend and mapped for CUDA (whose weights live on the
                                  GPU). Resident avoids re-faulting 4 KiB pages after idle
                                  spells, which costs more than the step on VMs with shadow
                                  paging (docs/BENCHMARKS.md); it takes a private copy. */
};

/* Defaults as documented above. */
struct syn_engine_params syn_engine_default_params(void);

/* Loads the model, its tokenizer and chat template, and sizes every buffer. Returns 0 and sets
 * *out, or SYN_EIO (cannot open/map), SYN_EFORMAT (malformed file), SYN_EUNSUPPORTED (an
 * architecture or tensor type we do not run), SYN_ENOMEM, SYN_EINVAL (bad params), with a
 * message in err. */
int syn_engine_load(const struct syn_engine_params *p, struct syn_engine **out, char *err,
                    size_t errlen);
void syn_engine_free(struct syn_engine *e);

const struct syn_hparams *syn_engine_hparams(const struct syn_engine *e);
const struct syn_tokenizer *syn_engine_tokenizer(const struct syn_engine *e);
const char *syn_engine_backend_name(const struct syn_engine *e);
/* The model's own chat template text (Jinja), or NULL when it has none. */
const char *syn_engine_chat_template(const struct syn_engine *e);
int syn_engine_n_ctx(const struct syn_engine *e);
int syn_engine_max_seqs(const struct syn_engine *e);
int syn_engine_max_batch_tokens(const struct syn_engine *e);
int syn_engine_max_logit_rows(const struct syn_engine *e);
/* Bytes of weights one decode step reads (for bandwidth floors). */
uint64_t syn_engine_weight_bytes(const struct syn_engine *e);

/* ---- sequences and the paged KV cache ---- */

/* A new empty sequence: returns its id (>= 0), or SYN_ENOSPC when max_seqs are alive. */
int syn_engine_seq_new(struct syn_engine *e);
/* Drops a sequence and returns its KV blocks to the pool. Unknown ids are ignored. */
void syn_engine_seq_free(struct syn_engine *e, int seq);
/* Tokens held in the sequence's KV cache (its next position), or SYN_EINVAL. */
int syn_engine_seq_len(const struct syn_engine *e, int seq);
/* Forgets the sequence's positions >= len (keeps the prefix; frees whole blocks past it). */
int syn_engine_seq_truncate(struct syn_engine *e, int seq, int len);

int syn_engine_kv_blocks_total(const struct syn_engine *e);
int syn_engine_kv_blocks_free(const struct syn_engine *e);
int syn_engine_kv_block_tokens(const struct syn_engine *e);
/* Blocks a sequence of seq_len tokens would need to grow by n tokens. */
int syn_engine_kv_blocks_needed(const struct syn_engine *e, int seq, int n_tokens);

/* ---- forward passes ---- */

enum syn_logits_mode {
    SYN_LOGITS_NONE = 0, /* prefill chunk whose logits nobody needs */
    SYN_LOGITS_LAST = 1, /* the last token's logits (the usual case) */
    SYN_LOGITS_ALL = 2,  /* every token's (perplexity, scoring) */
};

struct syn_step_item {
    int seq;               /* from syn_engine_seq_new */
    const int32_t *tokens; /* appended at positions seq_len .. seq_len + n_tokens - 1 */
    int n_tokens;          /* >= 1 */
    int logits;            /* enum syn_logits_mode */
};

/* Runs one forward pass over every item. All or nothing: KV blocks for every item are reserved
 * first, and if the pool cannot hold them the step returns SYN_ENOSPC with nothing changed.
 * Errors: SYN_EINVAL (unknown or repeated seq, n_tokens < 1, more than max_batch_tokens tokens or
 * max_logit_rows logits rows), SYN_ERANGE (a token id outside the vocabulary, or a position past
 * n_ctx), SYN_ENOSPC. On success the logits rows, in item order, are read with syn_engine_logits. */
int syn_engine_step(struct syn_engine *e, const struct syn_step_item *items, int n_items);

/* Row r (0-based, in the order requested) of the last step's logits: n_vocab floats, valid until
 * the next step. NULL if r is out of range. */
const float *syn_engine_logits(const struct syn_engine *e, int r);
int syn_engine_n_logits(const struct syn_engine *e);

/* One token for each of the last step's logits rows r < n, picked by samplers[r] (one per row,
 * as syn_sampler_sample would pick it; the caller still calls syn_sampler_accept). On a backend
 * that samples on its device (CUDA) and when every sampler allows it (syn_sampler_device_ok),
 * the logits never leave the device and only the ids come back; otherwise each row is sampled
 * on the host from syn_engine_logits. Returns 0, SYN_EINVAL (n out of range), or the backend's
 * error. */
int syn_engine_sample(struct syn_engine *e, struct syn_sampler *const *samplers, int n,
                      int32_t *out);

#endif
