/*
 * The CUDA backend (engine_impl.h's interface): the Llama forward pass of one planned step on one
 * GPU, with cuBLAS matrix products on tensor cores and our own kernels (kernels.cu) for the rest.
 * It is the CPU backend's forward pass (src/engine/cpu/forward.c) step for step, and is tested
 * against it op by op and end to end (tests/unit/test_cuda.c).
 *
 * Weights: uploaded once at init from the mapped file through two pinned staging buffers, on two
 * streams, so that reading the file (page cache or disk) overlaps the PCIe copies. Every matrix
 * of a model is kept in one device type dt: f32 when all of the file's matrices are f32, bf16
 * when they are bf16 (or f32), f16 otherwise; Q8_0 and Q4_0 are dequantised to f16 on the device
 * as they arrive. SYNAPSE_CUDA_DTYPE=f32|f16|bf16 overrides the choice. q, k, v are stored as one
 * (q_dim + 2 kv_dim, dim) matrix and gate, up as one (2 ffn_dim, dim), so a layer is four
 * products. Norm weights and biases stay f32.
 *
 * A step: the plan's arrays and the block tables go over in one copy; then embedding, and per
 * layer RMSNorm -> QKV product -> RoPE + KV write -> attention -> output product added into the
 * residual (cuBLAS beta = 1) -> RMSNorm -> gate/up product -> SwiGLU -> down product added into
 * the residual; the final norm and the output product run for the plan's out_idx rows only. The
 * logits stay on the device until the engine asks for them (fetch_logits) or samples there.
 *
 * Pure decode steps (one token per sequence, every token wanting logits) replay a CUDA graph per
 * batch-size bucket (1, 2, 4, ... 256), padded: padding tokens have seq -1 and are skipped by the
 * KV write and attention. A bucket runs eagerly the first time it is used, is captured the second
 * time, and replayed from then on; SYNAPSE_CUDA_GRAPHS=0 turns graphs off.
 *
 * Not batch invariant bit for bit, unlike the CPU backend: cuBLAS may pick a different kernel
 * (and reduction order) for a different number of rows. Every buffer is allocated at init; a step
 * allocates nothing (a graph's first capture builds it once per bucket).
 */
#include "kernels.cuh"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

extern "C" {
#include "synapse/tensor.h"
}

#define STAGE_BYTES   ((size_t)64 << 20) /* each of the two pinned upload buffers */
#define BLAS_WS_BYTES ((size_t)32 << 20) /* cuBLAS workspace, so capture never allocates */
#define N_BUCKETS     9                  /* decode graphs for batches 1, 2, 4, ... 256 */
#define SPLIT_TOKENS  512                /* attention partials: tokens x splits at most */

/* ---- errors ---- */

int syn_cuda_fail(cudaError_t e, const char *what, const char *file, int line)
{
    syn_error("cuda", "%s failed: %s (%s:%d)", what, cudaGetErrorString(e), file, line);
    cudaGetLastError(); /* clear a non-sticky error so that the next call starts clean */
    return e == cudaErrorMemoryAllocation ? SYN_ENOMEM : SYN_EIO;
}

int syn_cublas_fail(cublasStatus_t s, const char *what, const char *file, int line)
{
    syn_error("cuda", "%s failed: %s (%s:%d)", what, cublasGetStatusString(s), file, line);
    return s == CUBLAS_STATUS_ALLOC_FAILED ? SYN_ENOMEM : SYN_EIO;
}

/* ---- the device probe ---- */

static int g_probed, g_ok;
static char g_why[256], g_name[256];

extern "C" int syn_cuda_available(char *why, size_t whylen)
{
    if (!g_probed) {
        g_probed = 1;
        int n = 0;
        cudaError_t e = cudaGetDeviceCount(&n);
        struct cudaDeviceProp prop;
        if (e != cudaSuccess) {
            snprintf(g_why, sizeof g_why, "cuda: no usable GPU (cudaGetDeviceCount: %s)",
                     cudaGetErrorString(e));
        } else if (n < 1) {
            snprintf(g_why, sizeof g_why, "cuda: no usable GPU (no CUDA device found)");
        } else if ((e = cudaGetDeviceProperties(&prop, 0)) != cudaSuccess) {
            snprintf(g_why, sizeof g_why, "cuda: no usable GPU (cudaGetDeviceProperties: %s)",
                     cudaGetErrorString(e));
        } else if (prop.major < 8) {
            snprintf(g_why, sizeof g_why,
                     "cuda: no usable GPU (%.100s has compute capability %d.%d; bf16 tensor "
                     "cores need 8.0)",
                     prop.name, prop.major, prop.minor);
        } else if ((e = cudaFree(0)) != cudaSuccess) { /* makes the context */
            snprintf(g_why, sizeof g_why, "cuda: no usable GPU (creating a context: %s)",
                     cudaGetErrorString(e));
        } else {
            g_ok = 1;
            snprintf(g_name, sizeof g_name, "%s", prop.name);
        }
        cudaGetLastError();
    }
    if (!g_ok && why && whylen) snprintf(why, whylen, "%s", g_why);
    return g_ok;
}

extern "C" const char *syn_cuda_device_name(void)
{
    return g_ok ? g_name : "";
}

/* ---- state ---- */

