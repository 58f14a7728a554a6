/*
 * Memory read bandwidth of this machine, as the CPU backend sees it: every thread of a pool
 * streams over its share of a buffer far larger than the caches. `synapse bench engine` reports
 * it beside the decode speed, since batch-1 decoding is bound by how fast the weights can be
 * read, and the ratio of the two says how close the kernels come to the hardware.
 *
 * Not a general memory benchmark: reads only, no write or copy figures, no NUMA placement.
 */
#ifndef SYN_CPU_MEMBW_H
#define SYN_CPU_MEMBW_H

#include <stddef.h>

struct syn_pool;

/* Default buffer size: 1 GiB, far beyond any last-level cache we expect. */
#define SYN_MEMBW_DEFAULT_BYTES ((size_t)1 << 30)

/* Reads a buffer of `bytes` bytes (0 = SYN_MEMBW_DEFAULT_BYTES) with every thread of pool (NULL
 * = the calling thread alone), `reps` times after one warm-up pass, and returns the best pass in
 * GB/s (1e9 bytes per second). The buffer is allocated, touched once and freed within the call.
 * Returns a negative value if the buffer cannot be allocated or reps < 1. */
double syn_membw_read_gbs(struct syn_pool *pool, size_t bytes, int reps);

#endif
