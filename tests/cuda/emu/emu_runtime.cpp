/* The emulator's runtime (see cuda_runtime.h here): blocks in turn, one OS thread per CUDA
 * thread, std::barrier for the block and for each warp. */
#include "cuda_runtime.h"
#include "cublas_v2.h"

#include <math.h>
#include <stdio.h>

/* CUDA threads are fibers (ucontext) on the calling OS thread: a barrier hands control to the
 * next fiber of the block, and a barrier opens when every thread it waits for has arrived. One
 * OS thread, so the emulator neither loads the machine nor races. */
#include <ucontext.h>

thread_local uint3 threadIdx;
uint3 blockIdx;
dim3 blockDim, gridDim;
int emu_sms = 132;

enum { STACK_BYTES = 256 * 1024 };

struct fiber {
    ucontext_t ctx;
    std::vector<char> stack;
    int waiting; /* -1 runnable, 0 block barrier, 1 + w warp w's barrier, -2 finished */
};

static std::vector<fiber> g_fibers;
static ucontext_t g_sched;
static int g_current;
static const std::function<void()> *g_body;
static uint64_t g_xchg[1024];
static std::vector<float> g_smem;

static void fiber_main(void)
{
    threadIdx = {(unsigned)g_current, 0, 0};
    (*g_body)();
    g_fibers[g_current].waiting = -2;
    swapcontext(&g_fibers[g_current].ctx, &g_sched);
}

/* Parks the current fiber on barrier b until the scheduler opens it. */
static void wait_on(int b)
{
    g_fibers[g_current].waiting = b;
    swapcontext(&g_fibers[g_current].ctx, &g_sched);
    threadIdx = {(unsigned)g_current, 0, 0};
}

void __syncthreads(void)
{
    wait_on(0);
}

void __syncwarp(unsigned)
{
    wait_on(1 + (int)(threadIdx.x / 32));
}

uint64_t emu_warp_exchange(uint64_t mine, int src_lane)
{
    const unsigned w = threadIdx.x / 32;
    g_xchg[threadIdx.x] = mine;
    wait_on(1 + (int)w);
    uint64_t v = g_xchg[w * 32 + (unsigned)src_lane];
    wait_on(1 + (int)w); /* nobody overwrites g_xchg before every lane has read */
    return v;
}

float *emu_dynamic_smem(void)
{
    return g_smem.data();
}

int atomicAdd(int *p, int v)
{
    int old = *p; /* fibers switch only at barriers */
    *p = old + v;
    return old;
}

static void run_block(unsigned n, const std::function<void()> &body)
{
    g_body = &body;
    g_fibers.assign(n, fiber());
    for (unsigned t = 0; t < n; t++) {
        fiber &f = g_fibers[t];
        f.stack.resize(STACK_BYTES);
        f.waiting = -1;
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = f.stack.data();
        f.ctx.uc_stack.ss_size = f.stack.size();
        f.ctx.uc_link = NULL;
        makecontext(&f.ctx, fiber_main, 0);
    }
    for (;;) {
        int ran = 0;
        for (unsigned t = 0; t < n; t++)
            if (g_fibers[t].waiting == -1) {
                g_current = (int)t;
                swapcontext(&g_sched, &g_fibers[t].ctx);
                ran = 1;
            }
        /* open every barrier whose threads have all arrived: the block's needs all n threads
         * (none may have finished: CUDA requires every thread to reach it), a warp's its 32 */
        int done = 0, at_block = 0;
        std::vector<int> at_warp(n / 32, 0);
        for (unsigned t = 0; t < n; t++) {
            int w = g_fibers[t].waiting;
            if (w == -2) done++;
            if (w == 0) at_block++;
            if (w >= 1) at_warp[w - 1]++;
        }
        if (done == (int)n) return;
        int opened = 0;
        if (at_block == (int)n) {
            for (auto &f : g_fibers) f.waiting = -1;
            opened = 1;
        }
        for (unsigned w = 0; w < n / 32; w++)
            if (at_warp[w] == 32) {
                for (unsigned t = w * 32; t < w * 32 + 32; t++) g_fibers[t].waiting = -1;
                opened = 1;
            }
        if (!ran && !opened) {
            fprintf(stderr,
                    "emu: deadlock in block (%u,%u,%u): %d of %u threads at "
                    "__syncthreads, %d finished; a barrier not every thread reaches\n",
                    blockIdx.x, blockIdx.y, blockIdx.z, at_block, n, done);
            abort();
        }
    }
}

static void emu_run_now(dim3 grid, dim3 block, size_t smem, const std::function<void()> &body)
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
                run_block(block.x, body);
            }
}

void emu_run(dim3 grid, dim3 block, size_t smem, const std::function<void()> &body)
{
    std::function<void()> b = body;
    emu_enqueue([=]() { emu_run_now(grid, block, smem, b); });
}
