/*
 * Chat templates: the exact text each template renders for a system + user + assistant + user
 * conversation (written from each model family's documented format), detection from template
 * texts as models ship them, name overrides, and errors.
 */
#include "harness.h"
#include "synapse/chat.h"
#include "synapse/error.h"

static const struct syn_chat_msg conv[4] = {
    {"system", "You are a helpful assistant."},
    {"user", "Hello!"},
    {"assistant", "Hi, how can I help?"},
    {"user", "What is 2+2?"},
};

/* Renders with the template's default BOS/EOS; fails the test on error. Static buffer. */
static const char *render(int id, const struct syn_chat_msg *m, int n, int gen)
{
    static char buf[8192];
    char err[256] = "";
    int len = syn_chat_apply(id, m, n, gen, NULL, NULL, buf, sizeof buf, err, sizeof err);
    if (len < 0) FAIL("syn_chat_apply(%s): %d %s", syn_chat_name(id), len, err);
    if ((size_t)len != strlen(buf)) FAIL("returned %d for a %zu-byte text", len, strlen(buf));
    return buf;
}

/* ---- each template's exact output ---- */

TEST(chat_llama2_exact)
{
    const char *want = "<s>[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\n"
                       "Hello! [/INST] Hi, how can I help? </s>"
                       "<s>[INST] What is 2+2? [/INST]";
    CHECK_EQ_STR(render(SYN_CHAT_LLAMA2, conv, 4, 0), want);
    CHECK_EQ_STR(render(SYN_CHAT_LLAMA2, conv, 4, 1), want); /* [/INST] already opens the reply */
    /* without a system message; contents are stripped as Meta's reference code does */
    const struct syn_chat_msg m[3] = {
        {"user", "  Hello!\n"}, {"assistant", " Hi. "}, {"user", "Bye"}};
    CHECK_EQ_STR(render(SYN_CHAT_LLAMA2, m, 3, 1),
                 "<s>[INST] Hello! [/INST] Hi. </s><s>[INST] Bye [/INST]");
}

TEST(chat_llama3_exact)
{
    const char *want = "<|begin_of_text|>"
                       "<|start_header_id|>system<|end_header_id|>\n\n"
                       "You are a helpful assistant.<|eot_id|>"
                       "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>"
                       "<|start_header_id|>assistant<|end_header_id|>\n\n"
                       "Hi, how can I help?<|eot_id|>"
                       "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>";
    CHECK_EQ_STR(render(SYN_CHAT_LLAMA3, conv, 4, 0), want);
    char with_gen[2048];
    snprintf(with_gen, sizeof with_gen, "%s<|start_header_id|>assistant<|end_header_id|>\n\n",
             want);
    CHECK_EQ_STR(render(SYN_CHAT_LLAMA3, conv, 4, 1), with_gen);
    /* contents are trimmed (the template's "| trim") */
    const struct syn_chat_msg m[1] = {{"user", "\n  hi \n"}};
    CHECK_EQ_STR(render(SYN_CHAT_LLAMA3, m, 1, 0),
                 "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>");
}

TEST(chat_chatml_exact)
{
    const char *want = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                       "<|im_start|>user\nHello!<|im_end|>\n"
                       "<|im_start|>assistant\nHi, how can I help?<|im_end|>\n"
                       "<|im_start|>user\nWhat is 2+2?<|im_end|>\n";
    CHECK_EQ_STR(render(SYN_CHAT_CHATML, conv, 4, 0), want);
    char with_gen[2048];
    snprintf(with_gen, sizeof with_gen, "%s<|im_start|>assistant\n", want);
    CHECK_EQ_STR(render(SYN_CHAT_CHATML, conv, 4, 1), with_gen);
    /* no BOS, no trimming */
    const struct syn_chat_msg m[1] = {{"user", " x "}};
    CHECK_EQ_STR(render(SYN_CHAT_CHATML, m, 1, 0), "<|im_start|>user\n x <|im_end|>\n");
}

TEST(chat_zephyr_exact)
{
    const char *want = "<|system|>\nYou are a helpful assistant.</s>\n"
                       "<|user|>\nHello!</s>\n"
                       "<|assistant|>\nHi, how can I help?</s>\n"
                       "<|user|>\nWhat is 2+2?</s>\n";
    CHECK_EQ_STR(render(SYN_CHAT_ZEPHYR, conv, 4, 0), want);
    char with_gen[2048];
    snprintf(with_gen, sizeof with_gen, "%s<|assistant|>\n", want);
    CHECK_EQ_STR(render(SYN_CHAT_ZEPHYR, conv, 4, 1), with_gen);
    /* the model's own EOS text is used (StableLM Zephyr ends turns with <|endoftext|>) */
    char buf[512], err[128];
    CHECK(syn_chat_apply(SYN_CHAT_ZEPHYR, conv + 1, 1, 1, NULL, "<|endoftext|>", buf, sizeof buf,
                         err, sizeof err) > 0);
    CHECK_EQ_STR(buf, "<|user|>\nHello!<|endoftext|>\n<|assistant|>\n");
}

