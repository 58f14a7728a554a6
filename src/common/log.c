/*
 * The logging module (see include/synapse/log.h). One global level and format, set from the
 * environment at first use; each line goes out in one write(2) so concurrent threads and
 * processes sharing a terminal do not interleave within a line.
 */
#include "synapse/log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static atomic_int g_level = SYN_LOG_WARN;
static atomic_int g_json = 0;
static atomic_int g_inited = 0;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR", "OFF"};

int syn_log_level_parse(const char *s)
{
    static const char *const names[] = {"debug", "info", "warn", "error", "off"};
    if (!s) return -1;
    for (int i = 0; i < 5; i++)
        if (strcasecmp(s, names[i]) == 0) return i;
    if (strcasecmp(s, "warning") == 0) return SYN_LOG_WARN;
    return -1;
}

void syn_log_init(void)
{
    const char *lv = getenv("SYNAPSE_LOG");
    int l = syn_log_level_parse(lv);
    if (l >= 0) atomic_store(&g_level, l);
    const char *js = getenv("SYNAPSE_LOG_JSON");
    if (js && *js && strcmp(js, "0") != 0) atomic_store(&g_json, 1);
    atomic_store(&g_inited, 1);
}

void syn_log_set_level(enum syn_log_level level)
{
    if (!atomic_load(&g_inited)) syn_log_init();
    atomic_store(&g_level, (int)level);
}

void syn_log_set_json(int on)
{
    if (!atomic_load(&g_inited)) syn_log_init();
    atomic_store(&g_json, on ? 1 : 0);
}

enum syn_log_level syn_log_get_level(void)
{
    if (!atomic_load(&g_inited)) syn_log_init();
    return (enum syn_log_level)atomic_load(&g_level);
}

/* Appends s to buf as the body of a JSON string (without quotes), escaping as needed. */
static size_t json_escape(char *buf, size_t cap, size_t n, const char *s)
{
    for (; *s && n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(buf + n, cap - n, "\\u%04x", c);
        } else {
            buf[n++] = (char)c;
        }
    }
    return n;
}

void syn_vlog(enum syn_log_level level, const char *component, const char *fmt, va_list ap)
{
    if (!atomic_load(&g_inited)) syn_log_init();
    if ((int)level < atomic_load(&g_level) || level >= SYN_LOG_OFF) return;

    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);

    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[40];
    size_t tl = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tl, sizeof ts - tl, ".%03dZ", (int)(tv.tv_usec / 1000));

    char line[4096];
    size_t n;
    if (atomic_load(&g_json)) {
        n = (size_t)snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":\"",
                             ts, level_names[level]);
        n = json_escape(line, sizeof line, n, component ? component : "");
        n += (size_t)snprintf(line + n, sizeof line - n, "\",\"pid\":%d,\"msg\":\"", (int)getpid());
        n = json_escape(line, sizeof line, n, msg);
        n += (size_t)snprintf(line + n, sizeof line - n, "\"}\n");
    } else {
        n = (size_t)snprintf(line, sizeof line, "%s %-5s %s: %s\n", ts, level_names[level],
                             component ? component : "-", msg);
    }
    if (n >= sizeof line) {
        n = sizeof line - 1;
        line[n - 1] = '\n';
    }
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}

void syn_log(enum syn_log_level level, const char *component, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    syn_vlog(level, component, fmt, ap);
    va_end(ap);
}
