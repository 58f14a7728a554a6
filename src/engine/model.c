/*
 * Model loading: from a GGUF file (llama.* / qwen2.* metadata, token_embd / blk.N.* tensors) or
 * a Hugging Face directory (config.json, safetensors, tokenizer.json) to a struct syn_model of
 * weight views. Validates every shape against the hyperparameters so that the forward pass can
 * trust them; a missing tensor, a wrong shape or a type we cannot compute with is a clear error.
 */
#include "model.h"

#include "synapse/error.h"
#include "synapse/gguf.h"
#include "synapse/log.h"
#include "synapse/safetensors.h"
#include "synapse/tokenizer.h"
#include "engine/gguf_impl.h"
#include "engine/safetensors_impl.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

/* Looks up a tensor by name in whichever container the model came from. */
static const struct syn_tensor *find_tensor(const struct syn_model *m, const char *name)
{
    if (m->gguf) return syn_gguf_find_tensor(m->gguf, name);
    if (m->hf) return syn_hf_dir_find_tensor(m->hf, name);
    return NULL;
}

static int matmul_type_ok(int t)
{
    return t == SYN_DT_F32 || t == SYN_DT_F16 || t == SYN_DT_BF16 || t == SYN_DT_Q8_0 ||
           t == SYN_DT_Q4_0 || t == SYN_DT_Q4_1 || t == SYN_DT_Q5_0 || t == SYN_DT_Q5_1 ||
           t == SYN_DT_Q4_K || t == SYN_DT_Q5_K || t == SYN_DT_Q6_K;
}

/* Q5_0 (d * (q - 16), q of 5 bits) is Q8_0 with the quants widened to bytes, the same values:
 * converted once here, a matrix runs on the Q8_0 kernels (packed tiles, VNNI) instead of the
 * slower per-block Q5_0 path. llama.cpp's Q4_K_M uses Q5_0 for matrices whose rows are not whole
 * super-blocks (dim 576 or 960, say), which can be most of a small model. Costs the Q8_0 copy
 * (34 bytes per 32 weights) beside the file's. 0 or SYN_ENOMEM. */
static int hold_q5_0_as_q8_0(struct syn_model *m, const struct syn_tensor *t, struct syn_weight *w)
{
    const uint64_t blocks = t->nbytes / 22;
    void **owned = realloc(m->owned, sizeof *owned * (size_t)(m->n_owned + 1));
    if (!owned) return SYN_ENOMEM;
    m->owned = owned;
    uint8_t *out = aligned_alloc(64, (blocks * 34 + 63) / 64 * 64);
    if (!out) return SYN_ENOMEM;
    m->owned[m->n_owned++] = out;
    const uint8_t *in = t->data;
    for (uint64_t b = 0; b < blocks; b++, in += 22) {
        uint8_t *o = out + b * 34;
        const uint32_t qh =
            (uint32_t)in[2] | (uint32_t)in[3] << 8 | (uint32_t)in[4] << 16 | (uint32_t)in[5] << 24;
        o[0] = in[0];
        o[1] = in[1];
        for (int j = 0; j < 32; j++) {
            int q = (j < 16 ? in[6 + j] & 15 : in[6 + j - 16] >> 4) | (int)((qh >> j) & 1) << 4;
            o[2 + j] = (uint8_t)(int8_t)(q - 16);
        }
    }
    w->data = out;
    w->type = SYN_DT_Q8_0;
    return SYN_OK;
}

