/*
 * A per-request bump allocator: everything one HTTP request needs (its head, headers, body and
 * the gateway's state for it) comes from one arena that is freed in one call when the request
 * ends, so a request cannot leak piecemeal. Not for memory that grows without bound while the
 * request lives (the non-streaming reply text uses a plain growing buffer).
 */
#ifndef SYN_GW_ARENA_H
#define SYN_GW_ARENA_H

#include <stddef.h>

struct gw_arena_chunk;

struct gw_arena {
    struct gw_arena_chunk *head; /* newest chunk first; owned */
    size_t total;                /* bytes obtained from malloc so far */
};

/* An empty arena needs no init beyond zeroing ({0}). */
/* Returns n bytes aligned for any type, zeroed; NULL when malloc fails. */
void *gw_arena_alloc(struct gw_arena *a, size_t n);
/* A NUL-terminated copy of s[0..n). */
char *gw_arena_strndup(struct gw_arena *a, const char *s, size_t n);
/* Frees every chunk; the arena is empty (and reusable) afterwards. */
void gw_arena_release(struct gw_arena *a);

#endif
