/*
 * The CPU kernels' front door (kernels.h): picks the instruction set once per process, sizes the
 * scratch (quantised activations, then one work area per thread for an ISA that packs weights),
 * quantises the activations when the weights are quantised, and splits one or several matrix
 * products of the same activations into thread-pool tasks over blocks of weight rows (decode:
 * one contiguous lane of rows per thread, see run_lanes). The arithmetic itself lives in
 * kernels_scalar.c, kernels_avx2.c and kernels_avx512.c, behind struct syn_cpu_isa.
 *
 * Batch invariance rests on two things done here: the ISA never changes behind the caller's back
 * (only syn_cpu_kernels_force, for tests, changes it), and work is split over rows R only, so
 * every output element is computed by exactly one call of one kernel whose reduction order does
 * not depend on how the rows or the batch were cut.
 */
#include "engine/cpu/kernels.h"

#include "engine/cpu/kernels_impl.h"
#include "engine/cpu/threadpool.h"
#include "synapse/tensor.h"

#if SYN_HAVE_X86_SIMD
#include <cpuid.h>
#endif

#include <assert.h>
#include <stdatomic.h>
#include <string.h>

/* ---- instruction set selection ---- */

/* The chosen ISA; NULL until first use. Plain stores are enough for the pointer itself, but it
 * is atomic so that a forced change from a test is seen cleanly by pool threads. */
static const struct syn_cpu_isa *_Atomic chosen_isa;

/* CPU features the SIMD paths need, probed once: CPUID is slow under a hypervisor (each one
 * exits to it), so it must stay out of anything called per matmul, syn_cpu_kernels_force
 * included. */
enum { FEAT_UNKNOWN = 0, FEAT_AVX2 = 1, FEAT_AVX512 = 2, FEAT_PROBED = 4 };
static _Atomic int cpu_features;

static int probe_features(void)
{
    int f = FEAT_PROBED;
#if SYN_HAVE_X86_SIMD
    /* F16C from CPUID directly: clang's __builtin_cpu_supports does not know the name. */
    unsigned a, b, c, d;
    int f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
    if (avx2) f |= FEAT_AVX2;
    if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vnni"))
        f |= FEAT_AVX512;
#endif
    return f;
}

static int features(void)
{
    int f = atomic_load_explicit(&cpu_features, memory_order_relaxed);
    if (f == FEAT_UNKNOWN) {
        /* Racing first calls all compute the same value. */
        f = probe_features();
        atomic_store_explicit(&cpu_features, f, memory_order_relaxed);
    }
    return f;
}

static int cpu_has_avx512(void)
{
    return (features() & FEAT_AVX512) != 0;
}

static int cpu_has_avx2(void)
{
    return (features() & FEAT_AVX2) != 0;
}

static const struct syn_cpu_isa *isa(void)
{
    const struct syn_cpu_isa *i = atomic_load_explicit(&chosen_isa, memory_order_acquire);
    if (i) return i;
    /* Several threads may race here on first use; they all compute the same answer. */
    if (cpu_has_avx512())
        i = &syn_cpu_isa_avx512;
    else if (cpu_has_avx2())
        i = &syn_cpu_isa_avx2;
    else
        i = &syn_cpu_isa_scalar;
    atomic_store_explicit(&chosen_isa, i, memory_order_release);
    return i;
}

const char *syn_cpu_kernels_isa(void)
{
    return isa()->name;
}

int syn_cpu_kernels_force(const char *name)
{
    const struct syn_cpu_isa *i = NULL;
    if (!name) return -1;
    if (strcmp(name, "avx512") == 0 && cpu_has_avx512())
        i = &syn_cpu_isa_avx512;
    else if (strcmp(name, "avx2") == 0 && cpu_has_avx2())
        i = &syn_cpu_isa_avx2;
    else if (strcmp(name, "scalar") == 0)
        i = &syn_cpu_isa_scalar;
    if (!i) return -1;
    atomic_store_explicit(&chosen_isa, i, memory_order_release);
    return 0;
}

/* ---- matrix product ---- */

