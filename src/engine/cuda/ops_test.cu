/*
 * One kernel at a time, for the agreement tests (cuda.h): each entry point uploads its inputs,
 * runs the backend's own launcher or product exactly as backend.cu's forward pass does, and
 * copies the result back as f32. Allocation per call is fine here; these never run in a step.
 */
#include "kernels.cuh"

#include <stdlib.h>
#include <string.h>

extern "C" {
#include "synapse/tensor.h"
}

/* Device buffers of one call, freed together. */
#define MAX_BUFS 16
struct bufs {
    void *p[MAX_BUFS];
    int n;
};

static int balloc(struct bufs *b, void **out, size_t bytes)
{
    int rc = SYN_OK;
    *out = NULL;
    if (b->n == MAX_BUFS) return SYN_ENOMEM;
    CU_TRY(cudaMalloc(out, bytes ? bytes : 16));
    b->p[b->n++] = *out;
out:
    return rc;
}

static int bupload(struct bufs *b, void **out, const void *src, size_t bytes)
{
    int rc = balloc(b, out, bytes);
    if (rc) return rc;
    CU_TRY(cudaMemcpy(*out, src, bytes, cudaMemcpyHostToDevice));
out:
    return rc;
}

static void bfree(struct bufs *b)
{
    for (int i = 0; i < b->n; i++) cudaFree(b->p[i]);
    b->n = 0;
    cudaGetLastError();
}

/* n elements of host data in stype -> a new device buffer in dt, converted on the device as the
 * upload does. */
static int to_dt(struct bufs *b, void **out, const void *src, int stype, size_t n, int dt)
{
    const size_t bytes = n / (size_t)syn_dtype_block_elems(stype) * syn_dtype_block_bytes(stype);
    void *raw = NULL;
    int rc = bupload(b, &raw, src, bytes);
    if (rc) return rc;
    if (stype == dt) {
        *out = raw;
        return SYN_OK;
    }
    if ((rc = balloc(b, out, n * syn_cuda_dt_size(dt)))) return rc;
    syn_cuda_convert(raw, stype, *out, dt, n, 0);
    CU_LAUNCHED("convert");
out:
    return rc;
}

/* n elements of dt on the device -> f32 on the host. */
static int back_f32(struct bufs *b, float *dst, const void *src, int dt, size_t n)
{
    int rc = SYN_OK;
    const void *f = src;
    if (dt != SYN_DT_F32) {
        void *tmp = NULL;
        if ((rc = balloc(b, &tmp, n * sizeof(float)))) return rc;
        syn_cuda_convert(src, dt, tmp, SYN_DT_F32, n, 0);
        CU_LAUNCHED("convert");
        f = tmp;
    }
    CU_TRY(cudaMemcpy(dst, f, n * sizeof(float), cudaMemcpyDeviceToHost));
out:
    return rc;
}

static int ready(void)
{
    return syn_cuda_available(NULL, 0) ? SYN_OK : SYN_EUNSUPPORTED;
}

extern "C" int syn_cuda_test_matmul(int wtype, const void *w, int R, int K, const float *x, int T,
                                    int dt, float *y)
{
    struct bufs b = {};
    cublasHandle_t blas = NULL;
    void *dw, *dx, *dy;
    int rc = ready();
    if (rc) return rc;
    if ((rc = to_dt(&b, &dw, w, wtype, (size_t)R * K, dt)) ||
        (rc = to_dt(&b, &dx, x, SYN_DT_F32, (size_t)T * K, dt)) ||
        (rc = balloc(&b, &dy, (size_t)T * R * sizeof(float))))
        goto out;
    CUBLAS_TRY(cublasCreate(&blas));
    if ((rc = syn_cuda_gemm(blas, dt, dw, R, K, dx, T, (float *)dy, 0.0f))) goto out;
    CU_TRY(cudaMemcpy(y, dy, (size_t)T * R * sizeof(float), cudaMemcpyDeviceToHost));
out:
    if (blas) cublasDestroy(blas);
    bfree(&b);
    return rc;
}

