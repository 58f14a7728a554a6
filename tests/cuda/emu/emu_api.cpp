/* The emulator's CUDA runtime and cuBLAS (see cuda_runtime.h here): synchronous streams, graphs
 * as recorded lists of work, cublasGemmEx from its documented column-major semantics. Failures
 * that real CUDA would report (a copy during capture, a bad leading dimension) abort or return
 * an error, so that the backend's use of the API is checked too. */
#include "cublas_v2.h"
#include "cuda_bf16.h"
#include "cuda_fp16.h"
#include "cuda_runtime.h"

#include <stdio.h>
#include <stdlib.h>

#include <memory>

struct emu_graph {
    std::vector<std::function<void()>> work;
};

static emu_graph *g_capturing; /* the graph being recorded, or NULL */
long emu_graph_launches, emu_captures;

void emu_enqueue(const std::function<void()> &work)
{
    if (g_capturing)
        g_capturing->work.push_back(work);
    else
        work();
}

static void not_in_capture(const char *what)
{
    if (g_capturing) {
        fprintf(stderr, "emu: %s during stream capture (not capturable)\n", what);
        abort();
    }
}

cudaError_t cudaGetDeviceCount(int *n)
{
    *n = 1;
    return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int)
{
    snprintf(p->name, sizeof p->name, "emulated GPU");
    p->major = 9;
    p->minor = 0;
    return cudaSuccess;
}
cudaError_t cudaMalloc(void **p, size_t bytes)
{
    not_in_capture("cudaMalloc");
    *p = aligned_alloc(256, (bytes + 255) / 256 * 256);
    if (!*p) return cudaErrorMemoryAllocation;
    memset(*p, 0xff, bytes); /* NaN as f32, so a read of memory nobody wrote shows */
    return cudaSuccess;
}
cudaError_t cudaFree(void *p)
{
    free(p);
    return cudaSuccess;
}
cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned)
{
    return cudaMalloc(p, bytes);
}
cudaError_t cudaFreeHost(void *p)
{
    free(p);
    return cudaSuccess;
}
cudaError_t cudaHostRegister(void *, size_t, unsigned)
{
    return cudaSuccess;
}
cudaError_t cudaHostUnregister(void *)
{
    return cudaSuccess;
}
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind)
{
    not_in_capture("cudaMemcpy");
    memcpy(dst, src, n);
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind, cudaStream_t)
{
    not_in_capture("cudaMemcpyAsync (this backend never copies inside a graph)");
    memcpy(dst, src, n);
    return cudaSuccess;
}
cudaError_t cudaMemcpy2D(void *dst, size_t dp, const void *src, size_t sp, size_t w, size_t h,
                         cudaMemcpyKind)
{
    for (size_t r = 0; r < h; r++) memcpy((char *)dst + r * dp, (const char *)src + r * sp, w);
    return cudaSuccess;
}
cudaError_t cudaMemset(void *p, int v, size_t n)
{
    not_in_capture("cudaMemset");
    memset(p, v, n);
    return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned)
{
    *s = (void *)1;
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t)
{
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t)
{
    not_in_capture("cudaStreamSynchronize");
    return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t *e)
{
    *e = (void *)1;
    return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned)
{
    *e = (void *)1;
    return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t)
{
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t)
{
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t)
{
    return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t, cudaEvent_t)
{
    *ms = 1;
    return cudaSuccess;
}
cudaError_t cudaStreamBeginCapture(cudaStream_t, cudaStreamCaptureMode)
{
    if (g_capturing) abort();
    g_capturing = new emu_graph;
    return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t, cudaGraph_t *g)
{
    *g = g_capturing;
    g_capturing = NULL;
    emu_captures++;
    return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long)
{
    *e = new emu_graph(*g);
    return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g)
{
    delete g;
    return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e)
{
    delete e;
    return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t)
{
    not_in_capture("cudaGraphLaunch");
    emu_graph_launches++;
    for (auto &w : e->work) w();
    return cudaSuccess;
}

/* ---- cuBLAS ---- */
cublasStatus_t cublasCreate(cublasHandle_t *h)
{
    *h = (void *)1;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t)
{
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t)
{
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace(cublasHandle_t, void *, size_t)
{
    return CUBLAS_STATUS_SUCCESS;
}
const char *cublasGetStatusString(cublasStatus_t)
{
    return "emulated cuBLAS error";
}

static double elem(const void *p, cudaDataType_t t, size_t i)
{
    if (t == CUDA_R_16F) return __half2float(((const __half *)p)[i]);
    if (t == CUDA_R_16BF) return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    return ((const float *)p)[i];
}

cublasStatus_t cublasGemmEx(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const void *alpha, const void *A, cudaDataType_t at,
                            int lda, const void *B, cudaDataType_t bt, int ldb, const void *beta,
                            void *C, cudaDataType_t ct, int ldc, cublasComputeType_t,
                            cublasGemmAlgo_t)
{
    if (m < 0 || n < 0 || k < 0 || lda < (ta == CUBLAS_OP_N ? m : k) ||
        ldb < (tb == CUBLAS_OP_N ? k : n) || ldc < m || ct != CUDA_R_32F || at != bt)
        return CUBLAS_STATUS_INVALID_VALUE;
    const float al = *(const float *)alpha, be = *(const float *)beta; /* host pointer mode */
    emu_enqueue([=]() {
        float *c = (float *)C;
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                double acc = 0;
                for (int l = 0; l < k; l++) {
                    size_t ia = ta == CUBLAS_OP_N ? (size_t)i + (size_t)l * lda
                                                  : (size_t)l + (size_t)i * lda;
                    size_t ib = tb == CUBLAS_OP_N ? (size_t)l + (size_t)j * ldb
                                                  : (size_t)j + (size_t)l * ldb;
                    acc += elem(A, at, ia) * elem(B, bt, ib);
                }
                float *cij = &c[(size_t)i + (size_t)j * ldc];
                *cij = (float)(al * acc + (be != 0 ? be * (double)*cij : 0.0));
            }
    });
    return CUBLAS_STATUS_SUCCESS;
}