TEST(chat_mistral_v1_exact)
{
    /* Mistral-7B-Instruct-v0.1/v0.2, Mixtral-8x7B: the system text goes into the first user
     * message */
    const char *want = "<s> [INST] You are a helpful assistant.\n\nHello! [/INST]"
                       " Hi, how can I help?</s> [INST] What is 2+2? [/INST]";
    CHECK_EQ_STR(render(SYN_CHAT_MISTRAL_V1, conv, 4, 0), want);
    CHECK_EQ_STR(render(SYN_CHAT_MISTRAL_V1, conv, 4, 1), want);
    CHECK_EQ_INT(SYN_CHAT_MISTRAL, SYN_CHAT_MISTRAL_V1); /* plain "mistral" is V1 */
    /* Mistral's documented V1 example */
    const struct syn_chat_msg m[4] = {{"user", "Hello, how are you?"},
                                      {"assistant", "Fine, and you?"},
                                      {"user", "I'm doing great!"},
                                      {"assistant", "Glad to hear!"}};
    CHECK_EQ_STR(render(SYN_CHAT_MISTRAL_V1, m, 4, 0),
                 "<s> [INST] Hello, how are you? [/INST] Fine, and you?</s> [INST] I'm doing "
                 "great! [/INST] Glad to hear!</s>");
}

/* Mistral's documented example (cookbook templates.md) for the V2/V3 and Tekken tables. */
static const struct syn_chat_msg mistral_doc[4] = {{"user", "Hello, how are you?"},
                                                   {"assistant", "Fine, and you?"},
                                                   {"user", "I'm doing great!"},
                                                   {"assistant", "Glad to hear!"}};

TEST(chat_mistral_v3_exact)
{
    /* Mistral-7B-Instruct-v0.3: "[INST] " + content + "[/INST]", the system text goes into the
     * LAST user message, " " + reply|trim + eos */
    const char *want = "<s>[INST] Hello![/INST] Hi, how can I help?</s>"
                       "[INST] You are a helpful assistant.\n\nWhat is 2+2?[/INST]";
    CHECK_EQ_STR(render(SYN_CHAT_MISTRAL_V3, conv, 4, 0), want);
    CHECK_EQ_STR(render(SYN_CHAT_MISTRAL_V3, conv, 4, 1), want);
    CHECK_EQ_STR(render(SYN_CHAT_MISTRAL_V3, mistral_doc, 4, 0),
                 "<s>[INST] Hello, how are you?[/INST] Fine, and you?</s>[INST] I'm doing "
                 "great![/INST] Glad to hear!</s>");
    /* one turn with a system message; replies are trimmed, user text is not */
    CHECK_EQ_STR(render(SYN_CHAT_MISTRAL_V3, conv, 2, 1),
                 "<s>[INST] You are a helpful assistant.\n\nHello![/INST]");
    const struct syn_chat_msg pad[3] = {{"user", " a "}, {"assistant", "  b \n"}, {"user", "c"}};
    CHECK_EQ_STR(render(SYN_CHAT_MISTRAL_V3, pad, 3, 1),
                 "<s>[INST]  a [/INST] b</s>[INST] c[/INST]");
}

TEST(chat_mistral_v3_tekken_exact)
{
    /* Mistral-Nemo-Instruct-2407: no spaces at all, system text into the LAST user message,
     * replies as they are */
    const char *want = "<s>[INST]Hello![/INST]Hi, how can I help?</s>"
                       "[INST]You are a helpful assistant.\n\nWhat is 2+2?[/INST]";
    CHECK_EQ_STR(render(SYN_CHAT_MISTRAL_V3_TEKKEN, conv, 4, 0), want);
    CHECK_EQ_STR(render(SYN_CHAT_MISTRAL_V3_TEKKEN, conv, 4, 1), want);
    CHECK_EQ_STR(render(SYN_CHAT_MISTRAL_V3_TEKKEN, mistral_doc, 4, 0),
                 "<s>[INST]Hello, how are you?[/INST]Fine, and you?</s>[INST]I'm doing "
                 "great![/INST]Glad to hear!</s>");
    const struct syn_chat_msg pad[3] = {{"user", " a "}, {"assistant", "  b \n"}, {"user", "c"}};
    CHECK_EQ_STR(render(SYN_CHAT_MISTRAL_V3_TEKKEN, pad, 3, 1),
                 "<s>[INST] a [/INST]  b \n</s>[INST]c[/INST]");
}