extern "C" int syn_cuda_test_embed(int wtype, const void *table, int n_rows, int K,
                                   const int32_t *tokens, int T, int dt, float *out_h)
{
    struct bufs b = {};
    void *dtab, *dtok, *dx;
    int rc = ready();
    if (rc) return rc;
    if ((rc = to_dt(&b, &dtab, table, wtype, (size_t)n_rows * K, dt)) ||
        (rc = bupload(&b, &dtok, tokens, sizeof(int32_t) * (size_t)T)) ||
        (rc = balloc(&b, &dx, (size_t)T * K * sizeof(float))))
        goto out;
    syn_cuda_embed(dtab, dt, K, (const int32_t *)dtok, T, (float *)dx, 0);
    CU_LAUNCHED("embed");
    CU_TRY(cudaMemcpy(out_h, dx, (size_t)T * K * sizeof(float), cudaMemcpyDeviceToHost));
out:
    bfree(&b);
    return rc;
}

extern "C" int syn_cuda_test_rmsnorm(const float *x, const float *w, int T, int n, float eps,
                                     int dt, float *out_h)
{
    struct bufs b = {};
    void *dx, *dw, *dout;
    int rc = ready();
    if (rc) return rc;
    if ((rc = bupload(&b, &dx, x, sizeof(float) * (size_t)T * n)) ||
        (rc = bupload(&b, &dw, w, sizeof(float) * (size_t)n)) ||
        (rc = balloc(&b, &dout, syn_cuda_dt_size(dt) * (size_t)T * n)))
        goto out;
    syn_cuda_rmsnorm((const float *)dx, NULL, (const float *)dw, T, n, eps, dout, dt, 0);
    CU_LAUNCHED("rmsnorm");
    rc = back_f32(&b, out_h, dout, dt, (size_t)T * n);
out:
    bfree(&b);
    return rc;
}

extern "C" int syn_cuda_test_swiglu(const float *gu, int T, int f, int dt, float *out_h)
{
    struct bufs b = {};
    void *dgu, *dout;
    int rc = ready();
    if (rc) return rc;
    if ((rc = bupload(&b, &dgu, gu, sizeof(float) * (size_t)T * 2 * f)) ||
        (rc = balloc(&b, &dout, syn_cuda_dt_size(dt) * (size_t)T * f)))
        goto out;
    syn_cuda_swiglu((const float *)dgu, T, f, dout, dt, 0);
    CU_LAUNCHED("swiglu");
    rc = back_f32(&b, out_h, dout, dt, (size_t)T * f);
out:
    bfree(&b);
    return rc;
}

/* The single-layer kv description the op tests share. */
static void test_kv(struct syn_cuda_kv *kv, float *dkv, const struct syn_hparams *hp,
                    int block_tokens, int max_blocks, const void *dtables, const void *dpos,
                    const void *dseq)
{
    const size_t kvd = (size_t)hp->n_kv_head * hp->head_dim;
    kv->kv = dkv;
    kv->block_stride = 2 * (size_t)block_tokens * kvd;
    kv->layer_off = 0;
    kv->block_tokens = block_tokens;
    kv->max_blocks = max_blocks;
    kv->block_tables = (const int32_t *)dtables;
    kv->pos = (const int32_t *)dpos;
    kv->seq = (const int32_t *)dseq;
}

static size_t n_seqs_of(const int32_t *seq, int T)
{
    int mx = -1;
    for (int t = 0; t < T; t++)
        if (seq[t] > mx) mx = seq[t];
    return (size_t)(mx + 1);
}

