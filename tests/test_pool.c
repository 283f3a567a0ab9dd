/* The worker pool: fixed shares, chunks handed out as workers ask, and
 * the count of runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "pool.h"

/* Every item in exactly one chunk, chunks in order and never longer than
 * the one before, each a multiple of align except the last; the first as
 * long as a fixed share. */
static void test_chunks_cover(void **state)
{
    (void)state;
    static const int cases[][3] = {/* n, nw, align */
                                   {2560, 8, 16}, {960, 2, 16}, {100, 3, 16}, {7, 4, 16},
                                   {0, 2, 16},    {1000, 1, 1}, {33, 16, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int n = cases[i][0], nw = cases[i][1], align = cases[i][2];
        t2_chunks q;
        t2_chunks_init(&q, n, nw, align);
        int next = 0, count = 0, prev = n + align, b, e;
        while (t2_chunks_take(&q, &b, &e)) {
            assert_int_equal(b, next);
            assert_true(e > b && e <= n);
            if (e < n)
                assert_int_equal((e - b) % align, 0);
            assert_true(e - b <= prev);
            if (count == 0) { /* a fixed share, rounded up to align */
                int share = (n + nw - 1) / nw;
                assert_int_equal(e - b, (share + align - 1) / align * align < n
                                            ? (share + align - 1) / align * align
                                            : n);
            }
            prev = e - b;
            next = e;
            count++;
        }
        assert_int_equal(next, n);
        assert_false(t2_chunks_take(&q, &b, &e)); /* stays empty */
    }
}

enum { ITEMS = 1600, WORKERS = 4, SLOW = 1 };

typedef struct chunk_job {
    t2_chunks q;
    atomic_int done[ITEMS];
    atomic_int taken[WORKERS]; /* items */
} chunk_job;

static void chunk_worker(void *arg, int worker, int nw)
{
    chunk_job *j = arg;
    (void)nw;
    int b, e;
    for (;;) {
        if (worker == SLOW) { /* a worker on a busy core: 20 ms per chunk */
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        if (!t2_chunks_take(&j->q, &b, &e))
            break;
        atomic_fetch_add(&j->taken[worker], e - b);
        for (int i = b; i < e; i++)
            atomic_fetch_add(&j->done[i], 1);
    }
}

/* Under a real pool every item is done once, and the slow worker ends up
 * with fewer items than the fixed share it would have had. */
static void test_chunks_balance(void **state)
{
    (void)state;
    t2_pool *p;
    t2_err err;
    assert_int_equal(t2_pool_create(&p, WORKERS, &err), 0);
    static chunk_job j;
    memset(&j, 0, sizeof j);
    t2_chunks_init(&j.q, ITEMS, WORKERS, 16);
    unsigned long runs = t2_pool_runs(p);
    t2_pool_run(p, chunk_worker, &j);
    assert_int_equal(t2_pool_runs(p), runs + 1);
    for (int i = 0; i < ITEMS; i++)
        assert_int_equal(atomic_load(&j.done[i]), 1);
    int total = 0;
    for (int w = 0; w < WORKERS; w++)
        total += atomic_load(&j.taken[w]);
    assert_int_equal(total, ITEMS);
    assert_true(atomic_load(&j.taken[SLOW]) < ITEMS / WORKERS);
    t2_pool_free(p);
}

/* Fixed shares: consecutive, aligned, covering [0, n). */
static void test_share(void **state)
{
    (void)state;
    int prev = 0;
    for (int w = 0; w < 3; w++) {
        int b, e;
        t2_pool_share(100, w, 3, 16, &b, &e);
        assert_int_equal(b, prev);
        assert_true(e == 100 || e % 16 == 0);
        prev = e;
    }
    assert_int_equal(prev, 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunks_cover),
        cmocka_unit_test(test_chunks_balance),
        cmocka_unit_test(test_share),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
