/* Sampling: greedy ties, reproducible seeds, top-k/top-p/min-p limits,
 * repetition, frequency and presence penalties, parameter validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "sampling.h"

#define V 8

static const float base_logits[V] = {1.0f, 3.0f, 2.5f, 3.0f, -1.0f, 0.0f, 2.9f, -5.0f};

static int32_t draw(t2_sampler *s, const int32_t *hist, size_t n)
{
    float l[V];
    memcpy(l, base_logits, sizeof l);
    return t2_sampler_next(s, l, hist, n);
}

static void test_greedy_first_max(void **state)
{
    (void)state;
    t2_sampling p;
    t2_sampling_defaults(&p);
    t2_sampler s;
    t2_err err;
    assert_int_equal(t2_sampler_init(&s, &p, V, &err), 0);
    assert_int_equal(draw(&s, NULL, 0), 1); /* 1 and 3 tie: first wins */
    t2_sampler_free(&s);
}

static void test_seed_reproducible(void **state)
{
    (void)state;
    t2_sampling p;
    t2_sampling_defaults(&p);
    p.temperature = 1.0f;
    p.seed = 42;
    t2_sampler a, b, c;
    t2_err err;
    assert_int_equal(t2_sampler_init(&a, &p, V, &err), 0);
    assert_int_equal(t2_sampler_init(&b, &p, V, &err), 0);
    p.seed = 43;
    assert_int_equal(t2_sampler_init(&c, &p, V, &err), 0);
    int same = 1, differs = 0, seen[V] = {0};
    for (int i = 0; i < 200; i++) {
        int32_t x = draw(&a, NULL, 0), y = draw(&b, NULL, 0), z = draw(&c, NULL, 0);
        same &= x == y;
        differs |= x != z;
        seen[x]++;
    }
    assert_true(same);
    assert_true(differs);
    /* temperature 1 over these logits visits several tokens, token 7 (p ~ 1e-4) rarely */
    assert_true(seen[1] > 20 && seen[3] > 20 && seen[6] > 20);
    t2_sampler_free(&a);
    t2_sampler_free(&b);
    t2_sampler_free(&c);
}

static void test_top_k_and_p(void **state)
{
    (void)state;
    t2_sampling p;
    t2_sampling_defaults(&p);
    p.temperature = 2.0f;
    p.top_k = 3; /* candidates 1, 3, 6 */
    t2_sampler s;
    t2_err err;
    assert_int_equal(t2_sampler_init(&s, &p, V, &err), 0);
    for (int i = 0; i < 300; i++) {
        int32_t t = draw(&s, NULL, 0);
        assert_true(t == 1 || t == 3 || t == 6);
    }
    t2_sampler_free(&s);
    p.top_k = 0;
    p.top_p = 0.01f; /* only the most likely survives: 1 (first of the tie) */
    assert_int_equal(t2_sampler_init(&s, &p, V, &err), 0);
    for (int i = 0; i < 50; i++)
        assert_int_equal(draw(&s, NULL, 0), 1);
    t2_sampler_free(&s);
    p.top_p = 1.0f;
    p.min_p = 0.8f; /* keeps logits within ln(1/0.8) ~ 0.22 of the max: 1, 3, 6 */
    p.temperature = 1.0f;
    assert_int_equal(t2_sampler_init(&s, &p, V, &err), 0);
    for (int i = 0; i < 300; i++) {
        int32_t t = draw(&s, NULL, 0);
        assert_true(t == 1 || t == 3 || t == 6);
    }
    t2_sampler_free(&s);
}

static void test_repeat_penalty(void **state)
{
    (void)state;
    t2_sampling p;
    t2_sampling_defaults(&p);
    p.repeat_penalty = 2.0f;
    t2_sampler s;
    t2_err err;
    assert_int_equal(t2_sampler_init(&s, &p, V, &err), 0);
    int32_t hist[] = {1, 3, 3};
    /* 1 and 3 halved to 1.5: 6 (2.9) wins greedily */
    assert_int_equal(draw(&s, hist, 3), 6);
    float l[V];
    memcpy(l, base_logits, sizeof l);
    int32_t h2[] = {4};
    t2_sampler_next(&s, l, h2, 1);
    assert_true(l[4] == -2.0f); /* negative logits are multiplied */
    t2_sampler_free(&s);
}

