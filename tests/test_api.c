/* api/: request parsing and validation of every endpoint family, errors,
 * rendering of responses and SSE events. No sockets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_error.h"
#include "api_gen.h"
#include "api_json.h"
#include "api_render.h"
#include "api_tasks.h"

static const t2_api_limits LIM = {
    .max_tokens = 1000,
    .default_max_tokens = 100,
    .default_strategy = "prompt",
    .default_method = T2_CLS_LIKELIHOOD,
    .model_name = "seedling",
};

/* Parses body with fn; returns the status (0 = ok) and leaves r parsed. */
typedef int (*parse_fn)(const char *, size_t, const t2_api_limits *, t2_api_gen_req *,
                        t2_api_err *);

static int parse_with(parse_fn fn, const char *body, t2_api_gen_req *r, t2_api_err *e)
{
    memset(e, 0, sizeof *e);
    return fn(body, strlen(body), &LIM, r, e) == 0 ? 0 : e->status;
}

/* status of parsing body as /v1/generate; e gets the error */
static int gen_status(const char *body, t2_api_err *e)
{
    t2_api_gen_req r;
    int st = parse_with(t2_api_parse_generate, body, &r, e);
    t2_api_gen_req_free(&r);
    return st;
}

static void expect(const char *body, int status, const char *param)
{
    t2_api_err e;
    int st = gen_status(body, &e);
    if (st != status || (param && strcmp(e.param, param) != 0))
        fail_msg("%s: got %d (%s: %s), want %d (%s)", body, st, e.param, e.message, status,
                 param ? param : "-");
}

/* ---------- JSON body, UTF-8 ---------- */

static void test_body(void **state)
{
    (void)state;
    t2_api_err e;
    json_t *j;
    assert_int_equal(t2_api_parse_body("", 0, &j, &e), -1);
    assert_int_equal(e.status, 400);
    assert_int_equal(t2_api_parse_body("{", 1, &j, &e), -1);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.code, "invalid_json");
    assert_int_equal(t2_api_parse_body("[1]", 3, &j, &e), -1);
    assert_int_equal(t2_api_parse_body("\"x\"", 3, &j, &e), -1);
    assert_int_equal(t2_api_parse_body("{\"a\":1,\"a\":2}", 13, &j, &e), -1); /* duplicate */
    assert_int_equal(t2_api_parse_body("{\"a\":\"\xff\"}", 8, &j, &e), -1);
    assert_int_equal(t2_api_parse_body("{\"a\":\"\\u0000\"}", 14, &j, &e), -1); /* NUL */
    assert_int_equal(t2_api_parse_body("{\"a\":\"\\ud800\"}", 14, &j, &e), -1); /* surrogate */
    const char *big = "{\"a\": 123456789012345678901234567890}";
    assert_int_equal(t2_api_parse_body(big, strlen(big), &j, &e), -1);
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 16);
    if (!deep) {
        fail();
        return;
    }
    size_t n = (size_t)sprintf(deep, "{\"a\":");
    memset(deep + n, '[', depth);
    memset(deep + n + depth, ']', depth);
    n += 2 * depth;
    deep[n++] = '}';
    assert_int_equal(t2_api_parse_body(deep, n, &j, &e), -1);
    assert_int_equal(e.status, 400);
    free(deep);
    assert_int_equal(t2_api_parse_body("{\"a\": 1}", 8, &j, &e), 0);
    json_decref(j);
}

