/* The seedling model against the float32 PyTorch reference: last-position
 * logits and greedy continuations for every reference prompt. */
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <unistd.h>

#include "dtype.h"
#include "forward.h"
#include "forward_internal.h"
#include "gguf_export.h"
#include "generate.h"
#include "model.h"
#include "test_greedy.h"
#include "test_util.h"

typedef struct fixture {
    t2_model *m;
    t2_pool *pool;
    json_t *vectors;
} fixture;

static int setup(void **state)
{
    static fixture f;
    char p[1024];
    t2_err err = {{0}};
    if (t2_model_load(&f.m, shared_path(p, sizeof p, "models/seedling"), &err) != 0) {
        fprintf(stderr, "load: %s\n", err.msg);
        return -1;
    }
    if (t2_pool_create(&f.pool, 2, &err) != 0)
        return -1;
    f.vectors = load_vectors();
    if (!f.vectors)
        return -1;
    *state = &f;
    return 0;
}

/* The first reference prompt's ids (the caller frees them). */
static int32_t *first_prompt(const fixture *f, size_t *n)
{
    json_t *v = json_array_get(json_object_get(f->vectors, "vectors"), 0);
    return json_ids(json_object_get(v, "ids"), n);
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (!f) /* setup failed: nothing to free */
        return 0;
    t2_model_free(f->m);
    t2_pool_free(f->pool);
    json_decref(f->vectors);
    return 0;
}

static void test_config(void **state)
{
    fixture *f = *state;
    const t2_config *c = &f->m->cfg;
    assert_int_equal(c->hidden, 256);
    assert_int_equal(c->n_layers, 8);
    assert_int_equal(c->n_heads, 8);
    assert_int_equal(c->n_kv_heads, 2);
    assert_int_equal(c->head_dim, 32);
    assert_int_equal(c->intermediate, 768);
    assert_int_equal(c->vocab, 1024);
    assert_true(c->tie_embeddings);
    assert_ptr_equal(f->m->lm_head, f->m->embed);
    assert_true(t2_model_is_eos(f->m, 2));
    assert_false(t2_model_is_eos(f->m, 1));
}

static void test_reference_logits(void **state)
{
    fixture *f = *state;
    json_t *vecs = json_object_get(f->vectors, "vectors");
    assert_true(json_array_size(vecs) >= 4);
    /* quick mode: the first reference prompt only */
    size_t n_vecs = test_quick() ? 1 : json_array_size(vecs);
    for (size_t i = 0; i < n_vecs; i++) {
        ref_prompt r;
        assert_true(ref_prompt_load(&r, vecs, i, "logits_base"));
        t2_ctx *ctx;
        t2_err err;
        assert_int_equal(t2_ctx_create(&ctx, f->m, f->pool, 0, &err), 0);
        const float *logits;
        assert_int_equal(t2_forward(ctx, r.ids, (int)r.n, false, &logits, &err), 0);
        double e = rel_l2(logits, r.logits, 1024);
        printf("# %s: relative L2 error of the logits %.3g\n",
               json_string_value(json_object_get(r.v, "family")), e);
        assert_true(e < 1e-4);
        /* the same prompt token by token (decode path) gives the same logits */
        t2_ctx_truncate(ctx, 0);
        for (size_t t = 0; t < r.n; t++)
            assert_int_equal(t2_forward(ctx, &r.ids[t], 1, false, &logits, &err), 0);
        assert_true(rel_l2(logits, r.logits, 1024) < 1e-4);
        t2_ctx_free(ctx);
        ref_prompt_free(&r);
    }
}

static void test_all_logits_match_last(void **state)
{
    fixture *f = *state;
    size_t n;
    int32_t *ids = first_prompt(f, &n);
    if (test_quick()) /* quick mode: the prompt's first 6 tokens */
        n = n < 6 ? n : 6;
    t2_ctx *ctx;
    t2_err err;
    assert_int_equal(t2_ctx_create(&ctx, f->m, f->pool, 0, &err), 0);
    const float *all, *last;
    assert_int_equal(t2_forward(ctx, ids, (int)n, true, &all, &err), 0);
    float *copy = malloc(n * 1024 * sizeof *copy);
    memcpy(copy, all, n * 1024 * sizeof *copy);
    t2_ctx_truncate(ctx, 0);
    assert_int_equal(t2_forward(ctx, ids, (int)n, false, &last, &err), 0);
    assert_true(rel_l2(copy + (n - 1) * 1024, last, 1024) < 1e-6);
    free(copy);
    t2_ctx_free(ctx);
    free(ids);
}

/* A pass profile counts every pass, puts time in every stage a pass
 * goes through (none in the rotation: an f32 model never rotates), no
 * more than the passes took, at least one pool hand-off per matrix
 * stage and layer, and kernel time of the pool's workers within the
 * matrix stages; it stops when unset. */
