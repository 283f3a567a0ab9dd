/* Which OpenBLAS core t2 asks for (core/blas_core.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "blas_core.h"

static void test_avx512_cpu(void **state)
{
    (void)state;
    /* the device Xeon (Sapphire Rapids): Debian's OpenBLAS said Prescott */
    assert_string_equal(t2_blas_core_better("Prescott", true, true), "SkylakeX");
    assert_string_equal(t2_blas_core_better("Haswell", true, true), "SkylakeX");
    assert_string_equal(t2_blas_core_better("Zen", true, true), "SkylakeX");
    /* its own AVX-512 cores are kept, whatever the case */
    assert_null(t2_blas_core_better("SkylakeX", true, true));
    assert_null(t2_blas_core_better("COOPERLAKE", true, true)); /* the dev EPYC's */
    assert_null(t2_blas_core_better("sapphirerapids", true, true));
}

static void test_avx2_cpu(void **state)
{
    (void)state;
    assert_string_equal(t2_blas_core_better("Prescott", false, true), "Haswell");
    assert_string_equal(t2_blas_core_better("Sandybridge", false, true), "Haswell");
    assert_string_equal(t2_blas_core_better("nehalem", false, true), "Haswell");
    /* AVX2 cores, and names it does not know, are left alone */
    assert_null(t2_blas_core_better("Haswell", false, true));
    assert_null(t2_blas_core_better("Zen", false, true));
    assert_null(t2_blas_core_better("SomeFutureCore", false, true));
}

static void test_older_cpu_or_no_name(void **state)
{
    (void)state;
    assert_null(t2_blas_core_better("Prescott", false, false));
    assert_null(t2_blas_core_better(NULL, true, true));
}

/* the user's OPENBLAS_CORETYPE (or the restarted run's) is never overridden,
 * and valgrind (which an exec would leave) is never restarted */
static void test_wanted_respects_environment(void **state)
{
    (void)state;
    setenv("OPENBLAS_CORETYPE", "Prescott", 1);
    assert_null(t2_blas_core_wanted());
    unsetenv("OPENBLAS_CORETYPE");
    setenv("LD_PRELOAD", "/usr/libexec/valgrind/vgpreload_core-amd64-linux.so", 1);
    assert_null(t2_blas_core_wanted());
}

/* the restarted run's note names both cores; any other run has none */
static void test_note(void **state)
{
    (void)state;
    char buf[256];
    unsetenv("T2_BLAS_CORE_WAS");
    setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
    assert_null(t2_blas_core_note(buf, sizeof buf));
    setenv("T2_BLAS_CORE_WAS", "Prescott", 1);
    const char *note = t2_blas_core_note(buf, sizeof buf);
    assert_non_null(note);
    assert_non_null(strstr(note, "chose its Prescott kernels"));
    assert_non_null(strstr(note, "OPENBLAS_CORETYPE=SkylakeX"));
    unsetenv("OPENBLAS_CORETYPE");
    assert_null(t2_blas_core_note(buf, sizeof buf));
    unsetenv("T2_BLAS_CORE_WAS");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_avx512_cpu),
        cmocka_unit_test(test_avx2_cpu),
        cmocka_unit_test(test_older_cpu_or_no_name),
        cmocka_unit_test(test_wanted_respects_environment),
        cmocka_unit_test(test_note),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
