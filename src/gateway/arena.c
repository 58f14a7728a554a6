/* The per-request bump allocator of arena.h. */
#include "gateway/arena.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

struct gw_arena_chunk {
    struct gw_arena_chunk *next; /* older chunk */
    size_t cap;                  /* usable bytes in data */
    size_t used;                 /* bytes handed out */
    alignas(max_align_t) unsigned char data[];
};

#define GW_ARENA_CHUNK 4096

void *gw_arena_alloc(struct gw_arena *a, size_t n)
{
    const size_t al = alignof(max_align_t);
    size_t need = (n + al - 1) & ~(al - 1);
    if (need < n) return NULL; /* overflow */
    struct gw_arena_chunk *c = a->head;
    if (!c || c->cap - c->used < need) {
        size_t cap = need > GW_ARENA_CHUNK ? need : GW_ARENA_CHUNK;
        if (cap > (size_t)-1 - sizeof *c) return NULL;
        c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->cap = cap;
        c->used = 0;
        /* a big one-off block goes behind the current chunk so its free space stays usable */
        if (a->head && need > GW_ARENA_CHUNK) {
            c->next = a->head->next;
            a->head->next = c;
        } else {
            c->next = a->head;
            a->head = c;
        }
        a->total += sizeof *c + cap;
    }
    void *p = c->data + c->used;
    c->used += need;
    memset(p, 0, n);
    return p;
}

char *gw_arena_strndup(struct gw_arena *a, const char *s, size_t n)
{
    if (n == (size_t)-1) return NULL;
    char *p = gw_arena_alloc(a, n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

void gw_arena_release(struct gw_arena *a)
{
    struct gw_arena_chunk *c = a->head;
    while (c) {
        struct gw_arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->total = 0;
}
