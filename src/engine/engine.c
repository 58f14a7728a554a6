/*
 * The engine's public face (include/synapse/engine.h): load, sequences, the paged KV cache's
 * bookkeeping, and step planning. The pool is a set of fixed-size blocks; each sequence has a
 * block table mapping its positions to blocks, so sequences of any length share one buffer
 * without fragmentation, and a finished sequence's blocks are reused at once.
 *
 * What the backend computes is in src/engine/cpu/ (and later cuda/); this file never touches
 * activations.
 */
#include "engine_impl.h"

#include "synapse/log.h"
#include "synapse/tokenizer.h"
#ifdef SYN_HAVE_CUDA
#include "cuda/cuda.h"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct syn_engine_params syn_engine_default_params(void)
{
    /* the environment picks the backend for processes whose CLI has no flag for it (workers) */
    const char *backend = getenv("SYNAPSE_BACKEND"), *weights = getenv("SYNAPSE_WEIGHTS");
    struct syn_engine_params p = {
        .model_path = NULL,
        .backend = backend && *backend ? backend : "cpu",
        .n_threads = 0,
        .max_seqs = 64,
        .max_batch_tokens = 512,
        .max_logit_rows = 0,
        .n_ctx = 0,
        .kv_cache_bytes = 0,
        .kv_block_tokens = 16,
        .chat_template = NULL,
        .weights = weights && *weights ? weights : NULL,
    };
    return p;
}

/* Bytes of K and V one token takes in every layer (the CPU backend stores f32). */
static size_t kv_bytes_per_token(const struct syn_hparams *hp)
{
    return (size_t)2 * (size_t)hp->n_layer * (size_t)hp->n_kv_head * (size_t)hp->head_dim *
           sizeof(float);
}

