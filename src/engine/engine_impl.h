/*
 * The engine's insides, shared by engine.c (sequences, the paged KV cache's block tables, step
 * validation) and the backends (the forward pass over one planned step).
 *
 * Backend interface (in the manner of ggml's backend-impl.h): a struct of function pointers. The
 * engine decides which tokens run at which positions and which KV blocks they use; a backend owns
 * the KV memory and the activations, and computes.
 */
#ifndef SYN_ENGINE_IMPL_H
#define SYN_ENGINE_IMPL_H

#include "model.h"
#include "synapse/engine.h"
#include "synapse/sampler.h"

/* One step, flattened: T tokens from any number of sequences, in item order. */
struct syn_step_plan {
    int n_tokens;           /* T */
    const int32_t *tokens;  /* (T) token ids, checked < n_vocab */
    const int32_t *pos;     /* (T) each token's position in its sequence, checked < n_ctx */
    const int32_t *seq;     /* (T) each token's sequence slot */
    int n_out;              /* logits rows to produce */
    const int32_t *out_idx; /* (n_out) index into tokens of each logits row, increasing */
    float *logits;          /* (n_out, n_vocab) where the backend writes them */
};

struct syn_backend {
    const char *name;
    /* Allocates the KV pool (e->n_blocks blocks of e->block_tokens tokens) and every buffer a
     * step of up to e->max_batch_tokens tokens needs. */
    int (*init)(struct syn_engine *e, char *err, size_t errlen);
    /* One forward pass. K/V of every planned token are written to its (seq, pos) block slot
     * before any attention of that layer reads them. Returns 0 or a negative syn_err. */
    int (*forward)(struct syn_engine *e, const struct syn_step_plan *plan);
    /* Frees what init allocated (e->backend_state). */
    void (*release)(struct syn_engine *e);
    /* Optional (NULL: forward writes plan->logits itself). For a backend whose forward leaves
     * the logits on its device: copies the last step's e->n_logits rows into e->logits. The
     * engine calls it at most once per step, when someone first reads the logits. */
    int (*fetch_logits)(struct syn_engine *e);
    /* Optional: one token per row r < n of the last step's logits, picked on the device for
     * specs[r] (syn_engine_sample), so that only token ids leave it. 0 or a negative syn_err. */
    int (*sample)(struct syn_engine *e, const struct syn_sample_spec *specs, int n, int32_t *out);
};

extern const struct syn_backend syn_backend_cpu;

/* The RoPE cos/sin tables (n_ctx, head_dim/2) for m's hparams (theta, linear or Llama-3
 * scaling, per-frequency divisors), in double rounded to float; every backend uses these. */
void syn_rope_tables(const struct syn_model *m, int n_ctx, float *cs, float *sn);
#ifdef SYN_HAVE_CUDA
extern const struct syn_backend syn_backend_cuda; /* src/engine/cuda/backend.cu */
#endif

struct syn_seq {
    int alive;       /* slot in use */
    int len;         /* tokens in the KV cache */
    int n_blocks;    /* blocks held */
    int32_t *blocks; /* (max_blocks_per_seq) block table: block ids for positions
                        [i*block_tokens, (i+1)*block_tokens); points into e->block_tables */
};

struct syn_engine {
    struct syn_model model; /* weights, tokenizer */
    const struct syn_backend *backend;
    void *backend_state; /* owned by the backend */
    int n_threads;       /* CPU threads asked for (0 = all) */
    int n_ctx;           /* positions per sequence */
    int max_seqs, max_batch_tokens, max_logit_rows;
    int block_tokens;       /* tokens per KV block */
    int n_blocks;           /* blocks in the pool */
    int max_blocks_per_seq; /* ceil(n_ctx / block_tokens) */
    struct syn_seq *seqs;   /* (max_seqs) */
    int32_t *block_tables;  /* (max_seqs, max_blocks_per_seq) */
    int32_t *free_blocks;   /* (n_blocks) stack of free block ids */
    int n_free;             /* entries on that stack */
    /* step plan buffers, sized at load */
    int32_t *plan_tokens, *plan_pos, *plan_seq; /* (max_batch_tokens) */
    int32_t *plan_out;                          /* (max_logit_rows) */
    uint8_t *seen;                              /* (max_seqs) duplicate check within one step */
    float *logits;                              /* (max_logit_rows, n_vocab) */
    int n_logits;                               /* rows the last step produced */
    int logits_on_device; /* 1 while the last step's logits are only on the backend's device */
    struct syn_sample_spec *sample_specs; /* (max_logit_rows) for syn_engine_sample */
};

#endif
