/*
 * Chat templates: recognising a model's Jinja chat template by its markers and rendering
 * messages in that format with plain C (see include/synapse/chat.h for each format). This is not
 * a Jinja interpreter; templates we do not recognise are reported, never guessed at.
 */
#include "synapse/chat.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "synapse/error.h"

/* ---- names and detection ---- */

struct chat_info {
    const char *name;    /* the canonical name for --chat-template */
    const char *alias;   /* another accepted spelling, or NULL */
    const char *def_bos; /* BOS text when the caller passes NULL; NULL: the template has none */
    const char *def_eos; /* EOS text when the caller passes NULL; NULL: not used */
};

/* Indexed by enum syn_chat_template. */
static const struct chat_info chat_infos[SYN_CHAT_COUNT] = {
    [SYN_CHAT_LLAMA2] = {"llama2", "llama-2", "<s>", "</s>"},
    [SYN_CHAT_LLAMA3] = {"llama3", "llama-3", "<|begin_of_text|>", NULL},
    [SYN_CHAT_CHATML] = {"chatml", NULL, NULL, NULL},
    [SYN_CHAT_ZEPHYR] = {"zephyr", NULL, NULL, "</s>"},
    [SYN_CHAT_MISTRAL_V1] = {"mistral-v1", "mistral", "<s>", "</s>"},
    [SYN_CHAT_MISTRAL_V3] = {"mistral-v3", NULL, "<s>", "</s>"},
    [SYN_CHAT_MISTRAL_V3_TEKKEN] = {"mistral-v3-tekken", NULL, "<s>", "</s>"},
    [SYN_CHAT_MISTRAL_V7] = {"mistral-v7", NULL, "<s>", "</s>"},
    [SYN_CHAT_MISTRAL_V7_TEKKEN] = {"mistral-v7-tekken", NULL, "<s>", "</s>"},
};

/* The Mistral [INST] formats differ only in these. Each follows the published template named
 * (Mistral's cookbook concept-deep-dive/tokenization/templates.md and the models' own
 * tokenizer_config.json chat_template / model card), written for [S, U1, A1, U2]. */
struct mistral_fmt {
    const char *inst;     /* opens a user turn */
    const char *inst_end; /* closes it */
    const char *reply;    /* before an assistant reply */
    int trim_reply;       /* the reply is stripped (V3's message["content"]|trim) */
    const char *sys;      /* opens a system turn rendered in place (V7); NULL: folded into a
                             user turn, the first one after it, or the last one (sys_last) */
    int sys_last;         /* system text goes into the last user turn, as mistral-common does */
};

static const struct mistral_fmt mistral_fmts[SYN_CHAT_COUNT] = {
    /* Mistral-7B-Instruct-v0.1/v0.2, Mixtral-8x7B-Instruct-v0.1 (tokenizer V1):
     * <s> [INST] S\n\nU1 [/INST] A1</s> [INST] U2 [/INST] */
    [SYN_CHAT_MISTRAL_V1] = {" [INST] ", " [/INST]", " ", 0, NULL, 0},
    /* Mistral-7B-Instruct-v0.3 (SentencePiece V3):
     * <s>[INST] U1[/INST] A1</s>[INST] S\n\nU2[/INST] */
    [SYN_CHAT_MISTRAL_V3] = {"[INST] ", "[/INST]", " ", 1, NULL, 1},
    /* Mistral-Nemo-Instruct-2407 (Tekken V3): <s>[INST]U1[/INST]A1</s>[INST]S\n\nU2[/INST] */
    [SYN_CHAT_MISTRAL_V3_TEKKEN] = {"[INST]", "[/INST]", "", 0, NULL, 1},
    /* Mistral-Large-Instruct-2411 (SentencePiece V7):
     * <s>[SYSTEM_PROMPT] S[/SYSTEM_PROMPT][INST] U1[/INST] A1</s>[INST] U2[/INST] */
    [SYN_CHAT_MISTRAL_V7] = {"[INST] ", "[/INST]", " ", 0, "[SYSTEM_PROMPT] ", 0},
    /* Mistral-Small-24B-Instruct-2501 (Tekken V7):
     * <s>[SYSTEM_PROMPT]S[/SYSTEM_PROMPT][INST]U1[/INST]A1</s>[INST]U2[/INST] */
    [SYN_CHAT_MISTRAL_V7_TEKKEN] = {"[INST]", "[/INST]", "", 0, "[SYSTEM_PROMPT]", 0},
};