/* Binds a matrix of rows x cols. optional: absent is not an error (w->data stays NULL). */
static int bind_matrix(struct syn_model *m, const char *name, int rows, int cols,
                       struct syn_weight *w, int optional, char *err, size_t errlen)
{
    const struct syn_tensor *t = find_tensor(m, name);
    if (!t) {
        if (optional) return SYN_OK;
        return syn_seterr(err, errlen, SYN_ENOTFOUND, "model: tensor '%s' is missing", name);
    }
    if (!matmul_type_ok(t->type)) {
        const char *tn = syn_dtype_name(t->type);
        return syn_seterr(err, errlen, SYN_EUNSUPPORTED,
                          "model: tensor '%s' has type %s; supported: f32, f16, bf16, q8_0, "
                          "q4_0, q4_1, q5_0, q5_1, q4_K, q5_K, q6_K",
                          name, tn ? tn : "unknown");
    }
    if (t->n_dims != 2 || t->ne[0] != (uint64_t)cols || t->ne[1] != (uint64_t)rows)
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "model: tensor '%s' should be %d x %d (rows x cols) but is %llu x %llu%s",
                          name, rows, cols, (unsigned long long)t->ne[1],
                          (unsigned long long)t->ne[0], t->n_dims != 2 ? " (not 2-D)" : "");
    if (syn_dtype_row_bytes(t->type, (uint64_t)cols) == 0)
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "model: tensor '%s' rows of %d elements are not whole %s blocks", name,
                          cols, syn_dtype_name(t->type));
    w->data = t->data;
    w->type = t->type;
    w->rows = rows;
    w->cols = cols;
    if (t->type == SYN_DT_Q5_0 && hold_q5_0_as_q8_0(m, t, w) != SYN_OK)
        return syn_seterr(err, errlen, SYN_ENOMEM, "model: out of memory for '%s'", name);
    m->weight_bytes += syn_dtype_row_bytes(w->type, (uint64_t)cols) * (uint64_t)rows;
    return SYN_OK;
}

/* Reads a 1-D tensor of n elements into a new f32 array (*out, from malloc). */
static int bind_vector(struct syn_model *m, const char *name, int n, float **out, int optional,
                       char *err, size_t errlen)
{
    const struct syn_tensor *t = find_tensor(m, name);
    *out = NULL;
    if (!t) {
        if (optional) return SYN_OK;
        return syn_seterr(err, errlen, SYN_ENOTFOUND, "model: tensor '%s' is missing", name);
    }
    uint64_t total = 1;
    for (int d = 0; d < t->n_dims; d++) total *= t->ne[d];
    if (total != (uint64_t)n)
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "model: tensor '%s' should have %d elements but has %llu", name, n,
                          (unsigned long long)total);
    float *v = malloc(sizeof *v * (size_t)n);
    if (!v) return syn_seterr(err, errlen, SYN_ENOMEM, "model: out of memory for '%s'", name);
    if (syn_dequantize_row(t->type, t->data, v, (uint64_t)n) != 0) {
        free(v);
        return syn_seterr(err, errlen, SYN_EUNSUPPORTED, "model: tensor '%s' has type %s", name,
                          syn_dtype_name(t->type) ? syn_dtype_name(t->type) : "unknown");
    }
    *out = v;
    return SYN_OK;
}

/* ---- hyperparameters from GGUF metadata ---- */

static int gguf_u32(const struct syn_gguf *g, const char *arch, const char *suffix, int *out,
                    int required, char *err, size_t errlen)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    uint32_t v;
    int rc = syn_gguf_get_u32(g, key, &v);
    if (rc == SYN_ENOTFOUND && !required) return SYN_OK;
    if (rc != 0)
        return syn_seterr(err, errlen, SYN_EFORMAT, "model: metadata '%s' is %s", key,
                          rc == SYN_ENOTFOUND ? "missing" : "not an unsigned integer");
    if (v == 0 || v > (1u << 24))
        return syn_seterr(err, errlen, SYN_EFORMAT, "model: metadata '%s' = %u is out of range",
                          key, v);
    *out = (int)v;
    return SYN_OK;
}

static int gguf_f32(const struct syn_gguf *g, const char *arch, const char *suffix, float *out)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    float v;
    if (syn_gguf_get_f32(g, key, &v) != 0) return SYN_ENOTFOUND;
    *out = v;
    return SYN_OK;
}