static void test_pass_profile(void **state)
{
    fixture *f = *state;
    size_t n;
    int32_t *ids = first_prompt(f, &n);
    t2_ctx *ctx;
    t2_err err;
    assert_int_equal(t2_ctx_create(&ctx, f->m, f->pool, 0, &err), 0);
    t2_pass_profile p;
    memset(&p, 0, sizeof p);
    t2_ctx_set_profile(ctx, &p);
    const float *logits;
    assert_int_equal(t2_forward(ctx, ids, (int)n, false, &logits, &err), 0);
    for (int t = 0; t < 3; t++)
        assert_int_equal(t2_forward(ctx, &ids[t], 1, false, &logits, &err), 0);
    assert_int_equal(p.passes, 4);
    double stages = 0;
    for (int s = 0; s < T2_N_STAGES; s++) {
        if (s == T2_STAGE_ROTATION) {
            assert_true(p.sec[s] == 0.0);
            continue;
        }
        assert_true(p.sec[s] > 0.0);
        stages += p.sec[s];
    }
    assert_true(stages <= p.total_sec);
    assert_true(p.pool_runs >= 4u * 4u * (unsigned long)f->m->cfg.n_layers);
    /* the pool's workers ran kernels (which of them took how many rows
     * is up to the chunks: under valgrind one may take them all), only
     * inside the matrix stages; a third worker does not exist */
    double matrix = p.sec[T2_STAGE_QKV] + p.sec[T2_STAGE_O] + p.sec[T2_STAGE_GATE_UP] +
                    p.sec[T2_STAGE_DOWN] + p.sec[T2_STAGE_HEAD];
    assert_true(p.worker_sec[0] + p.worker_sec[1] > 0.0);
    assert_true(p.worker_sec[0] <= matrix && p.worker_sec[1] <= matrix);
    assert_true(p.worker_sec[2] == 0.0);
    t2_pass_profile before = p;
    t2_ctx_set_profile(ctx, NULL);
    assert_int_equal(t2_forward(ctx, &ids[3], 1, false, &logits, &err), 0);
    assert_memory_equal(&before, &p, sizeof p);
    assert_string_equal(t2_stage_name(T2_STAGE_GATE_UP), "gate_up");
    assert_string_equal(t2_stage_name(T2_N_STAGES), "?");
    t2_ctx_free(ctx);
    free(ids);
}

/* Branches run in one pass give each branch the logits it gets alone
 * after the same prompt, and leave the prompt's cache as it was. */
static void test_branches_match_sequential(void **state)
{
    fixture *f = *state;
    size_t n;
    int32_t *ids = first_prompt(f, &n);
    if (test_quick())
        n = n < 6 ? n : 6;
    t2_ctx *ctx;
    t2_err err;
    assert_int_equal(t2_ctx_create(&ctx, f->m, f->pool, 0, &err), 0);
    const float *out;
    assert_int_equal(t2_forward(ctx, ids, (int)n, false, &out, &err), 0);
    const int32_t br[] = {10, 11, 12, 20, 30, 31};
    const int lens[] = {3, 0, 1, 2};
    float *got = malloc(6 * 1024 * sizeof *got);
    assert_int_equal(t2_forward_branches(ctx, br, lens, 4, &out, &err), 0);
    memcpy(got, out, 6 * 1024 * sizeof *got);
    assert_int_equal(t2_ctx_n_past(ctx), (int)n);
    for (int b = 0, row = 0; b < 4; row += lens[b], b++) {
        if (lens[b] == 0)
            continue;
        t2_ctx_truncate(ctx, (int)n);
        assert_int_equal(t2_forward(ctx, br + row, lens[b], true, &out, &err), 0);
        for (int t = 0; t < lens[b]; t++)
            assert_true(rel_l2(got + (size_t)(row + t) * 1024, out + (size_t)t * 1024, 1024) <
                        1e-5);
    }
    /* a branch longer than the context allows, or none at all */
    const int none[] = {0, 0};
    assert_int_equal(t2_forward_branches(ctx, br, none, 2, &out, &err), -1);
    t2_ctx_free(ctx);
    free(got);
    free(ids);
}

/* A context keeps the KV of the tokens it evaluated under one weights
 * key: a later prompt with the same beginning evaluates only the rest and
 * gets the logits a fresh context computes. */
