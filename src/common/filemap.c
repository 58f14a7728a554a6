/*
 * A whole file in memory, mapped or resident on huge pages (filemap.h).
 */
#include "common/filemap.h"

#include "synapse/error.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define HUGE_PAGE   ((size_t)2 << 20)
#define READ_CHUNK  ((size_t)64 << 20)
#define MAX_READERS 4

static int open_mapped(int fd, const char *path, size_t size, struct syn_filemap *m, char *err,
                       size_t errlen)
{
    void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED)
        return syn_seterr(err, errlen, SYN_EIO, "cannot map '%s' (%zu bytes): %s", path, size,
                          strerror(errno));
    *m = (struct syn_filemap){p, size, p, size};
    return SYN_OK;
}

/* One reader's share of the file: bytes [from, to) into base + from. */
struct part {
    int fd;
    uint8_t *base;
    size_t from, to;
    size_t bad_off; /* OUT: where a read failed */
    int bad_errno;  /* OUT: its errno (0: end of file came early) */
    int failed;     /* OUT */
};

static void *read_part(void *arg)
{
    struct part *p = arg;
    for (size_t off = p->from; off < p->to;) {
        size_t want = p->to - off < READ_CHUNK ? p->to - off : READ_CHUNK;
        ssize_t n = pread(p->fd, p->base + off, want, (off_t)off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            p->bad_off = off;
            p->bad_errno = n < 0 ? errno : 0;
            p->failed = 1;
            break;
        }
        off += (size_t)n;
    }
    return NULL;
}

/* Reads size bytes of fd into base with up to MAX_READERS threads (one per online CPU) on
 * huge-page-aligned shares: the kernel zeroes each fresh page before the copy lands, and one
 * thread did that at ~1 GB/s here, two at more than twice that. */
static int read_parallel(int fd, uint8_t *base, size_t size, size_t *bad_off, int *bad_errno)
{
    struct part parts[MAX_READERS];
    pthread_t th[MAX_READERS];
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int n = size < 4 * HUGE_PAGE ? 1
                                 : (int)(cpus < 1             ? 1
                                         : cpus > MAX_READERS ? MAX_READERS
                                                              : cpus);
    size_t share = (size / (size_t)n + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
    int started = 0, rc = 0;
    for (int i = 0; i < n; i++) {
        size_t from = share * (size_t)i, to = i == n - 1 ? size : share * (size_t)(i + 1);
        if (from > size) from = size;
        if (to > size) to = size;
        parts[i] = (struct part){fd, base, from, to, 0, 0, 0};
    }
    /* the first share is read on this thread; a thread that cannot start reads here too */
    for (int i = 1; i < n; i++) {
        if (pthread_create(&th[i], NULL, read_part, &parts[i]) != 0) break;
        started = i;
    }
    read_part(&parts[0]);
    for (int i = 1; i < n; i++) {
        if (i <= started)
            pthread_join(th[i], NULL);
        else
            read_part(&parts[i]);
    }
    for (int i = 0; i < n && !rc; i++)
        if (parts[i].failed) {
            *bad_off = parts[i].bad_off;
            *bad_errno = parts[i].bad_errno;
            rc = -1;
        }
    return rc;
}

static int open_resident(int fd, const char *path, size_t size, struct syn_filemap *m, char *err,
                         size_t errlen)
{
    /* a 2 MiB-aligned region (over-allocate, then trim both ends): a huge page needs the
     * alignment, and mmap guarantees only 4 KiB */
    size_t body = (size + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1), len = body + HUGE_PAGE;
    size_t bad_off = 0;
    int rc, bad_errno = 0;
    uint8_t *raw = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return syn_seterr(err, errlen, SYN_ENOMEM, "cannot allocate %zu bytes for '%s': %s", len,
                          path, strerror(errno));
    uint8_t *base = (uint8_t *)(((uintptr_t)raw + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    size_t head = (size_t)(base - raw), tail = len - head - body;
    if (head) munmap(raw, head);
    if (tail) munmap(base + body, tail);
    /* best effort: without THP the copy is still resident, on 4 KiB pages */
    (void)madvise(base, body, MADV_HUGEPAGE);
    if ((rc = read_parallel(fd, base, size, &bad_off, &bad_errno))) {
        munmap(base, body);
        return syn_seterr(err, errlen, SYN_EIO, "cannot read '%s' at byte %zu of %zu: %s", path,
                          bad_off, size,
                          bad_errno ? strerror(bad_errno) : "file shrank while read");
    }
    (void)mprotect(base, body, PROT_READ); /* weights are never written */
    *m = (struct syn_filemap){base, size, base, body};
    return SYN_OK;
}

int syn_filemap_open(int fd, const char *path, size_t size, enum syn_filemap_mode mode,
                     struct syn_filemap *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    if (size == 0) return syn_seterr(err, errlen, SYN_EINVAL, "'%s' is empty", path);
    return mode == SYN_FILEMAP_RESIDENT ? open_resident(fd, path, size, m, err, errlen)
                                        : open_mapped(fd, path, size, m, err, errlen);
}

void syn_filemap_release(struct syn_filemap *m)
{
    if (m->region) munmap(m->region, m->region_len);
    memset(m, 0, sizeof *m);
}