static int is_mistral(int id)
{
    return id >= SYN_CHAT_MISTRAL_V1 && id <= SYN_CHAT_MISTRAL_V7_TEKKEN;
}

static int valid_id(int id)
{
    return id > 0 && id < SYN_CHAT_COUNT;
}

const char *syn_chat_name(int id)
{
    return valid_id(id) ? chat_infos[id].name : NULL;
}

const char *syn_chat_known_names(void)
{
    return "llama2, llama3, chatml, zephyr, mistral-v1 (or mistral), mistral-v3, "
           "mistral-v3-tekken, mistral-v7, mistral-v7-tekken";
}

int syn_chat_from_name(const char *name)
{
    for (int id = 1; name && id < SYN_CHAT_COUNT; id++)
        if (strcasecmp(name, chat_infos[id].name) == 0 ||
            (chat_infos[id].alias && strcasecmp(name, chat_infos[id].alias) == 0))
            return id;
    return SYN_ENOTFOUND;
}

static int has(const char *text, size_t len, const char *marker)
{
    return memmem(text, len, marker, strlen(marker)) != NULL;
}

/* A quote at t[i] (i < len), JSON-escaped (\") or not: the edge of a Jinja string literal. */
static int quote_at(const char *t, size_t len, size_t i)
{
    if (i < len && t[i] == '\\') i++;
    return i < len && (t[i] == '\'' || t[i] == '"');
}

/* How a template's string literals spell [INST] and [/INST] (bits, see mistral_variant). */
enum {
    INST_TIGHT = 1,   /* "[INST]" + ...: Tekken */
    INST_SPACED = 2,  /* "[INST] " + ...: SentencePiece */
    CLOSE_SPACED = 4, /* ... + ' [/INST]': V1 */
    CLOSE_TIGHT = 8,  /* ... + "[/INST]": V2/V3 and Tekken */
};

static unsigned inst_spelling(const char *t, size_t len)
{
    unsigned bits = 0;
    const char *p, *end = t + len;

    for (p = t; (p = memmem(p, (size_t)(end - p), "[INST]", 6)) != NULL; p += 6) {
        size_t after = (size_t)(p - t) + 6;
        if (quote_at(t, len, after)) bits |= INST_TIGHT;
        if (after < len && t[after] == ' ' && quote_at(t, len, after + 1)) bits |= INST_SPACED;
    }
    for (p = t; (p = memmem(p, (size_t)(end - p), "[/INST]", 7)) != NULL; p += 7) {
        size_t at = (size_t)(p - t);
        if (at >= 1 && (t[at - 1] == '\'' || t[at - 1] == '"')) bits |= CLOSE_TIGHT;
        if (at >= 2 && t[at - 1] == ' ' && (t[at - 2] == '\'' || t[at - 2] == '"'))
            bits |= CLOSE_SPACED;
    }
    return bits;
}

/* Which Mistral format an [INST] template without <<SYS>> is (see chat.h, "Detection"). */
static int mistral_variant(const char *t, size_t len)
{
    unsigned bits = inst_spelling(t, len);
    int tight = (bits & INST_TIGHT) && !(bits & INST_SPACED);
    int spaced = (bits & INST_SPACED) && !(bits & INST_TIGHT);

    if (has(t, len, "[SYSTEM_PROMPT]"))
        return spaced ? SYN_CHAT_MISTRAL_V7 : SYN_CHAT_MISTRAL_V7_TEKKEN;
    if (bits & CLOSE_SPACED) return SYN_CHAT_MISTRAL_V1;
    if (tight) return SYN_CHAT_MISTRAL_V3_TEKKEN;
    if (spaced && (bits & CLOSE_TIGHT)) return SYN_CHAT_MISTRAL_V3;
    return SYN_CHAT_MISTRAL_V1;
}

