/* The gateway's pure parts without a server: OpenAI request parsing and validation into a job
 * (every field, every refusal with its status, param and code), the response builders (exact
 * shapes), logprobs conversion, UTF-8 repair, admission arithmetic (depth, Retry-After from the
 * drain rate), API-key checks, and the HTTP head parser. */
#include "harness.h"

#include "gateway/admission.h"
#include "gateway/arena.h"
#include "gateway/auth.h"
#include "gateway/http.h"
#include "gateway/openai.h"
#include "gateway/redis.h"

#include <jansson.h>
#include <math.h>

/* ---- helpers ---- */

static struct gw_oai_request parse_ok(enum gw_oai_kind kind, const char *body)
{
    struct gw_oai_request r;
    struct gw_oai_error e;
    struct gw_oai_limits lim = gw_oai_default_limits();
    memset(&e, 0, sizeof e);
    if (gw_oai_parse(kind, body, strlen(body), &lim, &r, &e) != 0)
        FAIL("expected %s to parse, got %d %s (param '%s')", body, e.status, e.message, e.param);
    return r;
}

/* Expects a refusal with this status and param ("" for null); returns the error. */
static struct gw_oai_error parse_bad(enum gw_oai_kind kind, const char *body, int status,
                                     const char *param)
{
    struct gw_oai_request r;
    struct gw_oai_error e;
    struct gw_oai_limits lim = gw_oai_default_limits();
    memset(&e, 0, sizeof e);
    if (gw_oai_parse(kind, body, strlen(body), &lim, &r, &e) == 0) {
        gw_oai_request_release(&r);
        FAIL("expected %s to be refused", body);
    }
    if (e.status != status)
        FAIL("%s: status %d, expected %d (%s)", body, e.status, status, e.message);
    if (strcmp(e.param, param) != 0)
        FAIL("%s: param '%s', expected '%s' (%s)", body, e.param, param, e.message);
    CHECK(e.message[0]);
    CHECK_EQ_STR(e.type, "invalid_request_error");
    return e;
}

static json_t *load(const char *s)
{
    json_error_t je;
    json_t *j = json_loads(s, 0, &je);
    if (!j) FAIL("not JSON (%s): %s", je.text, s);
    return j;
}

#define CHAT GW_OAI_CHAT
#define TEXT GW_OAI_COMPLETIONS

/* ---- requests: what is accepted ---- */