TEST(chat_mistral_v7_exact)
{
    /* Mistral-Large-Instruct-2411: a system turn of its own, a space after each opening tag */
    const char *want = "<s>[SYSTEM_PROMPT] You are a helpful assistant.[/SYSTEM_PROMPT]"
                       "[INST] Hello![/INST] Hi, how can I help?</s>[INST] What is 2+2?[/INST]";
    CHECK_EQ_STR(render(SYN_CHAT_MISTRAL_V7, conv, 4, 0), want);
    CHECK_EQ_STR(render(SYN_CHAT_MISTRAL_V7, conv, 4, 1), want);
    CHECK_EQ_STR(render(SYN_CHAT_MISTRAL_V7, conv + 1, 1, 1), "<s>[INST] Hello![/INST]");
}

TEST(chat_mistral_v7_tekken_exact)
{
    /* Mistral-Small-24B-Instruct-2501 and 3.1-2503 ("V7-Tekken"): no spaces */
    const char *want = "<s>[SYSTEM_PROMPT]You are a helpful assistant.[/SYSTEM_PROMPT]"
                       "[INST]Hello![/INST]Hi, how can I help?</s>[INST]What is 2+2?[/INST]";
    CHECK_EQ_STR(render(SYN_CHAT_MISTRAL_V7_TEKKEN, conv, 4, 0), want);
    CHECK_EQ_STR(render(SYN_CHAT_MISTRAL_V7_TEKKEN, conv, 4, 1), want);
    /* the model card's "Basic Instruct Template (V7-Tekken)" shape */
    CHECK_EQ_STR(render(SYN_CHAT_MISTRAL_V7_TEKKEN, mistral_doc, 3, 1),
                 "<s>[INST]Hello, how are you?[/INST]Fine, and you?</s>[INST]I'm doing "
                 "great![/INST]");
    /* a system message later on is rendered where it stands, and one alone is fine */
    const struct syn_chat_msg mid[4] = {
        {"user", "a"}, {"assistant", "b"}, {"system", "be brief"}, {"user", "c"}};
    CHECK_EQ_STR(render(SYN_CHAT_MISTRAL_V7_TEKKEN, mid, 4, 1),
                 "<s>[INST]a[/INST]b</s>[SYSTEM_PROMPT]be brief[/SYSTEM_PROMPT][INST]c[/INST]");
    CHECK_EQ_STR(render(SYN_CHAT_MISTRAL_V7_TEKKEN, mid + 2, 1, 1),
                 "<s>[SYSTEM_PROMPT]be brief[/SYSTEM_PROMPT]");
}

TEST(chat_mistral_system_placement)
{
    char buf[256], err[256] = "";
    const struct syn_chat_msg mid[4] = {
        {"user", "a"}, {"assistant", "b"}, {"system", "be brief"}, {"user", "c"}};
    const struct syn_chat_msg two_sys[4] = {
        {"system", "S1"}, {"user", "a"}, {"system", "S2"}, {"user", "c"}};
    const struct syn_chat_msg trailing[3] = {{"user", "a"}, {"assistant", "b"}, {"system", "S"}};
    /* V1 folds into the next user message... */
    CHECK_EQ_STR(render(SYN_CHAT_MISTRAL_V1, two_sys, 4, 1),
                 "<s> [INST] S1\n\na [/INST] [INST] S2\n\nc [/INST]");
    /* ...V3 and Tekken put every system message into the last one (mistral-common's rule) */
    CHECK_EQ_STR(render(SYN_CHAT_MISTRAL_V3, mid, 4, 1),
                 "<s>[INST] a[/INST] b</s>[INST] be brief\n\nc[/INST]");
    CHECK_EQ_STR(render(SYN_CHAT_MISTRAL_V3, two_sys, 4, 1),
                 "<s>[INST] a[/INST][INST] S1\n\nS2\n\nc[/INST]");
    CHECK_EQ_STR(render(SYN_CHAT_MISTRAL_V3_TEKKEN, trailing, 3, 1), "<s>[INST]S\n\na[/INST]b</s>");
    /* with no user message at all there is nowhere to put it */
    CHECK_EQ_INT(syn_chat_apply(SYN_CHAT_MISTRAL_V3, trailing + 2, 1, 1, NULL, NULL, buf,
                                sizeof buf, err, sizeof err),
                 SYN_EINVAL);
    CHECK(strstr(err, "system message 0 has no user message to go with; the mistral-v3 "
                      "template places system text in the last user turn"));
    CHECK_EQ_STR(buf, "");
    CHECK_EQ_INT(syn_chat_apply(SYN_CHAT_MISTRAL_V3_TEKKEN, trailing + 2, 1, 1, NULL, NULL, buf,
                                sizeof buf, err, sizeof err),
                 SYN_EINVAL);
    /* the caller's BOS/EOS texts */
    CHECK(syn_chat_apply(SYN_CHAT_MISTRAL_V7_TEKKEN, conv, 3, 1, "<BOS>", "<EOS>", buf, sizeof buf,
                         err, sizeof err) > 0);
    CHECK_EQ_STR(buf, "<BOS>[SYSTEM_PROMPT]You are a helpful assistant.[/SYSTEM_PROMPT]"
                      "[INST]Hello![/INST]Hi, how can I help?<EOS>");
}