extern "C" int syn_cuda_test_rope_store(const struct syn_hparams *hp, const float *freq_factors,
                                        int n_ctx, const float *qkv, const float *bias, int T,
                                        const int32_t *pos, const int32_t *seq,
                                        const int32_t *block_tables, int max_blocks,
                                        int block_tokens, int n_blocks, float *q_out, float *kv_h)
{
    struct bufs b = {};
    const int hd = hp->head_dim, qd = hp->n_head * hd, kvd = hp->n_kv_head * hd;
    const int qkv_w = qd + 2 * kvd;
    const size_t half = (size_t)hd / 2, kv_floats = (size_t)n_blocks * 2 * block_tokens * kvd;
    struct syn_model m;
    memset(&m, 0, sizeof m);
    m.hp = *hp;
    m.rope_freq_factors = (float *)freq_factors;
    float *cs = (float *)malloc(sizeof(float) * (size_t)n_ctx * half + 1);
    float *sn = (float *)malloc(sizeof(float) * (size_t)n_ctx * half + 1);
    void *dqkv, *dbias = NULL, *dcs, *dsn, *dpos, *dseq, *dtab, *dkv;
    struct syn_cuda_rope r;
    struct syn_cuda_kv kv;
    int rc = ready();
    if (rc) goto out;
    if (!cs || !sn) {
        rc = SYN_ENOMEM;
        goto out;
    }
    syn_rope_tables(&m, n_ctx, cs, sn);
    if ((rc = bupload(&b, &dqkv, qkv, sizeof(float) * (size_t)T * qkv_w)) ||
        (bias && (rc = bupload(&b, &dbias, bias, sizeof(float) * (size_t)qkv_w))) ||
        (rc = bupload(&b, &dcs, cs, sizeof(float) * (size_t)n_ctx * half)) ||
        (rc = bupload(&b, &dsn, sn, sizeof(float) * (size_t)n_ctx * half)) ||
        (rc = bupload(&b, &dpos, pos, sizeof(int32_t) * (size_t)T)) ||
        (rc = bupload(&b, &dseq, seq, sizeof(int32_t) * (size_t)T)) ||
        (rc = bupload(&b, &dtab, block_tables,
                      sizeof(int32_t) * n_seqs_of(seq, T) * (size_t)max_blocks)) ||
        (rc = balloc(&b, &dkv, sizeof(float) * kv_floats)))
        goto out;
    CU_TRY(cudaMemset(dkv, 0, sizeof(float) * kv_floats));
    r.qkv = (float *)dqkv;
    r.qkv_w = qkv_w;
    r.bias = (const float *)dbias;
    r.cos_t = (const float *)dcs;
    r.sin_t = (const float *)dsn;
    r.n_head = hp->n_head;
    r.n_kv_head = hp->n_kv_head;
    r.head_dim = hd;
    r.neox = hp->rope_neox;
    test_kv(&kv, (float *)dkv, hp, block_tokens, max_blocks, dtab, dpos, dseq);
    syn_cuda_rope_store(&r, &kv, T, 0);
    CU_LAUNCHED("rope_store");
    CU_TRY(cudaMemcpy2D(q_out, sizeof(float) * qd, dqkv, sizeof(float) * qkv_w, sizeof(float) * qd,
                        (size_t)T, cudaMemcpyDeviceToHost));
    CU_TRY(cudaMemcpy(kv_h, dkv, sizeof(float) * kv_floats, cudaMemcpyDeviceToHost));
out:
    free(cs);
    free(sn);
    bfree(&b);
    return rc;
}

