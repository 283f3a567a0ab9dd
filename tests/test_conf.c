/* conf/: defaults, value validation, the file format, environment
 * variables, flags and their precedence, and the documented example. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

static char err[1024];

static void test_defaults(void **state)
{
    (void)state;
    t2_conf c;
    assert_int_equal(t2_conf_defaults(&c, err, sizeof err), 0);
    assert_string_equal(c.host, "127.0.0.1");
    assert_int_equal(c.port, 8080);
    assert_string_equal(c.model, "../shared/models/seedling");
    assert_string_equal(c.experts, "auto");
    assert_string_equal(c.profiles, "./profiles");
    assert_string_equal(c.default_strategy, "prompt");
    assert_true(c.max_body == 64.0);
    assert_true(c.grace == 10.0);
    assert_string_equal(c.api_key, "");
    assert_false(c.api_key_all);
    assert_string_equal(c.cors_origins, "*");
    assert_string_equal(c.cors_admin_origins, "");
    assert_string_equal(c.log_format, "text");
    assert_null(c.config);
    t2_conf_free(&c);
}

static void test_set(void **state)
{
    (void)state;
    t2_conf c;
    t2_conf_defaults(&c, err, sizeof err);
    assert_int_equal(t2_conf_set(&c, "port", "0", "t", err, sizeof err), 0);
    assert_int_equal(c.port, 0);
    assert_int_equal(t2_conf_set(&c, "port", "65536", "flag --port", err, sizeof err), -1);
    assert_non_null(strstr(err, "port"));
    assert_non_null(strstr(err, "flag --port"));
    assert_non_null(strstr(err, "0..65535"));
    const char *bad_ints[] = {"", "12x", "1.5", "-1", "99999999999999999999"};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(t2_conf_set(&c, "port", bad_ints[i], "t", err, sizeof err), -1);
    assert_int_equal(t2_conf_set(&c, "max_body", "0.5", "t", err, sizeof err), 0);
    assert_true(c.max_body == 0.5);
    assert_int_equal(t2_conf_set(&c, "max_body", "0", "t", err, sizeof err), -1);
    assert_int_equal(t2_conf_set(&c, "max_body", "nan", "t", err, sizeof err), -1);
    assert_int_equal(t2_conf_set(&c, "timeout", "inf", "t", err, sizeof err), -1);
    const char *yes[] = {"true", "1", "YES", "on"}, *no[] = {"false", "0", "No", "off"};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(t2_conf_set(&c, "api_key_all", yes[i], "t", err, sizeof err), 0);
        assert_true(c.api_key_all);
        assert_int_equal(t2_conf_set(&c, "api_key_all", no[i], "t", err, sizeof err), 0);
        assert_false(c.api_key_all);
    }
    assert_int_equal(t2_conf_set(&c, "api_key_all", "maybe", "t", err, sizeof err), -1);
    assert_int_equal(t2_conf_set(&c, "log_format", "xml", "t", err, sizeof err), -1);
    assert_non_null(strstr(err, "text|json"));
    assert_int_equal(t2_conf_set(&c, "log_level", "warn", "t", err, sizeof err), 0);
    const char *strategies_ok[] = {"none", "prompt", "classifier", "expert:math", "profile:p-1"};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(
            t2_conf_set(&c, "default_strategy", strategies_ok[i], "t", err, sizeof err), 0);
    const char *strategies_bad[] = {"expert", "expert:", "expert:../x", "few_shot", "mixture"};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(
            t2_conf_set(&c, "default_strategy", strategies_bad[i], "t", err, sizeof err), -1);
    assert_int_equal(
        t2_conf_set(&c, "cors_origins", "https://a.example, http://b:8080", "t", err, sizeof err),
        0);
    assert_int_equal(t2_conf_set(&c, "cors_origins", "", "t", err, sizeof err), 0);
    assert_int_equal(t2_conf_set(&c, "cors_origins", "a.example", "t", err, sizeof err), -1);
    assert_int_equal(t2_conf_set(&c, "cors_origins", "https://*.example", "t", err, sizeof err),
                     -1);
    assert_int_equal(t2_conf_set(&c, "api_key", "has space", "t", err, sizeof err), -1);
    assert_int_equal(t2_conf_set(&c, "api_key", "s3cret!", "t", err, sizeof err), 0);
    assert_int_equal(t2_conf_set(&c, "svf_set", "mlp,attn", "t", err, sizeof err), 0);
    assert_int_equal(t2_conf_set(&c, "svf_set", "all", "t", err, sizeof err), -1);
    assert_string_equal(c.weights, "f32");
    assert_int_equal(t2_conf_set(&c, "weights", "q8_0", "t", err, sizeof err), 0);
    assert_string_equal(c.weights, "q8_0");
    assert_int_equal(t2_conf_set(&c, "weights", "bf16", "t", err, sizeof err), 0);
    assert_string_equal(c.weights, "bf16");
    assert_int_equal(t2_conf_set(&c, "weights", "f16", "flag --weights", err, sizeof err), -1);
    assert_non_null(strstr(err, "weights"));
    assert_string_equal(c.weights, "bf16");
    assert_int_equal(c.materialise_min_tokens, 64);
    assert_int_equal(t2_conf_set(&c, "materialise_min_tokens", "1000", "t", err, sizeof err), 0);
    assert_int_equal(c.materialise_min_tokens, 1000);
    assert_int_equal(t2_conf_set(&c, "materialise_min_tokens", "0", "t", err, sizeof err), -1);
    assert_non_null(strstr(err, "materialise_min_tokens"));
    assert_int_equal(c.materialise_min_tokens, 1000);
    assert_string_equal(c.kv_cache, "f32");
    assert_int_equal(t2_conf_set(&c, "kv_cache", "f16", "t", err, sizeof err), 0);
    assert_string_equal(c.kv_cache, "f16");
    assert_int_equal(t2_conf_set(&c, "kv_cache", "q8_0", "flag --kv-cache", err, sizeof err), -1);
    assert_non_null(strstr(err, "kv_cache"));
    assert_string_equal(c.kv_cache, "f16");
    assert_int_equal(t2_conf_set(&c, "model", "", "t", err, sizeof err), -1);
    assert_int_equal(t2_conf_set(&c, "nope", "1", "env", err, sizeof err), -1);
    assert_non_null(strstr(err, "unknown key"));
    t2_conf_free(&c);
}

static int apply(t2_conf *c, const char *text)
{
    return t2_conf_apply_text(c, text, strlen(text), "t.conf", err, sizeof err);
}

static void test_file(void **state)
{
    (void)state;
    t2_conf c;
    t2_conf_defaults(&c, err, sizeof err);
    assert_int_equal(apply(&c, "# comment\n\n   # indented comment\r\n"
                               "port = 9000\r\n"
                               "  host=0.0.0.0  \n"
                               "api_key = abc#def\n"
                               "classify_prompt = \"  Pick {labels}.\\n\\\"x\\\" \\\\ \\t \"\n"
                               "cors_admin_origins =\n"
                               "max_tokens = 12"),
                     0);
    assert_int_equal(c.port, 9000);
    assert_string_equal(c.host, "0.0.0.0");
    assert_string_equal(c.api_key, "abc#def");
    assert_string_equal(c.classify_prompt, "  Pick {labels}.\n\"x\" \\ \t ");
    assert_string_equal(c.cors_admin_origins, "");
    assert_int_equal(c.max_tokens, 12);
    t2_conf_free(&c);

    static const struct {
        const char *text, *want;
    } bad[] = {
        {"port 9000\n", "t.conf:1: expected 'key = value'"},
        {"\n\nprot = 1\n", "t.conf:3: unknown key 'prot'"},
        {"Port = 1\n", "t.conf:1"},
        {"port = 1\nport = 2\n", "already set on line 1"},
        {"port = x\n", "file t.conf:1"},
        {"host = \"abc\n", "unterminated"},
        {"host = \"abc\" x\n", "after the closing quote"},
        {"host = \"a\\qb\"\n", "unknown escape"},
        {"= 5\n", "expected 'key = value'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        t2_conf_defaults(&c, err, sizeof err);
        assert_int_equal(apply(&c, bad[i].text), -1);
        if (!strstr(err, bad[i].want))
            fail_msg("'%s': message '%s' lacks '%s'", bad[i].text, err, bad[i].want);
        t2_conf_free(&c);
    }
    t2_conf_defaults(&c, err, sizeof err);
    assert_int_equal(t2_conf_apply_text(&c, "port = 1\0", 9, "t.conf", err, sizeof err), -1);
    assert_int_equal(t2_conf_apply_file(&c, "/nonexistent/t2.conf", err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/t2.conf"));
    t2_conf_free(&c);
}

static void test_env(void **state)
{
    (void)state;
    t2_conf c;
    t2_conf_defaults(&c, err, sizeof err);
    char *env[] = {"T2_PORT=1234",  "T2_SHARED=/x",
                   "PATH=/bin",     "T2_=1",
                   "T2_MAX_SEQS=3", "T2_CONFIG=/ignored/here",
                   "t2_port=9",     NULL};
    assert_int_equal(t2_conf_apply_env(&c, env, err, sizeof err), 0);
    assert_int_equal(c.port, 1234);
    assert_int_equal(c.max_seqs, 3);
    char *bad[] = {"T2_MAX_SEQS=0", NULL};
    assert_int_equal(t2_conf_apply_env(&c, bad, err, sizeof err), -1);
    assert_non_null(strstr(err, "environment T2_MAX_SEQS"));
    t2_conf_free(&c);
}

static void test_flags_precedence(void **state)
{
    (void)state;
    const char *path = "test_conf_tmp.conf";
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("port = 1111\nmax_seqs = 2\nqueue = 5\nlog_format = json\n", f);
    fclose(f);
    char cfg_flag[64];
    snprintf(cfg_flag, sizeof cfg_flag, "--config=%s", path);
    char *argv[] = {"serve",         cfg_flag, "--max-seqs", "4", "--log-format=text",
                    "--api-key-all", NULL};
    char *env[] = {"T2_MAX_SEQS=3", "T2_QUEUE=6", NULL};
    t2_conf c;
    assert_int_equal(t2_conf_load(&c, 6, argv, env, err, sizeof err), 0);
    assert_int_equal(c.port, 1111);  /* file */
    assert_int_equal(c.queue, 6);    /* env over file */
    assert_int_equal(c.max_seqs, 4); /* flag over env and file */
    assert_string_equal(c.log_format, "text");
    assert_true(c.api_key_all); /* bare boolean flag */
    assert_string_equal(c.config, path);
    t2_conf_free(&c);

    /* T2_CONFIG names the file when no --config is given */
    char cfg_env[64];
    snprintf(cfg_env, sizeof cfg_env, "T2_CONFIG=%s", path);
    char *argv2[] = {"serve", NULL};
    char *env2[] = {cfg_env, NULL};
    assert_int_equal(t2_conf_load(&c, 1, argv2, env2, err, sizeof err), 0);
    assert_int_equal(c.port, 1111);
    t2_conf_free(&c);
    remove(path);

    static struct {
        int argc;
        char *argv[4];
        const char *want;
    } bad[] = {
        {2, {"serve", "--bogus"}, "unknown option '--bogus'"},
        {2, {"serve", "--port"}, "needs a value"},
        {2, {"serve", "stray"}, "unexpected argument 'stray'"},
        {3, {"serve", "--port", "x"}, "flag --port"},
        {2, {"serve", "--port=x"}, "flag --port"},
        {2, {"serve", "--api-key-all=perhaps"}, "api_key_all"},
        {3, {"serve", "--config", "/nonexistent.conf"}, "/nonexistent.conf"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(t2_conf_load(&c, bad[i].argc, bad[i].argv, NULL, err, sizeof err), -1);
        if (!strstr(err, bad[i].want))
            fail_msg("case %zu: '%s' lacks '%s'", i, err, bad[i].want);
        t2_conf_free(&c);
    }
    char *help[] = {"serve", "--port", "1", "--help", NULL};
    assert_int_equal(t2_conf_load(&c, 4, help, NULL, err, sizeof err), 1);
    t2_conf_free(&c);
}

