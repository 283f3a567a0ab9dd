/* The HTTP layer's pure parts: CORS origin lists, the bearer key check,
 * media types, the metrics text and log lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_policy.h"
#include "log.h"
#include "metrics.h"

static void test_origins(void **state)
{
    (void)state;
    bool wild;
    assert_true(t2_http_origin_allowed("*", "https://a.example", &wild));
    assert_true(wild);
    assert_false(t2_http_origin_allowed("*", NULL, &wild));
    assert_false(t2_http_origin_allowed("", "https://a.example", &wild));
    const char *list = "https://a.example, http://b.example:8080 ,https://c.example";
    assert_true(t2_http_origin_allowed(list, "https://a.example", &wild));
    assert_false(wild);
    assert_true(t2_http_origin_allowed(list, "http://b.example:8080", &wild));
    assert_true(t2_http_origin_allowed(list, "https://c.example", &wild));
    assert_false(t2_http_origin_allowed(list, "https://a.example.evil", &wild));
    assert_false(t2_http_origin_allowed(list, "https://a.exampl", &wild));
    assert_false(t2_http_origin_allowed(list, "http://b.example", &wild));
}

static void test_bearer(void **state)
{
    (void)state;
    assert_true(t2_http_bearer_ok("Bearer k3y", "k3y"));
    assert_true(t2_http_bearer_ok("bearer   k3y  ", "k3y"));
    assert_false(t2_http_bearer_ok("Bearer k3", "k3y"));
    assert_false(t2_http_bearer_ok("Bearer k3yy", "k3y"));
    assert_false(t2_http_bearer_ok("Bearer K3Y", "k3y"));
    assert_false(t2_http_bearer_ok("Bearer ", "k3y"));
    assert_false(t2_http_bearer_ok("Basic k3y", "k3y"));
    assert_false(t2_http_bearer_ok("k3y", "k3y"));
    assert_false(t2_http_bearer_ok(NULL, "k3y"));
    assert_false(t2_http_bearer_ok("Bearer ", ""));
}

static void test_media_types(void **state)
{
    (void)state;
    assert_true(t2_http_media_type_is("application/json", "application/json"));
    assert_true(t2_http_media_type_is("Application/JSON; charset=utf-8", "application/json"));
    assert_true(t2_http_media_type_is(" application/json", "application/json"));
    assert_false(t2_http_media_type_is("application/jsonx", "application/json"));
    assert_false(t2_http_media_type_is("text/plain", "application/json"));
    assert_false(t2_http_media_type_is(NULL, "application/json"));
    assert_true(t2_http_header_list_ok("content-type, authorization, x-stainless-os"));
    assert_false(t2_http_header_list_ok("content-type\r\nX-Injected: 1"));
    assert_false(t2_http_header_list_ok(NULL));
}

static void test_metrics(void **state)
{
    (void)state;
    t2_metrics m;
    t2_metrics_init(&m);
    t2_metrics_request(&m, "/v1/generate", 200);
    t2_metrics_request(&m, "/v1/generate", 200);
    t2_metrics_request(&m, "/v1/generate", 422);
    for (int i = 0; i < 100; i++) /* more series than the first allocation */
        t2_metrics_request(&m, "/health", 200 + i);
    t2_metrics_job(&m, 7, 0.02, 1.5);
    t2_metrics_job(&m, 3, 0.2, -1);
    t2_metrics_gauges g = {.queued = 2,
                           .running = 5,
                           .experts = 4,
                           .cache_hits = 9,
                           .cache_misses = 1,
                           .cache_entries = 3,
                           .cache_bytes = 4096,
                           .builds = 2,
                           .ready = 1};
    size_t len;
    char *text = t2_metrics_render(&m, &g, &len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    const char *want[] = {
        "t2_requests_total{endpoint=\"/v1/generate\",status=\"200\"} 2\n",
        "t2_requests_total{endpoint=\"/v1/generate\",status=\"422\"} 1\n",
        "t2_requests_total{endpoint=\"/health\",status=\"299\"} 1\n",
        "t2_queue_depth 2\n",
        "t2_running_sequences 5\n",
        "t2_tokens_generated_total 10\n",
        "t2_pass1_seconds_bucket{le=\"0.025\"} 1\n",
        "t2_pass1_seconds_bucket{le=\"0.25\"} 2\n",
        "t2_pass1_seconds_bucket{le=\"+Inf\"} 2\n",
        "t2_pass1_seconds_count 2\n",
        "t2_pass2_seconds_count 1\n",
        "t2_pass2_seconds_bucket{le=\"1\"} 0\n",
        "t2_pass2_seconds_bucket{le=\"2.5\"} 1\n",
        "t2_experts_loaded 4\n",
        "t2_adapted_cache_hits_total 9\n",
        "t2_adapted_cache_misses_total 1\n",
        "t2_adapted_cache_sets 3\n",
        "t2_adapted_cache_bytes 4096\n",
        "t2_adapted_builds_total 2\n",
        "# TYPE t2_pass2_seconds histogram\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(text, want[i]))
            fail_msg("metrics lack: %s", want[i]);
    free(text);
    t2_metrics_free(&m);
}

static char *capture(void (*fn)(t2_log *), const char *format)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    t2_log l;
    t2_log_init(&l, format, "info", f);
    fn(&l);
    fclose(f);
    return buf;
}

static void write_lines(t2_log *l)
{
    t2_log_msg(l, T2_LOG_DEBUG, "hidden");
    t2_log_msg(l, T2_LOG_INFO, "listening on http://127.0.0.1:%d", 8080);
    t2_log_msg(l, T2_LOG_WARN, "careful \xff");
    t2_log_access(l, "POST", "/v1/generate", 200, 12.5, 7, false);
}

static void test_log(void **state)
{
    (void)state;
    char *text = capture(write_lines, "text");
    assert_string_equal(text, "t2: listening on http://127.0.0.1:8080\n"
                              "t2: warning: careful \xff\n"
                              "t2: access: POST /v1/generate 200 12.5ms tokens=7\n");
    free(text);
    text = capture(write_lines, "json");
    char *save = NULL;
    int lines = 0;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_t *j = json_loads(line, 0, NULL);
        assert_non_null(j);
        assert_non_null(json_object_get(j, "time"));
        assert_non_null(json_object_get(j, "level"));
        if (++lines == 3) {
            assert_string_equal(json_string_value(json_object_get(j, "msg")), "access");
            assert_int_equal(json_integer_value(json_object_get(j, "status")), 200);
            assert_int_equal(json_integer_value(json_object_get(j, "tokens")), 7);
        }
        json_decref(j);
    }
    assert_int_equal(lines, 3);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_origins),     cmocka_unit_test(test_bearer),
        cmocka_unit_test(test_media_types), cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_log),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