/* ---- BOS/EOS handling ---- */

TEST(chat_bos_and_eos_texts)
{
    char buf[1024], err[256];
    /* the caller's texts replace the defaults; "" means none */
    CHECK(syn_chat_apply(SYN_CHAT_LLAMA2, conv + 1, 3, 1, "<BOS>", "<EOS>", buf, sizeof buf, err,
                         sizeof err) > 0);
    CHECK_EQ_STR(buf, "<BOS>[INST] Hello! [/INST] Hi, how can I help? <EOS><BOS>[INST] What is "
                      "2+2? [/INST]");
    CHECK(syn_chat_apply(SYN_CHAT_LLAMA3, conv + 1, 1, 0, "", NULL, buf, sizeof buf, err,
                         sizeof err) > 0);
    CHECK_EQ_STR(buf, "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>");
    /* templates that start with BOS say so; the engine then must not add another */
    CHECK_EQ_INT(syn_chat_has_bos(SYN_CHAT_LLAMA2), 1);
    CHECK_EQ_INT(syn_chat_has_bos(SYN_CHAT_LLAMA3), 1);
    for (int id = SYN_CHAT_MISTRAL_V1; id <= SYN_CHAT_MISTRAL_V7_TEKKEN; id++)
        CHECK_EQ_INT(syn_chat_has_bos(id), 1);
    CHECK_EQ_INT(syn_chat_has_bos(SYN_CHAT_CHATML), 0);
    CHECK_EQ_INT(syn_chat_has_bos(SYN_CHAT_ZEPHYR), 0);
    CHECK_EQ_INT(syn_chat_has_bos(99), 0);
    /* exactly one BOS at the start of a llama2 prompt, even with a system message first */
    const char *r = render(SYN_CHAT_LLAMA2, conv, 2, 1);
    CHECK(strncmp(r, "<s>[INST] <<SYS>>", 17) == 0);
    CHECK(strstr(r + 1, "<s>") == NULL);
}

TEST(chat_snprintf_semantics)
{
    char full[1024], small[16], err[256];
    int len =
        syn_chat_apply(SYN_CHAT_CHATML, conv, 4, 1, NULL, NULL, full, sizeof full, err, sizeof err);
    CHECK(len > 16);
    CHECK_EQ_INT(syn_chat_apply(SYN_CHAT_CHATML, conv, 4, 1, NULL, NULL, NULL, 0, err, sizeof err),
                 len);
    memset(small, 'x', sizeof small);
    CHECK_EQ_INT(syn_chat_apply(SYN_CHAT_CHATML, conv, 4, 1, NULL, NULL, small, sizeof small, err,
                                sizeof err),
                 len);
    CHECK_EQ_INT(strlen(small), 15);
    CHECK(strncmp(small, full, 15) == 0);
    /* an exact fit */
    char *exact = malloc((size_t)len + 1);
    CHECK(exact);
    CHECK_EQ_INT(syn_chat_apply(SYN_CHAT_CHATML, conv, 4, 1, NULL, NULL, exact, (size_t)len + 1,
                                err, sizeof err),
                 len);
    CHECK_EQ_STR(exact, full);
    free(exact);
    /* no messages: just the generation prompt */
    CHECK_EQ_STR(render(SYN_CHAT_CHATML, NULL, 0, 1), "<|im_start|>assistant\n");
}

TEST(chat_many_messages)
{
    /* more messages than the renderer keeps on its stack */
    struct syn_chat_msg m[201];
    m[0].role = "system";
    m[0].content = "S";
    for (int i = 1; i < 201; i++) {
        m[i].role = i % 2 ? "user" : "assistant";
        m[i].content = i % 2 ? "u" : "a";
    }
    char err[256];
    int len = syn_chat_apply(SYN_CHAT_MISTRAL, m, 201, 1, NULL, NULL, NULL, 0, err, sizeof err);
    /* "<s>" + " [INST] S\n\nu [/INST]" + 100 x " a</s>" + 99 x " [INST] u [/INST]" */
    CHECK_EQ_INT(len, 3 + 20 + 100 * 6 + 99 * 17);
}

