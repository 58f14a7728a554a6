/*
 * The CUDA backend's C face: what engine.c, the CLI and the tests call. The backend itself
 * (syn_backend_cuda) is declared in engine_impl.h; this header adds the device probe used for the
 * fallback to the CPU, a device bandwidth measurement for benchmarks, and one entry point per
 * kernel for the agreement tests (tests/unit/test_cuda.c).
 *
 * Everything here exists only in a CUDA=1 build (SYN_HAVE_CUDA defined). Nothing calls exit();
 * failures are negative syn_err values, with the CUDA error logged.
 */
#ifndef SYN_ENGINE_CUDA_H
#define SYN_ENGINE_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct syn_hparams;
struct syn_sample_spec;

/* 1 when a CUDA device can be used (a driver, at least one device of compute capability >= 8.0,
 * and a context can be made on it); else 0 with the reason in why, e.g. "cuda: no usable GPU
 * (cudaGetDeviceCount: CUDA driver version is insufficient for CUDA runtime version)". The
 * answer is probed once per process and cached. */
int syn_cuda_available(char *why, size_t whylen);

/* The device's name ("NVIDIA H100 80GB HBM3"), or "" when none is usable. */
const char *syn_cuda_device_name(void);

/* Device memory read+write bandwidth, measured by device-to-device copies of a 1 GiB buffer
 * (bytes read + bytes written, per second, as GB/s); negative syn_err on failure. */
double syn_cuda_membw_gbs(void);

/* ---- one kernel at a time, for the agreement tests ----
 * Each call allocates device memory, uploads its inputs, runs the backend's kernel exactly as
 * a forward pass does, and copies the result back as f32. Not for the hot path. dt is the
 * activation type the forward pass would use (SYN_DT_F32, SYN_DT_F16 or SYN_DT_BF16): outputs
 * are rounded to it, as they are before a matrix product. Returns 0 or a negative syn_err. */

/* y (T, R) = x (T, K) . W^T, W: R rows of K elements of wtype (F32, F16, BF16, Q8_0, Q4_0) as
 * in a file; W is converted at upload as the backend does (to dt), x rounded to dt. */
int syn_cuda_test_matmul(int wtype, const void *w, int R, int K, const float *x, int T, int dt,
                         float *y);

/* Row t of a table of n_rows rows of K elements of wtype, for each of tokens (T): the
 * embedding gather after the backend's upload conversion to dt. */
int syn_cuda_test_embed(int wtype, const void *table, int n_rows, int K, const int32_t *tokens,
                        int T, int dt, float *out);

/* out (T, n) = rmsnorm(x (T, n)) * w, rounded to dt. */
int syn_cuda_test_rmsnorm(const float *x, const float *w, int T, int n, float eps, int dt,
                          float *out);

/* out (T, f) = silu(gu[:, :f]) * gu[:, f:], gu (T, 2f), rounded to dt. */
int syn_cuda_test_swiglu(const float *gu, int T, int f, int dt, float *out);

/* The step's K/V write and RoPE: qkv (T, q_dim + 2 kv_dim) as the fused projection writes it;
 * biases (q_dim + 2 kv_dim) or NULL; hp gives the head shape, theta, layout and scaling,
 * freq_factors (head_dim/2) or NULL. q_out (T, q_dim) receives the rotated queries; kv (a pool of
 * n_blocks blocks of block_tokens positions, one layer: (n_blocks, 2, block_tokens, kv_dim) f32)
 * receives each token's K and V at its (seq, pos) slot through block_tables (n_seqs rows of
 * max_blocks entries). n_ctx bounds pos. */
int syn_cuda_test_rope_store(const struct syn_hparams *hp, const float *freq_factors, int n_ctx,
                             const float *qkv, const float *bias, int T, const int32_t *pos,
                             const int32_t *seq, const int32_t *block_tables, int max_blocks,
                             int block_tokens, int n_blocks, float *q_out, float *kv);

/* Attention of T query tokens (q (T, n_head*head_dim), unscaled) over the paged kv pool (as
 * above, one layer), each token attending to positions 0..pos[t] of its sequence; out (T,
 * n_head*head_dim) rounded to dt. n_split > 1 forces the split-over-keys path with that many
 * splits; 0 lets the backend choose. */
int syn_cuda_test_attention(const struct syn_hparams *hp, const float *q, int T, const int32_t *pos,
                            const int32_t *seq, const float *kv, const int32_t *block_tables,
                            int max_blocks, int block_tokens, int n_blocks, int n_split, int dt,
                            float *out);

/* One token per row of logits (rows, n_vocab) as the device sampler picks it for specs. */
int syn_cuda_test_sample(const float *logits, int rows, int n_vocab,
                         const struct syn_sample_spec *specs, int32_t *out);

#ifdef __cplusplus
}
#endif

#endif
