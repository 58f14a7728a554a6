/* The queue protocol's codecs without a server: keys and names, jobs and token events encoded
 * to an argv and decoded from the same bytes as Redis would return them (hiredis's own reader
 * parses the RESP we build), every field exact, and every malformed field rejected with a
 * message that names it. */
#include "harness.h"
#include "synapse/error.h"
#include "synapse/queue.h"

#include <hiredis/hiredis.h>
#include <math.h>
#include <stdint.h>

/* ---- helpers ---- */

struct kv {
    const char *k;
    const char *v;
    size_t vlen; /* 0: strlen(v) */
};

/* Parses RESP bytes with hiredis's reader. */
static redisReply *parse_resp(const char *buf, size_t n)
{
    redisReader *rd = redisReaderCreate();
    CHECK(rd);
    CHECK(redisReaderFeed(rd, buf, n) == REDIS_OK);
    void *r = NULL;
    CHECK(redisReaderGetReply(rd, &r) == REDIS_OK);
    CHECK(r);
    redisReaderFree(rd);
    return r;
}

static redisReply *parse_str(const char *resp)
{
    return parse_resp(resp, strlen(resp));
}

/* RESP array of bulk strings: argv[first..argc). */
static redisReply *argv_reply(const struct syn_q_argv *a, int first)
{
    size_t cap = 64;
    for (int i = first; i < a->argc; i++) cap += a->len[i] + 32;
    char *buf = malloc(cap);
    CHECK(buf);
    size_t o = (size_t)snprintf(buf, cap, "*%d\r\n", a->argc - first);
    for (int i = first; i < a->argc; i++) {
        o += (size_t)snprintf(buf + o, cap - o, "$%zu\r\n", a->len[i]);
        memcpy(buf + o, a->argv[i], a->len[i]);
        o += a->len[i];
        memcpy(buf + o, "\r\n", 2);
        o += 2;
    }
    redisReply *r = parse_resp(buf, o);
    free(buf);
    return r;
}

static redisReply *kv_reply(const struct kv *f, int n)
{
    struct syn_q_argv a;
    memset(&a, 0, sizeof a);
    for (int i = 0; i < n; i++) {
        a.argv[a.argc] = f[i].k;
        a.len[a.argc++] = strlen(f[i].k);
        a.argv[a.argc] = f[i].v;
        a.len[a.argc++] = f[i].vlen ? f[i].vlen : strlen(f[i].v);
    }
    return argv_reply(&a, 0);
}

/* A valid job's fields, as a base for mutations. */
static const struct kv base_job[] = {
    {"id", "chatcmpl-1", 0},    {"model", "stories", 0}, {"reply", "syn:reply:{gw1}", 0},
    {"prompt", "Once upon", 0}, {"max_tokens", "8", 0},  {"temperature", "0.5", 0},
    {"seed", "42", 0},
};
#define N_BASE ((int)(sizeof base_job / sizeof base_job[0]))

/* Decodes base_job with field `name` replaced by value (NULL: removed; a name not in the base:
 * added). Returns the syn_err and the message in err. */
static int decode_with(const char *name, const char *value, size_t vlen, char *err, size_t errlen)
{
    struct kv f[N_BASE + 1];
    int n = 0, found = 0;
    for (int i = 0; i < N_BASE; i++) {
        if (strcmp(base_job[i].k, name) == 0) {
            found = 1;
            if (!value) continue;
            f[n++] = (struct kv){name, value, vlen};
        } else {
            f[n++] = base_job[i];
        }
    }
    if (!found && value) f[n++] = (struct kv){name, value, vlen};
    redisReply *r = kv_reply(f, n);
    struct syn_job j;
    err[0] = 0;
    int rc = syn_job_decode(r, &j, err, errlen);
    if (rc == SYN_OK) syn_job_release(&j);
    freeReplyObject(r);
    return rc;
}

static void expect_reject(const char *name, const char *value, size_t vlen, const char *needle)
{
    char err[512];
    int rc = decode_with(name, value, vlen, err, sizeof err);
    if (rc != SYN_EFORMAT)
        FAIL("field %s = '%s': expected SYN_EFORMAT, got %d (%s)", name,
             value ? value : "(removed)", rc, err);
    if (!strstr(err, needle))
        FAIL("field %s = '%s': message \"%s\" lacks \"%s\"", name, value ? value : "(removed)", err,
             needle);
}

