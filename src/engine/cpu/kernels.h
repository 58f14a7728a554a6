/*
 * The CPU backend's hot kernels: matrix products of an activation batch against a weight matrix
 * stored in the file's own type (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K),
 * without dequantising whole tensors.
 * AVX2+FMA+F16C paths, AVX-512 paths where the CPU has them, chosen once at run time; a portable
 * scalar path for everything else.
 *
 * Batch invariance: every output element is one dot product whose reduction order depends only
 * on K and the weight type, never on T (the number of activation rows), the thread count or how
 * the work is tiled; a sequence's logits are therefore bitwise identical whether it runs alone or
 * in a batch. Work is split over output rows R, never over K.
 */
#ifndef SYN_CPU_KERNELS_H
#define SYN_CPU_KERNELS_H

#include <stddef.h>
#include <stdint.h>

struct syn_pool;

/* Bytes of scratch syn_cpu_matmul needs for T activation rows of K elements against weights of
 * type wtype, on a pool of n_threads (the quantised activations for quantised weights, and
 * per-thread work space for packing weights); enough for any smaller T or pool too. */
size_t syn_cpu_matmul_scratch_bytes(int wtype, int K, int T, int n_threads);

/* y[t*R + r] = sum_k W[r][k] * x[t*K + k], for t < T, r < R.
 * w: R rows of K elements of type wtype, rows contiguous (row bytes = syn_dtype_row_bytes).
 * x: T rows of K floats. y: T rows of R floats. K must be a whole number of blocks of wtype.
 * scratch: syn_cpu_matmul_scratch_bytes(wtype, K, T, n) bytes, 64-byte aligned, n at least the
 * pool's size (syn_pool_size). */
void syn_cpu_matmul(struct syn_pool *pool, const void *w, int wtype, int R, int K, const float *x,
                    int T, float *y, void *scratch);

/* One of several products that share their activations (syn_cpu_matmul_multi). */
struct syn_cpu_mm_part {
    const void *w; /* R rows of K elements of the shared wtype */
    int R;         /* weight rows = output columns */
    float *y;      /* T rows of R floats */
};

/* The n products x . parts[i].w^T (n <= SYN_CPU_MM_MAX_PARTS), all of type wtype and width K, as
 * one parallel region: the activations are quantised once, and the threads balance their work
 * across all the parts instead of waiting for each other at the end of every one. Each output
 * element is computed exactly as syn_cpu_matmul computes it. scratch as for syn_cpu_matmul. */
#define SYN_CPU_MM_MAX_PARTS 4
void syn_cpu_matmul_multi(struct syn_pool *pool, int wtype, int K, const float *x, int T,
                          const struct syn_cpu_mm_part *parts, int n, void *scratch);

/* Which instruction set the kernels chose ("avx512", "avx2", "scalar"). */
const char *syn_cpu_kernels_isa(void);

/* Tests only: on = 1 makes attention take the generic per-position dot and axpy even where the
 * AVX-512 path applies, so that a test can check the two agree bit for bit. Not to be called
 * while a step runs. */
void syn_cpu_attention_force_generic(int on);

/* Forces a path for tests: "avx512", "avx2" or "scalar"; returns 0, or -1 if the CPU lacks it. */
int syn_cpu_kernels_force(const char *isa);

#endif