TEST(openai_chat_minimal_defaults)
{
    struct gw_oai_request r =
        parse_ok(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
    CHECK_EQ_STR(r.model, "m");
    CHECK_EQ_INT(r.stream, 0);
    CHECK_EQ_INT(r.seed_set, 0);
    CHECK(r.job.prompt == NULL && r.job.tokens == NULL);
    CHECK_EQ_STR(r.job.messages, "[{\"role\":\"user\",\"content\":\"hi\"}]");
    CHECK_EQ_INT(r.job.max_tokens, gw_oai_default_limits().default_max_tokens_chat);
    CHECK_NEAR(r.job.sampling.temperature, 1.0, 0);
    CHECK_NEAR(r.job.sampling.top_p, 1.0, 0);
    CHECK_EQ_INT(r.job.n_stop, 0);
    CHECK_EQ_INT(r.job.logprobs, 0);
    gw_oai_request_release(&r);
}

TEST(openai_chat_every_field)
{
    struct gw_oai_request r = parse_ok(
        CHAT, "{\"model\":\"stories\",\"messages\":["
              "{\"role\":\"system\",\"content\":\"be brief\"},"
              "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
              "{\"type\":\"text\",\"text\":\"b\"}]},"
              "{\"role\":\"assistant\",\"content\":\"ok\",\"name\":\"x\"},"
              "{\"role\":\"developer\",\"content\":\"d\"}],"
              "\"max_tokens\":7,\"max_completion_tokens\":9,\"temperature\":0.5,\"top_p\":0.9,"
              "\"n\":1,\"stop\":[\"\\n\",\"END\"],\"seed\":-3,\"presence_penalty\":0.25,"
              "\"frequency_penalty\":-1.5,\"logprobs\":true,\"top_logprobs\":20,\"user\":\"u\","
              "\"stream\":true,\"stream_options\":{\"include_usage\":true},"
              "\"unknown_field\":{\"nested\":[1,2]},\"tools\":[]}");
    CHECK_EQ_STR(r.model, "stories");
    CHECK_EQ_STR(r.job.messages, "[{\"role\":\"system\",\"content\":\"be brief\"},"
                                 "{\"role\":\"user\",\"content\":\"a\\nb\"},"
                                 "{\"role\":\"assistant\",\"content\":\"ok\"},"
                                 "{\"role\":\"system\",\"content\":\"d\"}]");
    CHECK_EQ_INT(r.job.max_tokens, 9); /* max_completion_tokens wins */
    CHECK_NEAR(r.job.sampling.temperature, 0.5, 1e-7);
    CHECK_NEAR(r.job.sampling.top_p, 0.9, 1e-7);
    CHECK_NEAR(r.job.sampling.presence_penalty, 0.25, 1e-7);
    CHECK_NEAR(r.job.sampling.frequency_penalty, -1.5, 1e-7);
    CHECK_EQ_INT(r.seed_set, 1);
    CHECK(r.job.sampling.seed == (uint64_t)-3);
    CHECK_EQ_INT(r.job.n_stop, 2);
    CHECK_EQ_STR(r.job.stop[0], "\n");
    CHECK_EQ_STR(r.job.stop[1], "END");
    CHECK_EQ_INT(r.job.logprobs, 1);
    CHECK_EQ_INT(r.job.top_logprobs, 20);
    CHECK_EQ_INT(r.stream, 1);
    CHECK_EQ_INT(r.include_usage, 1);
    gw_oai_request_release(&r);
}

TEST(openai_nulls_are_absent)
{
    struct gw_oai_request r = parse_ok(
        CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
              "\"max_tokens\":null,\"temperature\":null,\"stop\":null,\"seed\":null,\"n\":null,"
              "\"logprobs\":null,\"top_logprobs\":null,\"stream\":null,\"stream_options\":null,"
              "\"user\":null}");
    CHECK_EQ_INT(r.seed_set, 0);
    CHECK_EQ_INT(r.job.n_stop, 0);
    gw_oai_request_release(&r);
}

TEST(openai_completions_prompt_forms)
{
    struct gw_oai_request r = parse_ok(TEXT, "{\"model\":\"m\",\"prompt\":\"Once\"}");
    CHECK_EQ_STR(r.job.prompt, "Once");
    CHECK_EQ_INT(r.job.max_tokens, 16); /* the API's default for completions */
    gw_oai_request_release(&r);
    r = parse_ok(TEXT, "{\"model\":\"m\",\"prompt\":[\"only one\"]}");
    CHECK_EQ_STR(r.job.prompt, "only one");
    gw_oai_request_release(&r);
    r = parse_ok(TEXT, "{\"model\":\"m\",\"prompt\":[1,2,3000]}");
    CHECK(r.job.prompt == NULL);
    CHECK_EQ_INT(r.job.n_tokens, 3);
    CHECK_EQ_INT(r.job.tokens[2], 3000);
    gw_oai_request_release(&r);
    r = parse_ok(TEXT, "{\"model\":\"m\",\"prompt\":[[5,6]]}");
    CHECK_EQ_INT(r.job.n_tokens, 2);
    CHECK_EQ_INT(r.job.tokens[0], 5);
    gw_oai_request_release(&r);
    r = parse_ok(TEXT, "{\"model\":\"m\",\"prompt\":\"\"}");
    CHECK_EQ_STR(r.job.prompt, "");
    gw_oai_request_release(&r);
    /* logprobs is an integer here: the chosen token's plus that many alternatives */
    r = parse_ok(TEXT, "{\"model\":\"m\",\"prompt\":\"x\",\"logprobs\":0,\"stop\":\"\\n\","
                       "\"echo\":false,\"best_of\":1,\"max_tokens\":3.0}");
    CHECK_EQ_INT(r.job.logprobs, 1);
    CHECK_EQ_INT(r.job.top_logprobs, 0);
    CHECK_EQ_INT(r.job.n_stop, 1);
    CHECK_EQ_INT(r.job.max_tokens, 3);
    gw_oai_request_release(&r);
    r = parse_ok(TEXT, "{\"model\":\"m\",\"prompt\":\"x\",\"logprobs\":5}");
    CHECK_EQ_INT(r.job.top_logprobs, 5);
    gw_oai_request_release(&r);
}

TEST(openai_top_p_zero_is_greedy)
{
    struct gw_oai_request r = parse_ok(TEXT, "{\"model\":\"m\",\"prompt\":\"x\",\"top_p\":0}");
    CHECK_NEAR(r.job.sampling.temperature, 0, 0);
    gw_oai_request_release(&r);
}

TEST(openai_long_model_name_is_cut_and_flagged)
{
    char body[600];
    char name[301];
    memset(name, 'a', 300);
    name[300] = 0;
    snprintf(body, sizeof body, "{\"model\":\"%s\",\"prompt\":\"x\"}", name);
    struct gw_oai_request r = parse_ok(TEXT, body);
    CHECK_EQ_INT(r.model_cut, 1);
    CHECK_EQ_INT(strlen(r.model), sizeof r.model - 1);
    gw_oai_request_release(&r);
}

/* ---- requests: what is refused ---- */

TEST(openai_rejects_malformed_json_and_non_objects)
{
    parse_bad(CHAT, "", 400, "");
    parse_bad(CHAT, "{", 400, "");
    parse_bad(CHAT, "{\"model\":\"m\",}", 400, "");
    parse_bad(CHAT, "[1,2]", 400, "");
    parse_bad(CHAT, "\"str\"", 400, "");
    parse_bad(CHAT, "null", 400, "");
    /* invalid UTF-8 and a NUL escape are not valid JSON text for us */
    parse_bad(CHAT, "{\"model\":\"m\xff\",\"messages\":[]}", 400, "");
    parse_bad(CHAT,
              "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\\u0000b\"}]}", 400,
              "");
    /* a number too big for any integer */
    parse_bad(TEXT, "{\"model\":\"m\",\"prompt\":\"x\",\"max_tokens\":99999999999999999999999}",
              400, "");
}

TEST(openai_rejects_missing_and_wrong_types)
{
    struct gw_oai_error e = parse_bad(CHAT, "{\"messages\":[]}", 400, "model");
    CHECK_EQ_STR(e.code, "missing_required_parameter");
    e = parse_bad(CHAT, "{\"model\":5,\"messages\":[]}", 400, "model");
    CHECK_EQ_STR(e.code, "invalid_type");
    CHECK(strstr(e.message, "expected a string"));
    parse_bad(CHAT, "{\"model\":\"\",\"messages\":[]}", 400, "model");
    parse_bad(CHAT, "{\"model\":\"m\"}", 400, "messages");
    parse_bad(CHAT, "{\"model\":\"m\",\"messages\":{}}", 400, "messages");
    e = parse_bad(CHAT, "{\"model\":\"m\",\"messages\":[]}", 400, "messages");
    CHECK(strstr(e.message, "empty"));
    parse_bad(CHAT, "{\"model\":\"m\",\"messages\":[\"hi\"]}", 400, "messages[0]");
    parse_bad(CHAT, "{\"model\":\"m\",\"messages\":[{\"content\":\"hi\"}]}", 400,
              "messages[0].role");
    parse_bad(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":7,\"content\":\"hi\"}]}", 400,
              "messages[0].role");
    parse_bad(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"content\":\"hi\"}]}", 400,
              "messages[0].role");
    parse_bad(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]}", 400,
              "messages[0].content");
    parse_bad(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":null}]}", 400,
              "messages[0].content");
    parse_bad(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":3}]}", 400,
              "messages[0].content");
    parse_bad(
        CHAT,
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
        "\"image_url\":{\"url\":\"x\"}}]}]}",
        400, "messages[0].content[0].type");
    parse_bad(
        CHAT,
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}",
        400, "messages[0].content[0].text");
    parse_bad(CHAT,
              "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":"
              "\"user\",\"content\":[1]}]}",
              400, "messages[1].content[0]");
    const char *m = "\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]";
    char b[512];
    const struct {
        const char *field;
        const char *param;
    } wrong[] = {
        {"\"max_tokens\":\"5\"", "max_tokens"},
        {"\"max_tokens\":5.5", "max_tokens"},
        {"\"max_completion_tokens\":true", "max_completion_tokens"},
        {"\"temperature\":\"hot\"", "temperature"},
        {"\"top_p\":[1]", "top_p"},
        {"\"n\":\"2\"", "n"},
        {"\"stop\":5", "stop"},
        {"\"stop\":[\"a\",5]", "stop[1]"},
        {"\"seed\":1.5", "seed"},
        {"\"presence_penalty\":{}", "presence_penalty"},
        {"\"frequency_penalty\":\"0\"", "frequency_penalty"},
        {"\"logprobs\":1", "logprobs"},
        {"\"top_logprobs\":\"2\"", "top_logprobs"},
        {"\"stream\":\"yes\"", "stream"},
        {"\"stream\":true,\"stream_options\":5", "stream_options"},
        {"\"stream\":true,\"stream_options\":{\"include_usage\":1}",
         "stream_options.include_usage"},
        {"\"user\":5", "user"},
    };
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        snprintf(b, sizeof b, "{%s,%s}", m, wrong[i].field);
        parse_bad(CHAT, b, 400, wrong[i].param);
    }
    parse_bad(TEXT, "{\"model\":\"m\"}", 400, "prompt");
    parse_bad(TEXT, "{\"model\":\"m\",\"prompt\":5}", 400, "prompt");
    parse_bad(TEXT, "{\"model\":\"m\",\"prompt\":[]}", 400, "prompt");
    parse_bad(TEXT, "{\"model\":\"m\",\"prompt\":[\"a\",\"b\"]}", 400, "prompt");
    parse_bad(TEXT, "{\"model\":\"m\",\"prompt\":[1,\"b\"]}", 400, "prompt[1]");
    parse_bad(TEXT, "{\"model\":\"m\",\"prompt\":[1,-1]}", 400, "prompt[1]");
    parse_bad(TEXT, "{\"model\":\"m\",\"prompt\":[1,4294967296]}", 400, "prompt[1]");
    parse_bad(TEXT, "{\"model\":\"m\",\"prompt\":[[]]}", 400, "prompt[0]");
    parse_bad(TEXT, "{\"model\":\"m\",\"prompt\":[{}]}", 400, "prompt[0]");
    parse_bad(TEXT, "{\"model\":\"m\",\"prompt\":\"x\",\"logprobs\":true}", 400, "logprobs");
}

