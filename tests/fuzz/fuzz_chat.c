/*
 * libFuzzer driver for chat templates. The input is read twice: whole, as a model's Jinja
 * template text for syn_chat_detect (not NUL-terminated, so a marker check that reads past the
 * end shows up under ASan); and as a conversation rendered with every template. Rendering must
 * never fail on a conversation of known roles except for the documented system-placement
 * errors, must refuse unknown roles, must write the length it returns, and must start with the
 * template's BOS where syn_chat_has_bos says it does.
 *
 * Conversation format: messages separated by '\n'; a message's first byte picks its role
 * ('s' system, 'u' user, 'a' assistant, anything else an unknown role that must be refused),
 * the rest is its content.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "synapse/chat.h"
#include "synapse/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_MSGS = 80 }; /* past the renderer's 64 on-stack roles */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    int id = syn_chat_detect((const char *)data, size);
    if (id != SYN_ENOTFOUND && (id <= 0 || id >= SYN_CHAT_COUNT || !syn_chat_name(id))) abort();
    if (id > 0 && syn_chat_from_name(syn_chat_name(id)) != id) abort();

    /* the conversation: a NUL-terminated copy cut at each '\n' */
    char *text = malloc(size + 1);
    struct syn_chat_msg msgs[MAX_MSGS];
    int n = 0, unknown = 0;
    if (!text) abort();
    memcpy(text, data, size);
    text[size] = 0;
    for (char *p = text; n < MAX_MSGS && p <= text + size;) {
        char *nl = memchr(p, '\n', (size_t)(text + size - p));
        if (nl) *nl = 0;
        msgs[n].role = *p == 's' ? "system" : *p == 'u' ? "user" : *p == 'a' ? "assistant" : "x";
        msgs[n].content = *p ? p + 1 : p;
        if (msgs[n].role[0] == 'x') unknown = 1;
        n++;
        if (!nl) break;
        p = nl + 1;
    }

    for (int t = 1; t < SYN_CHAT_COUNT; t++) {
        int need = syn_chat_apply(t, msgs, n, 1, NULL, NULL, NULL, 0, err, sizeof err);
        if (need < 0) {
            if (need != SYN_EINVAL) abort();
            if (!unknown && !strstr(err, "system message")) abort();
            continue;
        }
        if (unknown) abort();
        char *out = malloc((size_t)need + 1);
        if (!out) abort();
        if (syn_chat_apply(t, msgs, n, 1, NULL, NULL, out, (size_t)need + 1, err, sizeof err) !=
            need)
            abort();
        if (strlen(out) != (size_t)need) abort(); /* contents are C strings: no NUL inside */
        if (syn_chat_has_bos(t)) {                /* the text starts with the template's BOS */
            char bos[32];
            syn_chat_apply(t, NULL, 0, 0, NULL, NULL, bos, sizeof bos, err, sizeof err);
            if (!bos[0] || strncmp(out, bos, strlen(bos)) != 0) abort();
        }
        free(out);
    }
    free(text);
    return 0;
}
