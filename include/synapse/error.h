/*
 * Error codes shared by the engine's modules: 0 is success, negative values are failures
 * (as in libuv). Each module also fills a caller-provided message buffer with the details
 * ("gguf: tensor 'blk.3.attn_q.weight' ends at 812345 but the file has 800000 bytes").
 */
#ifndef SYNAPSE_ERROR_H
#define SYNAPSE_ERROR_H

#include <stddef.h>

enum syn_err {
    SYN_OK = 0,
    SYN_EINVAL = -1,       /* a bad argument from the caller */
    SYN_ENOMEM = -2,       /* an allocation failed */
    SYN_EIO = -3,          /* open/read/mmap failed */
    SYN_EFORMAT = -4,      /* a file or input is malformed */
    SYN_EUNSUPPORTED = -5, /* well-formed but not something we implement (dtype, arch) */
    SYN_ENOSPC = -6,       /* out of KV-cache blocks or sequence slots */
    SYN_ERANGE = -7,       /* a value out of range (token id, position past context) */
    SYN_ENOTFOUND = -8,    /* a named key, tensor or template is absent */
};

/* A static string for an error code ("malformed input", ...). */
const char *syn_strerror(int err);

/* printf into a caller's error buffer (may be NULL or len 0); returns err for tail calls:
 *   return syn_seterr(err, errlen, SYN_EFORMAT, "gguf: bad magic %08x", m); */
int syn_seterr(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
