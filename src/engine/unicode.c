/*
 * The little Unicode the tokenizers need: a UTF-8 decoder that never fails (every byte of any
 * input belongs to exactly one character, invalid bytes standing alone as U+FFFD) and the
 * letter / number / whitespace classes from the generated range table. Not a general Unicode
 * library: no normalization, no case mapping.
 */
#include "tokenizer_impl.h"
#include "unicode_tables.h"

size_t syn_utf8_next(const uint8_t *s, size_t n, uint32_t *cp)
{
    uint8_t c = s[0];
    size_t need;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2, v = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3, v = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4, v = c & 0x07, min = 0x10000;
    } else {
        goto bad; /* a continuation byte, C0/C1 (always overlong) or F5..FF */
    }
    if (n < need) goto bad;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80) goto bad;
        v = v << 6 | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) goto bad;
    *cp = v;
    return need;
bad:
    *cp = 0xFFFD;
    return 1;
}

size_t syn_utf8_put(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

uint32_t syn_uc_flags(uint32_t cp)
{
    /* ASCII is most of what tokenizers see: answer it without the search. */
    if (cp < 0x80) {
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return SYN_UC_LETTER;
        if (cp >= '0' && cp <= '9') return SYN_UC_NUMBER;
        if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return SYN_UC_SPACE;
        return 0;
    }
    size_t lo = 0, hi = SYN_UC_N_RANGES;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (syn_uc_ranges[mid].hi < cp)
            lo = mid + 1;
        else if (syn_uc_ranges[mid].lo > cp)
            hi = mid;
        else
            return syn_uc_ranges[mid].flags;
    }
    return 0;
}
