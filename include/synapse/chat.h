/*
 * Chat templates: turning a list of {role, content} messages into the prompt text a chat model
 * was trained on. We do not run Jinja: we recognise the handful of common templates by
 * distinctive substrings of the model's Jinja text (GGUF tokenizer.chat_template, or
 * "chat_template" in tokenizer_config.json) and render each with hand-written C. A template we
 * do not recognise is an error the user can override with --chat-template NAME.
 *
 * The templates, as rendered for [system S, user U1, assistant A1, user U2] (BOS and EOS are the
 * caller's texts, defaults in brackets; content trimmed where the original template trims it):
 *
 *   llama2   <s>[INST] <<SYS>>\nS\n<</SYS>>\n\nU1 [/INST] A1 </s><s>[INST] U2 [/INST]
 *            (Meta's Llama 2 chat; contents trimmed; BOS before every [INST]; the system
 *            message goes into the first user turn; add_generation_prompt changes nothing)
 *   llama3   <|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>
 *            <|start_header_id|>user<|end_header_id|>\n\nU1<|eot_id|>...  (one line here, no
 *            newline between turns; contents trimmed); the generation prompt is
 *            <|start_header_id|>assistant<|end_header_id|>\n\n
 *            (Llama 3 / 3.1 / 3.2 without 3.1's "Cutting Knowledge Date" system preamble)
 *   chatml   <|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n...; generation
 *            prompt <|im_start|>assistant\n; no BOS (Qwen, SmolLM, Hermes, ...)
 *   zephyr   <|system|>\nS</s>\n<|user|>\nU1</s>\n<|assistant|>\nA1</s>\n...; generation prompt
 *            <|assistant|>\n; EOS is the caller's (TinyLlama chat, Zephyr); no BOS
 *   mistral-*  the Mistral [INST] formats, which differ in spacing, in where the system text
 *            goes and in trimming. A wrong one still "works" but answers worse, so each follows
 *            the models' own published templates (Mistral's cookbook
 *            concept-deep-dive/tokenization/templates.md, the chat_template in the models'
 *            tokenizer_config.json, the model cards' "Basic Instruct Template"):
 *   mistral-v1         <s> [INST] S\n\nU1 [/INST] A1</s> [INST] U2 [/INST]
 *            tokenizer V1: Mistral-7B-Instruct v0.1 and v0.2, Mixtral-8x7B-Instruct; system
 *            text goes into the FIRST user message
 *   mistral-v3         <s>[INST] U1[/INST] A1</s>[INST] S\n\nU2[/INST]
 *            SentencePiece V3 (V2 spaces alike): Mistral-7B-Instruct-v0.3,
 *            Mixtral-8x22B-Instruct, Codestral-22B, Mistral-Large-2407; system text goes into
 *            the LAST user message; assistant replies trimmed
 *   mistral-v3-tekken  <s>[INST]U1[/INST]A1</s>[INST]S\n\nU2[/INST]
 *            Tekken V3: Mistral-Nemo-Instruct-2407, Pixtral-12B; system text into the LAST user
 *            message; nothing trimmed
 *   mistral-v7         <s>[SYSTEM_PROMPT] S[/SYSTEM_PROMPT][INST] U1[/INST] A1</s>[INST] U2[/INST]
 *            SentencePiece V7: Mistral-Large-Instruct-2411
 *   mistral-v7-tekken  <s>[SYSTEM_PROMPT]S[/SYSTEM_PROMPT][INST]U1[/INST]A1</s>[INST]U2[/INST]
 *            Tekken V7: Mistral-Small-24B-Instruct-2501, Mistral-Small-3.1-24B-Instruct-2503
 *            v7 and v7-tekken render each system message where it is. Their templates send a
 *            built-in default system prompt when the request has none; we do not (it names
 *            the model and today's date): pass one as a system message.
 *   "mistral" is mistral-v1: what the name rendered before the variants existed, and the format
 *   of the models most often meant by "Mistral Instruct" (7B v0.1/v0.2, Mixtral 8x7B). For all
 *   mistral variants add_generation_prompt changes nothing: [/INST] already opens the answer.
 *
 *   Detection: [SYSTEM_PROMPT] means V7. Then the literals around [INST] decide, which is where
 *   the published templates differ: "[INST]" followed straight by a quote is Tekken, "[INST] "
 *   + quote is SentencePiece; among those, ' [/INST]' (a space inside the literal) is V1 and
 *   "[/INST]" right after a quote V3. An [INST] template the markers leave undecided is taken
 *   for mistral-v1 (what every [INST] template without <<SYS>> got before), an undecided
 *   [SYSTEM_PROMPT] one for mistral-v7-tekken (the open-weight V7 models are Tekken ones).
 *
 * Templates without a system slot fold system messages into a user message: the next one
 * (llama2, mistral-v1; a system message with no user message after it is SYN_EINVAL there) or
 * the last one (mistral-v3, mistral-v3-tekken; SYN_EINVAL when there is no user message).
 *
 * BOS: when a template starts with BOS (llama2, llama3, every mistral variant) the rendered text
 * starts with the BOS text, so the caller tokenizes it with special tokens parsed and must NOT
 * add another BOS (syn_chat_has_bos() says which templates do). For chatml and zephyr the caller
 * adds BOS as the model's tokenizer normally would.
 */