static int hparams_from_gguf(struct syn_model *m, char *err, size_t errlen)
{
    const struct syn_gguf *g = m->gguf;
    struct syn_hparams *hp = &m->hp;
    const char *s;
    size_t len;
    if (syn_gguf_get_str(g, "general.architecture", &s, &len) != 0)
        return syn_seterr(err, errlen, SYN_EFORMAT, "model: 'general.architecture' is missing");
    if (len >= sizeof hp->arch) len = sizeof hp->arch - 1;
    memcpy(hp->arch, s, len);
    hp->arch[len] = 0;
    if (strcmp(hp->arch, "llama") != 0 && strcmp(hp->arch, "qwen2") != 0)
        return syn_seterr(err, errlen, SYN_EUNSUPPORTED,
                          "model: architecture '%s' is not supported (llama, qwen2)", hp->arch);
    if (syn_gguf_get_str(g, "general.name", &s, &len) == 0) {
        if (len >= sizeof hp->name) len = sizeof hp->name - 1;
        memcpy(hp->name, s, len);
        hp->name[len] = 0;
    }
    const char *a = hp->arch;
    int rc;
    if ((rc = gguf_u32(g, a, "embedding_length", &hp->dim, 1, err, errlen)) ||
        (rc = gguf_u32(g, a, "block_count", &hp->n_layer, 1, err, errlen)) ||
        (rc = gguf_u32(g, a, "attention.head_count", &hp->n_head, 1, err, errlen)) ||
        (rc = gguf_u32(g, a, "feed_forward_length", &hp->ffn_dim, 1, err, errlen)))
        return rc;
    hp->n_kv_head = hp->n_head;
    hp->n_ctx_train = 2048;
    hp->head_dim = hp->dim / hp->n_head;
    if ((rc = gguf_u32(g, a, "attention.head_count_kv", &hp->n_kv_head, 0, err, errlen)) ||
        (rc = gguf_u32(g, a, "context_length", &hp->n_ctx_train, 0, err, errlen)) ||
        (rc = gguf_u32(g, a, "attention.key_length", &hp->head_dim, 0, err, errlen)))
        return rc;
    hp->norm_eps = 1e-5f;
    gguf_f32(g, a, "attention.layer_norm_rms_epsilon", &hp->norm_eps);
    hp->rope_theta = 10000.0f;
    gguf_f32(g, a, "rope.freq_base", &hp->rope_theta);
    hp->rope_neox = strcmp(a, "qwen2") == 0;
    hp->qkv_bias = strcmp(a, "qwen2") == 0;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", a);
    if (syn_gguf_get_str(g, key, &s, &len) == 0) {
        if (len == 6 && !memcmp(s, "linear", 6)) {
            hp->rope_scaling = SYN_ROPE_SCALING_LINEAR;
            hp->rope_factor = 1.0f;
            gguf_f32(g, a, "rope.scaling.factor", &hp->rope_factor);
            if (!(hp->rope_factor > 0.0f)) hp->rope_factor = 1.0f;
        } else if (!(len == 4 && !memcmp(s, "none", 4))) {
            return syn_seterr(err, errlen, SYN_EUNSUPPORTED,
                              "model: rope scaling '%.*s' is not supported (linear, llama3)",
                              (int)len, s);
        }
    }
    return SYN_OK;
}

static int check_hparams(const struct syn_hparams *hp, char *err, size_t errlen)
{
    if (hp->n_head <= 0 || hp->n_kv_head <= 0 || hp->n_head % hp->n_kv_head != 0)
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "model: %d query heads cannot share %d key/value heads evenly",
                          hp->n_head, hp->n_kv_head);
    if (hp->head_dim <= 0 || hp->head_dim % 2 != 0 || hp->head_dim > 1024)
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "model: head dimension %d must be even and at most 1024", hp->head_dim);
    if (hp->n_layer > 1024 || hp->dim > 65536 || hp->ffn_dim > 1 << 20)
        return syn_seterr(err, errlen, SYN_EFORMAT, "model: implausible sizes (dim %d, %d layers)",
                          hp->dim, hp->n_layer);
    if (!(hp->norm_eps > 0.0f) || !(hp->rope_theta > 0.0f))
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "model: norm epsilon and rope theta must be > 0");
    return SYN_OK;
}

/* ---- weights ---- */