static void test_reuse_prefix(void **state)
{
    fixture *f = *state;
    size_t n;
    int32_t *ids = first_prompt(f, &n);
    if (test_quick())
        n = n < 8 ? n : 8;
    assert_true(n >= 4);
    t2_ctx *ctx, *fresh;
    t2_err err;
    assert_int_equal(t2_ctx_create(&ctx, f->m, f->pool, 0, &err), 0);
    assert_int_equal(t2_ctx_create(&fresh, f->m, f->pool, 0, &err), 0);
    const float *out;
    assert_int_equal(t2_ctx_reuse_prefix(ctx, "", ids, (int)n), 0); /* nothing cached yet */
    assert_int_equal(t2_forward(ctx, ids, (int)n, false, &out, &err), 0);
    t2_ctx_truncate(ctx, 0);
    /* the same prompt: all but the last token are kept */
    assert_int_equal(t2_ctx_reuse_prefix(ctx, "", ids, (int)n), (int)n - 1);
    assert_int_equal(t2_ctx_n_past(ctx), (int)n - 1);
    /* a prompt that differs from token n/2 on */
    size_t half = n / 2;
    int32_t *other = malloc((n + 2) * sizeof *other);
    memcpy(other, ids, n * sizeof *other);
    other[half] = (other[half] + 1) % 1024;
    assert_int_equal(t2_ctx_reuse_prefix(ctx, "", other, (int)n), (int)half);
    assert_int_equal(t2_forward(ctx, other + half, (int)(n - half), false, &out, &err), 0);
    float *got = malloc(1024 * sizeof *got);
    memcpy(got, out, 1024 * sizeof *got);
    assert_int_equal(t2_forward(fresh, other, (int)n, false, &out, &err), 0);
    assert_true(rel_l2(got, out, 1024) < 1e-6);
    /* branch KV past the prompt is not taken for a cached continuation */
    const int32_t br[] = {40, 41};
    const int lens[] = {2};
    assert_int_equal(t2_forward_branches(ctx, br, lens, 1, &out, &err), 0);
    other[n] = 40;
    other[n + 1] = 41;
    assert_int_equal(t2_ctx_reuse_prefix(ctx, "", other, (int)n + 2), (int)n);
    /* other weights (a different key) start over */
    assert_int_equal(t2_ctx_reuse_prefix(ctx, "math@1:1", other, (int)n), 0);
    assert_int_equal(t2_forward(ctx, other, (int)n, false, &out, &err), 0);
    assert_int_equal(t2_ctx_reuse_prefix(ctx, "", other, (int)n), 0);
    assert_int_equal(t2_forward(ctx, other, (int)n, false, &out, &err), 0);
    /* a batched decode step extends the record */
    t2_ctx *seqs[1] = {ctx};
    assert_int_equal(t2_forward_batch(seqs, &ids[0], 1, &out, &err), 0);
    other[n] = ids[0];
    other[n + 1] = 7;
    assert_int_equal(t2_ctx_cached_prefix(ctx, "", other, (int)n + 2), (int)n + 1);
    assert_int_equal(t2_ctx_cached_prefix(ctx, "math@1:1", other, (int)n + 2), 0);
    /* evaluating with other layers than the record's ends it */
    size_t nl = (size_t)f->m->cfg.n_layers;
    t2_layer *copy = malloc(nl * sizeof *copy);
    memcpy(copy, f->m->layers, nl * sizeof *copy);
    t2_ctx_set_layers(ctx, copy);
    assert_int_equal(t2_forward_batch(seqs, &ids[1], 1, &out, &err), 0);
    assert_int_equal(t2_ctx_cached_prefix(ctx, "", other, (int)n + 2), 0);
    t2_ctx_set_layers(ctx, NULL);
    free(copy);
    /* starting over without a reuse call ends the record too (the weights
     * at the recorded address could be another set's) */
    assert_int_equal(t2_ctx_reuse_prefix(ctx, "", other, (int)n), 0);
    assert_int_equal(t2_forward(ctx, other, (int)n, false, &out, &err), 0);
    assert_int_equal(t2_ctx_cached_prefix(ctx, "", other, (int)n), (int)n - 1);
    t2_ctx_truncate(ctx, 0);
    assert_int_equal(t2_forward(ctx, ids, (int)n, false, &out, &err), 0);
    assert_int_equal(t2_ctx_cached_prefix(ctx, "", other, (int)n), 0);
    free(got);
    free(other);
    free(ids);
    t2_ctx_free(ctx);
    t2_ctx_free(fresh);
}

static void test_greedy_base(void **state)
{
    fixture *f = *state;
    json_t *vecs = json_object_get(f->vectors, "vectors");
    /* quick mode: the first reference prompt only */
    size_t n_vecs = test_quick() ? 1 : json_array_size(vecs);
    for (size_t i = 0; i < n_vecs; i++) {
        json_t *v = json_array_get(vecs, i);
        size_t n, n_ref;
        int32_t *ids = json_ids(json_object_get(v, "ids"), &n);
        int32_t *ref = json_ids(json_object_get(json_object_get(v, "greedy"), "base"), &n_ref);
        t2_ctx *ctx;
        t2_err err;
        assert_int_equal(t2_ctx_create(&ctx, f->m, f->pool, 0, &err), 0);
        t2_gen_params gp;
        t2_gen_params_defaults(&gp);
        gp.max_tokens = 16;
        t2_gen_result res;
        assert_int_equal(t2_generate(ctx, f->m, ids, n, &gp, NULL, NULL, &res, &err), 0);
        assert_int_equal(res.n_tokens, (int)n_ref);
        for (size_t t = 0; t < n_ref; t++)
            assert_int_equal(res.tokens[t], ref[t]);
        /* the reference stops on <|im_end|> */
        assert_int_equal(res.finish, ref[n_ref - 1] == 2 ? T2_FINISH_STOP : T2_FINISH_LENGTH);
        t2_gen_result_free(&res);
        t2_ctx_free(ctx);
        free(ids);
        free(ref);
    }
}