/* Encodes j, decodes the fields back into out. */
static void job_roundtrip(const struct syn_job *j, struct syn_job *out)
{
    struct syn_q_argv a;
    char err[512];
    int rc = syn_job_xadd_argv(j, &a);
    if (rc != SYN_OK) {
        syn_job_validate(j, err, sizeof err);
        FAIL("xadd_argv: %d (%s)", rc, err);
    }
    CHECK_EQ_STR(a.argv[0], "XADD");
    CHECK_EQ_STR(a.argv[2], "*");
    redisReply *r = argv_reply(&a, 3);
    syn_q_argv_reset(&a);
    rc = syn_job_decode(r, out, err, sizeof err);
    if (rc != SYN_OK) FAIL("decode: %d (%s)", rc, err);
    freeReplyObject(r);
}

static int float_bits_eq(float a, float b)
{
    uint32_t x, y;
    memcpy(&x, &a, 4);
    memcpy(&y, &b, 4);
    return x == y;
}

/* ---- keys and names ---- */

TEST(queue_keys_and_names)
{
    char buf[160];
    CHECK_EQ_INT(syn_q_key_jobs(buf, sizeof buf, "llama-3.1_8b", SYN_PRIO_NORMAL), 23);
    CHECK_EQ_STR(buf, "syn:{llama-3.1_8b}:jobs");
    syn_q_key_jobs(buf, sizeof buf, "m", SYN_PRIO_HIGH);
    CHECK_EQ_STR(buf, "syn:{m}:jobs:hi");
    syn_q_key_dead(buf, sizeof buf, "m");
    CHECK_EQ_STR(buf, "syn:{m}:dead");
    syn_q_key_workers(buf, sizeof buf, "m");
    CHECK_EQ_STR(buf, "syn:{m}:workers");
    syn_q_key_worker(buf, sizeof buf, "w1");
    CHECK_EQ_STR(buf, "syn:worker:{w1}");
    syn_q_key_reply(buf, sizeof buf, "gw");
    CHECK_EQ_STR(buf, "syn:reply:{gw}");
    syn_q_key_cancel(buf, sizeof buf, "chatcmpl-9");
    CHECK_EQ_STR(buf, "syn:cancel:{chatcmpl-9}");

    CHECK_EQ_INT(syn_q_key_jobs(buf, sizeof buf, "m", 2), -1);
    CHECK_EQ_INT(syn_q_key_jobs(buf, sizeof buf, "a b", 0), -1);
    CHECK_EQ_INT(syn_q_key_reply(buf, sizeof buf, "x}y"), -1);
    CHECK_EQ_INT(syn_q_key_reply(buf, sizeof buf, ""), -1);
    CHECK_EQ_INT(syn_q_key_reply(buf, 10, "gateway"), -1); /* does not fit */
    CHECK_EQ_INT(syn_q_key_reply(buf, 15, "gw"), 14);      /* exactly fits */

    char name[120];
    memset(name, 'a', 100);
    name[100] = 0;
    CHECK(syn_q_name_ok(name));
    name[100] = 'a';
    name[101] = 0;
    CHECK(!syn_q_name_ok(name));
    CHECK(!syn_q_name_ok(NULL));
    CHECK(!syn_q_name_ok("é"));
    CHECK(!syn_q_name_ok("a:b"));
    CHECK(!syn_q_name_ok("a{b"));
    CHECK(syn_q_name_ok("A.z_0-9"));
}

/* ---- jobs ---- */