static int bind_weights(struct syn_model *m, int hf, char *err, size_t errlen)
{
    struct syn_hparams *hp = &m->hp;
    const int dim = hp->dim, qd = hp->n_head * hp->head_dim, kvd = hp->n_kv_head * hp->head_dim;
    int rc;
    const char *embd = hf ? "model.embed_tokens.weight" : "token_embd.weight";
    const struct syn_tensor *te = find_tensor(m, embd);
    if (!te) return syn_seterr(err, errlen, SYN_ENOTFOUND, "model: tensor '%s' is missing", embd);
    if (te->n_dims != 2 || te->ne[0] != (uint64_t)dim || te->ne[1] == 0 || te->ne[1] > (1u << 24))
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "model: '%s' should be n_vocab x %d but is %llu x %llu", embd, dim,
                          (unsigned long long)te->ne[1], (unsigned long long)te->ne[0]);
    if (hp->n_vocab == 0) hp->n_vocab = (int)te->ne[1];
    if ((rc = bind_matrix(m, embd, hp->n_vocab, dim, &m->tok_embd, 0, err, errlen))) return rc;
    m->weight_bytes -= syn_dtype_row_bytes(m->tok_embd.type, (uint64_t)dim) * (uint64_t)hp->n_vocab;

    if ((rc = bind_vector(m, hf ? "model.norm.weight" : "output_norm.weight", dim, &m->output_norm,
                          0, err, errlen)))
        return rc;
    if ((rc = bind_matrix(m, hf ? "lm_head.weight" : "output.weight", hp->n_vocab, dim, &m->output,
                          1, err, errlen)))
        return rc;
    if (!m->output.data) {
        m->output = m->tok_embd;
        hp->tied_embeddings = 1;
        m->weight_bytes +=
            syn_dtype_row_bytes(m->tok_embd.type, (uint64_t)dim) * (uint64_t)hp->n_vocab;
    }

    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return syn_seterr(err, errlen, SYN_ENOMEM, "model: out of memory");
    for (int i = 0; i < hp->n_layer; i++) {
        struct syn_layer *L = &m->layers[i];
        char n[12][96];
        if (hf) {
            const char *fmt[12] = {"input_layernorm.weight",  "self_attn.q_proj.weight",
                                   "self_attn.k_proj.weight", "self_attn.v_proj.weight",
                                   "self_attn.o_proj.weight", "post_attention_layernorm.weight",
                                   "mlp.gate_proj.weight",    "mlp.up_proj.weight",
                                   "mlp.down_proj.weight",    "self_attn.q_proj.bias",
                                   "self_attn.k_proj.bias",   "self_attn.v_proj.bias"};
            for (int k = 0; k < 12; k++)
                snprintf(n[k], sizeof n[k], "model.layers.%d.%s", i, fmt[k]);
        } else {
            const char *fmt[12] = {"attn_norm.weight", "attn_q.weight",      "attn_k.weight",
                                   "attn_v.weight",    "attn_output.weight", "ffn_norm.weight",
                                   "ffn_gate.weight",  "ffn_up.weight",      "ffn_down.weight",
                                   "attn_q.bias",      "attn_k.bias",        "attn_v.bias"};
            for (int k = 0; k < 12; k++) snprintf(n[k], sizeof n[k], "blk.%d.%s", i, fmt[k]);
        }
        if ((rc = bind_vector(m, n[0], dim, &L->attn_norm, 0, err, errlen)) ||
            (rc = bind_matrix(m, n[1], qd, dim, &L->wq, 0, err, errlen)) ||
            (rc = bind_matrix(m, n[2], kvd, dim, &L->wk, 0, err, errlen)) ||
            (rc = bind_matrix(m, n[3], kvd, dim, &L->wv, 0, err, errlen)) ||
            (rc = bind_matrix(m, n[4], dim, qd, &L->wo, 0, err, errlen)) ||
            (rc = bind_vector(m, n[5], dim, &L->ffn_norm, 0, err, errlen)) ||
            (rc = bind_matrix(m, n[6], hp->ffn_dim, dim, &L->w_gate, 0, err, errlen)) ||
            (rc = bind_matrix(m, n[7], hp->ffn_dim, dim, &L->w_up, 0, err, errlen)) ||
            (rc = bind_matrix(m, n[8], dim, hp->ffn_dim, &L->w_down, 0, err, errlen)))
            return rc;
        if (hp->qkv_bias) {
            if ((rc = bind_vector(m, n[9], qd, &L->bq, 0, err, errlen)) ||
                (rc = bind_vector(m, n[10], kvd, &L->bk, 0, err, errlen)) ||
                (rc = bind_vector(m, n[11], kvd, &L->bv, 0, err, errlen)))
                return rc;
        }
    }
    /* Llama 3.1 GGUFs carry the rope scaling as per-frequency divisors. */
    if (!hf && find_tensor(m, "rope_freqs.weight")) {
        if ((rc = bind_vector(m, "rope_freqs.weight", hp->head_dim / 2, &m->rope_freq_factors, 0,
                              err, errlen)))
            return rc;
    }
    return SYN_OK;
}

/* Fills the page tables for a mapped file in one system call instead of one page fault per
 * 4 KiB on the first forward pass (which made the first token of a 1.1B model cost ~1 s from
 * page cache). Best effort: older kernels lack MADV_POPULATE_READ and just fault as before. */