static void test_context_limits(void **state)
{
    fixture *f = *state;
    t2_ctx *ctx;
    t2_err err;
    assert_int_equal(t2_ctx_create(&ctx, f->m, f->pool, 8, &err), 0);
    int32_t ids[9] = {1, 278, 201, 286, 280, 223, 22, 24, 19};
    const float *logits;
    assert_int_equal(t2_forward(ctx, ids, 9, false, &logits, &err), -1);
    assert_non_null(strstr(err.msg, "context full"));
    int32_t bad = 5000;
    assert_int_equal(t2_forward(ctx, &bad, 1, false, &logits, &err), -1);
    assert_non_null(strstr(err.msg, "out of range"));
    /* generation that runs into the end of the context stops with "length" */
    t2_gen_params gp;
    t2_gen_params_defaults(&gp);
    gp.max_tokens = 100;
    gp.ignore_eos = true;
    t2_gen_result res;
    assert_int_equal(t2_generate(ctx, f->m, ids, 4, &gp, NULL, NULL, &res, &err), 0);
    assert_int_equal(res.finish, T2_FINISH_LENGTH);
    assert_int_equal(res.n_tokens, 5); /* 4 prompt + 4 decoded fill 8, plus the last sampled */
    t2_gen_result_free(&res);
    t2_ctx_free(ctx);
}

/* A 300-token prompt in one call and token by token give the same
 * logits, with an f32 cache to float rounding, with an f16 one to a few
 * of its roundings (the two paths' sums differ in order, so a few K/V
 * values round to neighbouring f16 values, 2^-11 apart). The call runs
 * as one pass (a float32 model's T2_MAX_ROWS-row passes) and, with the
 * context's chunk set to T2_CHUNK, as three (later chunks attending to
 * earlier ones, as a q8_0 model's prompt does). */
static void test_long_prompt_chunks(void **state)
{
    fixture *f = *state;
    enum { N = 300 };
    int32_t ids[N];
    long_prompt_ids(ids, N);
    /* quick mode (valgrind: minutes for the whole test): 40 tokens as one
     * pass, then in chunks of 16 rows (three passes, later ones attending
     * to earlier ones), against each other (token by token runs through
     * every other test), and the f16 cache only (the f32 one runs through
     * every other test) */
    int n = test_quick() ? 40 : N, chunk = test_quick() ? 16 : T2_CHUNK;
    for (int f16 = test_quick() ? 1 : 0; f16 < 2; f16++) {
        f->m->kv_f16 = f16;
        t2_ctx *ctx;
        t2_err err;
        assert_int_equal(t2_ctx_create(&ctx, f->m, f->pool, 0, &err), 0);
        assert_int_equal(ctx->chunk, T2_MAX_ROWS);
        const float *logits;
        float *whole[2];
        for (int chunked = 0; chunked < 2; chunked++) {
            ctx->chunk = chunked ? chunk : T2_MAX_ROWS;
            t2_ctx_truncate(ctx, 0);
            assert_int_equal(t2_forward(ctx, ids, n, false, &logits, &err), 0);
            whole[chunked] = malloc(1024 * sizeof(float));
            memcpy(whole[chunked], logits, 1024 * sizeof(float));
        }
        const float *ref = test_quick() ? whole[1] : logits_token_by_token(ctx, ids, n);
        assert_non_null(ref);
        for (int chunked = 0; chunked < (test_quick() ? 1 : 2); chunked++) {
            double e = rel_l2(whole[chunked], ref, 1024);
            print_message("%s cache: %d-token prompt in passes of %d rows vs %s, relative L2 "
                          "%.3g\n",
                          f16 ? "f16" : "f32", n, chunked ? chunk : T2_MAX_ROWS,
                          test_quick() ? "16-row passes" : "token by token", e);
            assert_true(e < (f16 ? 5e-4 : 1e-5));
        }
        free(whole[0]);
        free(whole[1]);
        t2_ctx_free(ctx);
    }
    f->m->kv_f16 = false;
}

/* An f16 K/V cache (t2_model.kv_f16): every reference prompt's logits,
 * after the prompt as one prefill and after it token by token, stay
 * within f16's rounding of the float32 reference (K/V rounded to 11
 * significant bits), the greedy answers are the reference's, and a batch
 * cannot mix the two cache formats. */
