/*
 * The loaded model inside the engine: hyperparameters plus views of every weight, wherever the
 * weights came from (a mapped GGUF file, or mapped safetensors shards). Matrices stay in the
 * file's type and are used in place; only the small 1-D norm weights (and biases) are converted
 * to f32 copies at load, since the kernels want them as floats and they are a few KB.
 *
 * Matrices follow GGUF's convention: a matrix of R output rows by K inputs is stored row by row,
 * ne[0] = K, ne[1] = R, and y = W x is a row-by-row dot product.
 */
#ifndef SYN_ENGINE_MODEL_H
#define SYN_ENGINE_MODEL_H

#include "common/filemap.h"
#include "synapse/model.h"
#include "synapse/tensor.h"

struct syn_gguf;
struct syn_hf_dir;
struct syn_tokenizer;

/* A weight matrix: rows of K elements of type, contiguous. */
struct syn_weight {
    const void *data; /* into the mapping; not owned */
    int type;         /* enum syn_dtype */
    int rows;         /* R: output features */
    int cols;         /* K: input features */
};

struct syn_layer {
    float *attn_norm;         /* (dim) owned */
    struct syn_weight wq;     /* (n_head*head_dim, dim) */
    struct syn_weight wk;     /* (n_kv_head*head_dim, dim) */
    struct syn_weight wv;     /* (n_kv_head*head_dim, dim) */
    struct syn_weight wo;     /* (dim, n_head*head_dim) */
    float *bq, *bk, *bv;      /* qkv biases (qwen2) or NULL; owned */
    float *ffn_norm;          /* (dim) owned */
    struct syn_weight w_gate; /* (ffn_dim, dim) */
    struct syn_weight w_up;   /* (ffn_dim, dim) */
    struct syn_weight w_down; /* (dim, ffn_dim) */
};

struct syn_model {
    struct syn_hparams hp;
    struct syn_weight tok_embd; /* (n_vocab, dim): row t is token t's embedding */
    float *output_norm;         /* (dim) owned */
    struct syn_weight output;   /* (n_vocab, dim); == tok_embd when tied */
    struct syn_layer *layers;   /* (n_layer) owned */
    float *rope_freq_factors;   /* (head_dim/2) divisors from rope_freqs.weight, or NULL; owned */
    struct syn_gguf *gguf;      /* the mapped GGUF file, or NULL; owned */
    struct syn_hf_dir *hf;      /* the mapped HF directory, or NULL; owned */
    struct syn_tokenizer *tok;  /* owned */
    char *chat_template;        /* the model's Jinja template text, or NULL; owned */
    uint64_t weight_bytes;      /* bytes of every matrix one decode step reads */
    void **owned;               /* matrices converted at load (Q5_0 held as Q8_0); owned */
    int n_owned;
};

/* Loads path (a GGUF file or a Hugging Face directory), its files brought into memory as mode
 * says (common/filemap.h). Returns 0 or a negative syn_err. */
int syn_model_load(const char *path, enum syn_filemap_mode mode, struct syn_model *m, char *err,
                   size_t errlen);
void syn_model_release(struct syn_model *m);

#endif