/* OpenAI's penalties, greedy: logit - frequency * count - presence, over
 * the last repeat_last_n tokens only. */
static void test_frequency_presence(void **state)
{
    (void)state;
    t2_sampling p;
    t2_sampling_defaults(&p);
    p.frequency_penalty = 0.2f;
    t2_sampler s;
    t2_err err;
    assert_int_equal(t2_sampler_init(&s, &p, V, &err), 0);
    float l[V];
    memcpy(l, base_logits, sizeof l);
    int32_t hist[] = {1, 3, 3, 3, 4};
    /* 1: 3.0 - 0.2, 3: 3.0 - 0.6, 4: -1.0 - 0.2; 6 (2.9) wins */
    assert_int_equal(t2_sampler_next(&s, l, hist, 5), 6);
    assert_true(l[1] == 3.0f - 0.2f && l[3] == 3.0f - 3 * 0.2f && l[4] == -1.0f - 0.2f);
    assert_true(l[0] == 1.0f && l[6] == 2.9f); /* unseen tokens untouched */
    t2_sampler_free(&s);

    t2_sampling_defaults(&p);
    p.presence_penalty = 0.05f; /* once, whatever the count: 3.0 -> 2.95 beats 2.9 */
    assert_int_equal(t2_sampler_init(&s, &p, V, &err), 0);
    int32_t h3[] = {1, 3, 3, 3};
    memcpy(l, base_logits, sizeof l);
    assert_int_equal(t2_sampler_next(&s, l, h3, 4), 1);
    assert_true(l[1] == 3.0f - 0.05f && l[3] == 3.0f - 0.05f);
    t2_sampler_free(&s);

    p.presence_penalty = -1.0f; /* negative: encourages a token seen before */
    p.repeat_last_n = 2;        /* only the last two tokens: 3 (seen), not 1 */
    assert_int_equal(t2_sampler_init(&s, &p, V, &err), 0);
    memcpy(l, base_logits, sizeof l);
    int32_t h4[] = {1, 5, 3};
    assert_int_equal(t2_sampler_next(&s, l, h4, 3), 3);
    assert_true(l[1] == 3.0f && l[3] == 4.0f && l[5] == 1.0f);
    t2_sampler_free(&s);
}

static void test_validation(void **state)
{
    (void)state;
    t2_sampling p;
    t2_err err;
    t2_sampling_defaults(&p);
    assert_int_equal(t2_sampling_validate(&p, &err), 0);
    p.temperature = -1.0f;
    assert_int_equal(t2_sampling_validate(&p, &err), -1);
    assert_non_null(strstr(err.msg, "temperature"));
    t2_sampling_defaults(&p);
    p.top_p = 0.0f;
    assert_int_equal(t2_sampling_validate(&p, &err), -1);
    assert_non_null(strstr(err.msg, "top_p"));
    t2_sampling_defaults(&p);
    p.min_p = 1.5f;
    assert_int_equal(t2_sampling_validate(&p, &err), -1);
    t2_sampling_defaults(&p);
    p.repeat_penalty = 0.0f;
    assert_int_equal(t2_sampling_validate(&p, &err), -1);
    t2_sampling_defaults(&p);
    p.top_k = -3;
    assert_int_equal(t2_sampling_validate(&p, &err), -1);
    t2_sampling_defaults(&p);
    p.frequency_penalty = 2.5f;
    assert_int_equal(t2_sampling_validate(&p, &err), -1);
    assert_non_null(strstr(err.msg, "frequency_penalty"));
    t2_sampling_defaults(&p);
    p.presence_penalty = -2.0f;
    assert_int_equal(t2_sampling_validate(&p, &err), 0);
    p.presence_penalty = -2.01f;
    assert_int_equal(t2_sampling_validate(&p, &err), -1);
    assert_non_null(strstr(err.msg, "presence_penalty"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_first_max),   cmocka_unit_test(test_seed_reproducible),
        cmocka_unit_test(test_top_k_and_p),        cmocka_unit_test(test_repeat_penalty),
        cmocka_unit_test(test_frequency_presence), cmocka_unit_test(test_validation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