int syn_chat_detect(const char *jinja, size_t len)
{
    if (!jinja || !len) return SYN_ENOTFOUND;
    /* most specific markers first: a llama-3 or chatml template may mention [INST] in a comment,
     * the reverse does not happen in practice */
    if (has(jinja, len, "<|start_header_id|>")) return SYN_CHAT_LLAMA3;
    if (has(jinja, len, "<|im_start|>")) return SYN_CHAT_CHATML;
    if (has(jinja, len, "[INST]"))
        return has(jinja, len, "<<SYS>>") ? SYN_CHAT_LLAMA2 : mistral_variant(jinja, len);
    /* Phi-3 also has <|user|> and <|assistant|> but ends turns with <|end|>, not EOS */
    if (has(jinja, len, "<|user|>") && has(jinja, len, "<|assistant|>") &&
        !has(jinja, len, "<|end|>"))
        return SYN_CHAT_ZEPHYR;
    return SYN_ENOTFOUND;
}

int syn_chat_resolve(const char *override, const char *jinja, size_t len, char *err, size_t errlen)
{
    int id;

    if (override && *override) {
        id = syn_chat_from_name(override);
        if (id < 0)
            return syn_seterr(err, errlen, SYN_ENOTFOUND,
                              "chat: unknown chat template name '%.64s' (known: %s)", override,
                              syn_chat_known_names());
        return id;
    }
    id = syn_chat_detect(jinja, len);
    if (id < 0)
        return syn_seterr(err, errlen, SYN_ENOTFOUND,
                          "chat: %s; choose one with --chat-template NAME (known: %s)",
                          jinja && len ? "the model's chat template is not one synapse recognises"
                                       : "the model has no chat template",
                          syn_chat_known_names());
    return id;
}

int syn_chat_has_bos(int id)
{
    return valid_id(id) && chat_infos[id].def_bos != NULL;
}

/* ---- output ---- */

/* snprintf-like accumulation: counts every byte, stores what fits. */
struct chat_out {
    char *buf;  /* caller's buffer, may be NULL when cap is 0 */
    size_t cap; /* its size; at most cap - 1 text bytes are stored, then a NUL */
    size_t len; /* bytes the full text needs so far */
};

static void put_n(struct chat_out *o, const char *s, size_t n)
{
    if (o->len < o->cap) {
        size_t room = o->cap - 1 - o->len;
        memcpy(o->buf + o->len, s, n < room ? n : room);
    }
    o->len = o->len + n < o->len ? SIZE_MAX : o->len + n;
}