int syn_engine_load(const struct syn_engine_params *p, struct syn_engine **out, char *err,
                    size_t errlen)
{
    *out = NULL;
    if (!p || !p->model_path)
        return syn_seterr(err, errlen, SYN_EINVAL, "engine: no model path given");
    if (p->max_seqs < 1 || p->max_seqs > 4096 || p->max_batch_tokens < 1 ||
        p->max_batch_tokens > 65536 || p->kv_block_tokens < 1 || p->kv_block_tokens > 1024 ||
        p->n_ctx < 0 || p->max_logit_rows < 0 || p->n_threads < 0)
        return syn_seterr(err, errlen, SYN_EINVAL,
                          "engine: parameters out of range (max_seqs 1..4096, max_batch_tokens "
                          "1..65536, kv_block_tokens 1..1024)");
    const struct syn_backend *be = &syn_backend_cpu;
#ifdef SYN_HAVE_CUDA
    if (p->backend && !strcmp(p->backend, "cuda")) {
        char why[256];
        if (syn_cuda_available(why, sizeof why))
            be = &syn_backend_cuda;
        else
            syn_warn("engine", "%s; using the CPU backend", why);
    } else if (p->backend && strcmp(p->backend, "cpu") != 0)
        return syn_seterr(err, errlen, SYN_EUNSUPPORTED,
                          "engine: unknown backend '%s' (have: cpu, cuda)", p->backend);
#else
    if (p->backend && strcmp(p->backend, "cpu") != 0)
        return syn_seterr(err, errlen, SYN_EUNSUPPORTED,
                          "engine: backend '%s' is not built into this binary (have: cpu)",
                          p->backend);
#endif

    enum syn_filemap_mode mode = be == &syn_backend_cpu ? SYN_FILEMAP_RESIDENT : SYN_FILEMAP_MAPPED;
    if (p->weights && !strcmp(p->weights, "mapped"))
        mode = SYN_FILEMAP_MAPPED;
    else if (p->weights && !strcmp(p->weights, "resident"))
        mode = SYN_FILEMAP_RESIDENT;
    else if (p->weights)
        return syn_seterr(err, errlen, SYN_EINVAL,
                          "engine: weights '%.40s' unknown (have: resident, mapped)", p->weights);

    int rc;
    struct syn_engine *e = calloc(1, sizeof *e);
    if (!e) return syn_seterr(err, errlen, SYN_ENOMEM, "engine: out of memory");
    if ((rc = syn_model_load(p->model_path, mode, &e->model, err, errlen))) {
        free(e);
        return rc;
    }
    const struct syn_hparams *hp = &e->model.hp;
    e->n_threads = p->n_threads;
    e->n_ctx = p->n_ctx ? p->n_ctx : (hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096);
    e->max_seqs = p->max_seqs;
    e->max_batch_tokens = p->max_batch_tokens;
    e->max_logit_rows = p->max_logit_rows ? p->max_logit_rows : p->max_seqs;
    e->block_tokens = p->kv_block_tokens;
    e->max_blocks_per_seq = (e->n_ctx + e->block_tokens - 1) / e->block_tokens;
    size_t per_block = kv_bytes_per_token(hp) * (size_t)e->block_tokens;
    size_t want = p->kv_cache_bytes;
    if (!want) {
        /* every sequence at full length, but at most 1 GiB unless one sequence needs more */
        want = (size_t)e->max_seqs * (size_t)e->max_blocks_per_seq * per_block;
        size_t one = (size_t)e->max_blocks_per_seq * per_block;
        size_t cap_bytes = (size_t)1 << 30;
        if (want > cap_bytes) want = one > cap_bytes ? one : cap_bytes;
    }
    size_t nb = want / per_block;
    size_t cap = (size_t)e->max_seqs * (size_t)e->max_blocks_per_seq;
    if (nb > cap) nb = cap;
    if (nb < 1 || nb > (1u << 30)) {
        rc = syn_seterr(err, errlen, SYN_EINVAL,
                        "engine: a KV cache of %zu bytes holds no block of %zu bytes", want,
                        per_block);
        goto fail;
    }
    e->n_blocks = (int)nb;

    e->seqs = calloc((size_t)e->max_seqs, sizeof *e->seqs);
    e->block_tables = calloc(cap, sizeof *e->block_tables);
    e->free_blocks = malloc(sizeof *e->free_blocks * (size_t)e->n_blocks);
    e->plan_tokens = malloc(sizeof(int32_t) * (size_t)e->max_batch_tokens);
    e->plan_pos = malloc(sizeof(int32_t) * (size_t)e->max_batch_tokens);
    e->plan_seq = malloc(sizeof(int32_t) * (size_t)e->max_batch_tokens);
    e->plan_out = malloc(sizeof(int32_t) * (size_t)e->max_logit_rows);
    e->seen = calloc((size_t)e->max_seqs, 1);
    e->logits = malloc(sizeof(float) * (size_t)e->max_logit_rows * (size_t)hp->n_vocab);
    e->sample_specs = malloc(sizeof *e->sample_specs * (size_t)e->max_logit_rows);
    if (!e->seqs || !e->block_tables || !e->free_blocks || !e->plan_tokens || !e->plan_pos ||
        !e->plan_seq || !e->plan_out || !e->seen || !e->logits || !e->sample_specs) {
        rc = syn_seterr(err, errlen, SYN_ENOMEM, "engine: out of memory for step buffers");
        goto fail;
    }
    for (int i = 0; i < e->max_seqs; i++)
        e->seqs[i].blocks = e->block_tables + (size_t)i * (size_t)e->max_blocks_per_seq;
    /* stack with block 0 on top, so a fresh engine hands out blocks in order */
    for (int i = 0; i < e->n_blocks; i++) e->free_blocks[i] = e->n_blocks - 1 - i;
    e->n_free = e->n_blocks;

    e->backend = be;
    if ((rc = be->init(e, err, errlen))) {
        e->backend = NULL;
        goto fail;
    }
    syn_info("engine",
             "loaded %s: %s, dim %d, %d layers, %d/%d heads, vocab %d; n_ctx %d, %d KV blocks "
             "of %d tokens (%.1f MiB), backend %s",
             p->model_path, hp->arch, hp->dim, hp->n_layer, hp->n_head, hp->n_kv_head, hp->n_vocab,
             e->n_ctx, e->n_blocks, e->block_tokens, (double)nb * (double)per_block / 1048576.0,
             be->name);
    *out = e;
    return SYN_OK;
fail:
    syn_engine_free(e);
    return rc;
}

void syn_engine_free(struct syn_engine *e)
{
    if (!e) return;
    if (e->backend) e->backend->release(e);
    syn_model_release(&e->model);
    free(e->seqs);
    free(e->block_tables);
    free(e->free_blocks);
    free(e->plan_tokens);
    free(e->plan_pos);
    free(e->plan_seq);
    free(e->plan_out);
    free(e->seen);
    free(e->logits);
    free(e->sample_specs);
    free(e);
}