static int is_quantised(int wtype)
{
    return wtype == SYN_DT_Q8_0 || wtype == SYN_DT_Q4_0 || syn_is_q32_offset(wtype) ||
           syn_is_kquant(wtype);
}

static size_t round64(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

/* The instruction sets this CPU can run, which syn_cpu_kernels_force may switch between. */
static int runnable_isas(const struct syn_cpu_isa **out)
{
    int n = 0;
    out[n++] = &syn_cpu_isa_scalar;
    if (cpu_has_avx2()) out[n++] = &syn_cpu_isa_avx2;
    if (cpu_has_avx512()) out[n++] = &syn_cpu_isa_avx512;
    return n;
}

/* Scratch: the quantised activations (T rows of the ISA's xq_row_bytes), then one work area per
 * thread. Sized for the largest of every runnable ISA, so that a path forced after the caller
 * sized its buffers still fits. */
size_t syn_cpu_matmul_scratch_bytes(int wtype, int K, int T, int n_threads)
{
    if (K <= 0 || T <= 0) return 0;
    if (n_threads < 1) n_threads = 1;
    const struct syn_cpu_isa *isas[3];
    int n = runnable_isas(isas);
    size_t xq = 0, work = 0;
    for (int i = 0; i < n; i++) {
        if (syn_is_kquant(wtype))
            xq = syn_xq_kq_row_bytes(K);
        else if (syn_is_q32_offset(wtype))
            xq = syn_xq_plain_row_bytes(K);
        else if (is_quantised(wtype) && isas[i]->xq_row_bytes(K) > xq)
            xq = isas[i]->xq_row_bytes(K);
        size_t w = isas[i]->work_bytes ? isas[i]->work_bytes(wtype, K, T) : 0;
        if (w > work) work = w;
    }
    return round64(xq * (size_t)T) + round64(work) * (size_t)n_threads;
}

/* Bytes per weight row, for the types the kernels read. */
static size_t row_bytes(int wtype, int K)
{
    switch (wtype) {
    case SYN_DT_F32:
        return (size_t)K * 4;
    case SYN_DT_F16:
    case SYN_DT_BF16:
        return (size_t)K * 2;
    case SYN_DT_Q8_0:
        return (size_t)(K / SYN_QBLOCK) * sizeof(struct syn_block_q8_0);
    case SYN_DT_Q4_0:
        return (size_t)(K / SYN_QBLOCK) * sizeof(struct syn_block_q4_0);
    case SYN_DT_Q4_1:
    case SYN_DT_Q5_0:
    case SYN_DT_Q5_1:
        return (size_t)(K / SYN_QBLOCK) * (size_t)syn_dtype_block_bytes(wtype);
    case SYN_DT_Q4_K:
        return (size_t)(K / SYN_QK_K) * SYN_Q4K_BYTES;
    case SYN_DT_Q5_K:
        return (size_t)(K / SYN_QK_K) * SYN_Q5K_BYTES;
    case SYN_DT_Q6_K:
        return (size_t)(K / SYN_QK_K) * SYN_Q6K_BYTES;
    default:
        return 0;
    }
}

/* A matmul as the pool tasks see it: one or more products sharing their activations, each cut
 * into tasks of whole tiles; task numbers run through the parts in order. */
struct mm_job {
    struct syn_mm mm[SYN_CPU_MM_MAX_PARTS];   /* the products */
    int rows_per_task[SYN_CPU_MM_MAX_PARTS];  /* weight rows per task (a part's last may have
                                                fewer) */
    int first_task[SYN_CPU_MM_MAX_PARTS + 1]; /* part i has tasks first_task[i] .. [i+1]-1 */
    int n_parts;
    const struct syn_cpu_isa *isa; /* kernels to use, fixed for the whole call */
    uint8_t *work;                 /* per-thread work areas in the scratch, or NULL */
    size_t work_stride;            /* bytes between two threads' work areas */
};

/* ---- decode: one lane per thread ----
 *
 * At T = 1 the products only stream their weights, and they stream fastest when each thread
 * reads one long contiguous run: the prefetches every tile issues for the rows after its own
 * then keep running into rows the same thread reads next, across the whole run, instead of
 * starting cold at every task (and at the end of every task into rows another thread reads).
 * So the parts' rows, taken in order as one sequence of units of LANE_UNIT_ROWS rows, are cut
 * into one contiguous lane per thread. A lane's owner takes its units front to back, a few at a
 * time; a thread whose own lane is empty then steals single units from the back of the others',
 * so that a thread that was descheduled (the machine may be shared) holds nobody up for more
 * than a unit. Which thread computes a row changes no bit of it (kernels.h). */

/* Rows per unit: a multiple of every tile width (16), so tiles never straddle units. */
#define LANE_UNIT_ROWS 16
/* Weight bytes a lane's owner claims at once: enough that a claim costs nothing against its
 * reading time, small against a lane. */
#define LANE_CLAIM_BYTES (128 * 1024)
/* Lanes at most (threads beyond this share lanes by stealing). */
#define MAX_LANES 64

/* A lane's unclaimed units [front, back), packed as front << 32 | back so that owner and thieves
 * claim with one compare-and-swap. Each on its own cache line. */
struct lane {
    _Alignas(64) _Atomic uint64_t span;
};

/* A decode matmul as the lane tasks see it. */
struct lane_job {
    struct mm_job *j;
    int unit_first[SYN_CPU_MM_MAX_PARTS + 1]; /* part p has units unit_first[p] .. [p+1]-1 */
    int n_lanes;
    int claim_units; /* units an owner claims at once */
    struct lane lanes[MAX_LANES];
};

static void quantise_task(void *ctx, int t, int thread)
{
    (void)thread;
    struct mm_job *j = ctx;
    const float *x = j->mm[0].x + (size_t)t * j->mm[0].K;
    uint8_t *dst = (uint8_t *)j->mm[0].xq + (size_t)t * j->mm[0].xq_stride;
    if (syn_is_kquant(j->mm[0].wtype))
        syn_cpu_quantize_row_kq(x, j->mm[0].K, dst);
    else if (syn_is_q32_offset(j->mm[0].wtype)) /* the plain arrangement, whatever the ISA */
        syn_cpu_isa_scalar.quantize_row(x, j->mm[0].K, j->mm[0].wtype, dst);
    else
        j->isa->quantize_row(x, j->mm[0].K, j->mm[0].wtype, dst);
}

static void rows_task(void *ctx, int task, int thread)
{
    struct mm_job *j = ctx;
    int p = 0;
    while (task >= j->first_task[p + 1]) p++;
    int r0 = (task - j->first_task[p]) * j->rows_per_task[p];
    int r1 = r0 + j->rows_per_task[p];
    if (r1 > j->mm[p].R) r1 = j->mm[p].R;
    j->isa->rows(&j->mm[p], r0, r1, j->work ? j->work + (size_t)thread * j->work_stride : NULL);
}

/* Runs units [u0, u1), which may run from one part into the next. */
static void run_units(const struct lane_job *lj, int u0, int u1, int thread)
{
    const struct mm_job *j = lj->j;
    uint8_t *work = j->work ? j->work + (size_t)thread * j->work_stride : NULL;
    int p = 0;
    while (u0 < u1) {
        while (u0 >= lj->unit_first[p + 1]) p++;
        const int ue = u1 < lj->unit_first[p + 1] ? u1 : lj->unit_first[p + 1];
        const int r0 = (u0 - lj->unit_first[p]) * LANE_UNIT_ROWS;
        int r1 = (ue - lj->unit_first[p]) * LANE_UNIT_ROWS;
        if (r1 > j->mm[p].R) r1 = j->mm[p].R;
        j->isa->rows(&j->mm[p], r0, r1, work);
        u0 = ue;
    }
}

/* Claims up to n units of lane l, from its front (the owner) or its back (a thief); returns how
 * many, the first in *u. */
static int lane_claim(struct lane *l, int n, int front, int *u)
{
    uint64_t w = atomic_load_explicit(&l->span, memory_order_relaxed);
    for (;;) {
        const uint32_t f = (uint32_t)(w >> 32), b = (uint32_t)w;
        if (f >= b) return 0;
        const uint32_t k = b - f < (uint32_t)n ? b - f : (uint32_t)n;
        const uint64_t nw = front ? (uint64_t)(f + k) << 32 | b : (uint64_t)f << 32 | (b - k);
        /* Relaxed: the units are only row numbers; the pool orders the region's data. */
        if (atomic_compare_exchange_weak_explicit(&l->span, &w, nw, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            *u = front ? (int)f : (int)(b - k);
            return (int)k;
        }
    }
}

/* Pool task: lane `lane` front to back, then the others' leftovers from their backs. */
static void lane_task(void *ctx, int lane, int thread)
{
    struct lane_job *lj = ctx;
    int u, n;
    while ((n = lane_claim(&lj->lanes[lane], lj->claim_units, 1, &u)) > 0)
        run_units(lj, u, u + n, thread);
    for (int k = 1; k < lj->n_lanes; k++) {
        struct lane *l = &lj->lanes[(lane + k) % lj->n_lanes];
        while ((n = lane_claim(l, 1, 0, &u)) > 0) run_units(lj, u, u + n, thread);
    }
}

/* The products of j (quantised activations ready) at T <= LANE_MAX_T on n_threads > 1, by lanes.
 * Measured on Zen 5, 2 threads, every tinyllama-1.1b product of a decode step from DRAM: Q8_0
 * 56 -> 61 GB/s against tasks of 256 KiB handed out in turn, and 60 -> 66 GB/s with the
 * decode tiles' non-temporal prefetch; F16 54-59 -> 56-66 GB/s. */
static void run_lanes(struct syn_pool *pool, struct mm_job *j, int n_threads)
{
    struct lane_job lj;
    lj.j = j;
    lj.unit_first[0] = 0;
    for (int p = 0; p < j->n_parts; p++)
        lj.unit_first[p + 1] =
            lj.unit_first[p] + (j->mm[p].R + LANE_UNIT_ROWS - 1) / LANE_UNIT_ROWS;
    const int units = lj.unit_first[j->n_parts];
    lj.n_lanes = n_threads < MAX_LANES ? n_threads : MAX_LANES;
    if (lj.n_lanes > units) lj.n_lanes = units;
    for (int l = 0; l < lj.n_lanes; l++) {
        const uint64_t lo = (uint64_t)units * l / lj.n_lanes;
        const uint64_t hi = (uint64_t)units * (l + 1) / lj.n_lanes;
        atomic_init(&lj.lanes[l].span, lo << 32 | hi);
    }
    const size_t claim = j->mm[0].T > 1 ? SYN_L2_WEIGHT_BYTES : LANE_CLAIM_BYTES;
    lj.claim_units = (int)(claim / (LANE_UNIT_ROWS * j->mm[0].w_row_bytes));
    if (lj.claim_units < 1) lj.claim_units = 1;
    syn_pool_run(pool, lane_task, &lj, lj.n_lanes);
}

/* Small batches (T <= LANE_MAX_T) run by lanes too, an owner claiming one L2 block of weights
 * (SYN_L2_WEIGHT_BYTES) at a time: each thread then reads weight rows that follow the ones it
 * read last, so the hardware prefetcher keeps its stream, where tasks handed out in turn made
 * every block start cold. Measured on Zen 5, 2 threads, six tinyllama-1.1b Q8_0 layers and the
 * output projection at T = 16 (products only): 705-715 -> 747-767 tok/s, six rounds alternated
 * with the old split; larger batches are compute-bound and keep it. */
#define LANE_MAX_T 32

/* Smallest batch (T > 1) task, in multiply-adds: a few microseconds of work. */
#define BATCH_TASK_MACS (128 * 1024)

/* Below this many activation elements, quantising them is quicker than starting a region. */
#define SERIAL_QUANTISE_ELEMS 32768

/* Rows per task, a multiple of 16 (of every tile width, so tiles never straddle tasks).
 * One thread, or T = 1 (which several threads run by lanes instead, run_lanes): one task.
 * T > 1 (compute-bound): about 16 tasks per thread for the dynamic hand-out to balance the
 * load, and at most what fits in L2, so that a task's weights are read from memory once while
 * every block of activation rows passes over them. */
static int pick_rows_per_task(int R, int K, int T, size_t w_row_bytes, int n_threads)
{
    const int align = 16;
    int rpt;
    if (n_threads <= 1 || T == 1) {
        rpt = R;
    } else {
        int want_tasks = n_threads * 16;
        rpt = (R + want_tasks - 1) / want_tasks;
        int l2_rows = (int)(SYN_L2_WEIGHT_BYTES / w_row_bytes);
        if (rpt > l2_rows) rpt = l2_rows;
        /* ...but no task under BATCH_TASK_MACS, where handing it out would cost more than
         * the balance it buys. */
        int min_rows = (int)((BATCH_TASK_MACS + (int64_t)T * K - 1) / ((int64_t)T * K));
        if (rpt < min_rows) rpt = min_rows;
    }
    rpt = (rpt + align - 1) / align * align;
    if (rpt < align) rpt = align;
    return rpt;
}

void syn_cpu_matmul_multi(struct syn_pool *pool, int wtype, int K, const float *x, int T,
                          const struct syn_cpu_mm_part *parts, int n, void *scratch)
{
    if (T <= 0 || n <= 0) return;
    assert(n <= SYN_CPU_MM_MAX_PARTS);
    struct mm_job j;
    j.isa = isa();
    j.n_parts = n;
    const size_t w_row_bytes = row_bytes(wtype, K);
    /* The model loader only hands us types listed in kernels.h. */
    assert(w_row_bytes > 0);
    const uint8_t *xq = NULL;
    size_t xq_stride = 0;
    if (is_quantised(wtype)) {
        xq = scratch;
        xq_stride = syn_is_kquant(wtype)       ? syn_xq_kq_row_bytes(K)
                    : syn_is_q32_offset(wtype) ? syn_xq_plain_row_bytes(K)
                                               : j.isa->xq_row_bytes(K);
    }
    const int n_threads = syn_pool_size(pool);
    const size_t work = j.isa->work_bytes ? j.isa->work_bytes(wtype, K, T) : 0;
    j.work = work ? (uint8_t *)scratch + round64(xq_stride * (size_t)T) : NULL;
    j.work_stride = round64(work);
    j.first_task[0] = 0;
    for (int p = 0; p < n; p++) {
        struct syn_mm *mm = &j.mm[p];
        mm->w = parts[p].w;
        mm->w_row_bytes = w_row_bytes;
        mm->wtype = wtype;
        mm->R = parts[p].R > 0 ? parts[p].R : 0;
        mm->K = K;
        mm->T = T;
        mm->x = x;
        mm->xq = xq;
        mm->xq_stride = xq_stride;
        mm->y = parts[p].y;
        j.rows_per_task[p] = pick_rows_per_task(mm->R, K, T, w_row_bytes, n_threads);
        j.first_task[p + 1] =
            j.first_task[p] + (mm->R + j.rows_per_task[p] - 1) / j.rows_per_task[p];
    }
    if (j.first_task[n] == 0) return;

    if (xq) {
        if ((size_t)T * (size_t)K <= SERIAL_QUANTISE_ELEMS)
            for (int t = 0; t < T; t++) quantise_task(&j, t, 0);
        else
            syn_pool_run(pool, quantise_task, &j, T);
    }
    if (T <= LANE_MAX_T && n_threads > 1) {
        run_lanes(pool, &j, n_threads);
        return;
    }
    syn_pool_run(pool, rows_task, &j, j.first_task[n]);
}

void syn_cpu_matmul(struct syn_pool *pool, const void *w, int wtype, int R, int K, const float *x,
                    int T, float *y, void *scratch)
{
    const struct syn_cpu_mm_part part = {w, R, y};
    syn_cpu_matmul_multi(pool, wtype, K, x, T, &part, 1, scratch);
}