static void test_utf8(void **state)
{
    (void)state;
    assert_true(t2_api_utf8_valid("plain", 5));
    assert_true(t2_api_utf8_valid("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9)); /* é € 😀 */
    assert_false(t2_api_utf8_valid("\xc0\x80", 2));                            /* overlong NUL */
    assert_false(t2_api_utf8_valid("\xe0\x80\x80", 3));                        /* overlong */
    assert_false(t2_api_utf8_valid("\xed\xa0\x80", 3));                        /* surrogate */
    assert_false(t2_api_utf8_valid("\xf4\x90\x80\x80", 4));                    /* > U+10FFFF */
    assert_false(t2_api_utf8_valid("\xe2\x82", 2));                            /* truncated */
    assert_false(t2_api_utf8_valid("\x80", 1)); /* lone continuation */
    assert_false(t2_api_utf8_valid("a\0b", 3)); /* NUL */
    assert_false(t2_api_utf8_valid("\xff", 1));
    char s[] = "ok\xff\xc3\xa9\xe2\x82";
    t2_api_utf8_sanitize(s);
    assert_string_equal(s, "ok?\xc3\xa9??");
}

static void test_get_str_invalid_utf8(void **state)
{
    (void)state;
    /* strings built without jansson's check (as a fuzzer could) */
    json_t *o = json_object();
    json_object_set_new(o, "prompt", json_stringn_nocheck("a\xff", 2));
    const char *s = NULL;
    t2_api_err e;
    assert_int_equal(t2_api_get_str(o, "prompt", NULL, 100, &s, NULL, &e), -1);
    assert_int_equal(e.status, 422);
    assert_string_equal(e.param, "prompt");
    json_object_set_new(o, "prompt", json_string("abcdef"));
    assert_int_equal(t2_api_get_str(o, "prompt", NULL, 3, &s, NULL, &e), -1);
    assert_int_equal(t2_api_get_str(o, "prompt", NULL, 6, &s, NULL, &e), 1);
    assert_int_equal(t2_api_get_str(o, "missing", NULL, 6, &s, NULL, &e), 0);
    json_object_set_new(o, "n", json_null());
    assert_int_equal(t2_api_get_str(o, "n", NULL, 6, &s, NULL, &e), 0); /* null = absent */
    json_decref(o);
}

/* ---------- /v1/generate ---------- */

static void test_generate_ok(void **state)
{
    (void)state;
    t2_api_gen_req r;
    t2_api_err e;
    const char *body =
        "{\"prompt\": \"hi\", \"max_tokens\": 12, \"temperature\": 0.5, \"top_k\": 40, "
        "\"top_p\": 0.9, \"min_p\": 0.1, \"repetition_penalty\": 1.2, \"seed\": 9, "
        "\"stop\": [\"a\", \"bb\"], \"stream\": true, \"adaptation\": {\"strategy\": "
        "\"mixture\", \"mixture\": {\"math\": 0.25, \"code\": -1}}}";
    assert_int_equal(parse_with(t2_api_parse_generate, body, &r, &e), 0);
    assert_string_equal(r.prompt, "hi");
    assert_string_equal(r.question, "hi");
    assert_null(r.msgs);
    assert_int_equal(r.gen.max_tokens, 12);
    assert_true(r.gen.sampling.temperature == 0.5f);
    assert_int_equal(r.gen.sampling.top_k, 40);
    assert_true(r.gen.sampling.top_p == 0.9f);
    assert_true(r.gen.sampling.min_p == 0.1f);
    assert_true(r.gen.sampling.repeat_penalty == 1.2f);
    assert_int_equal(r.gen.sampling.seed, 9);
    assert_int_equal(r.gen.n_stop, 2);
    assert_string_equal(r.gen.stop[1], "bb");
    assert_true(r.stream);
    assert_true(r.adapt_explicit);
    assert_int_equal(r.adapt.strategy, T2_STRATEGY_MIXTURE);
    assert_int_equal(r.adapt.n_mix, 2);
    assert_string_equal(r.adapt.mix_names[0], "math");
    assert_true(r.adapt.mix_alpha[1] == -1.0f);
    t2_api_gen_req_free(&r);
}

static void test_generate_defaults(void **state)
{
    (void)state;
    t2_api_gen_req r;
    t2_api_err e;
    assert_int_equal(parse_with(t2_api_parse_generate,
                                "{\"messages\": [{\"role\": \"system\", \"content\": \"s\"}, "
                                "{\"role\": \"user\", \"content\": \"q1\"}, {\"role\": "
                                "\"assistant\", \"content\": \"a\"}, {\"role\": \"user\", "
                                "\"content\": \"q2\"}]}",
                                &r, &e),
                     0);
    assert_int_equal(r.n_msgs, 4);
    assert_string_equal(r.msgs[0].role, "system");
    assert_string_equal(r.question, "q2"); /* the last user message */
    assert_int_equal(r.gen.max_tokens, 100);
    assert_true(r.gen.sampling.temperature == 0.0f);
    assert_false(r.stream);
    assert_false(r.adapt_explicit);
    assert_int_equal(r.adapt.strategy, T2_STRATEGY_PROMPT); /* the configured default */
    t2_api_gen_req_free(&r);

    t2_api_limits lim = LIM;
    lim.default_max_tokens = 5000; /* capped by max_tokens */
    lim.default_strategy = "expert:math";
    memset(&e, 0, sizeof e);
    assert_int_equal(t2_api_parse_generate("{\"prompt\": \"x\"}", 15, &lim, &r, &e), 0);
    assert_int_equal(r.gen.max_tokens, 1000);
    assert_int_equal(r.adapt.strategy, T2_STRATEGY_EXPERT);
    assert_string_equal(r.adapt.expert, "math");
    t2_api_gen_req_free(&r);
    lim.default_strategy = "profile:p1";
    assert_int_equal(t2_api_parse_generate("{\"prompt\": \"x\"}", 15, &lim, &r, &e), 0);
    assert_int_equal(r.adapt.strategy, T2_STRATEGY_PROFILE);
    assert_string_equal(r.adapt.profile, "p1");
    t2_api_gen_req_free(&r);
    lim.default_strategy = "none";
    assert_int_equal(
        t2_api_parse_generate("{\"prompt\": \"x\", \"adaptation\": {}}", 33, &lim, &r, &e), 0);
    assert_int_equal(r.adapt.strategy, T2_STRATEGY_NONE);
    t2_api_gen_req_free(&r);
}

static void test_generate_fields(void **state)
{
    (void)state;
    expect("{\"prompt\": \"x\", \"temprature\": 1}", 422, "temprature");
    expect("{\"prompt\": 5}", 422, "prompt");
    expect("{\"prompt\": \"\"}", 422, "prompt");
    expect("{\"prompt\": null}", 422, "prompt"); /* null = absent: neither given */
    expect("{\"prompt\": \"x\", \"max_tokens\": 0}", 422, "max_tokens");
    expect("{\"prompt\": \"x\", \"max_tokens\": 1001}", 422, "max_tokens");
    expect("{\"prompt\": \"x\", \"max_tokens\": 1.5}", 422, "max_tokens");
    expect("{\"prompt\": \"x\", \"max_tokens\": \"5\"}", 422, "max_tokens");
    expect("{\"prompt\": \"x\", \"max_tokens\": 9223372036854775807}", 422, "max_tokens");
    expect("{\"prompt\": \"x\", \"max_tokens\": 1000}", 0, NULL);
    expect("{\"prompt\": \"x\", \"temperature\": -0.1}", 422, "temperature");
    expect("{\"prompt\": \"x\", \"temperature\": 101}", 422, "temperature");
    expect("{\"prompt\": \"x\", \"temperature\": 1e300}", 422, "temperature");
    expect("{\"prompt\": \"x\", \"temperature\": true}", 422, "temperature");
    expect("{\"prompt\": \"x\", \"top_p\": 0}", 422, "top_p");
    expect("{\"prompt\": \"x\", \"top_p\": 1.01}", 422, "top_p");
    expect("{\"prompt\": \"x\", \"top_p\": 1}", 0, NULL);
    expect("{\"prompt\": \"x\", \"top_k\": -1}", 422, "top_k");
    expect("{\"prompt\": \"x\", \"top_k\": 0.5}", 422, "top_k");
    expect("{\"prompt\": \"x\", \"min_p\": 2}", 422, "min_p");
    expect("{\"prompt\": \"x\", \"repetition_penalty\": 0}", 422, "repetition_penalty");
    expect("{\"prompt\": \"x\", \"frequency_penalty\": 2.5}", 422, "frequency_penalty");
    expect("{\"prompt\": \"x\", \"presence_penalty\": -2.01}", 422, "presence_penalty");
    expect("{\"prompt\": \"x\", \"presence_penalty\": \"1\"}", 422, "presence_penalty");
    expect("{\"prompt\": \"x\", \"frequency_penalty\": -2, \"presence_penalty\": 2}", 0, NULL);
    expect("{\"prompt\": \"x\", \"seed\": -1}", 422, "seed");
    expect("{\"prompt\": \"x\", \"seed\": 9223372036854775807}", 0, NULL);
    expect("{\"prompt\": \"x\", \"stream\": 1}", 422, "stream");
    expect("{\"prompt\": \"x\", \"stop\": 3}", 422, "stop");
    expect("{\"prompt\": \"x\", \"stop\": \"\"}", 422, "stop[0]");
    expect("{\"prompt\": \"x\", \"stop\": [\"a\", 1]}", 422, "stop");
    expect("{\"prompt\": \"x\", \"stop\": \"end\"}", 0, NULL);
    expect("{\"prompt\": \"x\", \"stop\": []}", 0, NULL);
    char body[4096];
    int n = sprintf(body, "{\"prompt\": \"x\", \"stop\": [");
    for (int i = 0; i < 17; i++)
        n += sprintf(body + n, "%s\"s%d\"", i ? "," : "", i);
    sprintf(body + n, "]}");
    expect(body, 422, "stop");
    n = sprintf(body, "{\"prompt\": \"x\", \"stop\": \"");
    memset(body + n, 'a', 257);
    sprintf(body + n + 257, "\"}");
    expect(body, 422, "stop[0]");
}

static void test_generate_messages(void **state)
{
    (void)state;
    expect("{\"prompt\": \"x\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}", 422,
           "messages");
    expect("{\"max_tokens\": 3}", 422, "prompt");
    expect("{\"messages\": {}}", 422, "messages");
    expect("{\"messages\": []}", 422, "messages");
    expect("{\"messages\": [\"hi\"]}", 422, "messages[0]");
    expect("{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}", 422, "messages[0]");
    expect("{\"messages\": [{\"role\": \"developer\", \"content\": \"x\"}]}", 422, "messages[0]");
    expect("{\"messages\": [{\"content\": \"x\"}]}", 422, "messages[0]");
    expect("{\"messages\": [{\"role\": \"user\"}]}", 422, "messages[0].content");
    expect("{\"messages\": [{\"role\": \"user\", \"content\": 3}]}", 422, "messages[0].content");
    expect("{\"messages\": [{\"role\": \"user\", \"content\": \"x\", \"name\": \"n\"}]}", 422,
           "messages[0].name");
    expect("{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": "
           "\"x\"}]}]}",
           422, "messages[0].content");
    expect("{\"messages\": [{\"role\": \"user\", \"content\": \"\"}]}", 0, NULL);
}

static void test_generate_adaptation(void **state)
{
    (void)state;
    expect("{\"prompt\": \"x\", \"adaptation\": 1}", 422, "adaptation");
    expect("{\"prompt\": \"x\", \"adaptation\": {\"strategy\": \"few_shot\"}}", 422,
           "adaptation.strategy");
    t2_api_err e;
    gen_status("{\"prompt\": \"x\", \"adaptation\": {\"strategy\": \"few_shot\"}}", &e);
    assert_non_null(strstr(e.message, "/v1/adapt"));
    expect("{\"prompt\": \"x\", \"adaptation\": {\"strategy\": \"magic\"}}", 422,
           "adaptation.strategy");
    expect("{\"prompt\": \"x\", \"adaptation\": {\"strategy\": \"none\", \"foo\": 1}}", 422,
           "adaptation.foo");
    expect("{\"prompt\": \"x\", \"adaptation\": {\"strategy\": \"expert\"}}", 422,
           "adaptation.expert");
    expect("{\"prompt\": \"x\", \"adaptation\": {\"strategy\": \"profile\"}}", 422,
           "adaptation.profile");
    expect("{\"prompt\": \"x\", \"adaptation\": {\"strategy\": \"mixture\"}}", 422,
           "adaptation.mixture");
    expect("{\"prompt\": \"x\", \"adaptation\": {\"strategy\": \"none\", \"expert\": \"m\"}}", 422,
           "adaptation.expert");
    expect("{\"prompt\": \"x\", \"adaptation\": {\"strategy\": \"expert\", \"expert\": \"m\", "
           "\"method\": \"generate\"}}",
           422, "adaptation.method");
    expect("{\"prompt\": \"x\", \"adaptation\": {\"strategy\": \"prompt\", \"method\": \"x\"}}",
           422, "adaptation.method");
    expect("{\"prompt\": \"x\", \"adaptation\": {\"expert\": \"m\", \"profile\": \"p\"}}", 422,
           "adaptation");
    expect("{\"prompt\": \"x\", \"adaptation\": {\"expert\": \"..\"}}", 422, "adaptation.expert");
    expect("{\"prompt\": \"x\", \"adaptation\": {\"expert\": \"a/b\"}}", 422, "adaptation.expert");
    expect("{\"prompt\": \"x\", \"adaptation\": {\"expert\": 5}}", 422, "adaptation.expert");
    expect("{\"prompt\": \"x\", \"adaptation\": {\"mixture\": []}}", 422, "adaptation.mixture");
    expect("{\"prompt\": \"x\", \"adaptation\": {\"mixture\": {}}}", 422, "adaptation.mixture");
    expect("{\"prompt\": \"x\", \"adaptation\": {\"mixture\": {\"m\": \"1\"}}}", 422,
           "adaptation.mixture.m");
    expect("{\"prompt\": \"x\", \"adaptation\": {\"mixture\": {\"m\": 101}}}", 422,
           "adaptation.mixture.m");
    expect("{\"prompt\": \"x\", \"adaptation\": {\"mixture\": {\"a b\": 1}}}", 422, NULL);
    /* inferred strategies */
    t2_api_gen_req r;
    assert_int_equal(parse_with(t2_api_parse_generate,
                                "{\"prompt\": \"x\", \"adaptation\": {\"expert\": \"math\"}}", &r,
                                &e),
                     0);
    assert_int_equal(r.adapt.strategy, T2_STRATEGY_EXPERT);
    assert_string_equal(r.adapt.expert, "math");
    t2_api_gen_req_free(&r);
    assert_int_equal(parse_with(t2_api_parse_generate,
                                "{\"prompt\": \"x\", \"adaptation\": {\"profile\": \"p\"}}", &r,
                                &e),
                     0);
    assert_int_equal(r.adapt.strategy, T2_STRATEGY_PROFILE);
    t2_api_gen_req_free(&r);
    assert_int_equal(parse_with(t2_api_parse_generate,
                                "{\"prompt\": \"x\", \"adaptation\": {\"method\": \"generate\"}}",
                                &r, &e),
                     0);
    assert_int_equal(r.adapt.strategy, T2_STRATEGY_PROMPT);
    assert_int_equal(r.adapt.method, T2_CLS_GENERATE);
    t2_api_gen_req_free(&r);
    assert_int_equal(parse_with(t2_api_parse_generate,
                                "{\"prompt\": \"x\", \"adaptation\": {\"strategy\": "
                                "\"classifier\"}}",
                                &r, &e),
                     0);
    assert_int_equal(r.adapt.strategy, T2_STRATEGY_CLASSIFIER);
    assert_int_equal(r.adapt.method, T2_CLS_LIKELIHOOD);
    t2_api_gen_req_free(&r);
}

/* ---------- OpenAI ---------- */

static void test_chat(void **state)
{
    (void)state;
    t2_api_gen_req r;
    t2_api_err e;
    const char *body =
        "{\"model\": \"seedling:math\", \"messages\": [{\"role\": \"developer\", \"content\": "
        "\"be brief\"}, {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": "
        "\"a\"}, {\"type\": \"text\", \"text\": \"b\"}], \"name\": \"u\"}], "
        "\"frequency_penalty\": 0.5, \"logit_bias\": {}, \"user\": \"x\", \"tools\": [], "
        "\"max_tokens\": 7, \"max_completion_tokens\": 9, \"stream\": true, "
        "\"stream_options\": {\"include_usage\": true}, \"n\": 1}";
    assert_int_equal(parse_with(t2_api_parse_chat, body, &r, &e), 0);
    assert_int_equal(r.kind, T2_API_CHAT);
    assert_string_equal(r.msgs[0].role, "system");
    assert_string_equal(r.msgs[1].content, "a\nb");
    assert_string_equal(r.question, "a\nb");
    assert_int_equal(r.gen.max_tokens, 9);
    assert_true(r.stream && r.include_usage);
    assert_int_equal(r.adapt.strategy, T2_STRATEGY_EXPERT);
    assert_string_equal(r.adapt.expert, "math");
    assert_string_equal(r.model, "seedling:math");
    t2_api_gen_req_free(&r);

    assert_int_equal(parse_with(t2_api_parse_chat,
                                "{\"model\": \"seedling:profile:p1\", \"messages\": [{\"role\": "
                                "\"user\", \"content\": \"q\"}]}",
                                &r, &e),
                     0);
    assert_int_equal(r.adapt.strategy, T2_STRATEGY_PROFILE);
    assert_string_equal(r.adapt.profile, "p1");
    t2_api_gen_req_free(&r);
    assert_int_equal(parse_with(t2_api_parse_chat,
                                "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}]}", &r,
                                &e),
                     0);
    assert_string_equal(r.model, "seedling");
    assert_int_equal(r.adapt.strategy, T2_STRATEGY_PROMPT);
    t2_api_gen_req_free(&r);

    static const struct {
        const char *body;
        int status;
        const char *param;
    } bad[] = {
        {"{\"model\": \"gpt-4\", \"messages\": [{\"role\": \"user\", \"content\": \"q\"}]}", 404,
         "model"},
        {"{\"model\": \"seedling:..\", \"messages\": [{\"role\": \"user\", \"content\": \"q\"}]}",
         404, "model"},
        {"{\"model\": \"seedlingx\", \"messages\": [{\"role\": \"user\", \"content\": \"q\"}]}",
         404, "model"},
        {"{\"n\": 2, \"messages\": [{\"role\": \"user\", \"content\": \"q\"}]}", 422, "n"},
        {"{\"messages\": [{\"role\": \"tool\", \"content\": \"q\"}]}", 422, "messages[0]"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]}", 422,
         "messages[0].content"},
        {"{\"messages\": []}", 422, "messages"},
        {"{\"prompt\": \"x\"}", 422, "messages"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], \"stream_options\": 1}", 422,
         "stream_options"},
        {"{\"model\": \"seedling:math\", \"adaptation\": {\"strategy\": \"none\"}, \"messages\": "
         "[{\"role\": \"user\", \"content\": \"q\"}]}",
         422, "adaptation"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], \"max_completion_tokens\": "
         "0}",
         422, "max_completion_tokens"},
        /* what t2 does not return is refused, not answered without it */
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], \"logprobs\": true}", 422,
         "logprobs"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], \"top_logprobs\": 2}", 422,
         "top_logprobs"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], \"logprobs\": 1}", 422,
         "logprobs"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], \"response_format\": "
         "{\"type\": \"json_object\"}}",
         422, "response_format"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], \"response_format\": "
         "\"text\"}",
         422, "response_format"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int st = parse_with(t2_api_parse_chat, bad[i].body, &r, &e);
        t2_api_gen_req_free(&r);
        if (st != bad[i].status || strcmp(e.param, bad[i].param) != 0)
            fail_msg("%s: got %d %s (%s)", bad[i].body, st, e.param, e.message);
    }
    /* OpenAI's penalties reach the sampler */
    assert_int_equal(parse_with(t2_api_parse_chat,
                                "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], "
                                "\"frequency_penalty\": 0.5, \"presence_penalty\": -0.25}",
                                &r, &e),
                     0);
    assert_true(r.gen.sampling.frequency_penalty == 0.5f);
    assert_true(r.gen.sampling.presence_penalty == -0.25f);
    t2_api_gen_req_free(&r);
    /* their "off" values are what SDKs send by default */
    assert_int_equal(parse_with(t2_api_parse_chat,
                                "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], "
                                "\"logprobs\": false, \"top_logprobs\": 0, "
                                "\"response_format\": {\"type\": \"text\"}}",
                                &r, &e),
                     0);
    t2_api_gen_req_free(&r);
    assert_int_equal(parse_with(t2_api_parse_chat,
                                "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], "
                                "\"logprobs\": null, \"top_logprobs\": null}",
                                &r, &e),
                     0);
    t2_api_gen_req_free(&r);
    /* assistant content null (tool calls) is accepted as empty */
    assert_int_equal(parse_with(t2_api_parse_chat,
                                "{\"messages\": [{\"role\": \"assistant\", \"content\": null}, "
                                "{\"role\": \"user\", \"content\": \"q\"}]}",
                                &r, &e),
                     0);
    assert_string_equal(r.msgs[0].content, "");
    t2_api_gen_req_free(&r);
}

