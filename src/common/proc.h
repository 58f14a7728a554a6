/*
 * What every child we fork does before exec: close the descriptors it inherited.
 *
 * A forked child holds a copy of each of the parent's open descriptors until it exits, and a
 * socket is closed (FIN sent, port released) only when its last copy is. A worker started by
 * the gateway's pool would otherwise keep every client connection that was open at its fork:
 * a keep-alive connection the gateway then closes stays open for the client, which sends its
 * next request into it and waits until that worker exits. Sockets we create are close-on-exec
 * as well; this covers the ones libraries open without the flag.
 */
#ifndef SYNAPSE_COMMON_PROC_H
#define SYNAPSE_COMMON_PROC_H

/* Closes every descriptor from 3 up. Async-signal-safe: for use between fork and exec. */
void syn_close_inherited_fds(void);

#endif