/* ---- errors ---- */

TEST(chat_rejects_bad_messages)
{
    char buf[256] = "junk", err[256] = "";
    const struct syn_chat_msg tool[2] = {{"user", "hi"}, {"tool", "{}"}};
    CHECK_EQ_INT(
        syn_chat_apply(SYN_CHAT_CHATML, tool, 2, 1, NULL, NULL, buf, sizeof buf, err, sizeof err),
        SYN_EINVAL);
    CHECK(strstr(err, "message 1 has role 'tool', expected system, user or assistant"));
    CHECK_EQ_STR(buf, "");
    const struct syn_chat_msg norole[1] = {{NULL, "hi"}};
    CHECK_EQ_INT(
        syn_chat_apply(SYN_CHAT_LLAMA3, norole, 1, 1, NULL, NULL, buf, sizeof buf, err, sizeof err),
        SYN_EINVAL);
    CHECK(strstr(err, "role '(null)'"));

    /* a system message with no user message after it has no place in llama2/mistral... */
    const struct syn_chat_msg late[3] = {{"user", "a"}, {"assistant", "b"}, {"system", "c"}};
    CHECK_EQ_INT(
        syn_chat_apply(SYN_CHAT_LLAMA2, late, 3, 1, NULL, NULL, buf, sizeof buf, err, sizeof err),
        SYN_EINVAL);
    CHECK(strstr(err, "system message 2 is not followed by a user message"));
    CHECK_EQ_INT(syn_chat_apply(SYN_CHAT_MISTRAL, late + 2, 1, 1, NULL, NULL, buf, sizeof buf, err,
                                sizeof err),
                 SYN_EINVAL);
    /* ...but is fine where the template has a system turn */
    CHECK(syn_chat_apply(SYN_CHAT_CHATML, late, 3, 1, NULL, NULL, buf, sizeof buf, err,
                         sizeof err) > 0);
    /* a system message in the middle folds into the next user turn */
    const struct syn_chat_msg mid[4] = {
        {"user", "a"}, {"assistant", "b"}, {"system", "be brief"}, {"user", "c"}};
    CHECK_EQ_STR(render(SYN_CHAT_MISTRAL, mid, 4, 1),
                 "<s> [INST] a [/INST] b</s> [INST] be brief\n\nc [/INST]");
    CHECK_EQ_STR(render(SYN_CHAT_LLAMA2, mid, 4, 1),
                 "<s>[INST] a [/INST] b </s><s>[INST] <<SYS>>\nbe brief\n<</SYS>>\n\nc [/INST]");

    CHECK_EQ_INT(syn_chat_apply(0, conv, 4, 1, NULL, NULL, buf, sizeof buf, err, sizeof err),
                 SYN_EINVAL);
    CHECK(strstr(err, "unknown template id 0"));
    CHECK_EQ_INT(
        syn_chat_apply(SYN_CHAT_COUNT, conv, 4, 1, NULL, NULL, buf, sizeof buf, err, sizeof err),
        SYN_EINVAL);
    CHECK_EQ_INT(
        syn_chat_apply(SYN_CHAT_CHATML, conv, -1, 1, NULL, NULL, buf, sizeof buf, err, sizeof err),
        SYN_EINVAL);
}

/* ---- detection and names ---- */

/* Template texts as models ship them (abridged to their distinctive parts). */
static const char *tpl_llama2 =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}"
    "{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}";
static const char *tpl_llama3 =
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ "
    "message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{% endif %}";
static const char *tpl_chatml =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
static const char *tpl_zephyr =
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n"
    "{{ '<|user|>\\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'system' %}\n{{ '<|system|>\\n' + message['content'] + "
    "eos_token }}\n{% elif message['role'] == 'assistant' %}\n"
    "{{ '<|assistant|>\\n'  + message['content'] + eos_token }}\n{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n"
    "{% endfor %}";
static const char *tpl_mistral =
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}"
    "{% endif %}{% endfor %}";
/* The Mistral variants, abridged to their user/assistant/system branches, spelled as each model
 * family ships them. The V1 template of Mistral-7B-Instruct-v0.1/v0.2 after the mistral-common
 * alignment (the one above is the older v0.1 text): */
static const char *tpl_mistral_v1 =
    "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] %}"
    "{%- set loop_messages = messages[1:] %}{%- else %}{%- set loop_messages = messages %}"
    "{%- endif %}{{- bos_token }}{%- for message in loop_messages %}"
    "{%- if message['role'] == 'user' %}{%- if loop.first and system_message is defined %}"
    "{{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}"
    "{%- else %}{{- ' [INST] ' + message['content'] + ' [/INST]' }}{%- endif %}"
    "{%- elif message['role'] == 'assistant' %}{{- ' ' + message['content'] + eos_token}}"
    "{%- endif %}{%- endfor %}";