static void test_completion(void **state)
{
    (void)state;
    t2_api_gen_req r;
    t2_api_err e;
    assert_int_equal(parse_with(t2_api_parse_completion,
                                "{\"prompt\": [\"once\"], \"max_tokens\": 3, \"echo\": false}", &r,
                                &e),
                     0);
    assert_string_equal(r.prompt, "once");
    assert_int_equal(r.kind, T2_API_COMPLETION);
    t2_api_gen_req_free(&r);
    const char *bad[] = {"{\"prompt\": [\"a\", \"b\"]}",
                         "{\"prompt\": [1, 2]}",
                         "{\"prompt\": 5}",
                         "{}",
                         "{\"prompt\": \"\"}",
                         "{\"prompt\": \"a\", \"best_of\": 2}",
                         "{\"prompt\": \"a\", \"logprobs\": 0}",
                         "{\"prompt\": \"a\", \"logprobs\": 5}",
                         "{\"prompt\": \"a\", \"echo\": true}",
                         "{\"prompt\": \"a\", \"suffix\": \"b\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int st = parse_with(t2_api_parse_completion, bad[i], &r, &e);
        t2_api_gen_req_free(&r);
        if (st != 422)
            fail_msg("%s: got %d", bad[i], st);
    }
    assert_int_equal(
        parse_with(t2_api_parse_completion, "{\"prompt\": \"a\", \"echo\": true}", &r, &e), 422);
    assert_string_equal(e.param, "echo");
    assert_non_null(strstr(e.message, "not supported"));
    t2_api_gen_req_free(&r);
    assert_int_equal(parse_with(t2_api_parse_completion,
                                "{\"prompt\": \"a\", \"logprobs\": null, \"suffix\": \"\", "
                                "\"echo\": false}",
                                &r, &e),
                     0);
    t2_api_gen_req_free(&r);
}

