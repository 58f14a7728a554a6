/*
 * A host emulation of the slice of CUDA that src/engine/cuda/kernels.cu uses, so that the
 * kernels themselves (not a transcription) run on a machine without a GPU: each block's threads
 * are fibers on one OS thread with a real block barrier (__syncthreads) and real warp exchanges
 * (__shfl_xor_sync, __syncwarp); blocks run one after another, so __shared__ variables can be
 * function statics. Test-only (tests/cuda/run-emu.sh); it proves indexing and synchronisation,
 * not speed, and knows nothing of memory spaces, so it cannot catch a host pointer passed to a
 * kernel.
 */
#ifndef EMU_CUDA_RUNTIME_H
#define EMU_CUDA_RUNTIME_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <barrier>
#include <functional>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

typedef int cudaError_t;
enum { cudaSuccess = 0, cudaErrorMemoryAllocation = 2 };
typedef void *cudaStream_t;
enum cudaDeviceAttr {
    cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
    cudaDevAttrMultiProcessorCount = 16
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };

struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c)
    {
    }
};
struct int2 {
    int x, y;
};

extern thread_local uint3 threadIdx;
extern uint3 blockIdx;
extern dim3 blockDim, gridDim;
extern int emu_sms; /* what cudaDevAttrMultiProcessorCount answers */

inline const char *cudaGetErrorString(cudaError_t)
{
    return "emulated error";
}
inline cudaError_t cudaGetLastError(void)
{
    return cudaSuccess;
}
inline cudaError_t cudaPeekAtLastError(void)
{
    return cudaSuccess;
}
inline cudaError_t cudaGetDevice(int *d)
{
    *d = 0;
    return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int)
{
    *v = a == cudaDevAttrMultiProcessorCount ? emu_sms : 227 * 1024;
    return cudaSuccess;
}
inline cudaError_t cudaFuncSetAttribute(const void *, cudaFuncAttribute, int)
{
    return cudaSuccess;
}

/* ---- the runtime as backend.cu uses it: memory is host memory, every stream is synchronous
 * (work runs when enqueued), and a stream capture records kernel launches and cuBLAS calls into
 * a graph that cudaGraphLaunch replays ---- */
typedef void *cudaEvent_t;
struct emu_graph;
typedef emu_graph *cudaGraph_t;
typedef emu_graph *cudaGraphExec_t;
enum cudaMemcpyKind {
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3
};
enum {
    cudaStreamNonBlocking = 1,
    cudaHostAllocDefault = 0,
    cudaHostRegisterDefault = 0,
    cudaEventDisableTiming = 2
};
enum cudaStreamCaptureMode { cudaStreamCaptureModeThreadLocal = 1 };
struct cudaDeviceProp {
    char name[256];
    int major, minor;
};
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int dev);
cudaError_t cudaMalloc(void **p, size_t bytes);
cudaError_t cudaFree(void *p);
cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned flags);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaHostRegister(void *p, size_t bytes, unsigned flags);
cudaError_t cudaHostUnregister(void *p);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind k);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind k, cudaStream_t s);
cudaError_t cudaMemcpy2D(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                         size_t height, cudaMemcpyKind k);
cudaError_t cudaMemset(void *p, int v, size_t n);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b);
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long flags);
cudaError_t cudaGraphDestroy(cudaGraph_t g);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e);
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s);
/* Runs work now, or records it while a capture is open. */
void emu_enqueue(const std::function<void()> &work);
extern long emu_graph_launches, emu_captures; /* counters the checks read */

/* ---- inside a block ---- */
void __syncthreads(void);
void __syncwarp(unsigned mask = 0xffffffffu);
uint64_t emu_warp_exchange(uint64_t mine, int src_lane);
float *emu_dynamic_smem(void);

template <typename T> T __shfl_xor_sync(unsigned, T v, int lane_mask)
{
    static_assert(sizeof(T) <= 8, "emulated shuffles move up to 8 bytes");
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof v);
    bits = emu_warp_exchange(bits, (int)(threadIdx.x & 31) ^ lane_mask);
    T out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

int atomicAdd(int *p, int v);

inline int __float_as_int(float f)
{
    int i;
    memcpy(&i, &f, 4);
    return i;
}
inline float __int_as_float(int i)
{
    float f;
    memcpy(&f, &i, 4);
    return f;
}
using std::max;
using std::min;

/* ---- launches: kernels.cu's `k<<<g, b, s, st>>>(args)` is rewritten to EMU_LAUNCH(k, g, b, s,
 * st)(args) by run-emu.sh ---- */
void emu_run(dim3 grid, dim3 block, size_t smem, const std::function<void()> &body);

template <typename K> struct emu_launch {
    K k;
    dim3 grid, block;
    size_t smem;
    template <typename... A> void operator()(A... a) const
    {
        K kk = k;
        emu_run(grid, block, smem, [=]() { kk(a...); });
    }
};
template <typename K> emu_launch<K> emu_make(K k, dim3 g, dim3 b, size_t s)
{
    return emu_launch<K>{k, g, b, s};
}
#define EMU_LAUNCH(k, g, b, s, st) emu_make(k, dim3(g), dim3(b), (size_t)(s))

#endif
