/* What re-reading memory costs after the process sat idle (bench/weights_ab.sh runs it; not a
 * test). It reads a whole file three ways, each after GAP seconds of sleep and then once more at
 * once: through a read-only mmap of the file (how the engine's "mapped" weights sit), from a copy
 * in anonymous memory on 4 KiB pages, and from a copy on 2 MiB transparent huge pages (the
 * engine's "resident" weights). On a virtual machine that ages and reclaims idle pages (here:
 * DAMON in the guest, shadow paging in the host), the first read after a gap pays per page
 * touched; huge pages make that a few hundred entries instead of hundreds of thousands.
 *   idle_touch FILE GAP_SECONDS [ROUNDS]      one line per round, times in ms */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HUGE ((size_t)2 << 20)

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

static volatile uint64_t sink;

/* Reads every 64-byte line once; returns the milliseconds it took. */
static double read_all(const uint8_t *p, size_t n)
{
    double t0 = now_ms();
    uint64_t s = 0;
    for (size_t i = 0; i + 8 <= n; i += 64) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        s += v;
    }
    sink = s;
    return now_ms() - t0;
}

/* An anonymous copy of src, 2 MiB-aligned, on huge pages if huge (else 4 KiB pages). */
static uint8_t *copy_anon(const uint8_t *src, size_t n, int huge)
{
    size_t body = (n + HUGE - 1) & ~(HUGE - 1);
    uint8_t *raw =
        mmap(NULL, body + HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    uint8_t *p = (uint8_t *)(((uintptr_t)raw + HUGE - 1) & ~(uintptr_t)(HUGE - 1));
    madvise(p, body, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    memcpy(p, src, n);
    return p;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: idle_touch FILE GAP_SECONDS [ROUNDS]\n");
        return 2;
    }
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size <= 0) {
        perror(argv[1]);
        return 1;
    }
    size_t n = (size_t)st.st_size;
    double gap = atof(argv[2]);
    int rounds = argc > 3 ? atoi(argv[3]) : 6;
    const uint8_t *mapped = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
    if (mapped == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    uint8_t *small = copy_anon(mapped, n, 0), *huge = copy_anon(mapped, n, 1);
    if (!small || !huge) {
        perror("mmap anonymous");
        return 1;
    }
    const uint8_t *views[3] = {mapped, small, huge};
    printf("# idle_touch %s (%zu bytes), gap %.2f s: first read after the gap, then again\n",
           argv[1], n, gap);
    for (int r = 0; r < rounds; r++) {
        double t[3][2];
        for (int v = 0; v < 3; v++) {
            usleep((useconds_t)(gap * 1e6));
            t[v][0] = read_all(views[v], n);
            t[v][1] = read_all(views[v], n);
        }
        printf("mapped %.2f %.2f  anon_4k %.2f %.2f  anon_2m %.2f %.2f\n", t[0][0], t[0][1],
               t[1][0], t[1][1], t[2][0], t[2][1]);
        fflush(stdout);
    }
    return 0;
}
