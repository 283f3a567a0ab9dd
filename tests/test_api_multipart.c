/* api/multipart.c: boundaries, well-formed bodies (preamble, epilogue,
 * binary data that looks like delimiters), every malformation, and every
 * truncation and byte flip of a valid body (which must fail cleanly or
 * parse within bounds; run under valgrind for the memory side). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multipart.h"

#define CT "multipart/form-data; boundary=XyZ"

static int parse(const char *ct, const char *body, size_t len, t2_mp_part *parts, size_t *n,
                 t2_api_err *e)
{
    memset(e, 0, sizeof *e);
    return t2_mp_parse(ct, (const uint8_t *)body, len, parts, T2_MP_MAX_PARTS, n, e) == 0
               ? 0
               : e->status;
}

static bool part_is(const t2_mp_part *p, const char *name, const char *data, size_t len)
{
    return p->name_len == strlen(name) && memcmp(p->name, name, p->name_len) == 0 &&
           p->len == len && memcmp(p->data, data, len) == 0;
}

static void test_boundary(void **state)
{
    (void)state;
    char b[T2_MP_MAX_BOUNDARY + 1];
    t2_api_err e;
    assert_int_equal(t2_mp_boundary("multipart/form-data; boundary=abc", b, sizeof b, &e), 0);
    assert_string_equal(b, "abc");
    assert_int_equal(
        t2_mp_boundary("Multipart/Form-Data; charset=utf-8; boundary=\"a b:c\"", b, sizeof b, &e),
        0);
    assert_string_equal(b, "a b:c");
    assert_int_equal(t2_mp_boundary("multipart/form-data;boundary=----WebKit123", b, sizeof b, &e),
                     0);
    assert_string_equal(b, "----WebKit123");
    assert_int_equal(t2_mp_boundary("application/json", b, sizeof b, &e), -1);
    assert_int_equal(e.status, 415);
    assert_int_equal(t2_mp_boundary("multipart/form-dataX; boundary=a", b, sizeof b, &e), -1);
    assert_int_equal(e.status, 415);
    assert_int_equal(t2_mp_boundary("multipart/form-data", b, sizeof b, &e), -1);
    assert_int_equal(e.status, 400);
    assert_int_equal(t2_mp_boundary("multipart/form-data; boundary=", b, sizeof b, &e), -1);
    assert_int_equal(t2_mp_boundary("multipart/form-data; boundary=\"abc", b, sizeof b, &e), -1);
    assert_int_equal(t2_mp_boundary("multipart/form-data; boundary=a\x01"
                                    "b",
                                    b, sizeof b, &e),
                     -1);
    assert_int_equal(t2_mp_boundary("multipart/form-data; boundary=\"ab \"", b, sizeof b, &e), -1);
    char ct[200];
    snprintf(ct, sizeof ct, "multipart/form-data; boundary=%071d", 0);
    assert_int_equal(t2_mp_boundary(ct, b, sizeof b, &e), -1); /* 71 characters */
    snprintf(ct, sizeof ct, "multipart/form-data; boundary=%070d", 0);
    assert_int_equal(t2_mp_boundary(ct, b, sizeof b, &e), 0);
    assert_int_equal(t2_mp_boundary("multipart/form-data; =x; boundary=a", b, sizeof b, &e), -1);
}

static const char VALID[] = "preamble to ignore\r\n"
                            "--XyZ\r\n"
                            "Content-Disposition: form-data; name=\"name\"\r\n"
                            "\r\n"
                            "math2\r\n"
                            "--XyZ  \r\n"
                            "content-disposition: form-data; name=file; filename=\"m.st\"\r\n"
                            "Content-Type: application/octet-stream\r\n"
                            "\r\n"
                            "bin\r\n-XyZa\0--XyZ\r\n--Xy\r\n"
                            "\r\n"
                            "--XyZ--\r\n"
                            "epilogue";

