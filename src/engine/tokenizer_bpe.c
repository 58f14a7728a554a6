/*
 * Byte-level BPE encoding (tokenizer.ggml.model = "gpt2", and tokenizer.json files with a
 * ByteLevel pre-tokenizer): the text is cut into words by the model's pre-tokenizer, each byte of
 * a word starts as the token of its GPT-2 byte character (0x20 is "Ġ"), and adjacent tokens merge
 * by rank, lowest first (the leftmost on ties), through the merge queue in tokenizer.c.
 *
 * The pre-tokenizers are written by hand from the regular expressions the models publish (there
 * is no regex engine here), reproducing llama.cpp's splits, which the reference vectors come
 * from. Each is a function that cuts one piece of text into words; deepseek-llm applies six in
 * turn, each to every piece the previous ones left.
 *
 * Input need not be UTF-8: an invalid byte is a character of its own with no class (like U+FFFD
 * but keeping its byte), so every byte string encodes and decodes back to itself.
 */
#include "tokenizer_impl.h"

#include "synapse/error.h"

#include <string.h>

/* ---- GPT-2's byte <-> character mapping ---- */

/* Bytes that stand for themselves: '!'..'~', '¡'..'¬', '®'..'ÿ'. The other 68 (controls, space,
 * DEL, C1 controls, NBSP, soft hyphen) map in order to U+0100..U+0143. */
static int byte_is_printable(unsigned b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t tok_byte_to_cp(uint8_t b)
{
    if (byte_is_printable(b)) return b;
    if (b <= 0x20) return 0x100 + b;                        /* 33 of them */
    if (b >= 0x7F && b <= 0xA0) return 0x121 + (b - 0x7Fu); /* 34 */
    return 0x143;                                           /* 0xAD */
}

int tok_cp_to_byte(uint32_t cp)
{
    if (cp < 0x100) return byte_is_printable(cp) ? (int)cp : -1;
    if (cp <= 0x120) return (int)(cp - 0x100);
    if (cp <= 0x142) return (int)(cp - 0x121 + 0x7F);
    if (cp == 0x143) return 0xAD;
    return -1;
}

int tok_parse_byte_piece(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else
            return -1;
    }
    return v;
}

/* ---- pre-tokenizers ----
 *
 * Each works on the code points [a, b) of one piece and marks in cut[] where words start (cut[a]
 * is already set). Positions past the piece have no class and match nothing, as a regex's input
 * ends there. */

struct pre_ctx {
    const uint32_t *cp; /* code points of the fragment (U+FFFD for an invalid byte) */
    const uint8_t *fl;  /* their SYN_UC_* classes */
    uint8_t *cut;       /* 1 where a word starts; cut[n] is set */
};

#define L_ SYN_UC_LETTER
#define N_ SYN_UC_NUMBER
#define S_ SYN_UC_SPACE

/* The class of position i of piece [., b), 0 past its end. */
static unsigned fl_at(const struct pre_ctx *c, size_t i, size_t b)
{
    return i < b ? c->fl[i] : 0;
}

/* The code point at i, or UINT32_MAX past the end. */
static uint32_t cp_at(const struct pre_ctx *c, size_t i, size_t b)
{
    return i < b ? c->cp[i] : UINT32_MAX;
}

static uint32_t ascii_lower(uint32_t cp)
{
    return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
}