static void prefault(const void *base, size_t size)
{
#ifdef MADV_POPULATE_READ
    uintptr_t page = 4096, start = (uintptr_t)base & ~(page - 1);
    size_t len = size + ((uintptr_t)base - start);
    if (madvise((void *)start, len, MADV_POPULATE_READ) != 0)
        syn_debug("model", "MADV_POPULATE_READ not available; weights fault in on first use");
#else
    (void)base;
    (void)size;
#endif
}

static int load_gguf(const char *path, enum syn_filemap_mode mode, struct syn_model *m, char *err,
                     size_t errlen)
{
    int rc = syn_gguf_open_mode(path, mode, &m->gguf, err, errlen);
    if (rc) return rc;
    if (mode == SYN_FILEMAP_MAPPED) prefault(syn_gguf_base(m->gguf), syn_gguf_size(m->gguf));
    if ((rc = hparams_from_gguf(m, err, errlen))) return rc;
    if ((rc = check_hparams(&m->hp, err, errlen))) return rc;
    if ((rc = bind_weights(m, 0, err, errlen))) return rc;
    if ((rc = syn_tokenizer_from_gguf(m->gguf, &m->tok, err, errlen))) return rc;
    const char *s;
    size_t len;
    if (syn_gguf_get_str(m->gguf, "tokenizer.chat_template", &s, &len) == 0) {
        m->chat_template = strndup(s, len);
        if (!m->chat_template) return syn_seterr(err, errlen, SYN_ENOMEM, "model: out of memory");
    }
    return SYN_OK;
}

/* The "chat_template" string of tokenizer_config.json beside the model, or NULL (from malloc). */
static char *hf_chat_template(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    json_t *root = json_load_file(path, 0, NULL);
    if (!root) return NULL;
    const char *s = json_string_value(json_object_get(root, "chat_template"));
    char *out = s ? strdup(s) : NULL;
    json_decref(root);
    return out;
}

static int load_hf(const char *dir, enum syn_filemap_mode mode, struct syn_model *m, char *err,
                   size_t errlen)
{
    int rc = syn_hf_config_load(dir, &m->hp, err, errlen);
    if (rc) return rc;
    if ((rc = check_hparams(&m->hp, err, errlen))) return rc;
    if ((rc = syn_hf_dir_open_mode(dir, mode, &m->hf, err, errlen))) return rc;
    if ((rc = bind_weights(m, 1, err, errlen))) return rc;
    char tpath[4096];
    snprintf(tpath, sizeof tpath, "%s/tokenizer.json", dir);
    if ((rc = syn_tokenizer_from_json(tpath, &m->tok, err, errlen))) return rc;
    m->chat_template = hf_chat_template(dir);
    return SYN_OK;
}

int syn_model_load(const char *path, enum syn_filemap_mode mode, struct syn_model *m, char *err,
                   size_t errlen)
{
    memset(m, 0, sizeof *m);
    struct stat st;
    if (!path || stat(path, &st) != 0)
        return syn_seterr(err, errlen, SYN_EIO, "model: cannot open '%s': %s",
                          path ? path : "(null)", strerror(errno));
    int rc = S_ISDIR(st.st_mode) ? load_hf(path, mode, m, err, errlen)
                                 : load_gguf(path, mode, m, err, errlen);
    if (rc == 0 && syn_tokenizer_n_vocab(m->tok) > m->hp.n_vocab)
        rc = syn_seterr(err, errlen, SYN_EFORMAT,
                        "model: the tokenizer has %d tokens but the embedding only %d rows",
                        syn_tokenizer_n_vocab(m->tok), m->hp.n_vocab);
    if (rc) syn_model_release(m);
    return rc;
}

void syn_model_release(struct syn_model *m)
{
    if (m->layers) {
        for (int i = 0; i < m->hp.n_layer; i++) {
            free(m->layers[i].attn_norm);
            free(m->layers[i].ffn_norm);
            free(m->layers[i].bq);
            free(m->layers[i].bk);
            free(m->layers[i].bv);
        }
        free(m->layers);
    }
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->output_norm);
    free(m->rope_freq_factors);
    free(m->chat_template);
    syn_tokenizer_free(m->tok);
    syn_gguf_free(m->gguf);
    syn_hf_dir_free(m->hf);
    memset(m, 0, sizeof *m);
}