struct cuda_layer {
    void *wqkv;       /* (q_dim + 2 kv_dim, dim) in dt: wq rows, then wk, then wv */
    void *wo;         /* (dim, q_dim) */
    void *wgu;        /* (2 ffn_dim, dim): w_gate rows, then w_up */
    void *wdown;      /* (dim, ffn_dim) */
    float *attn_norm; /* (dim) */
    float *ffn_norm;  /* (dim) */
    float *bqkv;      /* (q_dim + 2 kv_dim) biases, or NULL */
};

/* The step's inputs, one block of int32 in pinned host memory and its device copy. */
struct step_inputs {
    size_t tokens, pos, seq, out, tiles, tables; /* offsets in int32 words */
    size_t words;                                /* the whole block */
};

struct cuda_state {
    int dt;              /* enum syn_dtype of matrices and matrix inputs: F32, F16, BF16 */
    int n_sm;            /* streaming multiprocessors */
    cudaStream_t stream; /* every step's work */
    cublasHandle_t blas;
    void *blas_ws;              /* (BLAS_WS_BYTES) */
    struct cuda_layer *layers;  /* (n_layer), host array of device pointers */
    void *tok_embd;             /* (n_vocab, dim) in dt */
    void *output;               /* (n_vocab, dim) in dt; == tok_embd when tied */
    float *output_norm;         /* (dim) */
    float *rope_cos, *rope_sin; /* (n_ctx, head_dim/2) */
    float *kv;                  /* (n_blocks, n_layer, 2, block_tokens, kv_dim) */
    int T_cap, R_cap;           /* tokens and logits rows the buffers hold (>= the engine's) */
    float *x;                   /* (T_cap, dim) residual stream */
    void *a;                    /* (T_cap, max(dim, q_dim)) in dt: normed input, attention output */
    float *qkv;                 /* (T_cap, q_dim + 2 kv_dim) */
    float *gu;                  /* (T_cap, 2 ffn_dim) */
    void *h;                    /* (T_cap, ffn_dim) in dt: SwiGLU output */
    void *xo;                   /* (R_cap, dim) in dt: final-normed rows that want logits */
    float *logits;              /* (R_cap, n_vocab) */
    float *part;                /* (SPLIT_TOKENS * n_head * (head_dim + 2)) attention partials */
    struct step_inputs in;      /* offsets into in_host / in_dev */
    int32_t *in_host;           /* pinned */
    int32_t *in_dev;
    struct syn_sample_spec *spec_host, *spec_dev; /* (R_cap) pinned / device */
    int32_t *ids_host, *ids_dev;                  /* (R_cap) pinned / device */
    float *sample_work;                           /* (R_cap, n_vocab) */
    int tile_tokens;                              /* query tokens per prefill attention tile */
    int group;                                    /* query heads per kv head */
    int use_graphs;
    cudaGraphExec_t graphs[N_BUCKETS]; /* decode graph per bucket, or NULL */
    int graph_warm[N_BUCKETS];         /* the bucket ran once eagerly: capture it next time */
    int graph_failed[N_BUCKETS];       /* capture failed once: that bucket runs eagerly */
    int logits_registered;             /* e->logits is page-locked (cudaHostRegister) */
};

static struct cuda_state *state(const struct syn_engine *e)
{
    return (struct cuda_state *)e->backend_state;
}

static cudaDataType_t blas_type(int dt)
{
    return dt == SYN_DT_F32 ? CUDA_R_32F : dt == SYN_DT_F16 ? CUDA_R_16F : CUDA_R_16BF;
}

/* Y (T, R) f32 = X (T, K) . W (R, K)^T + beta Y, all row-major. cuBLAS is column-major: row-major
 * W is a column-major (K, R) matrix, so Y^T (R, T) = op_T(W) (R, K) . X^T (K, T), with leading
 * dimensions K, K and R. f32 inputs run in plain f32 (CUBLAS_COMPUTE_32F never uses TF32);
 * bf16/f16 inputs run on tensor cores with f32 accumulation. */