/* Mistral-7B-Instruct-v0.3 (tools elided) */
static const char *tpl_mistral_v3 =
    "{%- set user_messages = loop_messages | selectattr(\"role\", \"equalto\", \"user\") | list %}"
    "{{- bos_token }}{%- for message in loop_messages %}{%- if message[\"role\"] == \"user\" %}"
    "{%- if tools is not none and (message == user_messages[-1]) %}"
    "{{- \"[AVAILABLE_TOOLS] [\" }}{{- \"[/AVAILABLE_TOOLS]\" }}{%- endif %}"
    "{%- if loop.last and system_message is defined %}"
    "{{- \"[INST] \" + system_message + \"\\n\\n\" + message[\"content\"] + \"[/INST]\" }}"
    "{%- else %}{{- \"[INST] \" + message[\"content\"] + \"[/INST]\" }}{%- endif %}"
    "{%- elif message.tool_calls is defined and message.tool_calls is not none %}"
    "{{- \"[TOOL_CALLS] [\" }}{%- elif message[\"role\"] == \"assistant\" %}"
    "{{- \" \" + message[\"content\"]|trim + eos_token}}{%- endif %}{%- endfor %}";
/* Mistral's cookbook V2/V3 Jinja */
static const char *tpl_mistral_v3_doc =
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + '[/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' ' + message['content'] + eos_token }}{% endif %}{% endfor %}";
/* Mistral-Nemo-Instruct-2407 (tools elided) */
static const char *tpl_mistral_nemo =
    "{{- bos_token }}{%- for message in loop_messages %}{%- if message[\"role\"] == \"user\" %}"
    "{%- if tools is not none and (message == user_messages[-1]) %}"
    "{{- \"[AVAILABLE_TOOLS][\" }}{{- \"[/AVAILABLE_TOOLS]\" }}{%- endif %}"
    "{%- if loop.last and system_message is defined %}"
    "{{- \"[INST]\" + system_message + \"\\n\\n\" + message[\"content\"] + \"[/INST]\" }}"
    "{%- else %}{{- \"[INST]\" + message[\"content\"] + \"[/INST]\" }}{%- endif %}"
    "{%- elif message[\"role\"] == \"assistant\" %}{{- message[\"content\"] + eos_token}}"
    "{%- endif %}{%- endfor %}";
/* Pixtral-12B: the tags are literals of their own */
static const char *tpl_pixtral =
    "{%- if message[\"role\"] == \"user\" %}{%- if loop.last and system_message is defined %}"
    "{{- \"[INST]\" + system_message + \"\\n\\n\" }}{%- else %}{{- \"[INST]\" }}{%- endif %}"
    "{%- if message[\"content\"] is not string %}{%- for chunk in message[\"content\"] %}"
    "{%- if chunk[\"type\"] == \"image\" %}{{- \"[IMG]\" }}{%- endif %}{%- endfor %}"
    "{%- else %}{{- message[\"content\"] }}{%- endif %}{{- \"[/INST]\" }}"
    "{%- elif message[\"role\"] == \"assistant\" %}{{- message[\"content\"] + eos_token}}";
/* Mistral-Large-Instruct-2411 */
static const char *tpl_mistral_large_2411 =
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + '[/INST]' }}{% elif message['role'] == 'system' %}"
    "{{ '[SYSTEM_PROMPT] ' + message['content'] + '[/SYSTEM_PROMPT]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] + eos_token }}"
    "{% endif %}{% endfor %}";
/* Mistral-Small-24B-Instruct-2501 (default system prompt abridged) */
static const char *tpl_mistral_small_2501 =
    "{%- set today = strftime_now(\"%Y-%m-%d\") %}"
    "{%- set default_system_message = \"You are Mistral Small 3, a Large Language Model.\" %}"
    "{{- bos_token }}{%- if messages[0]['role'] == 'system' %}"
    "{%- set system_message = messages[0]['content'] %}{%- set loop_messages = messages[1:] %}"
    "{%- else %}{%- set system_message = default_system_message %}"
    "{%- set loop_messages = messages %}{%- endif %}"
    "{{- '[SYSTEM_PROMPT]' + system_message + '[/SYSTEM_PROMPT]' }}"
    "{%- for message in loop_messages %}{%- if message['role'] == 'user' %}"
    "{{- '[INST]' + message['content'] + '[/INST]' }}{%- elif message['role'] == 'system' %}"
    "{{- '[SYSTEM_PROMPT]' + message['content'] + '[/SYSTEM_PROMPT]' }}"
    "{%- elif message['role'] == 'assistant' %}{{- message['content'] + eos_token }}"
    "{%- endif %}{%- endfor %}";
