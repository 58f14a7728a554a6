/*
 * Logging for every Synapse component: levels, timestamps, a component name, and optionally
 * JSON lines for log shippers. Quiet by default (warnings and errors only) so that a CLI's
 * stdout and stderr stay readable; SYNAPSE_LOG=debug|info|warn|error|off raises or lowers the
 * level, SYNAPSE_LOG_JSON=1 switches to one JSON object per line. Thread-safe: each line is
 * formatted into a local buffer and written with a single write(2).
 *
 * Not a metrics system and not an audit log: lines may be dropped if stderr is closed.
 */
#ifndef SYNAPSE_LOG_H
#define SYNAPSE_LOG_H

#include <stdarg.h>

enum syn_log_level {
    SYN_LOG_DEBUG = 0,
    SYN_LOG_INFO = 1,
    SYN_LOG_WARN = 2,
    SYN_LOG_ERROR = 3,
    SYN_LOG_OFF = 4,
};

/* Reads SYNAPSE_LOG and SYNAPSE_LOG_JSON. Safe to call more than once; the first log call
 * calls it if nobody did. */
void syn_log_init(void);

/* Overrides the level from the environment (e.g. for a --verbose flag). */
void syn_log_set_level(enum syn_log_level level);
void syn_log_set_json(int on);
enum syn_log_level syn_log_get_level(void);

/* Parses "debug", "info", "warn", "error", "off". Returns -1 for anything else. */
int syn_log_level_parse(const char *s);

/* Writes one line: "2026-11-28T10:00:00.123Z INFO  worker: ready in 12.3 ms". The message
 * must not end in a newline; one is added. */
void syn_log(enum syn_log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void syn_vlog(enum syn_log_level level, const char *component, const char *fmt, va_list ap);

#define syn_debug(comp, ...) syn_log(SYN_LOG_DEBUG, comp, __VA_ARGS__)
#define syn_info(comp, ...)  syn_log(SYN_LOG_INFO, comp, __VA_ARGS__)
#define syn_warn(comp, ...)  syn_log(SYN_LOG_WARN, comp, __VA_ARGS__)
#define syn_error(comp, ...) syn_log(SYN_LOG_ERROR, comp, __VA_ARGS__)

#endif