int syn_cuda_gemm(cublasHandle_t blas, int dt, const void *W, int R, int K, const void *X, int T,
                  float *Y, float beta)
{
    int rc = SYN_OK;
    const float alpha = 1.0f;
    const cudaDataType_t t = blas_type(dt);
    CUBLAS_TRY(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, R, T, K, &alpha, W, t, K, X, t, K,
                            &beta, Y, CUDA_R_32F, R, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
out:
    return rc;
}

static int gemm(struct cuda_state *s, const void *W, int R, int K, const void *X, int T, float *Y,
                float beta)
{
    return syn_cuda_gemm(s->blas, s->dt, W, R, K, X, T, Y, beta);
}

/* ---- upload ---- */

struct uploader {
    void *pinned[2]; /* (STAGE_BYTES) host staging */
    void *raw[2];    /* (STAGE_BYTES) device staging for tensors that need converting */
    cudaStream_t st[2];
    cudaEvent_t done[2]; /* the slot's last copy (and conversion) finished */
    int slot;
    double bytes; /* read from the file so far */
};

static int uploader_init(struct uploader *u)
{
    int rc = SYN_OK;
    memset(u, 0, sizeof *u);
    for (int i = 0; i < 2; i++) {
        CU_TRY(cudaHostAlloc(&u->pinned[i], STAGE_BYTES, cudaHostAllocDefault));
        CU_TRY(cudaMalloc(&u->raw[i], STAGE_BYTES));
        CU_TRY(cudaStreamCreateWithFlags(&u->st[i], cudaStreamNonBlocking));
        CU_TRY(cudaEventCreateWithFlags(&u->done[i], cudaEventDisableTiming));
    }
out:
    return rc;
}

static int uploader_finish(struct uploader *u)
{
    int rc = SYN_OK;
    for (int i = 0; i < 2; i++)
        if (u->st[i]) CU_TRY(cudaStreamSynchronize(u->st[i]));
out:
    return rc;
}

static void uploader_release(struct uploader *u)
{
    for (int i = 0; i < 2; i++) {
        if (u->st[i]) cudaStreamSynchronize(u->st[i]);
        if (u->done[i]) cudaEventDestroy(u->done[i]);
        if (u->st[i]) cudaStreamDestroy(u->st[i]);
        cudaFreeHost(u->pinned[i]);
        cudaFree(u->raw[i]);
    }
    cudaGetLastError();
    memset(u, 0, sizeof *u);
}

/* n elements of stype at src (host, mapped) -> dst (device) in dt. Chunks alternate between the
 * two slots: while one slot's copy (and conversion) runs on its stream, the CPU fills the other. */
static int upload(struct uploader *u, const void *src, int stype, size_t n, void *dst, int dt)
{
    int rc = SYN_OK;
    const size_t be = (size_t)syn_dtype_block_elems(stype),
                 bb = (size_t)syn_dtype_block_bytes(stype);
    const size_t total = n / be * bb, chunk = STAGE_BYTES / bb * bb;
    const int direct = stype == dt;
    for (size_t off = 0; off < total; off += chunk) {
        const size_t len = total - off < chunk ? total - off : chunk;
        const int k = u->slot;
        u->slot ^= 1;
        CU_TRY(cudaEventSynchronize(u->done[k]));
        memcpy(u->pinned[k], (const uint8_t *)src + off, len);
        if (direct) {
            CU_TRY(cudaMemcpyAsync((uint8_t *)dst + off, u->pinned[k], len, cudaMemcpyHostToDevice,
                                   u->st[k]));
        } else {
            CU_TRY(cudaMemcpyAsync(u->raw[k], u->pinned[k], len, cudaMemcpyHostToDevice, u->st[k]));
            syn_cuda_convert(u->raw[k], stype,
                             (uint8_t *)dst + off / bb * be * syn_cuda_dt_size(dt), dt,
                             len / bb * be, u->st[k]);
            CU_LAUNCHED("convert");
        }
        CU_TRY(cudaEventRecord(u->done[k], u->st[k]));
        u->bytes += (double)len;
    }
out:
    return rc;
}

/* A weight matrix into rows [row0, row0 + w->rows) of a device matrix of width w->cols. */
static int upload_weight(struct uploader *u, const struct syn_weight *w, void *dst, size_t row0,
                         int dt)
{
    uint8_t *d = (uint8_t *)dst + row0 * (size_t)w->cols * syn_cuda_dt_size(dt);
    return upload(u, w->data, w->type, (size_t)w->rows * (size_t)w->cols, d, dt);
}

static int dev_alloc(void **p, size_t bytes)
{
    int rc = SYN_OK;
    CU_TRY(cudaMalloc(p, bytes ? bytes : 256));
out:
    return rc;
}

static int upload_f32(float **dst, const float *src, size_t n)
{
    int rc = dev_alloc((void **)dst, n * sizeof(float));
    if (rc) return rc;
    CU_TRY(cudaMemcpy(*dst, src, n * sizeof(float), cudaMemcpyHostToDevice));
out:
    return rc;
}

/* ---- init ---- */

/* The matrices' device type (see the file comment). */
static int pick_dt(const struct syn_model *m)
{
    const char *env = getenv("SYNAPSE_CUDA_DTYPE");
    if (env && *env) {
        int t = syn_dtype_parse(env);
        if (t == SYN_DT_F32 || t == SYN_DT_F16 || t == SYN_DT_BF16) return t;
        syn_warn("cuda", "SYNAPSE_CUDA_DTYPE=%s is not f32, f16 or bf16; ignored", env);
    }
    int all_f32 = 1, any_bf16 = 0, other = 0;
    for (int l = 0; l <= m->hp.n_layer; l++) {
        const struct syn_weight *ws[7];
        int n = 0;
        if (l == m->hp.n_layer) {
            ws[n++] = &m->tok_embd;
            ws[n++] = &m->output;
        } else {
            const struct syn_layer *L = &m->layers[l];
            const struct syn_weight *lw[] = {&L->wq,     &L->wk,   &L->wv,    &L->wo,
                                             &L->w_gate, &L->w_up, &L->w_down};
            for (int i = 0; i < 7; i++) ws[n++] = lw[i];
        }
        for (int i = 0; i < n; i++) {
            if (ws[i]->type != SYN_DT_F32) all_f32 = 0;
            if (ws[i]->type == SYN_DT_BF16)
                any_bf16 = 1;
            else if (ws[i]->type != SYN_DT_F32)
                other = 1;
        }
    }
    return all_f32 ? SYN_DT_F32 : any_bf16 && !other ? SYN_DT_BF16 : SYN_DT_F16;
}

/* Tables for a model's head shape on the device (shared with the op tests). */
static int rope_upload(const struct syn_model *m, int n_ctx, float **cs_dev, float **sn_dev)
{
    const size_t n = (size_t)n_ctx * (size_t)(m->hp.head_dim / 2);
    float *cs = (float *)malloc(n * sizeof(float) + 1),
          *sn = (float *)malloc(n * sizeof(float) + 1);
    int rc = SYN_ENOMEM;
    if (!cs || !sn) goto done;
    syn_rope_tables(m, n_ctx, cs, sn);
    if ((rc = upload_f32(cs_dev, cs, n))) goto done;
    rc = upload_f32(sn_dev, sn, n);
done:
    free(cs);
    free(sn);
    return rc;
}

static size_t round_words(size_t w)
{
    return (w + 3) & ~(size_t)3; /* 16-byte boundaries: int2 tiles, tidy copies */
}

static void cuda_release(struct syn_engine *e);

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int pow2_at_least(int n)
{
    int p = 1;
    while (p < n) p <<= 1;
    return p;
}

static int cuda_init(struct syn_engine *e, char *err, size_t errlen)
{
    const struct syn_model *m = &e->model;
    const struct syn_hparams *hp = &m->hp;
    struct cuda_state *s = (struct cuda_state *)calloc(1, sizeof *s);
    struct uploader up;
    int rc = SYN_OK;
    memset(&up, 0, sizeof up);
    if (!s) return syn_seterr(err, errlen, SYN_ENOMEM, "cuda: out of memory");
    e->backend_state = s;

    const size_t dim = (size_t)hp->dim, qd = (size_t)hp->n_head * hp->head_dim;
    const size_t kvd = (size_t)hp->n_kv_head * hp->head_dim, ffn = (size_t)hp->ffn_dim;
    const size_t qkv_w = qd + 2 * kvd, wide = qd > dim ? qd : dim;
    const size_t vocab = (size_t)hp->n_vocab;
    double t0 = now_s();

    s->dt = pick_dt(m);
    const size_t es = syn_cuda_dt_size(s->dt);
    {
        const struct syn_weight *all[] = {&m->tok_embd, &m->output};
        for (int i = 0; i < 2; i++)
            if (!syn_cuda_convert_supported(all[i]->type)) goto unsupported_type;
        for (int l = 0; l < hp->n_layer; l++) {
            const struct syn_layer *L = &m->layers[l];
            const struct syn_weight *lw[] = {&L->wq,     &L->wk,   &L->wv,    &L->wo,
                                             &L->w_gate, &L->w_up, &L->w_down};
            for (int i = 0; i < 7; i++)
                if (!syn_cuda_convert_supported(lw[i]->type)) goto unsupported_type;
        }
    }
    if ((rc = syn_cuda_attention_shape(hp, &s->group, &s->tile_tokens))) {
        cuda_release(e);
        return syn_seterr(err, errlen, SYN_EUNSUPPORTED,
                          "cuda: attention with head_dim %d and %d query heads per kv head is not "
                          "supported (head_dim even and <= %d, <= %d heads per kv head)",
                          hp->head_dim, hp->n_head / (hp->n_kv_head ? hp->n_kv_head : 1),
                          ATT_MAX_HD, ATT_MAX_ROWS);
    }

    {
        int dev = 0;
        CU_TRY(cudaGetDevice(&dev));
        CU_TRY(cudaDeviceGetAttribute(&s->n_sm, cudaDevAttrMultiProcessorCount, dev));
    }
    CU_TRY(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking));
    CUBLAS_TRY(cublasCreate(&s->blas));
    CUBLAS_TRY(cublasSetStream(s->blas, s->stream));
    if ((rc = dev_alloc(&s->blas_ws, BLAS_WS_BYTES))) goto out;
    CUBLAS_TRY(cublasSetWorkspace(s->blas, s->blas_ws, BLAS_WS_BYTES));

    /* weights */
    if ((rc = uploader_init(&up))) goto out;
    s->layers = (struct cuda_layer *)calloc((size_t)hp->n_layer, sizeof *s->layers);
    if (!s->layers) {
        rc = SYN_ENOMEM;
        goto out;
    }
    for (int l = 0; l < hp->n_layer; l++) {
        const struct syn_layer *L = &m->layers[l];
        struct cuda_layer *D = &s->layers[l];
        if ((rc = dev_alloc(&D->wqkv, qkv_w * dim * es)) ||
            (rc = upload_weight(&up, &L->wq, D->wqkv, 0, s->dt)) ||
            (rc = upload_weight(&up, &L->wk, D->wqkv, qd, s->dt)) ||
            (rc = upload_weight(&up, &L->wv, D->wqkv, qd + kvd, s->dt)) ||
            (rc = dev_alloc(&D->wo, dim * qd * es)) ||
            (rc = upload_weight(&up, &L->wo, D->wo, 0, s->dt)) ||
            (rc = dev_alloc(&D->wgu, 2 * ffn * dim * es)) ||
            (rc = upload_weight(&up, &L->w_gate, D->wgu, 0, s->dt)) ||
            (rc = upload_weight(&up, &L->w_up, D->wgu, ffn, s->dt)) ||
            (rc = dev_alloc(&D->wdown, dim * ffn * es)) ||
            (rc = upload_weight(&up, &L->w_down, D->wdown, 0, s->dt)) ||
            (rc = upload_f32(&D->attn_norm, L->attn_norm, dim)) ||
            (rc = upload_f32(&D->ffn_norm, L->ffn_norm, dim)))
            goto out;
        if (L->bq) {
            if ((rc = dev_alloc((void **)&D->bqkv, qkv_w * sizeof(float)))) goto out;
            CU_TRY(cudaMemcpy(D->bqkv, L->bq, qd * sizeof(float), cudaMemcpyHostToDevice));
            CU_TRY(cudaMemcpy(D->bqkv + qd, L->bk, kvd * sizeof(float), cudaMemcpyHostToDevice));
            CU_TRY(
                cudaMemcpy(D->bqkv + qd + kvd, L->bv, kvd * sizeof(float), cudaMemcpyHostToDevice));
        }
    }
    if ((rc = dev_alloc(&s->tok_embd, vocab * dim * es)) ||
        (rc = upload_weight(&up, &m->tok_embd, s->tok_embd, 0, s->dt)))
        goto out;
    if (m->output.data == m->tok_embd.data && m->output.type == m->tok_embd.type) {
        s->output = s->tok_embd;
    } else if ((rc = dev_alloc(&s->output, vocab * dim * es)) ||
               (rc = upload_weight(&up, &m->output, s->output, 0, s->dt))) {
        goto out;
    }
    if ((rc = upload_f32(&s->output_norm, m->output_norm, dim))) goto out;
    if ((rc = uploader_finish(&up))) goto out;
    {
        const double dt_s = now_s() - t0;
        syn_info("cuda", "weights: %.2f GB uploaded in %.3f s (%.2f GB/s) as %s to %s",
                 up.bytes / 1e9, dt_s, up.bytes / 1e9 / (dt_s > 0 ? dt_s : 1e-9),
                 syn_dtype_name(s->dt), syn_cuda_device_name());
    }
    uploader_release(&up);

    /* KV pool, RoPE tables, activations */
    {
        const size_t kv_floats =
            (size_t)e->n_blocks * hp->n_layer * 2 * (size_t)e->block_tokens * kvd;
        if ((rc = dev_alloc((void **)&s->kv, kv_floats * sizeof(float)))) goto out;
        CU_TRY(cudaMemset(s->kv, 0, kv_floats * sizeof(float)));
    }
    if ((rc = rope_upload(m, e->n_ctx, &s->rope_cos, &s->rope_sin))) goto out;
    /* room for the decode graphs' padded buckets */
    s->T_cap = e->max_batch_tokens;
    s->R_cap = e->max_logit_rows;
    if (s->T_cap <= 256) s->T_cap = pow2_at_least(s->T_cap);
    if (s->R_cap <= 256) s->R_cap = pow2_at_least(s->R_cap);
    {
        const size_t T = (size_t)s->T_cap, R = (size_t)s->R_cap;
        if ((rc = dev_alloc((void **)&s->x, T * dim * sizeof(float))) ||
            (rc = dev_alloc(&s->a, T * wide * es)) ||
            (rc = dev_alloc((void **)&s->qkv, T * qkv_w * sizeof(float))) ||
            (rc = dev_alloc((void **)&s->gu, T * 2 * ffn * sizeof(float))) ||
            (rc = dev_alloc(&s->h, T * ffn * es)) || (rc = dev_alloc(&s->xo, R * dim * es)) ||
            (rc = dev_alloc((void **)&s->logits, R * vocab * sizeof(float))) ||
            (rc = dev_alloc((void **)&s->part, (size_t)SPLIT_TOKENS * hp->n_head *
                                                   (size_t)(hp->head_dim + 2) * sizeof(float))) ||
            (rc = dev_alloc((void **)&s->sample_work, R * vocab * sizeof(float))) ||
            (rc = dev_alloc((void **)&s->spec_dev, R * sizeof(struct syn_sample_spec))) ||
            (rc = dev_alloc((void **)&s->ids_dev, R * sizeof(int32_t))))
            goto out;
        /* zeros, so that padding rows of a graph never start from NaN garbage */
        CU_TRY(cudaMemset(s->a, 0, T * wide * es));
        CU_TRY(cudaMemset(s->h, 0, T * ffn * es));
        struct step_inputs *in = &s->in;
        in->tokens = 0;
        in->pos = round_words(T);
        in->seq = in->pos + round_words(T);
        in->out = in->seq + round_words(T);
        in->tiles = in->out + round_words(R);
        in->tables = in->tiles + round_words(2 * T);
        in->words = in->tables + round_words((size_t)e->max_seqs * e->max_blocks_per_seq);
        CU_TRY(cudaHostAlloc((void **)&s->in_host, in->words * 4, cudaHostAllocDefault));
        if ((rc = dev_alloc((void **)&s->in_dev, in->words * 4))) goto out;
        CU_TRY(cudaHostAlloc((void **)&s->spec_host, R * sizeof(struct syn_sample_spec),
                             cudaHostAllocDefault));
        CU_TRY(cudaHostAlloc((void **)&s->ids_host, R * sizeof(int32_t), cudaHostAllocDefault));
    }
    /* the engine's logits buffer, page-locked so that fetching them is one DMA */
    if (cudaHostRegister(e->logits, (size_t)e->max_logit_rows * vocab * sizeof(float),
                         cudaHostRegisterDefault) == cudaSuccess)
        s->logits_registered = 1;
    cudaGetLastError();
    {
        const char *g = getenv("SYNAPSE_CUDA_GRAPHS");
        s->use_graphs = !(g && !strcmp(g, "0"));
    }
    syn_info("cuda", "%s, %d SMs; %s matrices; KV pool %.1f MiB; decode graphs %s; ready in %.3f s",
             syn_cuda_device_name(), s->n_sm, syn_dtype_name(s->dt),
             (double)e->n_blocks * hp->n_layer * 2 * e->block_tokens * kvd * 4 / 1048576.0,
             s->use_graphs ? "on" : "off", now_s() - t0);
    return SYN_OK;

unsupported_type:
    cuda_release(e);
    return syn_seterr(err, errlen, SYN_EUNSUPPORTED,
                      "cuda: a weight type of this model cannot be uploaded (have f32, f16, bf16, "
                      "q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K, q6_K)");
out:
    uploader_release(&up);
    cuda_release(e);
    return syn_seterr(err, errlen, rc ? rc : SYN_EIO,
                      "cuda: initialising the backend failed (%s; see the log for the CUDA call)",
                      syn_strerror(rc ? rc : SYN_EIO));
}

