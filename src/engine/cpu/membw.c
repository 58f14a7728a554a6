/*
 * Read-bandwidth measurement (membw.h). The buffer is cut into chunks handed out by the thread
 * pool, the way syn_cpu_matmul hands out blocks of weight rows, so the figure is the one the
 * kernels could reach at best. Each chunk is read with the widest loads the CPU offers and
 * folded into a checksum that is kept, so that the compiler cannot drop the reads.
 */
#include "engine/cpu/membw.h"

#include "engine/cpu/threadpool.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_AVX2_PATH 1
#else
#define HAVE_AVX2_PATH 0
#endif

/* Bytes per pool task: large enough that the hand-out costs nothing, small enough to balance. */
#define CHUNK ((size_t)1 << 20)

/* One measurement as the pool tasks see it. */
struct membw_job {
    uint8_t *buf;          /* the buffer; from aligned_alloc(), freed by syn_membw_read_gbs */
    size_t bytes;          /* its size, a multiple of 256 */
    int use_avx2;          /* read with 32-byte loads */
    int use_avx512;        /* read with 64-byte loads (takes precedence) */
    _Atomic uint64_t sink; /* checksum of everything read, so the reads are not optimised out */
};

static uint64_t read_portable(const uint8_t *p, size_t n)
{
    const uint64_t *q = (const uint64_t *)p;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t i = 0; i + 4 <= n / 8; i += 4) {
        a += q[i];
        b += q[i + 1];
        c += q[i + 2];
        d += q[i + 3];
    }
    return a ^ b ^ c ^ d;
}

#if HAVE_AVX2_PATH
__attribute__((target("avx2"))) static uint64_t read_avx2(const uint8_t *p, size_t n)
{
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (size_t i = 0; i + 128 <= n; i += 128) {
        a = _mm256_add_epi64(a, _mm256_load_si256((const __m256i *)(p + i)));
        b = _mm256_add_epi64(b, _mm256_load_si256((const __m256i *)(p + i + 32)));
        c = _mm256_add_epi64(c, _mm256_load_si256((const __m256i *)(p + i + 64)));
        d = _mm256_add_epi64(d, _mm256_load_si256((const __m256i *)(p + i + 96)));
    }
    __m256i s = _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d));
    uint64_t out[4];
    _mm256_storeu_si256((__m256i *)out, s);
    return out[0] ^ out[1] ^ out[2] ^ out[3];
}
#endif

/* 64-byte loads where the CPU has them: on Zen 5 (2 threads) they read 4.5% more than 32-byte
 * loads (67.3 against 64.4 GB/s, the mean of 24 passes each, alternated), and the figure is
 * meant to be the most the machine reads, not what one instruction width gets. */
__attribute__((target("avx512f"))) static uint64_t read_avx512(const uint8_t *p, size_t n)
{
    __m512i a = _mm512_setzero_si512(), b = a, c = a, d = a;
    for (size_t i = 0; i + 256 <= n; i += 256) {
        a = _mm512_add_epi64(a, _mm512_load_si512((const void *)(p + i)));
        b = _mm512_add_epi64(b, _mm512_load_si512((const void *)(p + i + 64)));
        c = _mm512_add_epi64(c, _mm512_load_si512((const void *)(p + i + 128)));
        d = _mm512_add_epi64(d, _mm512_load_si512((const void *)(p + i + 192)));
    }
    __m512i s = _mm512_xor_si512(_mm512_xor_si512(a, b), _mm512_xor_si512(c, d));
    uint64_t out[8];
    _mm512_storeu_si512((void *)out, s);
    return out[0] ^ out[1] ^ out[2] ^ out[3] ^ out[4] ^ out[5] ^ out[6] ^ out[7];
}

static size_t chunk_len(const struct membw_job *j, int task, uint8_t **start)
{
    size_t off = (size_t)task * CHUNK;
    *start = j->buf + off;
    return j->bytes - off < CHUNK ? j->bytes - off : CHUNK;
}

static void touch_task(void *ctx, int task, int thread)
{
    (void)thread;
    struct membw_job *j = ctx;
    uint8_t *p;
    size_t n = chunk_len(j, task, &p);
    /* Distinct non-zero bytes: the pages are really allocated, not shared zero pages. */
    memset(p, (task & 0x7f) + 1, n);
}

static void read_task(void *ctx, int task, int thread)
{
    (void)thread;
    struct membw_job *j = ctx;
    uint8_t *p;
    size_t n = chunk_len(j, task, &p);
    uint64_t s;
#if HAVE_AVX2_PATH
    if (j->use_avx512)
        s = read_avx512(p, n);
    else if (j->use_avx2)
        s = read_avx2(p, n);
    else
#endif
        s = read_portable(p, n);
    atomic_fetch_add_explicit(&j->sink, s, memory_order_relaxed);
}

static double seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double syn_membw_read_gbs(struct syn_pool *pool, size_t bytes, int reps)
{
    if (reps < 1) return -1.0;
    if (bytes == 0) bytes = SYN_MEMBW_DEFAULT_BYTES;
    bytes = (bytes + 255) & ~(size_t)255; /* whole steps of the widest read loop */

    struct membw_job j;
    j.buf = aligned_alloc(64, bytes);
    if (!j.buf) return -1.0;
    j.bytes = bytes;
    j.use_avx2 = 0;
    j.use_avx512 = 0;
#if HAVE_AVX2_PATH
    __builtin_cpu_init();
    j.use_avx2 = __builtin_cpu_supports("avx2");
    j.use_avx512 = __builtin_cpu_supports("avx512f");
#endif
    atomic_init(&j.sink, 0);

    int n_tasks = (int)((bytes + CHUNK - 1) / CHUNK);
    syn_pool_run(pool, touch_task, &j, n_tasks);
    syn_pool_run(pool, read_task, &j, n_tasks); /* warm-up: TLB, page tables, frequency */

    double best = 0.0;
    for (int r = 0; r < reps; r++) {
        double t0 = seconds_now();
        syn_pool_run(pool, read_task, &j, n_tasks);
        double dt = seconds_now() - t0;
        double gbs = dt > 0 ? (double)bytes / dt * 1e-9 : 0.0;
        if (gbs > best) best = gbs;
    }
    free(j.buf);
    return best;
}