/* conf/t2.conf.example documents every key and parses as is. */
static void test_example(void **state)
{
    (void)state;
    const char *root = getenv("T2_SOURCE_ROOT");
    char path[4096];
    snprintf(path, sizeof path, "%s/conf/t2.conf.example", root ? root : "..");
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    for (size_t i = 0; i < t2_conf_n_keys; i++) {
        char line[128];
        snprintf(line, sizeof line, "\n%s =", t2_conf_schema[i].key);
        if (!strstr(text, line))
            fail_msg("the example does not document '%s'", t2_conf_schema[i].key);
    }
    t2_conf c, d;
    t2_conf_defaults(&c, err, sizeof err);
    t2_conf_defaults(&d, err, sizeof err);
    assert_int_equal(t2_conf_apply_file(&c, path, err, sizeof err), 0);
    /* its values are the defaults */
    assert_int_equal(c.port, d.port);
    assert_string_equal(c.default_strategy, d.default_strategy);
    assert_true(c.max_body == d.max_body);
    assert_string_equal(c.cors_origins, d.cors_origins);
    t2_conf_free(&c);
    t2_conf_free(&d);
}

static void test_usage(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    t2_conf_usage(f);
    fclose(f);
    for (size_t i = 0; i < t2_conf_n_keys; i++) {
        char flag[80] = "--";
        for (size_t j = 0; t2_conf_schema[i].key[j]; j++)
            flag[2 + j] = t2_conf_schema[i].key[j] == '_' ? '-' : t2_conf_schema[i].key[j];
        if (!strstr(buf, flag))
            fail_msg("usage lacks %s", flag);
    }
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_set),
        cmocka_unit_test(test_file),
        cmocka_unit_test(test_env),
        cmocka_unit_test(test_flags_precedence),
        cmocka_unit_test(test_example),
        cmocka_unit_test(test_usage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