TEST(openai_rejects_out_of_range_values)
{
    const char *m = "\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]";
    char b[512];
    const struct {
        const char *field;
        const char *param;
    } bad[] = {
        {"\"max_tokens\":0", "max_tokens"},
        {"\"max_tokens\":-5", "max_tokens"},
        {"\"max_tokens\":1e300", "max_tokens"},
        {"\"max_tokens\":9223372036854775807", "max_tokens"},
        {"\"max_completion_tokens\":0", "max_completion_tokens"},
        {"\"temperature\":2.5", "temperature"},
        {"\"temperature\":-0.1", "temperature"},
        {"\"top_p\":1.01", "top_p"},
        {"\"presence_penalty\":2.01", "presence_penalty"},
        {"\"frequency_penalty\":-3", "frequency_penalty"},
        {"\"n\":2", "n"},
        {"\"n\":0", "n"},
        {"\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]", "stop"},
        {"\"stop\":\"\"", "stop"},
        {"\"logprobs\":true,\"top_logprobs\":21", "top_logprobs"},
        {"\"logprobs\":true,\"top_logprobs\":-1", "top_logprobs"},
        {"\"top_logprobs\":2", "top_logprobs"},
        {"\"stream_options\":{\"include_usage\":true}", "stream_options"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(b, sizeof b, "{%s,%s}", m, bad[i].field);
        parse_bad(CHAT, b, 400, bad[i].param);
    }
    struct gw_oai_error e = parse_bad(CHAT,
                                      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
                                      "\"content\":\"x\"}],\"n\":3}",
                                      400, "n");
    CHECK(strstr(e.message, "not supported"));
    parse_bad(TEXT, "{\"model\":\"m\",\"prompt\":\"x\",\"logprobs\":6}", 400, "logprobs");
    parse_bad(TEXT, "{\"model\":\"m\",\"prompt\":\"x\",\"echo\":true}", 400, "echo");
    parse_bad(TEXT, "{\"model\":\"m\",\"prompt\":\"x\",\"best_of\":2}", 400, "best_of");
    parse_bad(TEXT, "{\"model\":\"m\",\"prompt\":\"x\",\"suffix\":\"s\"}", 400, "suffix");
    /* a stop string that is too long */
    char big[800];
    memset(big, 'x', 600);
    big[600] = 0;
    snprintf(b, sizeof b, "{\"model\":\"m\",\"prompt\":\"x\",\"stop\":\"%.*s\"}", 400, big);
    struct gw_oai_request r = parse_ok(TEXT, b); /* 400 bytes: fine */
    gw_oai_request_release(&r);
    char b2[1024];
    snprintf(b2, sizeof b2, "{\"model\":\"m\",\"prompt\":\"x\",\"stop\":\"%s\"}", big);
    parse_bad(TEXT, b2, 400, "stop");
}

TEST(openai_limits_are_configurable)
{
    struct gw_oai_limits lim = gw_oai_default_limits();
    lim.max_tokens_limit = 100;
    lim.default_max_tokens_chat = 50;
    struct gw_oai_request r;
    struct gw_oai_error e;
    const char *ok = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}";
    CHECK_EQ_INT(gw_oai_parse(CHAT, ok, strlen(ok), &lim, &r, &e), 0);
    CHECK_EQ_INT(r.job.max_tokens, 50);
    gw_oai_request_release(&r);
    const char *big = "{\"model\":\"m\",\"prompt\":\"x\",\"max_tokens\":101}";
    CHECK_EQ_INT(gw_oai_parse(TEXT, big, strlen(big), &lim, &r, &e), -1);
    CHECK_EQ_STR(e.param, "max_tokens");
}