static void test_kv_f16(void **state)
{
    fixture *f = *state;
    json_t *vecs = json_object_get(f->vectors, "vectors");
    size_t n_vecs = test_quick() ? 1 : json_array_size(vecs);
    t2_err err;
    bool f16 = false;
    assert_int_equal(t2_kv_cache_parse("f16", &f16, &err), 0);
    assert_true(f16);
    assert_int_equal(t2_kv_cache_parse("f32", &f16, &err), 0);
    assert_false(f16);
    assert_int_equal(t2_kv_cache_parse("bf16", &f16, &err), -1);
    assert_non_null(strstr(err.msg, "'bf16'"));
    assert_string_equal(t2_kv_cache_name(true), "f16");
    t2_ctx *f32ctx;
    assert_int_equal(t2_ctx_create(&f32ctx, f->m, f->pool, 0, &err), 0);
    f->m->kv_f16 = true;
    double worst = 0;
    for (size_t i = 0; i < n_vecs; i++) {
        ref_prompt r;
        assert_true(ref_prompt_load(&r, vecs, i, "logits_base"));
        t2_ctx *ctx;
        assert_int_equal(t2_ctx_create(&ctx, f->m, f->pool, 0, &err), 0);
        const float *logits;
        assert_int_equal(t2_forward(ctx, r.ids, (int)r.n, false, &logits, &err), 0);
        double e = rel_l2(logits, r.logits, 1024);
        t2_ctx_truncate(ctx, 0);
        for (size_t t = 0; t < r.n; t++)
            assert_int_equal(t2_forward(ctx, &r.ids[t], 1, false, &logits, &err), 0);
        double e1 = rel_l2(logits, r.logits, 1024);
        worst = e > worst ? e : worst;
        worst = e1 > worst ? e1 : worst;
        size_t n_ref;
        int32_t *ref = json_ids(json_object_get(json_object_get(r.v, "greedy"), "base"), &n_ref);
        assert_true(greedy_gives(ctx, f->m, r.ids, r.n, ref, n_ref));
        free(ref);
        if (i == 0) {
            /* the cache really is rounded: not the f32 cache's logits */
            float *wide = malloc(1024 * sizeof *wide);
            t2_ctx_truncate(ctx, 0);
            assert_int_equal(t2_forward(ctx, r.ids, (int)r.n, false, &logits, &err), 0);
            memcpy(wide, logits, 1024 * sizeof *wide);
            assert_int_equal(t2_forward(f32ctx, r.ids, (int)r.n, false, &logits, &err), 0);
            double apart = rel_l2(wide, logits, 1024);
            print_message("f16 vs f32 cache, prompt 0: relative L2 %.3g\n", apart);
            assert_true(apart > 1e-5);
            free(wide);
            /* f32 and f16 caches in one batch: refused */
            int32_t tok[2] = {5, 5};
            t2_ctx *both[2] = {ctx, f32ctx};
            assert_int_equal(t2_forward_batch(both, tok, 2, &logits, &err), -1);
            assert_non_null(strstr(err.msg, "K/V cache format"));
        }
        t2_ctx_free(ctx);
        ref_prompt_free(&r);
    }
    f->m->kv_f16 = false;
    t2_ctx_free(f32ctx);
    print_message("f16 K/V cache: largest relative L2 error of the logits %.3g\n", worst);
    assert_true(worst < 2e-3);
}

/* Resident memory of this process in KiB (/proc/self/statm), or -1. */
static long resident_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size, pages;
    if (!f)
        return -1;
    int got = fscanf(f, "%ld %ld", &size, &pages);
    fclose(f);
    return got == 2 ? pages * (sysconf(_SC_PAGESIZE) / 1024) : -1;
}

/* A context's K/V cache is sized for n_ctx tokens (2 MiB for seedling's
 * 512) and its scratch for a pass of 512 rows (about 16 MiB more), but
 * memory is committed only as it is touched: creating one, and a short
 * prompt through it, keep well under the cache's size resident. */
static void test_context_memory_follows_use(void **state)
{
    fixture *f = *state;
    const t2_config *cfg = &f->m->cfg;
    long cache_kib = 2L * cfg->n_layers * cfg->max_pos * cfg->n_kv_heads * cfg->head_dim * 4 / 1024;
    long r0 = resident_kib();
    if (r0 < 0)
        skip();
    t2_ctx *ctx;
    t2_err err;
    assert_int_equal(t2_ctx_create(&ctx, f->m, f->pool, 0, &err), 0);
    long created = resident_kib() - r0;
    int32_t ids[6] = {1, 278, 201, 286, 280, 223};
    const float *logits;
    assert_int_equal(t2_forward(ctx, ids, 6, false, &logits, &err), 0);
    long used = resident_kib() - r0;
    t2_ctx_free(ctx);
    print_message("K/V cache %ld KiB; resident after create +%ld KiB, after 6 tokens +%ld KiB\n",
                  cache_kib, created, used);
    assert_true(cache_kib >= 2048);
    assert_true(created < cache_kib / 4);
    assert_true(used < cache_kib / 2);
}

typedef struct collected {
    char text[4096];
    size_t len;
    int calls;
    int cancel_after;
} collected;

static bool collect(void *user, const char *text, size_t len, int32_t token)
{
    (void)token;
    collected *c = user;
    memcpy(c->text + c->len, text, len);
    c->len += len;
    c->text[c->len] = '\0';
    return ++c->calls != c->cancel_after;
}

static t2_gen_result run_math(fixture *f, t2_gen_params *gp, collected *col)
{
    size_t n;
    int32_t *ids = first_prompt(f, &n);
    t2_ctx *ctx;
    t2_err err;
    assert_int_equal(t2_ctx_create(&ctx, f->m, f->pool, 0, &err), 0);
    t2_gen_result res;
    assert_int_equal(t2_generate(ctx, f->m, ids, n, gp, collect, col, &res, &err), 0);
    t2_ctx_free(ctx);
    free(ids);
    return res;
}