const struct syn_hparams *syn_engine_hparams(const struct syn_engine *e)
{
    return &e->model.hp;
}

const struct syn_tokenizer *syn_engine_tokenizer(const struct syn_engine *e)
{
    return e->model.tok;
}

const char *syn_engine_chat_template(const struct syn_engine *e)
{
    return e->model.chat_template;
}

const char *syn_engine_backend_name(const struct syn_engine *e)
{
    return e->backend->name;
}

int syn_engine_n_ctx(const struct syn_engine *e)
{
    return e->n_ctx;
}

int syn_engine_max_seqs(const struct syn_engine *e)
{
    return e->max_seqs;
}

int syn_engine_max_batch_tokens(const struct syn_engine *e)
{
    return e->max_batch_tokens;
}

int syn_engine_max_logit_rows(const struct syn_engine *e)
{
    return e->max_logit_rows;
}

uint64_t syn_engine_weight_bytes(const struct syn_engine *e)
{
    return e->model.weight_bytes;
}

/* ---- sequences and blocks ---- */

int syn_engine_seq_new(struct syn_engine *e)
{
    for (int i = 0; i < e->max_seqs; i++)
        if (!e->seqs[i].alive) {
            e->seqs[i].alive = 1;
            e->seqs[i].len = 0;
            e->seqs[i].n_blocks = 0;
            return i;
        }
    return SYN_ENOSPC;
}

static struct syn_seq *get_seq(const struct syn_engine *e, int seq)
{
    if (seq < 0 || seq >= e->max_seqs || !e->seqs[seq].alive) return NULL;
    return &e->seqs[seq];
}

int syn_engine_seq_truncate(struct syn_engine *e, int seq, int len)
{
    struct syn_seq *s = get_seq(e, seq);
    if (!s || len < 0) return SYN_EINVAL;
    if (len >= s->len) return SYN_OK;
    int keep = (len + e->block_tokens - 1) / e->block_tokens;
    while (s->n_blocks > keep) e->free_blocks[e->n_free++] = s->blocks[--s->n_blocks];
    s->len = len;
    return SYN_OK;
}

void syn_engine_seq_free(struct syn_engine *e, int seq)
{
    struct syn_seq *s = get_seq(e, seq);
    if (!s) return;
    syn_engine_seq_truncate(e, seq, 0);
    s->alive = 0;
}

int syn_engine_seq_len(const struct syn_engine *e, int seq)
{
    const struct syn_seq *s = get_seq(e, seq);
    return s ? s->len : SYN_EINVAL;
}

int syn_engine_kv_blocks_total(const struct syn_engine *e)
{
    return e->n_blocks;
}

int syn_engine_kv_blocks_free(const struct syn_engine *e)
{
    return e->n_free;
}

int syn_engine_kv_block_tokens(const struct syn_engine *e)
{
    return e->block_tokens;
}

int syn_engine_kv_blocks_needed(const struct syn_engine *e, int seq, int n_tokens)
{
    const struct syn_seq *s = get_seq(e, seq);
    if (!s || n_tokens < 0) return SYN_EINVAL;
    int need = (s->len + n_tokens + e->block_tokens - 1) / e->block_tokens;
    return need > s->n_blocks ? need - s->n_blocks : 0;
}

/* ---- steps ---- */

