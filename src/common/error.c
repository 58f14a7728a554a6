/* Error strings and the error-buffer helper of include/synapse/error.h. */
#include "synapse/error.h"

#include <stdarg.h>
#include <stdio.h>

const char *syn_strerror(int err)
{
    switch (err) {
    case SYN_OK:
        return "success";
    case SYN_EINVAL:
        return "invalid argument";
    case SYN_ENOMEM:
        return "out of memory";
    case SYN_EIO:
        return "input/output error";
    case SYN_EFORMAT:
        return "malformed input";
    case SYN_EUNSUPPORTED:
        return "unsupported";
    case SYN_ENOSPC:
        return "no space left (KV cache or sequence slots)";
    case SYN_ERANGE:
        return "value out of range";
    case SYN_ENOTFOUND:
        return "not found";
    default:
        return "unknown error";
    }
}

int syn_seterr(char *err, size_t errlen, int code, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}