static const char *tpl_phi3 =
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{'<|system|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'user' %}"
    "{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'assistant' %}"
    "{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}";
static const char *tpl_gemma =
    "{{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + role + '\\n' + "
    "message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}";

TEST(chat_detects_shipped_templates)
{
    CHECK_EQ_INT(syn_chat_detect(tpl_llama2, strlen(tpl_llama2)), SYN_CHAT_LLAMA2);
    CHECK_EQ_INT(syn_chat_detect(tpl_llama3, strlen(tpl_llama3)), SYN_CHAT_LLAMA3);
    CHECK_EQ_INT(syn_chat_detect(tpl_chatml, strlen(tpl_chatml)), SYN_CHAT_CHATML);
    CHECK_EQ_INT(syn_chat_detect(tpl_zephyr, strlen(tpl_zephyr)), SYN_CHAT_ZEPHYR);
    CHECK_EQ_INT(syn_chat_detect(tpl_mistral, strlen(tpl_mistral)), SYN_CHAT_MISTRAL_V1);
    /* look-alikes we do not render must not be mistaken for ours */
    CHECK_EQ_INT(syn_chat_detect(tpl_phi3, strlen(tpl_phi3)), SYN_ENOTFOUND);
    CHECK_EQ_INT(syn_chat_detect(tpl_gemma, strlen(tpl_gemma)), SYN_ENOTFOUND);
    CHECK_EQ_INT(syn_chat_detect("", 0), SYN_ENOTFOUND);
    CHECK_EQ_INT(syn_chat_detect(NULL, 10), SYN_ENOTFOUND);
    /* the length is honoured: the text need not be NUL-terminated, markers past len don't count */
    CHECK_EQ_INT(syn_chat_detect(tpl_llama3, 20), SYN_ENOTFOUND);
    char copy[64];
    memcpy(copy, "xx<|im_start|>yy", 16);
    CHECK_EQ_INT(syn_chat_detect(copy, 16), SYN_CHAT_CHATML);
}

static int detect(const char *t)
{
    return syn_chat_detect(t, strlen(t));
}

TEST(chat_detects_mistral_variants)
{
    CHECK_EQ_INT(detect(tpl_mistral_v1), SYN_CHAT_MISTRAL_V1);
    CHECK_EQ_INT(detect(tpl_mistral_v3), SYN_CHAT_MISTRAL_V3);
    CHECK_EQ_INT(detect(tpl_mistral_v3_doc), SYN_CHAT_MISTRAL_V3);
    CHECK_EQ_INT(detect(tpl_mistral_nemo), SYN_CHAT_MISTRAL_V3_TEKKEN);
    CHECK_EQ_INT(detect(tpl_pixtral), SYN_CHAT_MISTRAL_V3_TEKKEN);
    CHECK_EQ_INT(detect(tpl_mistral_large_2411), SYN_CHAT_MISTRAL_V7);
    CHECK_EQ_INT(detect(tpl_mistral_small_2501), SYN_CHAT_MISTRAL_V7_TEKKEN);
    /* the same markers read the same with the quotes JSON-escaped (a tokenizer_config.json text
     * that was not decoded) */
    CHECK_EQ_INT(detect("{{ \\\"[INST]\\\" + message[\\\"content\\\"] + \\\"[/INST]\\\" }}"),
                 SYN_CHAT_MISTRAL_V3_TEKKEN);
    CHECK_EQ_INT(detect("{{ \\\"[INST] \\\" + message[\\\"content\\\"] + \\\"[/INST]\\\" }}"),
                 SYN_CHAT_MISTRAL_V3);
    /* a [SYSTEM_PROMPT] mentioned anywhere makes it V7, even in a V3-looking template */
    CHECK_EQ_INT(detect("{{ '[SYSTEM_PROMPT] ' + s + '[/SYSTEM_PROMPT]' }}{{ '[INST] ' + u + "
                        "'[/INST]' }}"),
                 SYN_CHAT_MISTRAL_V7);
    /* [INST] with no quoted literal to read stays what it was before: mistral-v1 */
    CHECK_EQ_INT(detect("[INST] {{ message['content'] }} [/INST]"), SYN_CHAT_MISTRAL_V1);
    CHECK_EQ_INT(detect("[INST]"), SYN_CHAT_MISTRAL_V1);
    /* Llama 2 keeps winning on <<SYS>> */
    CHECK_EQ_INT(detect(tpl_llama2), SYN_CHAT_LLAMA2);
    /* the length is honoured here too: the quote after [INST] lies past len */
    CHECK_EQ_INT(syn_chat_detect("x[INST]\"", 7), SYN_CHAT_MISTRAL_V1);
    CHECK_EQ_INT(syn_chat_detect("x[INST]\"", 8), SYN_CHAT_MISTRAL_V3_TEKKEN);
    /* the detected variant renders as the model's own template would */
    CHECK_EQ_STR(render(detect(tpl_mistral_nemo), conv + 1, 1, 1), "<s>[INST]Hello![/INST]");
    CHECK_EQ_STR(render(detect(tpl_mistral_v3), conv + 1, 1, 1), "<s>[INST] Hello![/INST]");
}

TEST(chat_names_and_override)
{
    const char *names[] = {"llama2",
                           "llama3",
                           "chatml",
                           "zephyr",
                           "mistral-v1",
                           "mistral-v3",
                           "mistral-v3-tekken",
                           "mistral-v7",
                           "mistral-v7-tekken"};
    for (int i = 0; i < 9; i++) {
        int id = syn_chat_from_name(names[i]);
        CHECK(id > 0);
        CHECK_EQ_STR(syn_chat_name(id), names[i]);
        CHECK(strstr(syn_chat_known_names(), names[i]));
    }
    CHECK_EQ_INT(syn_chat_from_name("ChatML"), SYN_CHAT_CHATML);
    CHECK_EQ_INT(syn_chat_from_name("llama-3"), SYN_CHAT_LLAMA3);
    /* "mistral" keeps meaning what it rendered before: V1 */
    CHECK_EQ_INT(syn_chat_from_name("mistral"), SYN_CHAT_MISTRAL_V1);
    CHECK_EQ_INT(syn_chat_from_name("Mistral-V3-Tekken"), SYN_CHAT_MISTRAL_V3_TEKKEN);
    CHECK_EQ_INT(syn_chat_from_name("mistral-v7-tekken"), SYN_CHAT_MISTRAL_V7_TEKKEN);
    CHECK_EQ_INT(syn_chat_from_name("mistral-v2"), SYN_ENOTFOUND);
    CHECK(strstr(syn_chat_known_names(), "mistral-v1 (or mistral)"));
    CHECK_EQ_INT(syn_chat_from_name("vicuna"), SYN_ENOTFOUND);
    CHECK_EQ_INT(syn_chat_from_name(NULL), SYN_ENOTFOUND);
    CHECK(syn_chat_name(0) == NULL);
    CHECK(syn_chat_name(SYN_CHAT_COUNT) == NULL);

    char err[256] = "";
    /* the override wins over detection; without one, detection decides */
    CHECK_EQ_INT(syn_chat_resolve("zephyr", tpl_llama3, strlen(tpl_llama3), err, sizeof err),
                 SYN_CHAT_ZEPHYR);
    CHECK_EQ_INT(syn_chat_resolve("", tpl_llama3, strlen(tpl_llama3), err, sizeof err),
                 SYN_CHAT_LLAMA3);
    CHECK_EQ_INT(syn_chat_resolve(NULL, tpl_llama2, strlen(tpl_llama2), err, sizeof err),
                 SYN_CHAT_LLAMA2);
    /* an override also makes a model without a template usable */
    CHECK_EQ_INT(syn_chat_resolve("chatml", NULL, 0, err, sizeof err), SYN_CHAT_CHATML);
    /* an override picks the right Mistral variant for a model whose template is wrong */
    CHECK_EQ_INT(
        syn_chat_resolve("mistral-v3", tpl_mistral_v1, strlen(tpl_mistral_v1), err, sizeof err),
        SYN_CHAT_MISTRAL_V3);
}

TEST(chat_unknown_template_is_an_error)
{
    char err[256] = "";
    CHECK_EQ_INT(syn_chat_resolve(NULL, tpl_gemma, strlen(tpl_gemma), err, sizeof err),
                 SYN_ENOTFOUND);
    CHECK(strstr(err, "the model's chat template is not one synapse recognises"));
    CHECK(strstr(err, "--chat-template NAME"));
    CHECK(strstr(err, "llama2, llama3, chatml, zephyr, mistral"));
    CHECK_EQ_INT(syn_chat_resolve(NULL, NULL, 0, err, sizeof err), SYN_ENOTFOUND);
    CHECK(strstr(err, "the model has no chat template"));
    CHECK_EQ_INT(syn_chat_resolve("vicuna", tpl_llama3, strlen(tpl_llama3), err, sizeof err),
                 SYN_ENOTFOUND);
    CHECK(strstr(err, "unknown chat template name 'vicuna' (known: llama2, llama3, chatml"));
}
