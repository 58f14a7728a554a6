/*
 * The backend's own kernels (everything that is not a matrix product: those go to cuBLAS), as
 * host-side launchers that enqueue on a stream and return at once. Shapes and layouts are the
 * CPU backend's (src/engine/cpu/forward.c), which is the reference each kernel is tested against
 * (tests/unit/test_cuda.c):
 *
 *   activations  row-major (tokens, features); the residual stream and every matrix product's
 *                output in f32, a product's input in the weights' type (dt)
 *   KV cache     f32, block-major: block b holds every layer's K then V for its block_tokens
 *                positions, ((b * n_layer + layer) * 2 + {K,V}) * block_tokens * kv_dim
 *   qkv          the fused projection's output, (T, q_dim + 2 kv_dim): q | k | v
 *
 * Launchers do not check errors; the caller checks cudaGetLastError() after enqueuing.
 */
#ifndef SYN_CUDA_KERNELS_CUH
#define SYN_CUDA_KERNELS_CUH

#include "common.cuh"

/* Attention tiles: up to this many consecutive query tokens of one sequence share a block, and
 * a block holds at most ATT_MAX_ROWS (token, query head) rows. */
#define ATT_CHUNK     32 /* keys staged in shared memory at a time: one per lane */
#define ATT_MAX_WARPS 16
#define ATT_MAX_RPW   4 /* rows per warp */
#define ATT_MAX_ROWS  (ATT_MAX_WARPS * ATT_MAX_RPW)
#define ATT_MAX_SPLIT 16  /* key splits of one (tile, kv head) for short batches */
#define ATT_MAX_HD    256 /* head_dim limit (8 elements per lane) */

/* Source element types the upload can convert from: F32, F16, BF16, Q8_0, Q4_0. */
int syn_cuda_convert_supported(int stype);

/* dst[i] (type dt) = element i of src (raw bytes of type stype), i < n; n a whole number of
 * stype's blocks. src must be 4-byte aligned. */
void syn_cuda_convert(const void *src, int stype, void *dst, int dt, size_t n, cudaStream_t st);

/* x (T, dim) f32 = rows tokens[t] of table (n_vocab, dim) in dt. */
void syn_cuda_embed(const void *table, int dt, int dim, const int32_t *tokens, int T, float *x,
                    cudaStream_t st);

/* out row r (dt) = rmsnorm(x row rows[r] (or r when rows is NULL)) * w, for r < n_rows. */
void syn_cuda_rmsnorm(const float *x, const int32_t *rows, const float *w, int n_rows, int dim,
                      float eps, void *out, int dt, cudaStream_t st);

/* out (T, f) in dt = silu(gu[:, :f]) * gu[:, f:] with gu (T, 2f) f32. */
void syn_cuda_swiglu(const float *gu, int T, int f, void *out, int dt, cudaStream_t st);

/* Where one layer's K/V live in the pool, and the step's token placement. */
struct syn_cuda_kv {
    float *kv;                   /* the pool */
    size_t block_stride;         /* floats per block (every layer's K and V) */
    size_t layer_off;            /* floats from a block's start to this layer's K */
    int block_tokens;            /* positions per block */
    int max_blocks;              /* entries per block-table row */
    const int32_t *block_tables; /* (n_seqs, max_blocks) */
    const int32_t *pos, *seq;    /* (T) each token's position and sequence; seq < 0 = padding */
};

struct syn_cuda_rope {
    float *qkv;         /* (T, qkv_w) f32, rotated in place (q) and read (k, v) */
    int qkv_w;          /* q_dim + 2 kv_dim */
    const float *bias;  /* (qkv_w) or NULL */
    const float *cos_t; /* (n_ctx, head_dim/2) */
    const float *sin_t;
    int n_head, n_kv_head, head_dim, neox;
};

/* Biases, RoPE on q and k, then k and v into the cache at each token's (seq, pos) slot;
 * padding tokens (seq < 0) are skipped. */
void syn_cuda_rope_store(const struct syn_cuda_rope *r, const struct syn_cuda_kv *kv, int T,
                         cudaStream_t st);

struct syn_cuda_attn {
    const float *q;    /* (T, q_stride) f32: query heads at columns [0, n_head*head_dim) */
    int q_stride;      /* floats per row of q */
    const int2 *tiles; /* (n_tiles) {first token, count}: consecutive positions of one seq */
    int n_tiles;
    int max_rows; /* most (token, head) rows of any tile: tokens per tile * group */
    int n_head, n_kv_head, head_dim;
    float scale; /* 1/sqrt(head_dim) */
    void *out;   /* (T, n_head*head_dim) in dt */
    int dt;
    int n_split; /* 1, or splits over the keys, combined by a second kernel */
    float *part; /* n_split > 1: (T * n_head * n_split) * (head_dim + 2) floats */
    int T;       /* tokens (rows of q and out) */
};

/* Shared memory one attention block needs, and the opt-in to it; call once per (head_dim,
 * max_rows) before launching, outside stream capture. Returns 0 or a negative syn_err. */
size_t syn_cuda_attention_smem(int head_dim, int max_rows);
int syn_cuda_attention_prepare(int head_dim, int max_rows);

/* Causal attention of every token over its sequence's cached positions 0..pos (GQA: query head h
 * reads kv head h / (n_head / n_kv_head)), flash style: keys in chunks through shared memory
 * with an online softmax; rows of padding tiles are written as zeros. */
void syn_cuda_attention(const struct syn_cuda_attn *a, const struct syn_cuda_kv *kv,
                        cudaStream_t st);

/* One token per row of logits (rows, n_vocab), as syn_sampler_sample picks it for the same
 * settings and uniform draw (see sample_kernel). work: (rows, n_vocab) floats of scratch. */
void syn_cuda_sample(const float *logits, int rows, int n_vocab,
                     const struct syn_sample_spec *specs, float *work, int32_t *out,
                     cudaStream_t st);

/* ---- shared with backend.cu's users (the op tests) ---- */

/* Y (T, R) f32 = X (T, K) . W (R, K)^T + beta Y, row-major, W and X in dt (backend.cu). */
int syn_cuda_gemm(cublasHandle_t blas, int dt, const void *W, int R, int K, const void *X, int T,
                  float *Y, float beta);


/* Query heads per kv head and tokens per prefill attention tile for hp; prepares the attention
 * kernel's shared memory. SYN_EUNSUPPORTED for a head shape the kernels do not handle. */
int syn_cuda_attention_shape(const struct syn_hparams *hp, int *group, int *tile_tokens);

#endif