/* ---------- classify and adapt ---------- */

static void test_classify(void **state)
{
    (void)state;
    t2_api_gen_req r;
    t2_api_err e;
    assert_int_equal(parse_with(t2_api_parse_classify, "{\"prompt\": \"q\"}", &r, &e), 0);
    assert_int_equal(r.adapt.strategy, T2_STRATEGY_PROMPT);
    t2_api_gen_req_free(&r);
    assert_int_equal(parse_with(t2_api_parse_classify,
                                "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], "
                                "\"strategy\": \"classifier\", \"method\": \"generate\"}",
                                &r, &e),
                     0);
    assert_int_equal(r.adapt.strategy, T2_STRATEGY_CLASSIFIER);
    assert_int_equal(r.adapt.method, T2_CLS_GENERATE);
    assert_string_equal(r.question, "q");
    t2_api_gen_req_free(&r);
    const char *bad[] = {"{}", "{\"prompt\": \"q\", \"strategy\": \"expert\"}",
                         "{\"prompt\": \"q\", \"method\": \"vote\"}",
                         "{\"prompt\": \"q\", \"max_tokens\": 3}", "{\"prompt\": \"\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int st = parse_with(t2_api_parse_classify, bad[i], &r, &e);
        t2_api_gen_req_free(&r);
        if (st != 422)
            fail_msg("%s: got %d", bad[i], st);
    }
}

