/*
 * Pieces every CUDA file of the backend shares: the C headers (wrapped for C++), error checks
 * that log and turn a CUDA or cuBLAS failure into a negative syn_err, and the device helpers that
 * load and store the three element types activations and weights are kept in on the device
 * (f32, f16, bf16; see backend.cu for which).
 */
#ifndef SYN_CUDA_COMMON_CUH
#define SYN_CUDA_COMMON_CUH

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

extern "C" {
#include "../engine_impl.h"
#include "cuda.h"
#include "synapse/log.h"
#include "synapse/sampler.h"
}

/* ---- errors ---- */

/* Logs "cuda: WHAT failed: MESSAGE (file:line)" and maps the error to a syn_err. */
int syn_cuda_fail(cudaError_t e, const char *what, const char *file, int line);
int syn_cublas_fail(cublasStatus_t s, const char *what, const char *file, int line);

/* In a function with `int rc` and an `out:` label: run a CUDA runtime or cuBLAS call, and on
 * failure log it and jump to out with rc set. */
#define CU_TRY(call)                                                                               \
    do {                                                                                           \
        cudaError_t cu_e_ = (call);                                                                \
        if (cu_e_ != cudaSuccess) {                                                                \
            rc = syn_cuda_fail(cu_e_, #call, __FILE__, __LINE__);                                  \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

#define CUBLAS_TRY(call)                                                                           \
    do {                                                                                           \
        cublasStatus_t cb_s_ = (call);                                                             \
        if (cb_s_ != CUBLAS_STATUS_SUCCESS) {                                                      \
            rc = syn_cublas_fail(cb_s_, #call, __FILE__, __LINE__);                                \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

/* Any launch error of the kernels just enqueued (bad configuration, too much shared memory). */
#define CU_LAUNCHED(what) CU_TRY(cudaPeekAtLastError())

/* Bytes of one element of a device type (SYN_DT_F32, SYN_DT_F16, SYN_DT_BF16). */
static inline size_t syn_cuda_dt_size(int dt)
{
    return dt == SYN_DT_F32 ? 4 : 2;
}

/* ---- device element access ---- */

static __device__ __forceinline__ float ld_elem(const void *p, int dt, size_t i)
{
    if (dt == SYN_DT_BF16) return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    if (dt == SYN_DT_F16) return __half2float(((const __half *)p)[i]);
    return ((const float *)p)[i];
}

static __device__ __forceinline__ void st_elem(void *p, int dt, size_t i, float v)
{
    if (dt == SYN_DT_BF16)
        ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(v);
    else if (dt == SYN_DT_F16)
        ((__half *)p)[i] = __float2half_rn(v);
    else
        ((float *)p)[i] = v;
}

#endif