/* greedy on "What is 461 + 129?" answers "690" then <|im_end|> */
static void test_generation_text(void **state)
{
    fixture *f = *state;
    t2_gen_params gp;
    t2_gen_params_defaults(&gp);
    collected col = {.cancel_after = -1};
    t2_gen_result res = run_math(f, &gp, &col);
    assert_string_equal(res.text, "690");
    assert_string_equal(col.text, "690"); /* streamed pieces add up to the text */
    assert_int_equal(res.finish, T2_FINISH_STOP);
    t2_gen_result_free(&res);

    /* a stop string ends generation before it; its text is not returned */
    const char *stops[] = {"xyz", "90"};
    gp.stop = stops;
    gp.n_stop = 2;
    memset(&col, 0, sizeof col);
    col.cancel_after = -1;
    res = run_math(f, &gp, &col);
    assert_string_equal(res.text, "6");
    assert_string_equal(col.text, "6"); /* the held-back "9" never reached the client */
    assert_int_equal(res.finish, T2_FINISH_STOP);
    assert_int_equal(res.n_tokens, 3);
    t2_gen_result_free(&res);

    /* max_tokens */
    gp.n_stop = 0;
    gp.max_tokens = 2;
    memset(&col, 0, sizeof col);
    col.cancel_after = -1;
    res = run_math(f, &gp, &col);
    assert_string_equal(res.text, "69");
    assert_int_equal(res.finish, T2_FINISH_LENGTH);
    t2_gen_result_free(&res);

    /* the callback cancels after the first piece */
    gp.max_tokens = 16;
    memset(&col, 0, sizeof col);
    col.cancel_after = 1;
    res = run_math(f, &gp, &col);
    assert_int_equal(res.finish, T2_FINISH_CANCELLED);
    assert_int_equal(res.n_tokens, 1);
    t2_gen_result_free(&res);
}

/* the same seed gives the same sampled text; another seed eventually differs */
static void test_sampled_reproducible(void **state)
{
    fixture *f = *state;
    t2_gen_params gp;
    t2_gen_params_defaults(&gp);
    gp.sampling.temperature = 1.5f;
    gp.sampling.seed = 7;
    int n_tok = test_quick() ? 8 : 24; /* quick mode: 8 sampled tokens per run */
    gp.max_tokens = n_tok;
    gp.ignore_eos = true;
    collected a = {.cancel_after = -1}, b = {.cancel_after = -1};
    t2_gen_result ra = run_math(f, &gp, &a), rb = run_math(f, &gp, &b);
    assert_int_equal(ra.n_tokens, n_tok);
    assert_memory_equal(ra.tokens, rb.tokens, (size_t)n_tok * sizeof(int32_t));
    int differs = 0;
    for (uint64_t seed = 8; seed < 12 && !differs; seed++) {
        gp.sampling.seed = seed;
        collected c = {.cancel_after = -1};
        t2_gen_result rc = run_math(f, &gp, &c);
        differs = memcmp(ra.tokens, rc.tokens, (size_t)n_tok * sizeof(int32_t)) != 0;
        t2_gen_result_free(&rc);
    }
    assert_true(differs);
    t2_gen_result_free(&ra);
    t2_gen_result_free(&rb);
}

/* Logits of every reference prompt with a model in another weight format:
 * by prefill and token by token (the kernels' path), against the float32
 * reference; returns the worst relative L2 error. */
static double format_error(fixture *f, t2_model *m)
{
    json_t *vecs = json_object_get(f->vectors, "vectors");
    double worst = 0;
    /* quick mode: the first reference prompt only */
    size_t n_vecs = test_quick() ? 1 : json_array_size(vecs);
    for (size_t i = 0; i < n_vecs; i++) {
        ref_prompt r;
        assert_true(ref_prompt_load(&r, vecs, i, "logits_base"));
        t2_ctx *ctx;
        t2_err err;
        assert_int_equal(t2_ctx_create(&ctx, m, f->pool, 0, &err), 0);
        const float *logits;
        assert_int_equal(t2_forward(ctx, r.ids, (int)r.n, false, &logits, &err), 0);
        worst = fmax(worst, rel_l2(logits, r.logits, 1024));
        t2_ctx_truncate(ctx, 0);
        for (size_t t = 0; t < r.n; t++)
            assert_int_equal(t2_forward(ctx, &r.ids[t], 1, false, &logits, &err), 0);
        worst = fmax(worst, rel_l2(logits, r.logits, 1024));
        t2_ctx_free(ctx);
        ref_prompt_free(&r);
    }
    return worst;
}

/* bf16 / q8_0 at load: the matrices hold exactly the format's rounding of
 * the f32 weights, and the logits stay within the format's error. */