static int adapt_status(const char *body, t2_api_err *e, t2_api_adapt_req *keep)
{
    t2_api_adapt_req r;
    memset(e, 0, sizeof *e);
    int st = t2_api_parse_adapt(body, strlen(body), &r, e) == 0 ? 0 : e->status;
    if (keep)
        *keep = r;
    else
        t2_api_adapt_req_free(&r);
    return st;
}

static void test_adapt(void **state)
{
    (void)state;
    t2_api_err e;
    t2_api_adapt_req r;
    assert_int_equal(adapt_status("{\"name\": \"p1\", \"examples\": [{\"question\": \"q\", "
                                  "\"answer\": \"a\"}], \"experts\": [\"math\", \"code\"], "
                                  "\"generations\": 3, \"population\": 8, \"seed\": 5}",
                                  &e, &r),
                     0);
    assert_string_equal(r.name, "p1");
    assert_int_equal(r.n_examples, 1);
    assert_string_equal(r.examples[0].answer, "a");
    assert_int_equal(r.n_experts, 2);
    assert_int_equal(r.cem.generations, 3);
    assert_int_equal(r.cem.population, 8);
    assert_int_equal(r.cem.seed, 5);
    t2_api_adapt_req_free(&r);
    static const struct {
        const char *body, *param;
    } bad[] = {
        {"{\"examples\": [{\"question\": \"q\", \"answer\": \"a\"}]}", "name"},
        {"{\"name\": \"..\", \"examples\": [{\"question\": \"q\", \"answer\": \"a\"}]}", "name"},
        {"{\"name\": \"p\"}", "examples"},
        {"{\"name\": \"p\", \"examples\": []}", "examples"},
        {"{\"name\": \"p\", \"examples\": [1]}", "examples[0]"},
        {"{\"name\": \"p\", \"examples\": [{\"question\": \"q\"}]}", "examples[0]"},
        {"{\"name\": \"p\", \"examples\": [{\"question\": \"q\", \"answer\": \"a\", \"x\": 1}]}",
         "examples[0].x"},
        {"{\"name\": \"p\", \"examples\": [{\"question\": \"q\", \"answer\": \"a\"}], "
         "\"experts\": [\"a/b\"]}",
         "experts[0]"},
        {"{\"name\": \"p\", \"examples\": [{\"question\": \"q\", \"answer\": \"a\"}], "
         "\"experts\": []}",
         "experts"},
        {"{\"name\": \"p\", \"examples\": [{\"question\": \"q\", \"answer\": \"a\"}], "
         "\"generations\": 0}",
         "generations"},
        {"{\"name\": \"p\", \"examples\": [{\"question\": \"q\", \"answer\": \"a\"}], "
         "\"population\": 1}",
         "population"},
        {"{\"name\": \"p\", \"examples\": [{\"question\": \"q\", \"answer\": \"a\"}], \"typo\": "
         "1}",
         "typo"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int st = adapt_status(bad[i].body, &e, NULL);
        if (st != 422 || strcmp(e.param, bad[i].param) != 0)
            fail_msg("%s: got %d %s (%s)", bad[i].body, st, e.param, e.message);
    }
    assert_int_equal(adapt_status("{\"name\": 1", &e, NULL), 400);
}

/* ---------- errors and rendering ---------- */

static json_t *dump_parse(json_t *j)
{
    size_t n;
    char *s = t2_api_dump(j, &n);
    assert_non_null(s);
    json_t *back = json_loads(s, 0, NULL);
    assert_non_null(back);
    free(s);
    json_decref(j);
    return back;
}

static void test_errors(void **state)
{
    (void)state;
    assert_string_equal(t2_api_status_type(401), "authentication_error");
    assert_string_equal(t2_api_status_type(404), "not_found_error");
    assert_string_equal(t2_api_status_type(429), "rate_limit_error");
    assert_string_equal(t2_api_status_type(507), "server_error");
    assert_string_equal(t2_api_status_type(418), "invalid_request_error");
    assert_string_equal(t2_api_status_code(413), "body_too_large");
    assert_string_equal(t2_api_status_code(415), "unsupported_media_type");
    assert_string_equal(t2_api_status_code(503), "unavailable");
    t2_api_err e;
    assert_int_equal(t2_api_fail(&e, 422, NULL, "max_tokens", "bad %s \xff", "value"), -1);
    json_t *j = dump_parse(t2_api_error_json(&e));
    json_t *inner = json_object_get(j, "error");
    assert_string_equal(json_string_value(json_object_get(inner, "message")), "bad value ?");
    assert_string_equal(json_string_value(json_object_get(inner, "type")), "invalid_request_error");
    assert_string_equal(json_string_value(json_object_get(inner, "code")), "invalid_value");
    assert_string_equal(json_string_value(json_object_get(inner, "param")), "max_tokens");
    json_decref(j);
    t2_api_fail(&e, 404, "model_not_found", NULL, "x");
    j = dump_parse(t2_api_error_json(&e));
    assert_true(json_is_null(json_object_get(json_object_get(j, "error"), "param")));
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                        "model_not_found");
    json_decref(j);
}

