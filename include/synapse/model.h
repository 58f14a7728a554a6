/*
 * A model's description, independent of the file it came from: the hyperparameters of a
 * Llama-family transformer, read from GGUF metadata (llama.*) or a Hugging Face config.json.
 * Weights are not here; see src/engine/model.h for the weight views.
 */
#ifndef SYNAPSE_MODEL_H
#define SYNAPSE_MODEL_H

#include <stddef.h>

enum syn_rope_scaling {
    SYN_ROPE_SCALING_NONE = 0,
    SYN_ROPE_SCALING_LINEAR = 1, /* positions divided by rope_factor */
    SYN_ROPE_SCALING_LLAMA3 = 2, /* Llama 3.1 frequency-dependent scaling */
};

struct syn_hparams {
    char arch[32];  /* "llama" (also used for Mistral, TinyLlama, SmolLM), "qwen2" */
    char name[128]; /* general.name or the directory's name; may be empty */
    int n_vocab;    /* rows of the token embedding */
    int dim;        /* hidden size (n_embd) */
    int n_layer;
    int n_head;                  /* query heads */
    int n_kv_head;               /* key/value heads (== n_head without GQA) */
    int head_dim;                /* dim / n_head unless the file says otherwise */
    int ffn_dim;                 /* SwiGLU hidden size (n_ff, intermediate_size) */
    int n_ctx_train;             /* context length the model was trained for */
    float norm_eps;              /* RMSNorm epsilon */
    float rope_theta;            /* RoPE base frequency (10000 for Llama 2, 500000 for Llama 3) */
    int rope_neox;               /* 0: rotate adjacent pairs (GGUF llama layout, llama2.c);
                               1: rotate halves (Hugging Face layout, GGUF qwen2) */
    int rope_scaling;            /* enum syn_rope_scaling */
    float rope_factor;           /* scaling factor (linear, llama3) */
    float rope_low_freq_factor;  /* llama3 */
    float rope_high_freq_factor; /* llama3 */
    int rope_orig_ctx;           /* llama3: original_max_position_embeddings */
    int tied_embeddings;         /* 1 when the output projection is the token embedding */
    int qkv_bias;                /* 1 when q/k/v projections have biases (qwen2) */
};

#endif
