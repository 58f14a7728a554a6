/* Stop-string matching with hold-back (see stop.h). Quadratic in the stop strings' lengths only,
 * which OpenAI caps at 4 strings; the text is scanned from where the last safe point could be. */
#include "stop.h"

#include <string.h>

size_t syn_stop_scan(const char *text, size_t len, char *const *stops, int n, int *hit)
{
    *hit = 0;
    size_t earliest = len;
    for (int i = 0; i < n; i++) {
        size_t sl = stops[i] ? strlen(stops[i]) : 0;
        if (sl == 0 || sl > len) continue;
        const char *p = memmem(text, len, stops[i], sl);
        if (p && (size_t)(p - text) < earliest) {
            earliest = (size_t)(p - text);
            *hit = 1;
        }
    }
    if (*hit) return earliest;
    /* hold back the longest suffix of text that is a proper prefix of some stop string */
    size_t safe = len;
    for (int i = 0; i < n; i++) {
        size_t sl = stops[i] ? strlen(stops[i]) : 0;
        if (sl == 0) continue;
        size_t maxk = sl - 1 < len ? sl - 1 : len;
        for (size_t k = maxk; k > 0; k--)
            if (memcmp(text + len - k, stops[i], k) == 0) {
                if (len - k < safe) safe = len - k;
                break;
            }
    }
    return safe;
}
