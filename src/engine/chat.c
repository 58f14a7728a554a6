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
    [SYN_CHAT_MISTRAL] = {"mistral", "mistral-v1", "<s>", "</s>"},
};

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
    return "llama2, llama3, chatml, zephyr, mistral";
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

int syn_chat_detect(const char *jinja, size_t len)
{
    if (!jinja || !len) return SYN_ENOTFOUND;
    /* most specific markers first: a llama-3 or chatml template may mention [INST] in a comment,
     * the reverse does not happen in practice */
    if (has(jinja, len, "<|start_header_id|>")) return SYN_CHAT_LLAMA3;
    if (has(jinja, len, "<|im_start|>")) return SYN_CHAT_CHATML;
    if (has(jinja, len, "[INST]"))
        return has(jinja, len, "<<SYS>>") ? SYN_CHAT_LLAMA2 : SYN_CHAT_MISTRAL;
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

/* Mistral tokenizer V1: <s> [INST] S\n\nU [/INST] A</s> (no stripping, BOS only at the start). */
static void render_mistral(struct chat_out *o, const struct syn_chat_msg *msgs, const int *roles,
                           int sys_from, int i, const char *eos)
{
    if (roles[i] == ROLE_ASSISTANT) {
        put(o, " ");
        put(o, msgs[i].content);
        put(o, eos);
        return;
    }
    put(o, " [INST] ");
    if (sys_from >= 0) {
        put_systems(o, msgs, roles, sys_from, i);
        put(o, "\n\n");
    }
    put(o, msgs[i].content);
    put(o, " [/INST]");
}

int syn_chat_apply(int id, const struct syn_chat_msg *msgs, int n, int add_generation_prompt,
                   const char *bos, const char *eos, char *out, size_t cap, char *err,
                   size_t errlen)
{
    struct chat_out o = {out, out ? cap : 0, 0};
    int roles_small[64], *roles = roles_small, rc = 0;
    int sys_from = -1; /* first system message not yet placed (system-less templates) */
    int folds;         /* the template has no system slot */
    int at_start = 1;  /* nothing rendered yet after the opening BOS */

    if (!valid_id(id))
        return syn_seterr(err, errlen, SYN_EINVAL, "chat: unknown template id %d (known: %s)", id,
                          syn_chat_known_names());
    if (n < 0 || (n > 0 && !msgs))
        return syn_seterr(err, errlen, SYN_EINVAL, "chat: %d messages, expected 0 or more", n);
    if (out && cap) out[0] = 0;
    if (!bos) bos = chat_infos[id].def_bos ? chat_infos[id].def_bos : "";
    if (!eos) eos = chat_infos[id].def_eos ? chat_infos[id].def_eos : "";
    folds = id == SYN_CHAT_LLAMA2 || id == SYN_CHAT_MISTRAL;

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
    }

    if (chat_infos[id].def_bos) put(&o, bos);
    for (int i = 0; i < n; i++) {
        const char *content = msgs[i].content ? msgs[i].content : "";
        struct syn_chat_msg m = {msgs[i].role, content};
        if (folds && roles[i] == ROLE_SYSTEM) {
            if (sys_from < 0) sys_from = i;
            continue;
        }
        switch (id) {
        case SYN_CHAT_LLAMA2:
            /* BOS opens every [INST] turn; the first one was written above */
            render_llama2(&o, msgs, roles, roles[i] == ROLE_USER ? sys_from : -1, i,
                          at_start ? "" : bos, eos);
            break;
        case SYN_CHAT_MISTRAL:
            render_mistral(&o, msgs, roles, roles[i] == ROLE_USER ? sys_from : -1, i, eos);
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
        /* llama2 and mistral: the prompt already ends with [/INST], which opens the answer */
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