static void test_valid(void **state)
{
    (void)state;
    t2_mp_part parts[T2_MP_MAX_PARTS];
    size_t n;
    t2_api_err e;
    assert_int_equal(parse(CT, VALID, sizeof VALID - 1, parts, &n, &e), 0);
    assert_int_equal(n, 2);
    assert_true(part_is(&parts[0], "name", "math2", 5));
    assert_null(parts[0].filename);
    const char data[] = "bin\r\n-XyZa\0--XyZ\r\n--Xy\r\n";
    assert_true(part_is(&parts[1], "file", data, sizeof data - 1));
    assert_int_equal(parts[1].filename_len, 4);
    assert_memory_equal(parts[1].filename, "m.st", 4);
    assert_int_equal(parts[1].type_len, strlen("application/octet-stream"));
    assert_ptr_equal(t2_mp_find(parts, n, "file"), &parts[1]);
    assert_null(t2_mp_find(parts, n, "fil"));

    /* body starting with the delimiter, empty part data */
    const char b2[] = "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n\r\n--XyZ--";
    assert_int_equal(parse(CT, b2, sizeof b2 - 1, parts, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_int_equal(parts[0].len, 0);
}

static void test_malformed(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",
        "no boundary here",
        "--XyZ--\r\n",                                                              /* no parts */
        "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\ndata",          /* no closing */
        "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\ndata\r\n--XyZ", /* no -- */
        "--XyZx\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nd\r\n--XyZ--",
        "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n", /* headers not ended */
        "--XyZ\r\nno colon line\r\n\r\nd\r\n--XyZ--",
        "--XyZ\r\n: empty name\r\n\r\nd\r\n--XyZ--",
        "--XyZ\r\nContent-Type: text/plain\r\n\r\nd\r\n--XyZ--", /* no disposition */
        "--XyZ\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nd\r\n--XyZ--",
        "--XyZ\r\nContent-Disposition: form-data\r\n\r\nd\r\n--XyZ--", /* no name */
        "--XyZ\r\nContent-Disposition: form-data; name=\"a\r\n\r\nd\r\n--XyZ--",
        "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\nContent-Disposition: form-data; "
        "name=\"b\"\r\n\r\nd\r\n--XyZ--",
        "--XyZ\nContent-Disposition: form-data; name=\"a\"\n\nd\n--XyZ--", /* LF only */
    };
    t2_mp_part parts[T2_MP_MAX_PARTS];
    size_t n;
    t2_api_err e;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int st = parse(CT, bad[i], strlen(bad[i]), parts, &n, &e);
        if (st != 400)
            fail_msg("case %zu: got %d (%s)", i, st, e.message);
        assert_string_equal(e.code, "invalid_multipart");
    }
}

static void test_limits(void **state)
{
    (void)state;
    t2_mp_part parts[T2_MP_MAX_PARTS];
    size_t n;
    t2_api_err e;
    /* more parts than allowed */
    char *b = malloc(64 * 1024);
    if (!b) { /* also tells the compiler b is a real 64 KiB buffer */
        fail();
        return;
    }
    size_t len = 0;
    for (int i = 0; i <= T2_MP_MAX_PARTS; i++)
        len += (size_t)sprintf(b + len,
                               "--XyZ\r\nContent-Disposition: form-data; name=\"p%d\"\r\n"
                               "\r\nv\r\n",
                               i);
    len += (size_t)sprintf(b + len, "--XyZ--\r\n");
    assert_int_equal(parse(CT, b, len, parts, &n, &e), 400);
    /* exactly the maximum is fine */
    len = 0;
    for (int i = 0; i < T2_MP_MAX_PARTS; i++)
        len += (size_t)sprintf(b + len,
                               "--XyZ\r\nContent-Disposition: form-data; name=\"p%d\"\r\n"
                               "\r\nv\r\n",
                               i);
    len += (size_t)sprintf(b + len, "--XyZ--\r\n");
    assert_int_equal(parse(CT, b, len, parts, &n, &e), 0);
    assert_int_equal(n, T2_MP_MAX_PARTS);
    /* too many headers */
    len = (size_t)sprintf(b, "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n");
    for (int i = 0; i < T2_MP_MAX_HEADERS; i++)
        len += (size_t)sprintf(b + len, "X-H%d: v\r\n", i);
    len += (size_t)sprintf(b + len, "\r\nd\r\n--XyZ--");
    assert_int_equal(parse(CT, b, len, parts, &n, &e), 400);
    /* headers too long */
    len = (size_t)sprintf(b, "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\nX-Long: ");
    memset(b + len, 'a', 9000);
    len += 9000;
    len += (size_t)sprintf(b + len, "\r\n\r\nd\r\n--XyZ--");
    assert_int_equal(parse(CT, b, len, parts, &n, &e), 400);
    free(b);
}

/* Every prefix and every single-byte change of a valid body: never out of
 * bounds, and any part returned lies inside the body. */
static void test_mutations(void **state)
{
    (void)state;
    size_t len = sizeof VALID - 1;
    t2_mp_part parts[T2_MP_MAX_PARTS];
    size_t n;
    t2_api_err e;
    for (size_t cut = 0; cut <= len; cut++) {
        char *b = malloc(cut ? cut : 1); /* exact size: valgrind sees any overread */
        memcpy(b, VALID, cut);
        int st = parse(CT, b, cut, parts, &n, &e);
        assert_true(st == 0 || st == 400);
        for (size_t i = 0; st == 0 && i < n; i++)
            assert_true(parts[i].data >= (uint8_t *)b &&
                        parts[i].data + parts[i].len <= (uint8_t *)b + cut);
        free(b);
    }
    static const char flips[] = {'\r', '\n', '-', '"', ';', ':', '=', ' ', 'X', '\0'};
    for (size_t pos = 0; pos < len; pos++)
        for (size_t f = 0; f < sizeof flips; f++) {
            char *b = malloc(len);
            memcpy(b, VALID, len);
            b[pos] = flips[f];
            int st = parse(CT, b, len, parts, &n, &e);
            assert_true(st == 0 || st == 400);
            for (size_t i = 0; st == 0 && i < n; i++)
                assert_true(parts[i].data >= (uint8_t *)b &&
                            parts[i].data + parts[i].len <= (uint8_t *)b + len);
            free(b);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_boundary),  cmocka_unit_test(test_valid),
        cmocka_unit_test(test_malformed), cmocka_unit_test(test_limits),
        cmocka_unit_test(test_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