static void put(struct chat_out *o, const char *s)
{
    if (s) put_n(o, s, strlen(s));
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* s without leading (lead != 0) and trailing whitespace, as Python's str.strip() / Jinja's
 * trim do for ASCII whitespace. */
static void put_trim(struct chat_out *o, const char *s, int lead)
{
    size_t n;
    if (!s) return;
    if (lead)
        while (is_space(*s)) s++;
    n = strlen(s);
    while (n > 0 && is_space(s[n - 1])) n--;
    put_n(o, s, n);
}

static int blank(const char *s)
{
    while (s && *s && is_space(*s)) s++;
    return !s || !*s;
}

/* ---- rendering ---- */

enum chat_role { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT };

static const char *role_name[] = {"system", "user", "assistant"};

/* Emits the system messages among msgs[from, to) joined by "\n\n" (the templates without a
 * system slot fold them into the next user message this way). */
static void put_systems(struct chat_out *o, const struct syn_chat_msg *msgs, const int *roles,
                        int from, int to)
{
    int first = 1;
    for (int k = from; k < to; k++) {
        if (roles[k] != ROLE_SYSTEM) continue;
        if (!first) put(o, "\n\n");
        put(o, msgs[k].content);
        first = 0;
    }
}

/* Llama 2: <s>[INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST] A </s>. The whole user text, system
 * block included, is stripped as one string (so only U's trailing whitespace goes). */
static void render_llama2(struct chat_out *o, const struct syn_chat_msg *msgs, const int *roles,
                          int sys_from, int i, const char *bos, const char *eos)
{
    if (roles[i] == ROLE_ASSISTANT) {
        put(o, " ");
        put_trim(o, msgs[i].content, 1);
        put(o, " ");
        put(o, eos);
        return;
    }
    put(o, bos);
    put(o, "[INST] ");
    if (sys_from >= 0) {
        put(o, "<<SYS>>\n");
        put_systems(o, msgs, roles, sys_from, i);
        if (blank(msgs[i].content)) {
            put(o, "\n<</SYS>>"); /* the strip eats the trailing blank lines too */
        } else {
            put(o, "\n<</SYS>>\n\n");
            put_trim(o, msgs[i].content, 0);
        }
    } else {
        put_trim(o, msgs[i].content, 1);
    }
    put(o, " [/INST]");
}

/* One message in a Mistral format f. sys_from >= 0: the system messages among msgs[sys_from,
 * sys_to) go before this user message's text, joined by "\n\n" and followed by "\n\n"
 * (no stripping, BOS only at the start: the caller wrote it). */
static void render_mistral(struct chat_out *o, const struct mistral_fmt *f,
                           const struct syn_chat_msg *msgs, const int *roles, int sys_from,
                           int sys_to, int i, const char *eos)
{
    const char *content = msgs[i].content ? msgs[i].content : "";

    if (roles[i] == ROLE_ASSISTANT) {
        put(o, f->reply);
        if (f->trim_reply)
            put_trim(o, content, 1);
        else
            put(o, content);
        put(o, eos);
        return;
    }
    if (roles[i] == ROLE_SYSTEM) { /* only formats with a system turn get here */
        put(o, f->sys);
        put(o, content);
        put(o, "[/SYSTEM_PROMPT]");
        return;
    }
    put(o, f->inst);
    if (sys_from >= 0) {
        put_systems(o, msgs, roles, sys_from, sys_to);
        put(o, "\n\n");
    }
    put(o, content);
    put(o, f->inst_end);
}

int syn_chat_apply(int id, const struct syn_chat_msg *msgs, int n, int add_generation_prompt,
                   const char *bos, const char *eos, char *out, size_t cap, char *err,
                   size_t errlen)
{
    struct chat_out o = {out, out ? cap : 0, 0};
    int roles_small[64], *roles = roles_small, rc = 0;
    int sys_from = -1;  /* first system message not yet placed (system-less templates) */
    int folds;          /* the template has no system slot */
    int sys_last;       /* ...and puts system text into the last user turn (mistral v3) */
    int first_sys = -1; /* the first system message, -1 when none */
    int last_user = -1; /* the last user message, -1 when none */
    int at_start = 1;   /* nothing rendered yet after the opening BOS */

    if (!valid_id(id))
        return syn_seterr(err, errlen, SYN_EINVAL, "chat: unknown template id %d (known: %s)", id,
                          syn_chat_known_names());
    if (n < 0 || (n > 0 && !msgs))
        return syn_seterr(err, errlen, SYN_EINVAL, "chat: %d messages, expected 0 or more", n);
    if (out && cap) out[0] = 0;
    if (!bos) bos = chat_infos[id].def_bos ? chat_infos[id].def_bos : "";
    if (!eos) eos = chat_infos[id].def_eos ? chat_infos[id].def_eos : "";
    folds = id == SYN_CHAT_LLAMA2 || (is_mistral(id) && !mistral_fmts[id].sys);
    sys_last = is_mistral(id) && mistral_fmts[id].sys_last;

    /* the message count is the client's: roles for more than 64 live in a buffer we free */
    if (n > (int)(sizeof roles_small / sizeof roles_small[0])) {
        roles = malloc((size_t)n * sizeof *roles);
        if (!roles) return syn_seterr(err, errlen, SYN_ENOMEM, "chat: out of memory");
    }
    for (int i = 0; i < n; i++) {
        const char *r = msgs[i].role;
        roles[i] = -1;
        for (int k = 0; r && k < 3; k++)
            if (strcmp(r, role_name[k]) == 0) roles[i] = k;
        if (roles[i] < 0) {
            rc = syn_seterr(err, errlen, SYN_EINVAL,
                            "chat: message %d has role '%.32s', expected system, user or "
                            "assistant",
                            i, r ? r : "(null)");
            goto out;
        }
        if (roles[i] == ROLE_SYSTEM && first_sys < 0) first_sys = i;
        if (roles[i] == ROLE_USER) last_user = i;
    }
    if (sys_last && first_sys >= 0 && last_user < 0) {
        rc = syn_seterr(err, errlen, SYN_EINVAL,
                        "chat: system message %d has no user message to go with; the %s template "
                        "places system text in the last user turn",
                        first_sys, chat_infos[id].name);
        goto out;
    }

    if (chat_infos[id].def_bos) put(&o, bos);
    for (int i = 0; i < n; i++) {
        const char *content = msgs[i].content ? msgs[i].content : "";
        struct syn_chat_msg m = {msgs[i].role, content};
        if (folds && roles[i] == ROLE_SYSTEM) {
            if (sys_from < 0 && !sys_last) sys_from = i;
            continue;
        }
        switch (id) {
        case SYN_CHAT_LLAMA2:
            /* BOS opens every [INST] turn; the first one was written above */
            render_llama2(&o, msgs, roles, roles[i] == ROLE_USER ? sys_from : -1, i,
                          at_start ? "" : bos, eos);
            break;
        case SYN_CHAT_MISTRAL_V1:
        case SYN_CHAT_MISTRAL_V3:
        case SYN_CHAT_MISTRAL_V3_TEKKEN:
        case SYN_CHAT_MISTRAL_V7:
        case SYN_CHAT_MISTRAL_V7_TEKKEN:
            if (roles[i] != ROLE_USER)
                render_mistral(&o, &mistral_fmts[id], msgs, roles, -1, 0, i, eos);
            else if (!sys_last) /* V1: the system messages since the last user turn */
                render_mistral(&o, &mistral_fmts[id], msgs, roles, sys_from, i, i, eos);
            else /* V3: every system message, wherever it stands, into the last user turn */
                render_mistral(&o, &mistral_fmts[id], msgs, roles, i == last_user ? first_sys : -1,
                               n, i, eos);
            break;
        case SYN_CHAT_LLAMA3:
            put(&o, "<|start_header_id|>");
            put(&o, role_name[roles[i]]);
            put(&o, "<|end_header_id|>\n\n");
            put_trim(&o, m.content, 1);
            put(&o, "<|eot_id|>");
            break;
        case SYN_CHAT_CHATML:
            put(&o, "<|im_start|>");
            put(&o, role_name[roles[i]]);
            put(&o, "\n");
            put(&o, m.content);
            put(&o, "<|im_end|>\n");
            break;
        case SYN_CHAT_ZEPHYR:
            put(&o, "<|");
            put(&o, role_name[roles[i]]);
            put(&o, "|>\n");
            put(&o, m.content);
            put(&o, eos);
            put(&o, "\n");
            break;
        }
        if (roles[i] == ROLE_USER) sys_from = -1;
        at_start = 0;
    }
    if (sys_from >= 0) {
        rc = syn_seterr(err, errlen, SYN_EINVAL,
                        "chat: system message %d is not followed by a user message; the %s "
                        "template places system text in the next user turn",
                        sys_from, chat_infos[id].name);
        goto out;
    }
    if (add_generation_prompt) {
        if (id == SYN_CHAT_LLAMA3) put(&o, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        if (id == SYN_CHAT_CHATML) put(&o, "<|im_start|>assistant\n");
        if (id == SYN_CHAT_ZEPHYR) put(&o, "<|assistant|>\n");
        /* llama2 and the mistral formats: the prompt ends with [/INST], which opens the answer */
    }
    if (o.len > INT_MAX) {
        rc = syn_seterr(err, errlen, SYN_ERANGE,
                        "chat: the rendered prompt would be %zu bytes, expected at most %d", o.len,
                        INT_MAX);
        goto out;
    }
    if (o.cap) o.buf[o.len < o.cap ? o.len : o.cap - 1] = 0;
    rc = (int)o.len;
out:
    if (rc < 0 && out && cap) out[0] = 0;
    if (roles != roles_small) free(roles);
    return rc;
}