static void cuda_release(struct syn_engine *e)
{
    struct cuda_state *s = state(e);
    if (!s) return;
    if (s->stream) cudaStreamSynchronize(s->stream);
    for (int i = 0; i < N_BUCKETS; i++)
        if (s->graphs[i]) cudaGraphExecDestroy(s->graphs[i]);
    if (s->layers) {
        for (int l = 0; l < e->model.hp.n_layer; l++) {
            struct cuda_layer *D = &s->layers[l];
            cudaFree(D->wqkv);
            cudaFree(D->wo);
            cudaFree(D->wgu);
            cudaFree(D->wdown);
            cudaFree(D->attn_norm);
            cudaFree(D->ffn_norm);
            cudaFree(D->bqkv);
        }
        free(s->layers);
    }
    if (s->output != s->tok_embd) cudaFree(s->output);
    cudaFree(s->tok_embd);
    cudaFree(s->output_norm);
    cudaFree(s->rope_cos);
    cudaFree(s->rope_sin);
    cudaFree(s->kv);
    cudaFree(s->x);
    cudaFree(s->a);
    cudaFree(s->qkv);
    cudaFree(s->gu);
    cudaFree(s->h);
    cudaFree(s->xo);
    cudaFree(s->logits);
    cudaFree(s->part);
    cudaFree(s->sample_work);
    cudaFree(s->spec_dev);
    cudaFree(s->ids_dev);
    cudaFree(s->in_dev);
    cudaFreeHost(s->in_host);
    cudaFreeHost(s->spec_host);
    cudaFreeHost(s->ids_host);
    if (s->logits_registered) cudaHostUnregister(e->logits);
    if (s->blas) cublasDestroy(s->blas);
    cudaFree(s->blas_ws);
    if (s->stream) cudaStreamDestroy(s->stream);
    cudaGetLastError();
    free(s);
    e->backend_state = NULL;
}