/* 's 't 're 've 'm 'll 'd at pos (optionally any case): the length matched, or 0. */
static size_t contraction(const struct pre_ctx *c, size_t pos, size_t b, int any_case)
{
    if (c->cp[pos] != '\'' || pos + 1 >= b) return 0;
    uint32_t c1 = cp_at(c, pos + 1, b), c2 = cp_at(c, pos + 2, b);
    if (any_case) {
        c1 = ascii_lower(c1);
        c2 = ascii_lower(c2);
    }
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return 2;
    if (pos + 2 < b &&
        ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')))
        return 3;
    return 0;
}

/* A whitespace run at pos: \s+(?!\S) leaves its last character for the next word when a
 * non-space follows; at the end of the piece the whole run is one word. */
static size_t space_run_end(const struct pre_ctx *c, size_t pos, size_t b)
{
    size_t k = 0;
    while (fl_at(c, pos + k, b) & S_) k++;
    if (k > 1 && pos + k < b) return pos + k - 1;
    if (k > 0) return pos + k;
    return pos + 1; /* nothing matched: the character alone */
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static void pre_gpt2(const struct pre_ctx *c, size_t a, size_t b)
{
    size_t pos = a;
    while (pos < b) {
        size_t k = contraction(c, pos, b, 0);
        if (k) {
            pos += k;
        } else {
            size_t q = pos + (c->cp[pos] == ' '); /* an optional leading space */
            unsigned f = fl_at(c, q, b);
            if (f & L_) {
                for (pos = q; fl_at(c, pos, b) & L_;) pos++;
            } else if (f & N_) {
                for (pos = q; fl_at(c, pos, b) & N_;) pos++;
            } else if (q < b && !(f & (L_ | N_ | S_))) {
                for (pos = q; pos < b && !(c->fl[pos] & (L_ | N_ | S_));) pos++;
            } else {
                pos = space_run_end(c, pos, b);
            }
        }
        c->cut[pos] = 1;
    }
}

/* Llama 3 (max_digits 3) and Qwen 2 (max_digits 1):
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
 * \s*[\r\n]+|\s+(?!\S)|\s+ */
static void pre_llama3(const struct pre_ctx *c, size_t a, size_t b, size_t max_digits)
{
    size_t pos = a;
    while (pos < b) {
        uint32_t cp = c->cp[pos];
        unsigned f = c->fl[pos];
        size_t k = contraction(c, pos, b, 1);
        if (k) {
            pos += k;
        } else if (!(cp == '\r' || cp == '\n' || (f & N_)) &&
                   ((f & L_) || (fl_at(c, pos + 1, b) & L_))) {
            /* one leading non-letter (or the first letter), then letters */
            for (pos++; fl_at(c, pos, b) & L_;) pos++;
        } else if (f & N_) {
            size_t run = 0;
            while (fl_at(c, pos, b) & N_) {
                pos++;
                if (++run == max_digits) {
                    c->cut[pos] = 1;
                    run = 0;
                }
            }
        } else {
            size_t q = pos + (cp == ' ');
            unsigned f2 = fl_at(c, q, b);
            if (!(f2 & (L_ | N_ | S_))) {
                /* punctuation and the like, then any line breaks */
                for (pos = q; pos < b && !(c->fl[pos] & (L_ | N_ | S_));) pos++;
                while (pos < b && (c->cp[pos] == '\r' || c->cp[pos] == '\n')) pos++;
            } else {
                size_t n = 0, last_nl = 0;
                while (fl_at(c, pos + n, b) & S_) {
                    if (c->cp[pos + n] == '\r' || c->cp[pos + n] == '\n') last_nl = pos + n + 1;
                    n++;
                }
                if (last_nl)
                    pos = last_nl; /* \s*[\r\n]+ */
                else
                    pos = space_run_end(c, pos, b);
            }
        }
        c->cut[pos] = 1;
    }
}

/* Every digit alone (\p{N}), the first step of smollm and starcoder. */
static void pre_digits(const struct pre_ctx *c, size_t a, size_t b)
{
    for (size_t i = a; i < b; i++)
        if (c->fl[i] & N_) {
            c->cut[i] = 1;
            c->cut[i + 1] = 1;
        }
}

/* ---- deepseek-llm ----
 * Six expressions, each splitting every piece the previous left into matches and the text
 * between them. They ran as std::wregex in llama.cpp, where a non-ASCII space had been replaced
 * by U+000B first (so U+3000 matches \s but not the class that lists it). */

struct cp_range {
    uint32_t lo, hi; /* inclusive */
};

/* \s?[A-Za-zµÀ-ÖØ-öø-ƺ...]+: the cased letters of the deepseek-llm expression. */
static const struct cp_range ds_letters[] = {
    {0x41, 0x5A},       {0x61, 0x7A},       {0xB5, 0xB5},       {0xC0, 0xD6},
    {0xD8, 0xF6},       {0xF8, 0x1BA},      {0x1BC, 0x1BF},     {0x1C4, 0x293},
    {0x295, 0x2AF},     {0x370, 0x373},     {0x376, 0x377},     {0x37B, 0x37D},
    {0x37F, 0x37F},     {0x386, 0x386},     {0x388, 0x38A},     {0x38C, 0x38C},
    {0x38E, 0x3A1},     {0x3A3, 0x3F5},     {0x3F7, 0x481},     {0x48A, 0x52F},
    {0x531, 0x556},     {0x10A0, 0x10C5},   {0x13A0, 0x13F5},   {0x13F8, 0x13FD},
    {0x1C90, 0x1CBA},   {0x1CBD, 0x1CBF},   {0x1D00, 0x1D2B},   {0x1D6B, 0x1D77},
    {0x1D79, 0x1D9A},   {0x1E00, 0x1F15},   {0x1F18, 0x1F1D},   {0x1F20, 0x1F45},
    {0x1F48, 0x1F4D},   {0x1F50, 0x1F57},   {0x1F59, 0x1F59},   {0x1F5B, 0x1F5B},
    {0x1F5D, 0x1F5D},   {0x1F5F, 0x1F7D},   {0x1F80, 0x1FB4},   {0x1FB6, 0x1FBC},
    {0x1FBE, 0x1FBE},   {0x1FC2, 0x1FC4},   {0x1FC6, 0x1FCC},   {0x1FD0, 0x1FD3},
    {0x1FD6, 0x1FDB},   {0x1FE0, 0x1FEC},   {0x1FF2, 0x1FF4},   {0x1FF6, 0x1FFC},
    {0x2102, 0x2102},   {0x2107, 0x2107},   {0x210A, 0x2113},   {0x2115, 0x2115},
    {0x2119, 0x211D},   {0x2124, 0x2124},   {0x2126, 0x2126},   {0x2128, 0x2128},
    {0x212A, 0x212D},   {0x212F, 0x2134},   {0x2139, 0x2139},   {0x213C, 0x213F},
    {0x2145, 0x2149},   {0x214E, 0x214E},   {0x2183, 0x2184},   {0x2C00, 0x2C7B},
    {0x2C7E, 0x2CE4},   {0x2CEB, 0x2CEE},   {0x2CF2, 0x2CF3},   {0xA640, 0xA66D},
    {0xA680, 0xA69B},   {0xA722, 0xA76F},   {0xA771, 0xA787},   {0xA78B, 0xA78E},
    {0xAB70, 0xABBF},   {0xFB00, 0xFB06},   {0xFB13, 0xFB17},   {0xFF21, 0xFF3A},
    {0xFF41, 0xFF5A},   {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB},
    {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
};

/* \s?[!-/:-~！-／：-～‘-‟　-。]+ */
static const struct cp_range ds_punct[] = {
    {0x21, 0x2F},     {0x3A, 0x7E},     {0x2018, 0x201F},
    {0x3000, 0x3002}, {0xFF01, 0xFF0F}, {0xFF1A, 0xFF5E},
};

/* [一-龥ࠀ-一가-퟿]+ */
static const struct cp_range ds_cjk[] = {{0x800, 0x9FA5}, {0xAC00, 0xD7FF}};

static int in_ranges(const struct cp_range *r, size_t n, uint32_t cp)
{
    for (size_t i = 0; i < n; i++)
        if (cp >= r[i].lo && cp <= r[i].hi) return 1;
    return 0;
}

/* The code point the std::wregex saw: non-ASCII whitespace became U+000B. */
static uint32_t ds_cp(const struct pre_ctx *c, size_t i)
{
    return c->cp[i] > 0x7F && (c->fl[i] & S_) ? 0x0B : c->cp[i];
}

/* \s?[class]+ over [a, b) */
static void ds_space_class(const struct pre_ctx *c, size_t a, size_t b, const struct cp_range *r,
                           size_t nr)
{
    size_t pos = a;
    while (pos < b) {
        size_t e;
        if (in_ranges(r, nr, ds_cp(c, pos)))
            e = pos + 1;
        else if ((c->fl[pos] & S_) && pos + 1 < b && in_ranges(r, nr, ds_cp(c, pos + 1)))
            e = pos + 2;
        else {
            pos++;
            continue;
        }
        while (e < b && in_ranges(r, nr, ds_cp(c, e))) e++;
        c->cut[pos] = 1;
        c->cut[e] = 1;
        pos = e;
    }
}

static void ds_newlines(const struct pre_ctx *c, size_t a, size_t b)
{
    for (size_t i = a; i < b; i++)
        if (c->cp[i] == '\r' || c->cp[i] == '\n') {
            c->cut[i] = 1;
            c->cut[i + 1] = 1;
        }
}

static void ds_letters_step(const struct pre_ctx *c, size_t a, size_t b)
{
    ds_space_class(c, a, b, ds_letters, sizeof ds_letters / sizeof ds_letters[0]);
}

static void ds_punct_step(const struct pre_ctx *c, size_t a, size_t b)
{
    ds_space_class(c, a, b, ds_punct, sizeof ds_punct / sizeof ds_punct[0]);
}

/* \s+$: trailing whitespace of the piece */
static void ds_trailing_space(const struct pre_ctx *c, size_t a, size_t b)
{
    size_t j = b;
    while (j > a && (c->fl[j - 1] & S_)) j--;
    c->cut[j] = 1;
}

/* [class]+ runs, class tested on what the regex saw */
static void ds_cjk_step(const struct pre_ctx *c, size_t a, size_t b)
{
    for (size_t i = a; i < b;) {
        if (!in_ranges(ds_cjk, 2, ds_cp(c, i))) {
            i++;
            continue;
        }
        c->cut[i] = 1;
        while (i < b && in_ranges(ds_cjk, 2, ds_cp(c, i))) i++;
        c->cut[i] = 1;
    }
}

/* \p{N}+ */
static void ds_numbers(const struct pre_ctx *c, size_t a, size_t b)
{
    for (size_t i = a; i < b;) {
        if (!(c->fl[i] & N_)) {
            i++;
            continue;
        }
        c->cut[i] = 1;
        while (i < b && (c->fl[i] & N_)) i++;
        c->cut[i] = 1;
    }
}

static void gpt2_step(const struct pre_ctx *c, size_t a, size_t b)
{
    pre_gpt2(c, a, b);
}

static void llama3_step(const struct pre_ctx *c, size_t a, size_t b)
{
    pre_llama3(c, a, b, 3);
}

static void qwen2_step(const struct pre_ctx *c, size_t a, size_t b)
{
    pre_llama3(c, a, b, 1);
}

/* Runs step over every piece the cuts so far delimit. Cuts a step adds inside a piece do not
 * change which pieces this pass visits. */
static void pre_pass(const struct pre_ctx *c, size_t n,
                     void (*step)(const struct pre_ctx *, size_t, size_t))
{
    for (size_t a = 0; a < n;) {
        size_t b = a + 1;
        while (!c->cut[b]) b++;
        step(c, a, b);
        a = b;
    }
}

static void pre_tokenize(const struct syn_tokenizer *t, const struct pre_ctx *c, size_t n)
{
    switch (t->pre) {
    case TOK_PRE_LLAMA3:
        pre_pass(c, n, llama3_step);
        break;
    case TOK_PRE_QWEN2:
        pre_pass(c, n, qwen2_step);
        break;
    case TOK_PRE_DEEPSEEK:
        pre_pass(c, n, ds_newlines);
        pre_pass(c, n, ds_letters_step);
        pre_pass(c, n, ds_punct_step);
        pre_pass(c, n, ds_trailing_space);
        pre_pass(c, n, ds_cjk_step);
        pre_pass(c, n, ds_numbers);
        break;
    case TOK_PRE_DIGITS_GPT2:
        pre_pass(c, n, pre_digits);
        pre_pass(c, n, gpt2_step);
        break;
    case TOK_PRE_GPT2:
    default:
        pre_pass(c, n, gpt2_step);
        break;
    }
}

/* ---- words ---- */

static int encode_word(const struct syn_tokenizer *t, struct tok_work *w, const uint8_t *p,
                       size_t n, struct tok_out *o)
{
    /* Llama 3: a word that is a token as a whole is that token, whatever the merges say. Its
     * byte-level string is n to 2n bytes, so a word longer than every piece cannot be one. */
    if (t->ignore_merges && n <= t->max_len) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++) m += syn_utf8_put(tok_byte_to_cp(p[i]), w->buf + m);
        int32_t id = tok_lookup(t, w->buf, m);
        if (id >= 0) {
            tok_emit(o, id);
            return 0;
        }
    }
    for (size_t i = 0; i < n; i++) {
        struct tok_sym *s = &w->sym[i];
        s->start = (int32_t)i;
        s->n = 1;
        s->prev = (int32_t)i - 1;
        s->next = i + 1 < n ? (int32_t)i + 1 : -1;
        s->id = t->byte_id[p[i]];
    }
    w->n_sym = (int32_t)n;
    return tok_merge_by_rank(t, w, o);
}

int tok_bpe_encode(const struct syn_tokenizer *t, struct tok_work *w, const char *text, size_t len,
                   struct tok_out *o)
{
    const uint8_t *u = (const uint8_t *)text;
    size_t n = 0;
    for (size_t pos = 0; pos < len; n++) {
        uint32_t cp;
        size_t l = syn_utf8_next(u + pos, len - pos, &cp);
        w->cp[n] = cp;
        w->cpoff[n] = (uint32_t)pos;
        /* an invalid byte has no class; a real U+FFFD has none either */
        w->cpfl[n] = (uint8_t)syn_uc_flags(cp);
        pos += l;
    }
    w->cpoff[n] = (uint32_t)len;
    memset(w->cut, 0, n + 1);
    w->cut[0] = 1;
    w->cut[n] = 1;
    struct pre_ctx c = {w->cp, w->cpfl, w->cut};
    pre_tokenize(t, &c, n);
    for (size_t a = 0; a < n;) {
        size_t b = a + 1;
        while (!w->cut[b]) b++;
        int rc = encode_word(t, w, u + w->cpoff[a], w->cpoff[b] - w->cpoff[a], o);
        if (rc) return rc;
        a = b;
    }
    return 0;
}
