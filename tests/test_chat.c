/* Chat format detection from real templates and the exact prompt text
 * each built-in format renders. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "chat.h"
#include "test_util.h"

/* Llama 3 Instruct's template (abridged to its markers' context). */
static const char LLAMA3_TEMPLATE[] =
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% "
    "endif %}";

/* Mistral Instruct v0.3's template. */
static const char MISTRAL_TEMPLATE[] =
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != "
    "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant "
    "roles are supported!') }}{% endif %}{% endfor %}";

static const char PHI3_TEMPLATE[] =
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') %}"
    "{{'<|user|>' + '\\n' + message['content'] + '<|end|>' + '\\n' + '<|assistant|>' + '\\n'}}"
    "{% elif (message['role'] == 'assistant') %}{{message['content'] + '<|end|>' + '\\n'}}"
    "{% endif %}{% endfor %}";

static char *seedling_template(void)
{
    char p[1024];
    json_t *cfg =
        json_load_file(shared_path(p, sizeof p, "models/seedling/tokenizer_config.json"), 0, NULL);
    assert_non_null(cfg);
    const char *t = json_string_value(json_object_get(cfg, "chat_template"));
    assert_non_null(t);
    char *s = strdup(t);
    json_decref(cfg);
    return s;
}

static void test_detect(void **state)
{
    (void)state;
    bool ok = false;
    char *chatml = seedling_template();
    assert_int_equal(t2_chat_detect(chatml, &ok), T2_CHAT_CHATML);
    assert_true(ok);
    free(chatml);
    ok = false;
    assert_int_equal(t2_chat_detect(LLAMA3_TEMPLATE, &ok), T2_CHAT_LLAMA3);
    assert_true(ok);
    ok = false;
    assert_int_equal(t2_chat_detect(MISTRAL_TEMPLATE, &ok), T2_CHAT_MISTRAL);
    assert_true(ok);

    ok = true;
    assert_int_equal(t2_chat_detect(PHI3_TEMPLATE, &ok), T2_CHAT_CHATML);
    assert_false(ok);
    ok = true;
    assert_int_equal(t2_chat_detect(NULL, &ok), T2_CHAT_CHATML);
    assert_false(ok);
    ok = true;
    assert_int_equal(t2_chat_detect("", &ok), T2_CHAT_CHATML);
    assert_false(ok);
    assert_int_equal(t2_chat_detect(LLAMA3_TEMPLATE, NULL), T2_CHAT_LLAMA3);

    assert_string_equal(t2_chat_format_name(T2_CHAT_CHATML), "chatml");
    assert_string_equal(t2_chat_format_name(T2_CHAT_LLAMA3), "llama3");
    assert_string_equal(t2_chat_format_name(T2_CHAT_MISTRAL), "mistral");
}

static const t2_chat_msg CONV[] = {
    {"system", "Be brief."},
    {"user", "What is 2 + 2?"},
    {"assistant", "4"},
    {"user", "And 3 + 3?"},
};
#define N_CONV (sizeof CONV / sizeof CONV[0])

static char *render(enum t2_chat_format f, const t2_chat_msg *m, size_t n, bool gen,
                    const char *bos)
{
    char *out = NULL;
    t2_err err = {{0}};
    int rc = t2_chat_render(f, m, n, gen, bos, &out, &err);
    if (rc != 0)
        fprintf(stderr, "render: %s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_non_null(out);
    return out;
}

static void test_chatml(void **state)
{
    (void)state;
    char *s = render(T2_CHAT_CHATML, CONV, N_CONV, true, "<s>"); /* no BOS in ChatML */
    assert_string_equal(s, "<|im_start|>system\nBe brief.<|im_end|>\n"
                           "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n"
                           "<|im_start|>assistant\n4<|im_end|>\n"
                           "<|im_start|>user\nAnd 3 + 3?<|im_end|>\n"
                           "<|im_start|>assistant\n");
    free(s);
    s = render(T2_CHAT_CHATML, CONV + 1, 1, false, NULL);
    assert_string_equal(s, "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n");
    free(s);
    s = render(T2_CHAT_CHATML, NULL, 0, false, NULL);
    assert_string_equal(s, "");
    free(s);

    /* the format the seedling reference prompts use */
    char p[1024];
    json_t *v =
        json_load_file(shared_path(p, sizeof p, "models/seedling/reference/vectors.json"), 0, NULL);
    assert_non_null(v);
    const char *prompt = json_string_value(
        json_object_get(json_array_get(json_object_get(v, "vectors"), 0), "prompt"));
    t2_chat_msg q = {"user", "What is 461 + 129?"};
    s = render(T2_CHAT_CHATML, &q, 1, true, NULL);
    assert_string_equal(s, prompt);
    free(s);
    json_decref(v);
}

static void test_llama3(void **state)
{
    (void)state;
    char *s = render(T2_CHAT_LLAMA3, CONV, N_CONV, true, "<|begin_of_text|>");
    assert_string_equal(s, "<|begin_of_text|>"
                           "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                           "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2 + 2?<|eot_id|>"
                           "<|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>"
                           "<|start_header_id|>user<|end_header_id|>\n\nAnd 3 + 3?<|eot_id|>"
                           "<|start_header_id|>assistant<|end_header_id|>\n\n");
    free(s);
    s = render(T2_CHAT_LLAMA3, CONV + 1, 1, false, NULL);
    assert_string_equal(s, "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2 + 2?<|eot_id|>");
    free(s);
}

static void test_mistral(void **state)
{
    (void)state;
    char *s = render(T2_CHAT_MISTRAL, CONV, N_CONV, true, "<s>");
    assert_string_equal(
        s, "<s>[INST] Be brief.\n\nWhat is 2 + 2? [/INST]4</s>[INST] And 3 + 3? [/INST]");
    free(s);
    s = render(T2_CHAT_MISTRAL, CONV + 1, 3, false, NULL);
    assert_string_equal(s, "[INST] What is 2 + 2? [/INST]4</s>[INST] And 3 + 3? [/INST]");
    free(s);
    s = render(T2_CHAT_MISTRAL, CONV, 1, true, "<s>"); /* system alone */
    assert_string_equal(s, "<s>[INST] Be brief. [/INST]");
    free(s);
}

static void test_errors(void **state)
{
    (void)state;
    char *out = (char *)1;
    t2_err err = {{0}};
    t2_chat_msg bad[] = {{"user", NULL}};
    assert_int_equal(t2_chat_render(T2_CHAT_CHATML, bad, 1, true, NULL, &out, &err), -1);
    assert_null(out);
    assert_true(strlen(err.msg) > 0);
    t2_chat_msg tool[] = {{"tool", "42"}};
    assert_int_equal(t2_chat_render(T2_CHAT_MISTRAL, tool, 1, true, NULL, &out, &err), -1);
    assert_non_null(strstr(err.msg, "tool"));
    char *s = render(T2_CHAT_CHATML, tool, 1, false, NULL); /* any role in ChatML */
    assert_string_equal(s, "<|im_start|>tool\n42<|im_end|>\n");
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detect), cmocka_unit_test(test_chatml),
        cmocka_unit_test(test_llama3), cmocka_unit_test(test_mistral),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