/* ---- a step ---- */

/* Splits over the keys when the step has too few (tile, kv head) blocks to fill the GPU. */
static int choose_split(const struct cuda_state *s, int n_tiles, int n_kv_head, int T, int keys)
{
    const int blocks = n_tiles * n_kv_head;
    if (blocks >= s->n_sm) return 1;
    int n = (2 * s->n_sm + blocks - 1) / blocks;
    const int chunks = (keys + ATT_CHUNK - 1) / ATT_CHUNK;
    if (n > chunks) n = chunks;
    if (n > ATT_MAX_SPLIT) n = ATT_MAX_SPLIT;
    while (n > 1 && T * n > SPLIT_TOKENS) n--;
    return n < 1 ? 1 : n;
}

/* Every kernel and product of one forward pass over T tokens (tiles as given) and R logits rows,
 * enqueued on s->stream; also what a decode graph captures. */
static int enqueue_forward(struct syn_engine *e, struct cuda_state *s, int T, int R, int n_tiles,
                           int max_rows, int n_split)
{
    const struct syn_model *m = &e->model;
    const struct syn_hparams *hp = &m->hp;
    const int dim = hp->dim, hd = hp->head_dim, qd = hp->n_head * hd, kvd = hp->n_kv_head * hd;
    const int qkv_w = qd + 2 * kvd, ffn = hp->ffn_dim;
    const int32_t *in = s->in_dev;
    cudaStream_t st = s->stream;
    int rc = SYN_OK;

    struct syn_cuda_kv kv;
    kv.kv = s->kv;
    kv.block_tokens = e->block_tokens;
    kv.block_stride = (size_t)hp->n_layer * 2 * (size_t)e->block_tokens * kvd;
    kv.max_blocks = e->max_blocks_per_seq;
    kv.block_tables = in + s->in.tables;
    kv.pos = in + s->in.pos;
    kv.seq = in + s->in.seq;

    struct syn_cuda_rope rope;
    rope.qkv = s->qkv;
    rope.qkv_w = qkv_w;
    rope.cos_t = s->rope_cos;
    rope.sin_t = s->rope_sin;
    rope.n_head = hp->n_head;
    rope.n_kv_head = hp->n_kv_head;
    rope.head_dim = hd;
    rope.neox = hp->rope_neox;

    struct syn_cuda_attn att;
    att.q = s->qkv;
    att.q_stride = qkv_w;
    att.tiles = (const int2 *)(in + s->in.tiles);
    att.n_tiles = n_tiles;
    att.max_rows = max_rows;
    att.n_head = hp->n_head;
    att.n_kv_head = hp->n_kv_head;
    att.head_dim = hd;
    att.scale = 1.0f / sqrtf((float)hd);
    att.out = s->a;
    att.dt = s->dt;
    att.n_split = n_split;
    att.part = s->part;
    att.T = T;

    syn_cuda_embed(s->tok_embd, s->dt, dim, in + s->in.tokens, T, s->x, st);
    CU_LAUNCHED("embed");
    for (int l = 0; l < hp->n_layer; l++) {
        const struct cuda_layer *L = &s->layers[l];
        kv.layer_off = (size_t)l * 2 * (size_t)e->block_tokens * kvd;
        rope.bias = L->bqkv;
        syn_cuda_rmsnorm(s->x, NULL, L->attn_norm, T, dim, hp->norm_eps, s->a, s->dt, st);
        CU_LAUNCHED("rmsnorm");
        if ((rc = gemm(s, L->wqkv, qkv_w, dim, s->a, T, s->qkv, 0.0f))) goto out;
        syn_cuda_rope_store(&rope, &kv, T, st);
        CU_LAUNCHED("rope_store");
        syn_cuda_attention(&att, &kv, st);
        CU_LAUNCHED("attention");
        if ((rc = gemm(s, L->wo, dim, qd, s->a, T, s->x, 1.0f))) goto out;
        syn_cuda_rmsnorm(s->x, NULL, L->ffn_norm, T, dim, hp->norm_eps, s->a, s->dt, st);
        CU_LAUNCHED("rmsnorm");
        if ((rc = gemm(s, L->wgu, 2 * ffn, dim, s->a, T, s->gu, 0.0f))) goto out;
        syn_cuda_swiglu(s->gu, T, ffn, s->h, s->dt, st);
        CU_LAUNCHED("swiglu");
        if ((rc = gemm(s, L->wdown, dim, ffn, s->h, T, s->x, 1.0f))) goto out;
    }
    if (R > 0) {
        syn_cuda_rmsnorm(s->x, in + s->in.out, s->output_norm, R, dim, hp->norm_eps, s->xo, s->dt,
                         st);
        CU_LAUNCHED("rmsnorm");
        if ((rc = gemm(s, s->output, hp->n_vocab, dim, s->xo, R, s->logits, 0.0f))) goto out;
    }
out:
    return rc;
}