TEST(queue_job_roundtrip_every_field)
{
    struct syn_job j, d;
    syn_job_init(&j);
    snprintf(j.id, sizeof j.id, "chatcmpl-abc.DEF_123");
    snprintf(j.model, sizeof j.model, "llama-3.1-8b");
    syn_q_key_reply(j.reply, sizeof j.reply, "gateway-7");
    j.n_tokens = 100000;
    j.tokens = malloc(sizeof *j.tokens * (size_t)j.n_tokens);
    for (int i = 0; i < j.n_tokens; i++) j.tokens[i] = (int32_t)((i * 2654435761u) % 2147483648u);
    j.tokens[0] = 0;
    j.tokens[1] = INT32_MAX;
    j.sampling.temperature = 0.7f;
    j.sampling.top_p = 0.95f;
    j.sampling.top_k = 40;
    j.sampling.min_p = 0.05f;
    j.sampling.repetition_penalty = 1.1f;
    j.sampling.frequency_penalty = -0.3f;
    j.sampling.presence_penalty = 1.9999999f;
    j.sampling.seed = UINT64_MAX;
    j.max_tokens = 4096;
    j.stop[0] = strdup("\n\nUser:");
    j.stop[1] = strdup("«fin» \"quoted\" \\ back");
    j.stop[2] = strdup("日本語");
    j.stop[3] = strdup("x");
    j.n_stop = 4;
    j.logprobs = 1;
    j.top_logprobs = 20;
    j.deadline_ms = 1700000123456;
    j.priority = SYN_PRIO_HIGH;
    j.created_ms = 1700000000001;

    job_roundtrip(&j, &d);
    CHECK_EQ_STR(d.id, j.id);
    CHECK_EQ_STR(d.model, j.model);
    CHECK_EQ_STR(d.reply, "syn:reply:{gateway-7}");
    CHECK(!d.prompt && !d.messages);
    CHECK_EQ_INT(d.n_tokens, j.n_tokens);
    CHECK(memcmp(d.tokens, j.tokens, sizeof *j.tokens * (size_t)j.n_tokens) == 0);
    CHECK(float_bits_eq(d.sampling.temperature, j.sampling.temperature));
    CHECK(float_bits_eq(d.sampling.top_p, j.sampling.top_p));
    CHECK(float_bits_eq(d.sampling.min_p, j.sampling.min_p));
    CHECK(float_bits_eq(d.sampling.repetition_penalty, j.sampling.repetition_penalty));
    CHECK(float_bits_eq(d.sampling.frequency_penalty, j.sampling.frequency_penalty));
    CHECK(float_bits_eq(d.sampling.presence_penalty, j.sampling.presence_penalty));
    CHECK_EQ_INT(d.sampling.top_k, 40);
    CHECK(d.sampling.seed == UINT64_MAX);
    CHECK_EQ_INT(d.max_tokens, 4096);
    CHECK_EQ_INT(d.n_stop, 4);
    for (int i = 0; i < 4; i++) CHECK_EQ_STR(d.stop[i], j.stop[i]);
    CHECK_EQ_INT(d.logprobs, 1);
    CHECK_EQ_INT(d.top_logprobs, 20);
    CHECK_EQ_INT(d.deadline_ms, 1700000123456);
    CHECK_EQ_INT(d.priority, SYN_PRIO_HIGH);
    CHECK_EQ_INT(d.created_ms, 1700000000001);
    CHECK_EQ_INT(d.attempt, 1); /* not encoded: the first delivery */
    CHECK_EQ_STR(d.entry, "");

    /* a requeued job carries its attempts: the new entry starts one later */
    struct syn_job e;
    d.attempt = 3;
    job_roundtrip(&d, &e);
    CHECK_EQ_INT(e.attempt, 4);
    syn_job_release(&e);
    syn_job_release(&d);
    syn_job_release(&j);
    CHECK(j.tokens == NULL && j.n_stop == 0);
}