/* ---- responses ---- */

TEST(openai_completion_json_shapes)
{
    struct gw_oai_meta m = {CHAT, "chatcmpl-abc", "stories", 1700000000};
    char *s = gw_oai_completion_json(&m, "Hello", 5, "stop", NULL, 3, 2);
    CHECK_EQ_STR(s,
                 "{\"id\":\"chatcmpl-abc\",\"object\":\"chat.completion\",\"created\":1700000000,"
                 "\"model\":\"stories\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
                 "\"assistant\",\"content\":\"Hello\"},\"logprobs\":null,\"finish_reason\":"
                 "\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,"
                 "\"total_tokens\":5}}");
    free(s);
    struct gw_oai_meta t = {TEXT, "cmpl-x", "m", 5};
    s = gw_oai_completion_json(&t, "a\"b\n", 4, "length", NULL, 1, 16);
    CHECK_EQ_STR(s,
                 "{\"id\":\"cmpl-x\",\"object\":\"text_completion\",\"created\":5,\"model\":\"m\","
                 "\"choices\":[{\"text\":\"a\\\"b\\n\",\"index\":0,\"logprobs\":null,"
                 "\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":1,"
                 "\"completion_tokens\":16,\"total_tokens\":17}}");
    free(s);
    /* invalid UTF-8 from a model becomes U+FFFD rather than broken JSON */
    s = gw_oai_completion_json(&t,
                               "a\xff"
                               "b",
                               3, "stop", NULL, 0, 0);
    CHECK(strstr(s, "\"text\":\"a\xef\xbf\xbd"
                    "b\""));
    free(s);
}