static void test_render(void **state)
{
    (void)state;
    /* a decision as the scheduler would lend it */
    t2_expert math = {.name = "math"}, code = {.name = "code"};
    t2_mix_term terms[2] = {{.expert = &math, .alpha = 0.7f}, {.expert = &code, .alpha = 0.3f}};
    char *labels[] = {"math", "other"};
    float probs[] = {0.9f, 0.1f};
    t2_decision d = {.strategy = T2_STRATEGY_PROMPT,
                     .n_labels = 2,
                     .labels = labels,
                     .probs = probs,
                     .mixture = {2, terms},
                     .pass1_ms = 3.5,
                     .pass1_tokens = 20};
    strcpy(d.label, "math");
    t2_api_decision c;
    assert_int_equal(t2_api_decision_copy(&c, &d), 0);
    json_t *j = dump_parse(t2_api_decision_json(&c, 12.0));
    assert_string_equal(json_string_value(json_object_get(j, "strategy")), "prompt");
    assert_string_equal(json_string_value(json_object_get(j, "label")), "math");
    assert_true(json_real_value(json_object_get(json_object_get(j, "alpha"), "math")) == 0.7);
    assert_true(json_real_value(json_object_get(json_object_get(j, "probabilities"), "other")) ==
                0.1);
    assert_true(json_number_value(json_object_get(j, "pass2_ms")) == 12.0);
    assert_int_equal(json_integer_value(json_object_get(j, "pass1_tokens")), 20);
    json_decref(j);
    j = dump_parse(t2_api_decision_json(&c, -1));
    assert_true(json_is_null(json_object_get(j, "pass2_ms")));
    json_decref(j);

    t2_api_usage u = {5, 2, 3};
    j = dump_parse(t2_api_generate_json("42", 2, "stop", &u, t2_api_decision_json(&c, 1)));
    assert_string_equal(json_string_value(json_object_get(j, "text")), "42");
    assert_string_equal(json_string_value(json_object_get(j, "finish_reason")), "stop");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(j, "usage"), "total_tokens")), 7);
    json_t *details = json_object_get(json_object_get(j, "usage"), "prompt_tokens_details");
    assert_int_equal(json_integer_value(json_object_get(details, "cached_tokens")), 3);
    assert_true(json_is_object(json_object_get(j, "adaptation")));
    json_decref(j);
    t2_api_decision_free(&c);

    /* text with invalid bytes still renders */
    u = (t2_api_usage){1, 1, 0};
    j = dump_parse(t2_api_generate_json("a\xff", 2, "length", &u, NULL));
    assert_string_equal(json_string_value(json_object_get(j, "text")), "a?");
    json_decref(j);

    /* SSE framing */
    size_t n;
    json_t *data = json_pack("{s:s}", "text", "line1\nline2");
    char *ev = t2_sse_event("adaptation", data, &n);
    assert_string_equal(ev, "event: adaptation\ndata: {\"text\":\"line1\\nline2\"}\n\n");
    assert_int_equal(n, strlen(ev));
    free(ev);
    ev = t2_sse_event(NULL, data, &n);
    assert_string_equal(ev, "data: {\"text\":\"line1\\nline2\"}\n\n");
    free(ev);
    json_decref(data);
}