/* Fills the pinned inputs for T tokens (the plan's, then padding up to T_pad) and returns the
 * number of attention tiles; *decode says whether every tile is a single token. */
static int fill_inputs(struct syn_engine *e, struct cuda_state *s, const struct syn_step_plan *plan,
                       int T_pad, int R_pad, int *decode, int *max_pos)
{
    int32_t *h = s->in_host;
    int32_t *tok = h + s->in.tokens, *pos = h + s->in.pos, *seq = h + s->in.seq;
    int32_t *out = h + s->in.out, *tiles = h + s->in.tiles;
    const int T = plan->n_tokens;
    int n_tiles = 0;
    *decode = 1;
    *max_pos = 0;
    for (int t = 0; t < T_pad; t++) {
        const int real = t < T;
        tok[t] = real ? plan->tokens[t] : 0;
        pos[t] = real ? plan->pos[t] : 0;
        seq[t] = real ? plan->seq[t] : -1;
        if (real && pos[t] > *max_pos) *max_pos = pos[t];
        /* a tile: consecutive positions of one sequence, at most tile_tokens of them */
        if (real && n_tiles > 0 && seq[t] == seq[t - 1] && pos[t] == pos[t - 1] + 1 &&
            tiles[2 * (n_tiles - 1) + 1] < s->tile_tokens) {
            tiles[2 * (n_tiles - 1) + 1]++;
            *decode = 0;
        } else {
            tiles[2 * n_tiles] = t;
            tiles[2 * n_tiles + 1] = 1;
            n_tiles++;
        }
    }
    for (int r = 0; r < R_pad; r++) out[r] = r < plan->n_out ? plan->out_idx[r] : r;
    memcpy(h + s->in.tables, e->block_tables,
           sizeof(int32_t) * (size_t)e->max_seqs * (size_t)e->max_blocks_per_seq);
    return n_tiles;
}