TEST(openai_chunk_json_shapes)
{
    struct gw_oai_meta m = {CHAT, "chatcmpl-1", "m", 9};
    char *s = gw_oai_chunk_json(&m, 1, "", 0, NULL, NULL, 0);
    CHECK_EQ_STR(s, "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":9,"
                    "\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
                    "\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}");
    free(s);
    s = gw_oai_chunk_json(&m, 0, "x", 1, NULL, NULL, 1);
    CHECK_EQ_STR(s, "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":9,"
                    "\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},"
                    "\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}");
    free(s);
    s = gw_oai_chunk_json(&m, 0, "", 0, "length", NULL, 0);
    CHECK(strstr(s, "\"delta\":{},\"logprobs\":null,\"finish_reason\":\"length\""));
    free(s);
    s = gw_oai_usage_chunk_json(&m, 4, 6);
    CHECK_EQ_STR(s, "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":9,"
                    "\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":4,"
                    "\"completion_tokens\":6,\"total_tokens\":10}}");
    free(s);
    struct gw_oai_meta t = {TEXT, "cmpl-1", "m", 9};
    s = gw_oai_chunk_json(&t, 0, "yo", 2, NULL, NULL, 0);
    CHECK_EQ_STR(s,
                 "{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":9,\"model\":\"m\","
                 "\"choices\":[{\"text\":\"yo\",\"index\":0,\"logprobs\":null,"
                 "\"finish_reason\":null}]}");
    free(s);
}

TEST(openai_error_and_models_json)
{
    struct gw_oai_error e;
    gw_oai_set_error(&e, 404, "invalid_request_error", "model_not_found", "model", "no %s", "x");
    char *s = gw_oai_error_json(&e);
    CHECK_EQ_STR(s, "{\"error\":{\"message\":\"no x\",\"type\":\"invalid_request_error\","
                    "\"param\":\"model\",\"code\":\"model_not_found\"}}");
    free(s);
    gw_oai_set_error(&e, 400, "invalid_request_error", NULL, NULL, "bad");
    s = gw_oai_error_json(&e);
    CHECK_EQ_STR(s, "{\"error\":{\"message\":\"bad\",\"type\":\"invalid_request_error\","
                    "\"param\":null,\"code\":null}}");
    free(s);
    const char *names[] = {"a", "b"};
    s = gw_oai_models_json(names, 2, 7);
    CHECK_EQ_STR(s,
                 "{\"object\":\"list\",\"data\":[{\"id\":\"a\",\"object\":\"model\",\"created\":7,"
                 "\"owned_by\":\"synapse\"},{\"id\":\"b\",\"object\":\"model\",\"created\":7,"
                 "\"owned_by\":\"synapse\"}]}");
    free(s);
    s = gw_oai_model_json("a", 7);
    CHECK_EQ_STR(s, "{\"id\":\"a\",\"object\":\"model\",\"created\":7,\"owned_by\":\"synapse\"}");
    free(s);
}

