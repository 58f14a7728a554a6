/* The emulator's runtime (see cuda_runtime.h here): blocks in turn, one OS thread per CUDA
 * thread, std::barrier for the block and for each warp. */
#include "cuda_runtime.h"
#include "cublas_v2.h"

#include <math.h>
#include <stdio.h>

#include <memory>
#include <mutex>

thread_local uint3 threadIdx;
uint3 blockIdx;
dim3 blockDim, gridDim;
int emu_sms = 132;

static std::unique_ptr<std::barrier<>> g_block;
static std::vector<std::unique_ptr<std::barrier<>>> g_warps;
static uint64_t g_xchg[1024];
static std::vector<float> g_smem;
static std::mutex g_atomic;

void __syncthreads(void)
{
    g_block->arrive_and_wait();
}

void __syncwarp(unsigned)
{
    g_warps[threadIdx.x / 32]->arrive_and_wait();
}

uint64_t emu_warp_exchange(uint64_t mine, int src_lane)
{
    const unsigned w = threadIdx.x / 32;
    g_xchg[threadIdx.x] = mine;
    g_warps[w]->arrive_and_wait();
    uint64_t v = g_xchg[w * 32 + (unsigned)src_lane];
    g_warps[w]->arrive_and_wait();
    return v;
}

float *emu_dynamic_smem(void)
{
    return g_smem.data();
}

int atomicAdd(int *p, int v)
{
    std::lock_guard<std::mutex> lock(g_atomic);
    int old = *p;
    *p = old + v;
    return old;
}

void emu_run(dim3 grid, dim3 block, size_t smem, const std::function<void()> &body)
{
    if (block.x % 32 || block.x > 1024 || block.y != 1 || block.z != 1) {
        fprintf(stderr, "emu: block of %u threads: not a whole number of warps\n", block.x);
        abort();
    }
    gridDim = grid;
    blockDim = block;
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                blockIdx = {x, y, z};
                /* dynamic shared memory starts as NaN, so a read before a write shows */
                g_smem.assign(smem / sizeof(float) + 1, NAN);
                g_block = std::make_unique<std::barrier<>>((ptrdiff_t)block.x);
                g_warps.clear();
                for (unsigned w = 0; w < block.x / 32; w++)
                    g_warps.push_back(std::make_unique<std::barrier<>>(32));
                std::vector<std::thread> th;
                for (unsigned t = 0; t < block.x; t++)
                    th.emplace_back([t, &body]() {
                        threadIdx = {t, 0, 0};
                        body();
                    });
                for (auto &t : th) t.join();
            }
}

int syn_cuda_fail(cudaError_t, const char *what, const char *file, int line)
{
    fprintf(stderr, "emu: %s failed (%s:%d)\n", what, file, line);
    return -3;
}

int syn_cublas_fail(cublasStatus_t, const char *what, const char *file, int line)
{
    fprintf(stderr, "emu: %s failed (%s:%d)\n", what, file, line);
    return -3;
}