static void test_openai_render(void **state)
{
    (void)state;
    t2_oai_ids ids;
    t2_oai_ids_init(&ids, true, "seedling:math", 1700000000, 0xabcULL);
    assert_string_equal(ids.id, "chatcmpl-0000000000000abc");
    t2_api_usage u = {3, 1, 2};
    json_t *j = dump_parse(t2_oai_response(&ids, "hi", 2, "stop", &u));
    json_t *details = json_object_get(json_object_get(j, "usage"), "prompt_tokens_details");
    assert_int_equal(json_integer_value(json_object_get(details, "cached_tokens")), 2);
    assert_string_equal(json_string_value(json_object_get(j, "object")), "chat.completion");
    assert_string_equal(json_string_value(json_object_get(j, "model")), "seedling:math");
    assert_int_equal(json_integer_value(json_object_get(j, "created")), 1700000000);
    json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
    assert_int_equal(json_integer_value(json_object_get(ch, "index")), 0);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(ch, "message"), "content")), "hi");
    assert_string_equal(json_string_value(json_object_get(json_object_get(ch, "message"), "role")),
                        "assistant");
    assert_string_equal(json_string_value(json_object_get(ch, "finish_reason")), "stop");
    json_decref(j);

    j = dump_parse(t2_oai_chunk(&ids, true, "", 0, NULL, true));
    ch = json_array_get(json_object_get(j, "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(j, "object")), "chat.completion.chunk");
    assert_string_equal(json_string_value(json_object_get(json_object_get(ch, "delta"), "role")),
                        "assistant");
    assert_true(json_is_null(json_object_get(ch, "finish_reason")));
    assert_true(json_is_null(json_object_get(j, "usage")));
    json_decref(j);
    j = dump_parse(t2_oai_chunk(&ids, false, NULL, 0, "length", false));
    ch = json_array_get(json_object_get(j, "choices"), 0);
    assert_int_equal(json_object_size(json_object_get(ch, "delta")), 0);
    assert_string_equal(json_string_value(json_object_get(ch, "finish_reason")), "length");
    assert_null(json_object_get(j, "usage"));
    json_decref(j);
    u = (t2_api_usage){3, 4, 0};
    j = dump_parse(t2_oai_usage_chunk(&ids, &u));
    assert_int_equal(json_array_size(json_object_get(j, "choices")), 0);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(j, "usage"), "completion_tokens")), 4);
    json_decref(j);

    t2_oai_ids_init(&ids, false, "seedling", 1, 1);
    assert_string_equal(ids.id, "cmpl-0000000000000001");
    j = dump_parse(t2_oai_chunk(&ids, true, "ab", 2, NULL, false));
    assert_string_equal(json_string_value(json_object_get(j, "object")), "text_completion");
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(j, "choices"), 0), "text")),
                        "ab");
    json_decref(j);
}