TEST(openai_logprobs_conversion)
{
    json_t *w = load("[{\"token\":\" the\",\"id\":5,\"logprob\":-0.5,\"top_logprobs\":["
                     "{\"token\":\" the\",\"id\":5,\"logprob\":-0.5},{\"token\":\" a\",\"id\":6,"
                     "\"logprob\":-1.25}]},{\"token\":\"!\",\"id\":7,\"logprob\":-2,"
                     "\"top_logprobs\":[]}]");
    json_t *c = gw_oai_logprobs(CHAT, w, 0);
    char *s = json_dumps(c, JSON_COMPACT);
    CHECK_EQ_STR(s,
                 "{\"content\":[{\"token\":\" the\",\"logprob\":-0.5,\"bytes\":[32,116,104,101],"
                 "\"top_logprobs\":[{\"token\":\" the\",\"logprob\":-0.5,\"bytes\":[32,116,104,"
                 "101]},{\"token\":\" a\",\"logprob\":-1.25,\"bytes\":[32,97]}]},{\"token\":\"!\","
                 "\"logprob\":-2.0,\"bytes\":[33],\"top_logprobs\":[]}]}");
    free(s);
    json_decref(c);
    c = gw_oai_logprobs(TEXT, w, 10);
    s = json_dumps(c, JSON_COMPACT);
    CHECK_EQ_STR(s, "{\"tokens\":[\" the\",\"!\"],\"token_logprobs\":[-0.5,-2.0],\"top_logprobs\":"
                    "[{\" the\":-0.5,\" a\":-1.25},{}],\"text_offset\":[10,14]}");
    free(s);
    json_decref(c);
    json_decref(w);
    CHECK(gw_oai_logprobs(CHAT, NULL, 0) == NULL);
}

TEST(openai_utf8_repair_and_complete_prefix)
{
    char out[64];
    CHECK_EQ_INT(gw_utf8_sanitize("ok", 2, out), 2);
    CHECK_EQ_STR(out, "ok");
    /* overlong, surrogate, stray continuation, truncated: each bad byte -> U+FFFD */
    CHECK_EQ_INT(gw_utf8_sanitize("\xc0\xaf", 2, out), 6);
    CHECK_EQ_INT(gw_utf8_sanitize("\xed\xa0\x80", 3, out), 9);
    CHECK_EQ_INT(gw_utf8_sanitize("\x80", 1, out), 3);
    CHECK_EQ_STR(out, "\xef\xbf\xbd");
    CHECK_EQ_INT(gw_utf8_sanitize("\xe2\x82\xac", 3, out), 3); /* the euro sign is fine */
    CHECK_EQ_INT(gw_utf8_complete_prefix("ab\xe2\x82", 4), 2); /* euro cut after 2 bytes */
    CHECK_EQ_INT(gw_utf8_complete_prefix("ab\xe2\x82\xac", 5), 5);
    CHECK_EQ_INT(gw_utf8_complete_prefix("ab\xf0", 3), 2);
    CHECK_EQ_INT(gw_utf8_complete_prefix("ab\xff", 3), 3); /* never valid: not held */
    CHECK_EQ_INT(gw_utf8_complete_prefix("", 0), 0);
}

/* ---- admission ---- */

TEST(gateway_admission_bounded_queue_and_retry_after)
{
    struct gw_adm a;
    memset(&a, 0, sizeof a);
    int retry = -1;
    for (int i = 0; i < 3; i++) CHECK_EQ_INT(gw_adm_admit(&a, 3, 100, &retry), 0);
    CHECK_EQ_INT(gw_adm_depth(&a), 3);
    CHECK_EQ_INT(gw_adm_admit(&a, 3, 100, &retry), -1);
    CHECK_EQ_INT(retry, GW_ADM_RETRY_IDLE); /* nothing finished yet */
    CHECK_EQ_INT(a.rejected, 1);
    /* 20 jobs finished over the last 10 s: 2/s; one over the limit -> 1 s */
    for (int s = 91; s <= 100; s++) {
        gw_adm_finished(&a, s);
        gw_adm_finished(&a, s);
    }
    CHECK_NEAR(gw_adm_drain_rate(&a, 100), 2.0, 1e-9);
    CHECK_EQ_INT(gw_adm_admit(&a, 3, 100, &retry), -1);
    CHECK_EQ_INT(retry, 1);
    /* other gateways' backlog counts: 10 waiting in Redis, 3 of them ours at poll time */
    gw_adm_poll_sent(&a);
    gw_adm_backlog(&a, 10, 1);
    CHECK_EQ_INT(gw_adm_depth(&a), 10);
    CHECK_EQ_INT(gw_adm_admit(&a, 3, 100, &retry), -1);
    CHECK_EQ_INT(retry, 4); /* (10 - 3 + 1) / 2 per second */
    /* a slow drain is capped */
    struct gw_adm b;
    memset(&b, 0, sizeof b);
    gw_adm_finished(&b, 50);
    b.local_waiting = 1000;
    CHECK_EQ_INT(gw_adm_admit(&b, 10, 50, &retry), -1);
    CHECK_EQ_INT(retry, GW_ADM_RETRY_MAX);
    /* the window forgets old seconds */
    CHECK_NEAR(gw_adm_drain_rate(&b, 50 + GW_ADM_WINDOW), 0.0, 0);
    /* started jobs leave the queue */
    for (int i = 0; i < 3; i++) gw_adm_left_queue(&a);
    gw_adm_left_queue(&a); /* never below zero */
    CHECK_EQ_INT(a.local_waiting, 0);
    /* max_queue 0 refuses everything */
    struct gw_adm z;
    memset(&z, 0, sizeof z);
    CHECK_EQ_INT(gw_adm_admit(&z, 0, 1, &retry), -1);
}