/* The graph bucket for a pure decode step of T tokens, or -1. */
static int decode_bucket(const struct cuda_state *s, const struct syn_step_plan *plan, int decode)
{
    const int T = plan->n_tokens;
    if (!s->use_graphs || !decode || plan->n_out != T) return -1;
    for (int r = 0; r < T; r++)
        if (plan->out_idx[r] != r) return -1;
    int b = 0;
    while ((1 << b) < T) b++;
    if (b >= N_BUCKETS || (1 << b) > s->T_cap || (1 << b) > s->R_cap || s->graph_failed[b])
        return -1;
    return b;
}

/* Captures the decode graph of bucket b (B = 1 << b tokens, padded) and instantiates it.
 * Returns 0, or 1 when capture failed (logged; the bucket then runs eagerly for good). */
static int capture_graph(struct syn_engine *e, struct cuda_state *s, int b, int split)
{
    const int B = 1 << b;
    cudaGraph_t g = NULL;
    cudaError_t ce = cudaStreamBeginCapture(s->stream, cudaStreamCaptureModeThreadLocal);
    int rc = SYN_OK;
    if (ce == cudaSuccess) {
        rc = enqueue_forward(e, s, B, B, B, s->group, split);
        ce = cudaStreamEndCapture(s->stream, &g); /* always: it ends capture mode */
        if (rc == SYN_OK && ce == cudaSuccess) ce = cudaGraphInstantiate(&s->graphs[b], g, 0);
    }
    if (g) cudaGraphDestroy(g);
    if (rc == SYN_OK && ce == cudaSuccess) {
        syn_debug("cuda", "captured the decode graph for batch %d (%d attention splits)", B, split);
        return 0;
    }
    syn_warn("cuda",
             "capturing the decode graph for batch %d failed (%s); that batch size runs "
             "without a graph",
             B, ce != cudaSuccess ? cudaGetErrorString(ce) : syn_strerror(rc));
    cudaGetLastError();
    s->graphs[b] = NULL;
    s->graph_failed[b] = 1;
    return 1;
}