static void test_resources(void **state)
{
    (void)state;
    char *ex[] = {"code", "math"}, *pr[] = {"p1"};
    json_t *j = dump_parse(t2_api_models_json("seedling", 5, ex, 2, pr, 1));
    json_t *data = json_object_get(j, "data");
    assert_int_equal(json_array_size(data), 4);
    const char *want[] = {"seedling", "seedling:code", "seedling:math", "seedling:profile:p1"};
    for (size_t i = 0; i < 4; i++) {
        json_t *m = json_array_get(data, i);
        assert_string_equal(json_string_value(json_object_get(m, "id")), want[i]);
        assert_string_equal(json_string_value(json_object_get(m, "object")), "model");
    }
    json_decref(j);
    t2_expert x = {.name = "math",
                   .task = "math",
                   .description = "d",
                   .base_model = "seedling",
                   .parametrization = "direct",
                   .adapted = "mlp",
                   .file_bytes = 27032,
                   .version = UINT64_MAX};
    j = dump_parse(t2_api_expert_json(&x));
    assert_int_equal(json_integer_value(json_object_get(j, "file_bytes")), 27032);
    assert_string_equal(json_string_value(json_object_get(j, "version")), "18446744073709551615");
    json_decref(j);
    char *names[] = {"math"};
    float alpha[] = {0.5f};
    t2_profile p = {.name = "p1",
                    .n = 1,
                    .experts = names,
                    .alpha = alpha,
                    .source = "few_shot",
                    .accuracy = -1,
                    .created = 9};
    j = dump_parse(t2_api_profile_json(&p));
    assert_true(json_is_null(json_object_get(j, "accuracy")));
    assert_true(json_real_value(json_object_get(json_object_get(j, "alpha"), "math")) == 0.5);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_get_str_invalid_utf8),
        cmocka_unit_test(test_generate_ok),
        cmocka_unit_test(test_generate_defaults),
        cmocka_unit_test(test_generate_fields),
        cmocka_unit_test(test_generate_messages),
        cmocka_unit_test(test_generate_adaptation),
        cmocka_unit_test(test_chat),
        cmocka_unit_test(test_completion),
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_adapt),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_openai_render),
        cmocka_unit_test(test_resources),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