int syn_engine_step(struct syn_engine *e, const struct syn_step_item *items, int n_items)
{
    const int n_vocab = e->model.hp.n_vocab;
    int total = 0, rows = 0, blocks = 0, rc = SYN_OK;
    e->n_logits = 0;
    e->logits_on_device = 0;
    if (n_items < 1 || !items) return SYN_EINVAL;

    /* validate everything before touching any state */
    memset(e->seen, 0, (size_t)e->max_seqs);
    for (int i = 0; i < n_items; i++) {
        const struct syn_step_item *it = &items[i];
        const struct syn_seq *s = get_seq(e, it->seq);
        if (!s || e->seen[it->seq] || it->n_tokens < 1 || !it->tokens ||
            it->logits < SYN_LOGITS_NONE || it->logits > SYN_LOGITS_ALL) {
            rc = SYN_EINVAL;
            goto out;
        }
        e->seen[it->seq] = 1;
        if (it->n_tokens > e->max_batch_tokens - total) {
            rc = SYN_EINVAL;
            goto out;
        }
        total += it->n_tokens;
        rows += it->logits == SYN_LOGITS_ALL ? it->n_tokens : it->logits == SYN_LOGITS_LAST;
        if (rows > e->max_logit_rows) {
            rc = SYN_EINVAL;
            goto out;
        }
        if (s->len + it->n_tokens > e->n_ctx) {
            rc = SYN_ERANGE;
            goto out;
        }
        for (int k = 0; k < it->n_tokens; k++)
            if (it->tokens[k] < 0 || it->tokens[k] >= n_vocab) {
                rc = SYN_ERANGE;
                goto out;
            }
        blocks += syn_engine_kv_blocks_needed(e, it->seq, it->n_tokens);
    }
    if (blocks > e->n_free) {
        rc = SYN_ENOSPC;
        goto out;
    }

    /* reserve blocks and flatten the plan */
    int t = 0, r = 0;
    for (int i = 0; i < n_items; i++) {
        const struct syn_step_item *it = &items[i];
        struct syn_seq *s = &e->seqs[it->seq];
        int need = (s->len + it->n_tokens + e->block_tokens - 1) / e->block_tokens;
        while (s->n_blocks < need) s->blocks[s->n_blocks++] = e->free_blocks[--e->n_free];
        for (int k = 0; k < it->n_tokens; k++, t++) {
            e->plan_tokens[t] = it->tokens[k];
            e->plan_pos[t] = s->len + k;
            e->plan_seq[t] = it->seq;
            if (it->logits == SYN_LOGITS_ALL ||
                (it->logits == SYN_LOGITS_LAST && k == it->n_tokens - 1))
                e->plan_out[r++] = t;
        }
    }
    struct syn_step_plan plan = {
        .n_tokens = total,
        .tokens = e->plan_tokens,
        .pos = e->plan_pos,
        .seq = e->plan_seq,
        .n_out = rows,
        .out_idx = e->plan_out,
        .logits = e->logits,
    };
    rc = e->backend->forward(e, &plan);
    if (rc == SYN_OK) {
        for (int i = 0; i < n_items; i++) e->seqs[items[i].seq].len += items[i].n_tokens;
        e->n_logits = rows;
        e->logits_on_device = rows > 0 && e->backend->fetch_logits != NULL;
    } else {
        /* give back blocks reserved for positions that were never filled */
        for (int i = 0; i < n_items; i++) {
            struct syn_seq *s = &e->seqs[items[i].seq];
            int keep = (s->len + e->block_tokens - 1) / e->block_tokens;
            while (s->n_blocks > keep) e->free_blocks[e->n_free++] = s->blocks[--s->n_blocks];
        }
    }
out:
    return rc;
}

const float *syn_engine_logits(const struct syn_engine *e, int r)
{
    if (r < 0 || r >= e->n_logits) return NULL;
    if (e->logits_on_device) {
        /* A cache fill, not a change the caller can see: every engine is made non-const by
         * syn_engine_load, so writing through it is defined. */
        struct syn_engine *me = (struct syn_engine *)e;
        if (me->backend->fetch_logits(me) < 0) return NULL;
        me->logits_on_device = 0;
    }
    return e->logits + (size_t)r * (size_t)e->model.hp.n_vocab;
}

int syn_engine_n_logits(const struct syn_engine *e)
{
    return e->n_logits;
}

int syn_engine_sample(struct syn_engine *e, struct syn_sampler *const *samplers, int n,
                      int32_t *out)
{
    if (n < 0 || n > e->n_logits || (n > 0 && (!samplers || !out))) return SYN_EINVAL;
    /* decide first: a spec consumes its sampler's random draw */
    int device = n > 0 && e->backend->sample && e->logits_on_device;
    for (int r = 0; r < n && device; r++)
        if (!syn_sampler_device_ok(samplers[r])) device = 0;
    if (device) {
        for (int r = 0; r < n; r++) syn_sampler_device_spec(samplers[r], &e->sample_specs[r]);
        return e->backend->sample(e, e->sample_specs, n, out);
    }
    for (int r = 0; r < n; r++) {
        const float *lg = syn_engine_logits(e, r);
        if (!lg) return SYN_EIO;
        out[r] = syn_sampler_sample(samplers[r], lg, NULL, NULL, 0);
    }
    return SYN_OK;
}