#ifndef SYNAPSE_CHAT_H
#define SYNAPSE_CHAT_H

#include <stddef.h>

enum syn_chat_template {
    SYN_CHAT_LLAMA2 = 1,
    SYN_CHAT_LLAMA3 = 2,
    SYN_CHAT_CHATML = 3,
    SYN_CHAT_ZEPHYR = 4,
    SYN_CHAT_MISTRAL_V1 = 5,
    SYN_CHAT_MISTRAL = SYN_CHAT_MISTRAL_V1, /* the name "mistral" means V1 */
    SYN_CHAT_MISTRAL_V3 = 6,
    SYN_CHAT_MISTRAL_V3_TEKKEN = 7,
    SYN_CHAT_MISTRAL_V7 = 8,
    SYN_CHAT_MISTRAL_V7_TEKKEN = 9,
    SYN_CHAT_COUNT = 10, /* one past the last id */
};

/* One message. Neither string is copied; both must be NUL-terminated. */
struct syn_chat_msg {
    const char *role;    /* "system", "user" or "assistant" */
    const char *content; /* the text; NULL is treated as "" */
};

/* The template id whose markers appear in a Jinja text of len bytes (need not be
 * NUL-terminated), or SYN_ENOTFOUND when none does (NULL or empty text included). */
int syn_chat_detect(const char *jinja, size_t len);

/* "llama2", "llama3", "chatml", "zephyr", "mistral-v1", "mistral-v3", "mistral-v3-tekken",
 * "mistral-v7", "mistral-v7-tekken"; NULL for an unknown id. */
const char *syn_chat_name(int id);

/* The id for a name (case-insensitive; "llama-2", "llama-3" also accepted, and "mistral" for
 * mistral-v1), or SYN_ENOTFOUND. */
int syn_chat_from_name(const char *name);

/* "llama2, llama3, chatml, zephyr, mistral-v1 (or mistral), mistral-v3, ...": for messages and
 * --help. */
const char *syn_chat_known_names(void);

/* The template to use: override (a name, may be NULL or "") when given, else detection from the
 * model's Jinja text (may be NULL). Returns the id, or SYN_ENOTFOUND with a message saying
 * which names are known and how to choose one. */
int syn_chat_resolve(const char *override, const char *jinja, size_t len, char *err, size_t errlen);

/* 1 when the template's text begins with BOS (so the caller must not add one), else 0. */
int syn_chat_has_bos(int id);

/* Renders n messages with template id into out (cap bytes, NUL-terminated when cap > 0; out may
 * be NULL when cap is 0), like snprintf: returns the full length the text needs, not counting
 * the NUL, so a return >= cap means it was cut and the caller retries with a larger buffer.
 * bos/eos: the model's BOS/EOS texts; NULL means the template's usual ones ("<s>", "</s>",
 * "<|begin_of_text|>"), "" means none. add_generation_prompt appends the text that opens the
 * assistant's turn (where the template has one).
 * Errors (negative, with a message): SYN_EINVAL for an unknown id, a role other than
 * system/user/assistant, n < 0, or a system message that a system-less template cannot place;
 * SYN_ERANGE when the text would exceed INT_MAX bytes. */
int syn_chat_apply(int id, const struct syn_chat_msg *msgs, int n, int add_generation_prompt,
                   const char *bos, const char *eos, char *out, size_t cap, char *err,
                   size_t errlen);

#endif