/* A pure decode step in bucket b: the first time eagerly in the graph's padded shape (so that
 * cuBLAS has chosen and loaded its kernels before anything is captured), the second time
 * captured, then replayed. */
static int run_decode_bucket(struct syn_engine *e, struct cuda_state *s, int b)
{
    const int B = 1 << b;
    const int split = choose_split(s, B, e->model.hp.n_kv_head, B, e->n_ctx);
    int rc = SYN_OK;
    if (!s->graphs[b] && s->graph_warm[b] && !s->graph_failed[b]) capture_graph(e, s, b, split);
    if (s->graphs[b]) {
        CU_TRY(cudaGraphLaunch(s->graphs[b], s->stream));
    } else {
        s->graph_warm[b] = 1;
        rc = enqueue_forward(e, s, B, B, B, s->group, split);
    }
out:
    return rc;
}

static int cuda_forward(struct syn_engine *e, const struct syn_step_plan *plan)
{
    struct cuda_state *s = state(e);
    const int T = plan->n_tokens;
    int rc = SYN_OK, decode, max_pos;
    if (T > s->T_cap || plan->n_out > s->R_cap) return SYN_EINVAL;

    /* the tiles tell whether this is a pure decode step; a graph's inputs are padded */
    int n_tiles = fill_inputs(e, s, plan, T, plan->n_out, &decode, &max_pos);
    const int b = decode_bucket(s, plan, decode);
    if (b >= 0 && (1 << b) != T) fill_inputs(e, s, plan, 1 << b, 1 << b, &decode, &max_pos);
    CU_TRY(
        cudaMemcpyAsync(s->in_dev, s->in_host, s->in.words * 4, cudaMemcpyHostToDevice, s->stream));
    if (b >= 0) {
        if ((rc = run_decode_bucket(e, s, b))) goto out;
    } else {
        const int max_rows = decode ? s->group : s->group * s->tile_tokens;
        const int split = choose_split(s, n_tiles, e->model.hp.n_kv_head, T, max_pos + 1);
        if ((rc = enqueue_forward(e, s, T, plan->n_out, n_tiles, max_rows, split))) goto out;
    }
    /* the host rewrites the pinned inputs at the next step: wait here (and see any error) */
    CU_TRY(cudaStreamSynchronize(s->stream));
out:
    return rc;
}

/* ---- logits and sampling ---- */

static int cuda_fetch_logits(struct syn_engine *e)
{
    struct cuda_state *s = state(e);
    int rc = SYN_OK;
    const size_t bytes = (size_t)e->n_logits * (size_t)e->model.hp.n_vocab * sizeof(float);
    CU_TRY(cudaMemcpyAsync(e->logits, s->logits, bytes, cudaMemcpyDeviceToHost, s->stream));
    CU_TRY(cudaStreamSynchronize(s->stream));
out:
    return rc;
}

static int cuda_sample(struct syn_engine *e, const struct syn_sample_spec *specs, int n,
                       int32_t *out_ids)
{
    struct cuda_state *s = state(e);
    int rc = SYN_OK;
    if (n < 1) return SYN_OK;
    if (n > s->R_cap) return SYN_EINVAL;
    memcpy(s->spec_host, specs, sizeof *specs * (size_t)n);
    CU_TRY(cudaMemcpyAsync(s->spec_dev, s->spec_host, sizeof *specs * (size_t)n,
                           cudaMemcpyHostToDevice, s->stream));
    syn_cuda_sample(s->logits, n, e->model.hp.n_vocab, s->spec_dev, s->sample_work, s->ids_dev,
                    s->stream);
    CU_LAUNCHED("sample");
    CU_TRY(cudaMemcpyAsync(s->ids_host, s->ids_dev, sizeof(int32_t) * (size_t)n,
                           cudaMemcpyDeviceToHost, s->stream));
    CU_TRY(cudaStreamSynchronize(s->stream));
    memcpy(out_ids, s->ids_host, sizeof(int32_t) * (size_t)n);
out:
    return rc;
}

extern "C" const struct syn_backend syn_backend_cuda = {
    "cuda", cuda_init, cuda_forward, cuda_release, cuda_fetch_logits, cuda_sample,
};

/* ---- device bandwidth, for `synapse bench engine --backend cuda` ---- */

extern "C" double syn_cuda_membw_gbs(void)
{
    const size_t bytes = (size_t)1 << 30;
    void *a = NULL, *b = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    float ms = 0.0f;
    double gbs = 0.0;
    int rc = SYN_OK;
    if (!syn_cuda_available(NULL, 0)) return SYN_EUNSUPPORTED;
    CU_TRY(cudaMalloc(&a, bytes));
    CU_TRY(cudaMalloc(&b, bytes));
    CU_TRY(cudaMemset(a, 1, bytes));
    CU_TRY(cudaEventCreate(&e0));
    CU_TRY(cudaEventCreate(&e1));
    CU_TRY(cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice)); /* warm up */
    CU_TRY(cudaEventRecord(e0, 0));
    for (int i = 0; i < 10; i++) CU_TRY(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, 0));
    CU_TRY(cudaEventRecord(e1, 0));
    CU_TRY(cudaEventSynchronize(e1));
    CU_TRY(cudaEventElapsedTime(&ms, e0, e1));
    gbs = 10.0 * 2.0 * (double)bytes / ((double)ms * 1e-3) / 1e9;
out:
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    cudaFree(a);
    cudaFree(b);
    cudaGetLastError();
    return rc ? (double)rc : gbs;
}
