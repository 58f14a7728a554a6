/*
 * A whole file, read-only, in memory, one of two ways:
 *   - mapped (mmap of the file): pages are shared with every process that maps the same file
 *     and come from the page cache; the kernel may take them away again when they sit idle.
 *   - resident: read into private anonymous memory on 2 MiB transparent huge pages
 *     (MADV_HUGEPAGE), then made read-only. It costs one copy of the file per process and the
 *     read at open, but nothing is faulted in later, and a few hundred huge-page entries cover
 *     what took hundreds of thousands of 4 KiB ones.
 * The engine loads weights resident by default: on the virtual machines this project runs on,
 * touching 4 KiB pages again after the process sat idle for a second costs more than the work
 * itself (docs/BENCHMARKS.md, "Weights on huge pages"). Not a general file API: the model
 * readers (gguf.c, safetensors.c) are its users.
 */
#ifndef SYNAPSE_COMMON_FILEMAP_H
#define SYNAPSE_COMMON_FILEMAP_H

#include <stddef.h>

enum syn_filemap_mode {
    SYN_FILEMAP_MAPPED = 0,
    SYN_FILEMAP_RESIDENT = 1,
};

struct syn_filemap {
    const void *data; /* the file's bytes (size of them) */
    size_t size;      /* the file's length */
    void *region;     /* what syn_filemap_release unmaps (NULL: nothing) */
    size_t region_len;
};

/* Brings the size bytes of the open file fd into memory as mode says. Returns 0, or a negative
 * syn_err with a message naming path in err (m is then empty). size must be > 0. */
int syn_filemap_open(int fd, const char *path, size_t size, enum syn_filemap_mode mode,
                     struct syn_filemap *m, char *err, size_t errlen);

/* Unmaps what syn_filemap_open set up; harmless on an empty one. */
void syn_filemap_release(struct syn_filemap *m);

#endif