static void test_weight_formats(void **state)
{
    fixture *f = *state;
    static const struct {
        t2_wtype type;
        double max_err; /* measured: bf16 8.5e-7 (seedling is stored bf16: exact), q8_0 1.0e-2 */
    } formats[] = {{T2_W_BF16, 1e-5}, {T2_W_Q8_0, 3e-2}};
    char p[1024];
    int H = f->m->cfg.hidden;
    float *row = malloc((size_t)f->m->cfg.intermediate * sizeof *row);
    uint8_t *blk = malloc((size_t)f->m->cfg.intermediate * 2);
    uint8_t *packed = malloc((size_t)f->m->cfg.intermediate * 2);
    assert_non_null(row);
    assert_non_null(blk);
    assert_non_null(packed);
    for (size_t k = 0; k < sizeof formats / sizeof formats[0]; k++) {
        t2_model *m;
        t2_err err;
        assert_int_equal(t2_model_load_as(&m, shared_path(p, sizeof p, "models/seedling"),
                                          formats[k].type, &err),
                         0);
        assert_int_equal(m->wtype, formats[k].type);
        assert_null(m->layers[0].wq);
        assert_null(m->embed);
        assert_ptr_equal(m->head.data, m->embed_w.data); /* tied */
        /* layer 3's up_proj row 5, and an embedding row */
        const float *src = f->m->layers[3].w_up + 5 * H;
        t2_wmat w = t2_layer_wmat(&m->layers[3], &m->cfg, T2_WUP);
        assert_int_equal(w.type, formats[k].type);
        t2_wmat_row_f32(&w, 5, row);
        if (formats[k].type == T2_W_BF16) {
            for (int c = 0; c < H; c++)
                assert_true(row[c] == t2_bf16_to_f32(t2_f32_to_bf16(src[c])));
        } else {
            t2_q8_0_quantize(src, blk, (size_t)H);
            t2_q8_0_row_from_blocks(blk, H / 32, packed);
            assert_memory_equal(packed, (const uint8_t *)w.data + 5 * w.stride, w.stride);
        }
        t2_wmat_row_f32(&m->embed_w, 7, row);
        assert_true(rel_l2(row, f->m->embed + 7 * H, (size_t)H) < 1e-2);
        double e = format_error(f, m);
        printf("# %s weights: worst relative L2 error of the logits %.3g\n",
               t2_wtype_name(formats[k].type), e);
        assert_true(e < formats[k].max_err);
        t2_model_free(m);
    }
    free(row);
    free(blk);
    free(packed);
}

/* A GGUF storing Q8_0, loaded as q8_0, keeps the stored blocks: the same
 * values as the file loaded to float32. */
static void test_gguf_q8_0_kept(void **state)
{
    fixture *f = *state;
    char dir[] = "/tmp/t2_model_q8_XXXXXX", path[1100], p[1024];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/seedling-q8_0.gguf", dir);
    t2_gguf_export_opts q8 = {.type = T2_GGML_Q8_0, .pre = "smollm"};
    t2_err err;
    assert_int_equal(
        t2_gguf_export_model(f->m, shared_path(p, sizeof p, "models/seedling"), path, &q8, &err),
        0);
    t2_model *as_f32, *as_q8;
    assert_int_equal(t2_model_load(&as_f32, path, &err), 0);
    assert_int_equal(t2_model_load_as(&as_q8, path, T2_W_Q8_0, &err), 0);
    float *row = malloc((size_t)as_f32->cfg.intermediate * sizeof *row);
    assert_non_null(row);
    for (int l = 0; l < as_f32->cfg.n_layers; l++)
        for (int k = 0; k < T2_N_FACTOR_KINDS; k++) {
            t2_wmat a = t2_layer_wmat(&as_f32->layers[l], &as_f32->cfg, k);
            t2_wmat b = t2_layer_wmat(&as_q8->layers[l], &as_q8->cfg, k);
            assert_int_equal(b.type, T2_W_Q8_0);
            for (int r = 0; r < a.rows; r++) {
                t2_wmat_row_f32(&b, r, row);
                assert_memory_equal(row, (const float *)a.data + (size_t)r * (size_t)a.cols,
                                    (size_t)a.cols * sizeof(float));
            }
        }
    free(row);
    t2_model_free(as_f32);
    t2_model_free(as_q8);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(dir), 0);
}

/* Which prompt rows share attn16's 16 lanes: at least half of them
 * filled by one call's rows x query heads, never more than 16; heads of
 * a kv head that could not fit (MQA) or heads wider than its buffer never
 * go there. */