/* ---- auth ---- */

TEST(gateway_auth_keys_from_file_and_list)
{
    char path[600];
    snprintf(path, sizeof path, "%s/keys", syn_test_tmpdir());
    FILE *f = fopen(path, "w");
    CHECK(f);
    fprintf(f, "# comment\n\n  sk-one  \nsk-two\n");
    fclose(f);
    struct gw_auth *a = NULL;
    char err[256];
    CHECK_EQ_INT(gw_auth_new(path, "sk-three, sk-four", &a, err, sizeof err), 0);
    CHECK_EQ_INT(gw_auth_count(a), 4);
    struct gw_oai_error e;
    CHECK_EQ_INT(gw_auth_check(a, "Bearer sk-one", &e), 0);
    CHECK_EQ_INT(gw_auth_check(a, "bearer  sk-four", &e), 0);
    CHECK_EQ_INT(gw_auth_check(a, "Bearer sk-on", &e), -1);
    CHECK_EQ_INT(e.status, 401);
    CHECK_EQ_STR(e.code, "invalid_api_key");
    CHECK_EQ_INT(gw_auth_check(a, "Bearer sk-one1", &e), -1);
    CHECK_EQ_INT(gw_auth_check(a, "Basic sk-one", &e), -1);
    CHECK_EQ_INT(gw_auth_check(a, NULL, &e), -1);
    CHECK_EQ_INT(e.status, 401);
    CHECK(strstr(e.message, "didn't provide an API key"));
    CHECK_EQ_INT(gw_auth_check(a, "Bearer ", &e), -1);
    gw_auth_free(a);
    /* no keys: everything passes */
    CHECK_EQ_INT(gw_auth_new(NULL, NULL, &a, err, sizeof err), 0);
    CHECK_EQ_INT(gw_auth_check(a, NULL, &e), 0);
    gw_auth_free(a);
    /* bad configurations are errors */
    CHECK(gw_auth_new("/nonexistent/keys", NULL, &a, err, sizeof err) != 0);
    CHECK(gw_auth_new(NULL, "has space,x", &a, err, sizeof err) != 0);
    f = fopen(path, "w");
    fprintf(f, "# only a comment\n");
    fclose(f);
    CHECK(gw_auth_new(path, NULL, &a, err, sizeof err) != 0);
    CHECK(strstr(err, "no key"));
    CHECK_EQ_INT(gw_ct_equal("abc", 3, "abc", 3), 1);
    CHECK_EQ_INT(gw_ct_equal("abc", 3, "abd", 3), 0);
    CHECK_EQ_INT(gw_ct_equal("ab", 2, "abc", 3), 0);
    CHECK_EQ_INT(gw_ct_equal("", 0, "", 0), 0);
}

/* ---- HTTP head parser ---- */

static int head(const char *s, struct gw_http_head *h, struct gw_arena *a)
{
    char err[256];
    return gw_http_parse_head(s, strlen(s), 100, a, h, err, sizeof err);
}