extern "C" int syn_cuda_test_attention(const struct syn_hparams *hp, const float *q, int T,
                                       const int32_t *pos, const int32_t *seq, const float *kv_h,
                                       const int32_t *block_tables, int max_blocks,
                                       int block_tokens, int n_blocks, int n_split, int dt,
                                       float *out_h)
{
    struct bufs b = {};
    const int hd = hp->head_dim, qd = hp->n_head * hd, kvd = hp->n_kv_head * hd;
    const size_t kv_floats = (size_t)n_blocks * 2 * block_tokens * kvd;
    int32_t *tiles = (int32_t *)malloc(sizeof(int32_t) * 2 * (size_t)T + 8);
    void *dq, *dpos, *dseq, *dtab, *dkv, *dtiles, *dout, *dpart = NULL;
    int group = 0, tile_tokens = 0, n_tiles = 0, decode = 1, max_pos = 0, dev = 0, n_sm = 1;
    struct syn_cuda_kv kv;
    struct syn_cuda_attn a;
    int rc = ready();
    if (rc) goto out;
    if (!tiles) {
        rc = SYN_ENOMEM;
        goto out;
    }
    if ((rc = syn_cuda_attention_shape(hp, &group, &tile_tokens))) goto out;
    /* tiles as backend.cu's fill_inputs builds them */
    for (int t = 0; t < T; t++) {
        if (pos[t] > max_pos) max_pos = pos[t];
        if (n_tiles > 0 && seq[t] == seq[t - 1] && pos[t] == pos[t - 1] + 1 &&
            tiles[2 * (n_tiles - 1) + 1] < tile_tokens) {
            tiles[2 * (n_tiles - 1) + 1]++;
            decode = 0;
        } else {
            tiles[2 * n_tiles] = t;
            tiles[2 * n_tiles + 1] = 1;
            n_tiles++;
        }
    }
    CU_TRY(cudaGetDevice(&dev));
    CU_TRY(cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, dev));
    if (n_split <= 0) { /* the backend's rule (choose_split) */
        const int blocks = n_tiles * hp->n_kv_head;
        n_split = blocks >= n_sm ? 1 : (2 * n_sm + blocks - 1) / blocks;
        if (n_split > (max_pos + ATT_CHUNK) / ATT_CHUNK)
            n_split = (max_pos + ATT_CHUNK) / ATT_CHUNK;
    }
    if (n_split > ATT_MAX_SPLIT) n_split = ATT_MAX_SPLIT;
    if (n_split < 1) n_split = 1;
    if ((rc = bupload(&b, &dq, q, sizeof(float) * (size_t)T * qd)) ||
        (rc = bupload(&b, &dpos, pos, sizeof(int32_t) * (size_t)T)) ||
        (rc = bupload(&b, &dseq, seq, sizeof(int32_t) * (size_t)T)) ||
        (rc = bupload(&b, &dtab, block_tables,
                      sizeof(int32_t) * n_seqs_of(seq, T) * (size_t)max_blocks)) ||
        (rc = bupload(&b, &dkv, kv_h, sizeof(float) * kv_floats)) ||
        (rc = bupload(&b, &dtiles, tiles, sizeof(int32_t) * 2 * (size_t)n_tiles)) ||
        (rc = balloc(&b, &dout, syn_cuda_dt_size(dt) * (size_t)T * qd)) ||
        (n_split > 1 &&
         (rc = balloc(&b, &dpart,
                      sizeof(float) * (size_t)T * hp->n_head * n_split * (size_t)(hd + 2)))))
        goto out;
    test_kv(&kv, (float *)dkv, hp, block_tokens, max_blocks, dtab, dpos, dseq);
    a.q = (const float *)dq;
    a.q_stride = qd;
    a.tiles = (const int2 *)dtiles;
    a.n_tiles = n_tiles;
    a.max_rows = decode ? group : group * tile_tokens;
    a.n_head = hp->n_head;
    a.n_kv_head = hp->n_kv_head;
    a.head_dim = hd;
    a.scale = 1.0f / sqrtf((float)hd);
    a.out = dout;
    a.dt = dt;
    a.n_split = n_split;
    a.part = (float *)dpart;
    a.T = T;
    syn_cuda_attention(&a, &kv, 0);
    CU_LAUNCHED("attention");
    rc = back_f32(&b, out_h, dout, dt, (size_t)T * qd);
out:
    free(tiles);
    bfree(&b);
    return rc;
}

extern "C" int syn_cuda_test_sample(const float *logits, int rows, int n_vocab,
                                    const struct syn_sample_spec *specs, int32_t *out_h)
{
    struct bufs b = {};
    void *dl, *ds, *dw, *dout;
    int rc = ready();
    if (rc) return rc;
    if ((rc = bupload(&b, &dl, logits, sizeof(float) * (size_t)rows * n_vocab)) ||
        (rc = bupload(&b, &ds, specs, sizeof *specs * (size_t)rows)) ||
        (rc = balloc(&b, &dw, sizeof(float) * (size_t)rows * n_vocab)) ||
        (rc = balloc(&b, &dout, sizeof(int32_t) * (size_t)rows)))
        goto out;
    syn_cuda_sample((const float *)dl, rows, n_vocab, (const struct syn_sample_spec *)ds,
                    (float *)dw, (int32_t *)dout, 0);
    CU_LAUNCHED("sample");
    CU_TRY(cudaMemcpy(out_h, dout, sizeof(int32_t) * (size_t)rows, cudaMemcpyDeviceToHost));
out:
    bfree(&b);
    return rc;
}