static void test_attn_lane_plan(void **state)
{
    (void)state;
    const t2_kernels *k = t2_kernels_variant("scalar");
    static const struct {
        int group, d, min_rows, max_rows;
    } cases[] = {
        {1, 64, 8, 16}, {3, 64, 3, 5},        {4, 64, 2, 4},        {7, 64, 2, 2},
        {8, 128, 1, 2}, {16, 64, 1, 1},       {17, 64, INT_MAX, 1}, {32, 64, INT_MAX, 1},
        {4, 256, 2, 4}, {4, 257, INT_MAX, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int lo, hi;
        t2_attn_lane_plan(k, cases[i].group, cases[i].d, &lo, &hi);
        assert_int_equal(lo, cases[i].min_rows);
        assert_int_equal(hi, cases[i].max_rows);
        if (lo != INT_MAX) {
            assert_true(lo * cases[i].group * 2 >= T2_ATTN_LANES);
            assert_true(hi * cases[i].group <= T2_ATTN_LANES);
        }
    }
    t2_kernels none = *k;
    none.attn16 = NULL;
    int lo, hi;
    t2_attn_lane_plan(&none, 3, 64, &lo, &hi);
    assert_int_equal(lo, INT_MAX);
}

/* A decode row's keys split across tasks and read a chunk at a time
 * (forward_attn.c) give the logits of one pass over all of them: contexts
 * whose splits and chunks are a few keys long (8 splits of 2-key chunks;
 * one split of 2-key chunks) against a default one (one split, one
 * chunk at these lengths), token by token (f32 and f16 caches) and for
 * branches, whose gap covers whole chunks and splits. */
static void test_split_keys(void **state)
{
    fixture *f = *state;
    enum { MAX_STEPS = 30, V = 1024, BR_ROWS = 8 };
    static const struct {
        int split_keys, chunk_keys;
    } cfgs[] = {{3, 2}, {1 << 20, 2}};
    /* quick mode (valgrind, where every 2-key chunk is a few kernel
     * calls): the f16 cache only, a 12-token prompt and 4 steps (5 and 6
     * splits of 3 keys) */
    bool quick = test_quick();
    int prompt = quick ? 12 : 20, steps = quick ? 4 : MAX_STEPS;
    int32_t ids[20 + MAX_STEPS];
    for (int i = 0; i < prompt + steps; i++)
        ids[i] = (int32_t)(5 + (i * 53 + i / 3) % 1000);
    /* branches: a row after 5 other branch rows skips their slots */
    const int32_t br[BR_ROWS] = {10, 11, 12, 13, 14, 20, 30, 31};
    const int lens[] = {5, 1, 2};
    float *want = malloc((size_t)(MAX_STEPS + BR_ROWS) * V * sizeof *want);
    for (int f16 = quick ? 1 : 0; f16 < 2; f16++) {
        f->m->kv_f16 = f16;
        double tol = f16 ? 5e-4 : 1e-5; /* test_long_prompt_chunks */
        t2_ctx *one;
        t2_err err;
        const float *a;
        assert_int_equal(t2_ctx_create(&one, f->m, f->pool, 0, &err), 0);
        assert_true(one->attn_split_keys > prompt + steps && one->attn_chunk_keys >= 256);
        assert_int_equal(t2_forward(one, ids, prompt, false, &a, &err), 0);
        for (int t = 0; t < steps; t++) {
            assert_int_equal(t2_forward(one, &ids[prompt + t], 1, false, &a, &err), 0);
            memcpy(want + (size_t)t * V, a, V * sizeof *want);
        }
        assert_int_equal(t2_forward_branches(one, br, lens, 3, &a, &err), 0);
        memcpy(want + (size_t)steps * V, a, BR_ROWS * V * sizeof *want);
        t2_ctx_free(one);
        for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++) {
            t2_ctx *split;
            const float *b;
            assert_int_equal(t2_ctx_create(&split, f->m, f->pool, 0, &err), 0);
            split->attn_split_keys = cfgs[c].split_keys;
            split->attn_chunk_keys = cfgs[c].chunk_keys;
            assert_int_equal(t2_forward(split, ids, prompt, false, &b, &err), 0);
            double worst = 0.0;
            for (int t = 0; t < steps; t++) {
                assert_int_equal(t2_forward(split, &ids[prompt + t], 1, false, &b, &err), 0);
                double e = rel_l2(want + (size_t)t * V, b, V);
                worst = e > worst ? e : worst;
            }
            print_message("%s cache, %d-key splits of %d-key chunks vs one pass: worst relative "
                          "L2 %.3g\n",
                          f16 ? "f16" : "f32", cfgs[c].split_keys, cfgs[c].chunk_keys, worst);
            assert_true(worst < tol);
            assert_int_equal(t2_forward_branches(split, br, lens, 3, &b, &err), 0);
            for (int r = 0; r < BR_ROWS; r++)
                assert_true(rel_l2(want + (size_t)(steps + r) * V, b + (size_t)r * V, V) < tol);
            t2_ctx_free(split);
        }
    }
    free(want);
    f->m->kv_f16 = false;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_attn_lane_plan),
        cmocka_unit_test(test_reference_logits),
        cmocka_unit_test(test_all_logits_match_last),
        cmocka_unit_test(test_pass_profile),
        cmocka_unit_test(test_branches_match_sequential),
        cmocka_unit_test(test_reuse_prefix),
        cmocka_unit_test(test_greedy_base),
        cmocka_unit_test(test_context_limits),
        cmocka_unit_test(test_context_memory_follows_use),
        cmocka_unit_test(test_kv_f16),
        cmocka_unit_test(test_long_prompt_chunks),
        cmocka_unit_test(test_split_keys),
        cmocka_unit_test(test_generation_text),
        cmocka_unit_test(test_sampled_reproducible),
        cmocka_unit_test(test_weight_formats),
        cmocka_unit_test(test_gguf_q8_0_kept),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