TEST(gateway_http_parse_head)
{
    struct gw_arena a = {0};
    struct gw_http_head h;
    CHECK_EQ_INT(head("POST /v1/completions?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length:  5 \r\n"
                      "X-Empty:\r\n\r\n",
                      &h, &a),
                 0);
    CHECK_EQ_STR(h.method, "POST");
    CHECK_EQ_STR(h.target, "/v1/completions?x=1");
    CHECK_EQ_STR(h.path, "/v1/completions");
    CHECK_EQ_INT(h.minor, 1);
    CHECK_EQ_INT(h.n_headers, 3);
    CHECK_EQ_STR(h.headers[1].name, "Content-Length");
    CHECK_EQ_STR(h.headers[1].value, "5");
    CHECK_EQ_STR(h.headers[2].value, "");
    CHECK_EQ_INT(head("GET / HTTP/1.0\n\n", &h, &a), 0); /* bare LF */
    CHECK_EQ_INT(h.minor, 0);
    CHECK_EQ_INT(head("GET / HTTP/2.0\r\n\r\n", &h, &a), 505);
    CHECK_EQ_INT(head("GET / HTTP/1.2\r\n\r\n", &h, &a), 505);
    const char *bad[] = {
        "GET /\r\n\r\n",                  /* no version */
        "GET  / HTTP/1.1\r\n\r\n",        /* two spaces */
        "G(T / HTTP/1.1\r\n\r\n",         /* bad method */
        "GET x HTTP/1.1\r\n\r\n",         /* not a path */
        "GET http://a/ HTTP/1.1\r\n\r\n", /* absolute form */
        "GET / HTTP/1.1\r\nNo colon\r\n\r\n",
        "GET / HTTP/1.1\r\nA : b\r\n\r\n",      /* space before the colon */
        "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", /* folding */
        ("GET / HTTP/1.1\r\nA: b\x01"
         "c\r\n\r\n"),                       /* control character */
        "GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", /* bare CR */
        "GET / HTTPS/1.1\r\n\r\n",
        "GET /\x7f HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nA: b\r\n", /* unterminated */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (head(bad[i], &h, &a) != 400) FAIL("accepted bad head %zu: %s", i, bad[i]);
    /* too many headers */
    char many[4096] = "GET / HTTP/1.1\r\n";
    for (int i = 0; i < 101; i++) strcat(many, "A: b\r\n");
    strcat(many, "\r\n");
    CHECK_EQ_INT(head(many, &h, &a), 431);
    uint64_t v;
    CHECK_EQ_INT(gw_http_parse_length("123", &v), 0);
    CHECK(v == 123);
    CHECK_EQ_INT(gw_http_parse_length("99999999999999999999999999", &v), 0);
    CHECK(v == (1ULL << 62));
    CHECK_EQ_INT(gw_http_parse_length("-1", &v), -1);
    CHECK_EQ_INT(gw_http_parse_length("1 2", &v), -1);
    CHECK_EQ_INT(gw_http_parse_length("", &v), -1);
    CHECK_EQ_INT(gw_http_parse_length("0x10", &v), -1);
    CHECK_EQ_STR(gw_http_reason(429), "Too Many Requests");
    gw_arena_release(&a);
}

TEST(gateway_redis_url_forms)
{
    int is_unix, port, db;
    char host[64], path[128], user[32], pass[32];
#define URL(u)                                                                                     \
    gw_redis_parse_url(u, &is_unix, host, sizeof host, &port, path, sizeof path, &db, user,        \
                       sizeof user, pass, sizeof pass)
    CHECK_EQ_INT(URL("unix:///tmp/r.sock"), 0);
    CHECK_EQ_INT(is_unix, 1);
    CHECK_EQ_STR(path, "/tmp/r.sock");
    CHECK_EQ_INT(URL("unix:///tmp/r.sock?db=3"), 0);
    CHECK_EQ_INT(db, 3);
    CHECK_EQ_INT(URL("redis://h:7000/2"), 0);
    CHECK_EQ_INT(is_unix, 0);
    CHECK_EQ_STR(host, "h");
    CHECK_EQ_INT(port, 7000);
    CHECK_EQ_INT(db, 2);
    CHECK_EQ_INT(URL("redis://u:pw@h"), 0);
    CHECK_EQ_STR(user, "u");
    CHECK_EQ_STR(pass, "pw");
    CHECK_EQ_INT(port, 6379);
    CHECK_EQ_INT(URL("redis://:pw@[::1]:6380"), 0);
    CHECK_EQ_STR(host, "::1");
    CHECK_EQ_STR(pass, "pw");
    CHECK_EQ_INT(port, 6380);
    CHECK_EQ_INT(URL("localhost:6379"), 0);
    CHECK_EQ_INT(URL(""), -1);
    CHECK_EQ_INT(URL("http://x"), -1);
    CHECK_EQ_INT(URL("unix://relative"), -1);
    CHECK_EQ_INT(URL("redis://h:99999"), -1);
    CHECK_EQ_INT(URL("redis://h:x"), -1);
#undef URL
}