TEST(queue_job_roundtrip_prompt_and_messages)
{
    struct syn_job j, d;
    syn_job_init(&j);
    snprintf(j.id, sizeof j.id, "cmpl-1");
    snprintf(j.model, sizeof j.model, "m");
    syn_q_key_reply(j.reply, sizeof j.reply, "g");
    j.prompt =
        strdup("line one\nline two\r\n\ttabbed \"quotes\" \\ émoji 🦙 中文\x01\x7f end");
    job_roundtrip(&j, &d);
    CHECK_EQ_STR(d.prompt, j.prompt);
    CHECK(!d.messages && !d.tokens);
    /* the defaults come back as defaults */
    struct syn_sampling_params def = syn_sampling_default_params();
    CHECK(float_bits_eq(d.sampling.temperature, def.temperature));
    CHECK(float_bits_eq(d.sampling.top_p, def.top_p));
    CHECK_EQ_INT(d.max_tokens, 16);
    CHECK_EQ_INT(d.priority, SYN_PRIO_NORMAL);
    CHECK_EQ_INT(d.n_stop, 0);
    syn_job_release(&d);
    free(j.prompt);
    j.prompt = NULL;

    j.messages = strdup("[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                        "{\"role\":\"user\",\"content\":\"Hi \\u00e9\\n\"}]");
    job_roundtrip(&j, &d);
    CHECK_EQ_STR(d.messages, j.messages);
    CHECK(!d.prompt && !d.tokens);
    syn_job_release(&d);
    syn_job_release(&j);
}

TEST(queue_job_floats_roundtrip_exactly)
{
    /* every float the validators accept must come back bit for bit (%.9g + strtof) */
    struct syn_job j, d;
    syn_job_init(&j);
    snprintf(j.id, sizeof j.id, "f");
    snprintf(j.model, sizeof j.model, "m");
    syn_q_key_reply(j.reply, sizeof j.reply, "g");
    j.prompt = strdup("p");
    uint64_t x = 88172645463325252ull;
    const float edge[] = {0.0f, 1e-45f,      1.17549435e-38f, 0.1f,
                          0.2f, 1.0f / 3.0f, 99.9999924f,     100.0f};
    for (int i = 0; i < 2000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        float u = (float)(x >> 40) / (float)(1 << 24); /* [0, 1) */
        uint32_t bits = (uint32_t)x;
        float any;
        memcpy(&any, &bits, 4);
        if (!(any >= 0.0f && any <= 100.0f)) any = u * 100.0f;
        j.sampling.temperature = i < 8 ? edge[i] : any;
        j.sampling.top_p = u > 0.0f ? u : 1.0f;
        j.sampling.min_p = u;
        j.sampling.frequency_penalty = u * 4.0f - 2.0f;
        j.sampling.presence_penalty = -u * 2.0f;
        j.sampling.repetition_penalty = 10.0f - u * 9.99f;
        job_roundtrip(&j, &d);
        if (!float_bits_eq(d.sampling.temperature, j.sampling.temperature) ||
            !float_bits_eq(d.sampling.top_p, j.sampling.top_p) ||
            !float_bits_eq(d.sampling.min_p, j.sampling.min_p) ||
            !float_bits_eq(d.sampling.frequency_penalty, j.sampling.frequency_penalty) ||
            !float_bits_eq(d.sampling.presence_penalty, j.sampling.presence_penalty) ||
            !float_bits_eq(d.sampling.repetition_penalty, j.sampling.repetition_penalty))
            FAIL("iteration %d: temperature %.9g came back as %.9g", i,
                 (double)j.sampling.temperature, (double)d.sampling.temperature);
        syn_job_release(&d);
    }
    syn_job_release(&j);
}

TEST(queue_job_decode_rejects_bad_fields)
{
    char err[512];
    CHECK_EQ_INT(decode_with("none", NULL, 0, err, sizeof err), SYN_OK);
    expect_reject("id", NULL, 0, "field 'id' is missing");
    expect_reject("reply", NULL, 0, "field 'reply' is missing");
    expect_reject("id", "has space", 0, "'id' must be 1..100 characters");
    expect_reject("id", "a:b", 0, "found 'a:b'");
    expect_reject("model", "", 0, "'model'");
    expect_reject("reply", "syn:cancel:{x}", 0, "'reply' must be a key syn:reply:{gateway}");
    expect_reject("reply", "syn:reply:{}", 0, "'reply'");
    expect_reject("reply", "syn:reply:{a b}", 0, "'reply'");
    expect_reject("prompt", NULL, 0, "exactly one of the fields prompt, messages, tokens, found 0");
    expect_reject("tokens", "1 2", 0,
                  "exactly one of the fields prompt, messages, tokens, found 2");
    expect_reject("prompt", "a\0b", 3, "NUL bytes, found one at offset 1");
    expect_reject("max_tokens", NULL, 0, "'max_tokens' is missing");
    expect_reject("max_tokens", "0", 0, "'max_tokens' must be an integer in [1, ");
    expect_reject("max_tokens", "12x", 0, "found '12x'");
    expect_reject("max_tokens", "99999999999999999999999", 0, "'max_tokens'");
    expect_reject("temperature", "abc", 0, "'temperature' must be a decimal number, found 'abc'");
    expect_reject("temperature", "nan", 0, "'temperature'");
    expect_reject("temperature", "inf", 0, "'temperature'");
    expect_reject("temperature", "0x1p3", 0, "'temperature'");
    expect_reject("temperature", " 1", 0, "'temperature'");
    expect_reject("temperature", "1e", 0, "'temperature'");
    expect_reject("temperature", "101", 0, "temperature must be in [0, 100], got 101");
    expect_reject("top_p", "0", 0, "top_p must be in (0, 1]");
    expect_reject("min_p", "1.5", 0, "min_p");
    expect_reject("repetition_penalty", "0", 0, "repetition_penalty");
    expect_reject("frequency_penalty", "-2.5", 0, "frequency_penalty");
    expect_reject("presence_penalty", "3", 0, "presence_penalty");
    expect_reject("top_k", "-1", 0, "'top_k' must be an integer in [0, ");
    expect_reject("seed", "-1", 0, "'seed' must be an integer in [0, 2^64)");
    expect_reject("seed", "18446744073709551616", 0, "'seed'");
    expect_reject("logprobs", "2", 0, "'logprobs' must be an integer in [0, 1], found '2'");
    expect_reject("top_logprobs", "21", 0, "'top_logprobs' must be an integer in [0, 20]");
    expect_reject("deadline_ms", "-5", 0, "'deadline_ms'");
    expect_reject("priority", "2", 0, "'priority' must be an integer in [0, 1]");
    expect_reject("attempt", "0", 0, "'attempt'");
    expect_reject("stop", "not json", 0, "'stop' must be a JSON array of at most 4 strings");
    expect_reject("stop", "[\"a\",\"b\",\"c\",\"d\",\"e\"]", 0, "at most 4");
    expect_reject("stop", "[\"\"]", 0, "'stop' element 0 must be a non-empty string");
    expect_reject("stop", "[\"a\",1]", 0, "element 1");
    expect_reject("stop", "{\"a\":1}", 0, "'stop'");
    expect_reject("stop", "[\"a\\u0000b\"]", 0, "'stop'");

    /* inputs of the other kinds */
    struct kv msgs[] = {{"id", "x", 0},
                        {"model", "m", 0},
                        {"reply", "syn:reply:{g}", 0},
                        {"messages", "{\"role\":\"user\"}", 0},
                        {"max_tokens", "1", 0}};
    redisReply *r = kv_reply(msgs, 5);
    struct syn_job j;
    CHECK_EQ_INT(syn_job_decode(r, &j, err, sizeof err), SYN_EFORMAT);
    CHECK(strstr(err, "messages must be a JSON array of objects"));
    freeReplyObject(r);
    msgs[3].v = "[1]";
    r = kv_reply(msgs, 5);
    CHECK_EQ_INT(syn_job_decode(r, &j, err, sizeof err), SYN_EFORMAT);
    CHECK(strstr(err, "messages[0] must be an object"));
    freeReplyObject(r);
    msgs[3].v = "[{\"role\":\"user\",\"content\":\"x\"}]";
    r = kv_reply(msgs, 5);
    CHECK_EQ_INT(syn_job_decode(r, &j, err, sizeof err), SYN_OK);
    syn_job_release(&j);
    freeReplyObject(r);

    const char *bad_tokens[] = {"", " 1", "1 ", "1  2", "1,2", "-1", "2147483648", "1 x"};
    for (size_t i = 0; i < sizeof bad_tokens / sizeof bad_tokens[0]; i++) {
        struct kv t[] = {{"id", "x", 0},
                         {"model", "m", 0},
                         {"reply", "syn:reply:{g}", 0},
                         {"tokens", bad_tokens[i], 0},
                         {"max_tokens", "1", 0}};
        r = kv_reply(t, 5);
        if (syn_job_decode(r, &j, err, sizeof err) != SYN_EFORMAT || !strstr(err, "'tokens'"))
            FAIL("tokens '%s' accepted or wrong message: %s", bad_tokens[i], err);
        freeReplyObject(r);
    }

    /* structure: duplicates, odd counts, non-strings, not an array */
    struct kv dup[] = {{"id", "x", 0},     {"model", "m", 0},      {"reply", "syn:reply:{g}", 0},
                       {"prompt", "p", 0}, {"max_tokens", "1", 0}, {"prompt", "q", 0}};
    r = kv_reply(dup, 6);
    CHECK_EQ_INT(syn_job_decode(r, &j, err, sizeof err), SYN_EFORMAT);
    CHECK(strstr(err, "field 'prompt' appears twice"));
    freeReplyObject(r);
    r = parse_str("*3\r\n$2\r\nid\r\n$1\r\nx\r\n$5\r\nmodel\r\n");
    CHECK_EQ_INT(syn_job_decode(r, &j, err, sizeof err), SYN_EFORMAT);
    CHECK(strstr(err, "odd number of elements"));
    freeReplyObject(r);
    r = parse_str("*2\r\n$2\r\nid\r\n:5\r\n");
    CHECK_EQ_INT(syn_job_decode(r, &j, err, sizeof err), SYN_EFORMAT);
    CHECK(strstr(err, "must be strings"));
    freeReplyObject(r);
    r = parse_str("$-1\r\n");
    CHECK_EQ_INT(syn_job_decode(r, &j, err, sizeof err), SYN_EFORMAT);
    CHECK(strstr(err, "expected an array of field/value pairs, found a non-array"));
    freeReplyObject(r);
    CHECK_EQ_INT(syn_job_decode(NULL, &j, err, sizeof err), SYN_EFORMAT);

    /* unknown fields are ignored (a newer gateway may add some) */
    CHECK_EQ_INT(decode_with("future_field", "whatever", 0, err, sizeof err), SYN_OK);
}

TEST(queue_job_encode_rejects_invalid_jobs)
{
    struct syn_job j;
    struct syn_q_argv a;
    char err[256];
    syn_job_init(&j);
    snprintf(j.id, sizeof j.id, "x");
    snprintf(j.model, sizeof j.model, "m");
    syn_q_key_reply(j.reply, sizeof j.reply, "g");
    CHECK_EQ_INT(syn_job_xadd_argv(&j, &a), SYN_EINVAL); /* nothing to run */
    CHECK_EQ_INT(syn_job_validate(&j, err, sizeof err), SYN_EINVAL);
    CHECK(strstr(err, "expected exactly one of prompt, messages, tokens, found 0"));
    j.prompt = strdup("p");
    CHECK_EQ_INT(syn_job_xadd_argv(&j, &a), SYN_OK);
    CHECK_EQ_STR(a.argv[1], "syn:{m}:jobs");
    syn_q_argv_reset(&a);
    j.sampling.top_p = 0.0f;
    CHECK_EQ_INT(syn_job_xadd_argv(&j, &a), SYN_EINVAL);
    j.sampling.top_p = 1.0f;
    snprintf(j.reply, sizeof j.reply, "somewhere");
    CHECK_EQ_INT(syn_job_xadd_argv(&j, &a), SYN_EINVAL);
    CHECK_EQ_INT(syn_job_validate(&j, err, sizeof err), SYN_EINVAL);
    CHECK(strstr(err, "reply must be a reply stream key syn:reply:{gateway}, found 'somewhere'"));
    syn_q_key_reply(j.reply, sizeof j.reply, "g");
    j.stop[0] = strdup("\xff\xfe not utf-8");
    j.n_stop = 1;
    CHECK_EQ_INT(syn_job_xadd_argv(&j, &a), SYN_EINVAL);
    j.n_stop = 5;
    CHECK_EQ_INT(syn_job_xadd_argv(&j, &a), SYN_EINVAL);
    j.n_stop = 0;
    j.max_tokens = 0;
    CHECK_EQ_INT(syn_job_xadd_argv(&j, &a), SYN_EINVAL);
    j.max_tokens = 1;
    j.priority = 7;
    CHECK_EQ_INT(syn_job_xadd_argv(&j, &a), SYN_EINVAL);
    j.priority = 0;
    snprintf(j.id, sizeof j.id, "bad id");
    CHECK_EQ_INT(syn_job_xadd_argv(&j, &a), SYN_EINVAL);
    syn_job_release(&j);
}

/* ---- events ---- */

TEST(queue_event_roundtrip_binary_text)
{
    static const char text[] = "a\0b\nc\r\n\xe2\x82" /* a held-back half of "€" */ "\x00\xff";
    struct syn_event ev = {0}, d;
    struct syn_q_argv a;
    char err[256];
    snprintf(ev.job, sizeof ev.job, "chatcmpl-7");
    ev.pos = 12;
    ev.n_tokens = 3;
    ev.text = text;
    ev.text_len = sizeof text - 1;
    ev.logprobs = "[{\"token\":\"a\",\"logprob\":-0.25,\"top_logprobs\":[]}]";
    ev.attempt = 2;
    CHECK_EQ_INT(syn_event_xadd_argv("syn:reply:{gw}", &ev, &a), SYN_OK);
    CHECK_EQ_STR(a.argv[1], "syn:reply:{gw}");
    CHECK_EQ_STR(a.argv[2], "MAXLEN");
    CHECK_EQ_STR(a.argv[3], "~");
    CHECK_EQ_STR(a.argv[5], "*");
    redisReply *r = argv_reply(&a, 6);
    syn_q_argv_reset(&a);
    CHECK_EQ_INT(syn_event_decode(r, &d, err, sizeof err), SYN_OK);
    CHECK_EQ_STR(d.job, "chatcmpl-7");
    CHECK_EQ_INT(d.pos, 12);
    CHECK_EQ_INT(d.n_tokens, 3);
    CHECK_EQ_INT(d.text_len, sizeof text - 1);
    CHECK(memcmp(d.text, text, d.text_len) == 0);
    CHECK_EQ_STR(d.logprobs, ev.logprobs);
    CHECK(d.finish == NULL && d.error == NULL && d.error_code == NULL);
    CHECK_EQ_INT(d.attempt, 2);
    freeReplyObject(r);

    /* a finishing error event with no text */
    memset(&ev, 0, sizeof ev);
    snprintf(ev.job, sizeof ev.job, "j");
    ev.pos = 40;
    ev.finish = "error";
    ev.prompt_tokens = 17;
    ev.completion_tokens = 40;
    ev.error = "the worker ran out of memory: \"kv\"\nsecond line";
    ev.error_code = "server_error";
    ev.attempt = 1;
    CHECK_EQ_INT(syn_event_xadd_argv("syn:reply:{gw}", &ev, &a), SYN_OK);
    r = argv_reply(&a, 6);
    syn_q_argv_reset(&a);
    CHECK_EQ_INT(syn_event_decode(r, &d, err, sizeof err), SYN_OK);
    CHECK_EQ_INT(d.text_len, 0);
    CHECK_EQ_STR(d.text, "");
    CHECK_EQ_STR(d.finish, "error");
    CHECK_EQ_INT(d.prompt_tokens, 17);
    CHECK_EQ_INT(d.completion_tokens, 40);
    CHECK_EQ_STR(d.error, ev.error);
    CHECK_EQ_STR(d.error_code, "server_error");
    freeReplyObject(r);

    /* usage counts without a finish are kept too (found by fuzz_job_decode) */
    ev.finish = NULL;
    ev.prompt_tokens = 0;
    ev.completion_tokens = 5;
    CHECK_EQ_INT(syn_event_xadd_argv("syn:reply:{gw}", &ev, &a), SYN_OK);
    r = argv_reply(&a, 6);
    syn_q_argv_reset(&a);
    CHECK_EQ_INT(syn_event_decode(r, &d, err, sizeof err), SYN_OK);
    CHECK(d.finish == NULL);
    CHECK_EQ_INT(d.completion_tokens, 5);
    freeReplyObject(r);

    const char *finishes[] = {"stop", "length", "cancelled", "error"};
    for (int i = 0; i < 4; i++) {
        ev.finish = finishes[i];
        CHECK_EQ_INT(syn_event_xadd_argv("syn:reply:{gw}", &ev, &a), SYN_OK);
        r = argv_reply(&a, 6);
        syn_q_argv_reset(&a);
        CHECK_EQ_INT(syn_event_decode(r, &d, err, sizeof err), SYN_OK);
        CHECK_EQ_STR(d.finish, finishes[i]);
        freeReplyObject(r);
    }
}

TEST(queue_event_rejects_bad_fields)
{
    struct syn_event ev = {0}, d;
    struct syn_q_argv a;
    char err[256];
    snprintf(ev.job, sizeof ev.job, "j");
    ev.text = "x";
    ev.text_len = 1;
    CHECK_EQ_INT(syn_event_xadd_argv("syn:reply:{gw}", &ev, &a), SYN_OK);
    syn_q_argv_reset(&a);
    CHECK_EQ_INT(syn_event_xadd_argv("syn:{m}:jobs", &ev, &a), SYN_EINVAL);
    CHECK_EQ_INT(syn_event_xadd_argv(NULL, &ev, &a), SYN_EINVAL);
    ev.finish = "done";
    CHECK_EQ_INT(syn_event_xadd_argv("syn:reply:{gw}", &ev, &a), SYN_EINVAL);
    ev.finish = NULL;
    ev.pos = -1;
    CHECK_EQ_INT(syn_event_xadd_argv("syn:reply:{gw}", &ev, &a), SYN_EINVAL);
    ev.pos = 0;
    ev.logprobs = "{not an array}";
    CHECK_EQ_INT(syn_event_xadd_argv("syn:reply:{gw}", &ev, &a), SYN_EINVAL);
    ev.logprobs = NULL;
    ev.error_code = "has space";
    CHECK_EQ_INT(syn_event_xadd_argv("syn:reply:{gw}", &ev, &a), SYN_EINVAL);

    struct {
        struct kv f[3];
        int n;
        const char *needle;
    } cases[] = {
        {{{"pos", "0", 0}}, 1, "field 'job' is missing"},
        {{{"job", "a b", 0}, {"pos", "0", 0}}, 2, "field 'job'"},
        {{{"job", "j", 0}}, 1, "field 'pos' is missing"},
        {{{"job", "j", 0}, {"pos", "-1", 0}}, 2, "field 'pos' must be an integer in [0, "},
        {{{"job", "j", 0}, {"pos", "1.5", 0}}, 2, "found '1.5'"},
        {{{"job", "j", 0}, {"pos", "0", 0}, {"n", "x", 0}}, 3, "field 'n'"},
        {{{"job", "j", 0}, {"pos", "0", 0}, {"finish", "done", 0}},
         3,
         "field 'finish' must be stop, length, cancelled or error, found 'done'"},
        {{{"job", "j", 0}, {"pos", "0", 0}, {"logprobs", "[1", 0}},
         3,
         "field 'logprobs' must be a JSON array"},
        {{{"job", "j", 0}, {"pos", "0", 0}, {"code", "a b", 0}}, 3, "field 'code'"},
        {{{"job", "j", 0}, {"pos", "0", 0}, {"error", "a\0b", 3}},
         3,
         "'error' must not contain NUL"},
        {{{"job", "j", 0}, {"pos", "0", 0}, {"pos", "1", 0}}, 3, "field 'pos' appears twice"},
        {{{"job", "j", 0}, {"pos", "0", 0}, {"attempt", "-2", 0}}, 3, "field 'attempt'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        redisReply *r = kv_reply(cases[i].f, cases[i].n);
        err[0] = 0;
        int rc = syn_event_decode(r, &d, err, sizeof err);
        if (rc != SYN_EFORMAT || !strstr(err, cases[i].needle))
            FAIL("case %zu: rc %d, message \"%s\" lacks \"%s\"", i, rc, err, cases[i].needle);
        freeReplyObject(r);
    }
    /* the smallest valid event, and unknown fields ignored */
    struct kv ok[] = {{"job", "j", 0}, {"pos", "5", 0}, {"extra", "1", 0}};
    redisReply *r = kv_reply(ok, 3);
    CHECK_EQ_INT(syn_event_decode(r, &d, err, sizeof err), SYN_OK);
    CHECK_EQ_INT(d.pos, 5);
    CHECK_EQ_INT(d.n_tokens, 0);
    CHECK_EQ_INT(d.text_len, 0);
    freeReplyObject(r);
}

TEST(queue_worker_decode)
{
    struct kv f[] = {{"id", "w1", 0},
                     {"model", "m", 0},
                     {"state", "1", 0},
                     {"pid", "123", 0},
                     {"max_seqs", "8", 0},
                     {"running", "3", 0},
                     {"free_slots", "5", 0},
                     {"kv_blocks_free", "10", 0},
                     {"kv_blocks_total", "64", 0},
                     {"heartbeat_ms", "1700000000000", 0},
                     {"started_ms", "1699999990000", 0},
                     {"cold_start_s", "1.25", 0},
                     {"jobs_done", "18446744073709551615", 0},
                     {"tokens_out", "77", 0}};
    redisReply *r = kv_reply(f, (int)(sizeof f / sizeof f[0]));
    struct syn_worker_info w;
    char err[256];
    CHECK_EQ_INT(syn_worker_decode(r, &w, err, sizeof err), SYN_OK);
    CHECK_EQ_STR(w.id, "w1");
    CHECK_EQ_STR(w.model, "m");
    CHECK_EQ_INT(w.state, SYN_WORKER_READY);
    CHECK_EQ_INT(w.pid, 123);
    CHECK_EQ_INT(w.free_slots, 5);
    CHECK_EQ_INT(w.kv_blocks_total, 64);
    CHECK_EQ_INT(w.heartbeat_ms, 1700000000000);
    CHECK_EQ_INT(w.started_ms, 1699999990000);
    CHECK(w.cold_start_s == 1.25);
    CHECK(w.jobs_done == UINT64_MAX);
    CHECK(w.tokens_out == 77);
    freeReplyObject(r);
    f[3].v = "12a";
    r = kv_reply(f, (int)(sizeof f / sizeof f[0]));
    CHECK_EQ_INT(syn_worker_decode(r, &w, err, sizeof err), SYN_EFORMAT);
    CHECK(strstr(err, "field 'pid' has a bad value '12a'"));
    freeReplyObject(r);
    r = kv_reply(f + 1, 1);
    CHECK_EQ_INT(syn_worker_decode(r, &w, err, sizeof err), SYN_EFORMAT);
    CHECK(strstr(err, "'id' and 'model' are required"));
    freeReplyObject(r);
}
