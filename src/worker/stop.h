/*
 * Stop strings for streaming generation: decides how much of the text generated so far can be
 * sent to the client, holding back a tail that might still become a stop string, and where the
 * text ends once one appears.
 */
#ifndef SYN_WORKER_STOP_H
#define SYN_WORKER_STOP_H

#include <stddef.h>

/* text[0..len) is everything generated; stops: n strings (empty ones ignored).
 * Returns the number of bytes that are safe to send. When a stop string occurs, *hit is set to 1
 * and the return value is the offset where the (earliest) stop string begins: the text ends
 * there. Otherwise the bytes that could be the start of a stop string are held back. */
size_t syn_stop_scan(const char *text, size_t len, char *const *stops, int n, int *hit);

#endif
