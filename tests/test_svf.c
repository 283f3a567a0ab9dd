/* SVF factors on the seedling model: decomposition accuracy, the scale c,
 * the math expert against the float32 PyTorch reference (logits and greedy
 * continuations), and the on-disk cache (reuse, corruption, other sets,
 * unwritable directories). */
#include <dirent.h>
#include <pthread.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <sys/stat.h>
#include <unistd.h>

#include "forward.h"
#include "generate.h"
#include "model.h"
#include "safetensors.h"
#include "svf.h"
#include "svf_cache.h"
#include "test_greedy.h"
#include "test_util.h"

typedef struct progress_log {
    size_t calls, last_done, last_total;
    int monotonic;
} progress_log;

typedef struct fixture {
    t2_model *m;
    t2_pool *pool;
    json_t *vectors;
    t2_svf *mlp; /* MLP factors, built once into an empty cache */
    t2_svf_stats mlp_stats;
    progress_log progress;
    char root[256];      /* temp dir for cache tests */
    char cache_dir[512]; /* root/cache/nested: created by the build */
} fixture;

static void on_progress(void *user, size_t done, size_t total, double elapsed)
{
    progress_log *p = user;
    if (done != p->last_done + 1 || elapsed < 0)
        p->monotonic = 0;
    p->calls++;
    p->last_done = done;
    p->last_total = total;
}

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
    const char *tmp = getenv("TMPDIR");
    snprintf(f.root, sizeof f.root, "%s/t2svf-test-XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(f.root))
        return -1;
    snprintf(f.cache_dir, sizeof f.cache_dir, "%s/cache/nested", f.root);
    /* quick mode: the SVD cache shared with the other tests, decomposed by
     * whichever comes first (the tiny model below still decomposes here) */
    if (test_quick())
        snprintf(f.cache_dir, sizeof f.cache_dir, "%s", test_svd_cache_dir());
    /* The SVD is slow under valgrind: one cold build serves every test. */
    f.progress.monotonic = 1;
    if (t2_svf_build(&f.mlp, f.m, T2_SVF_MLP, f.cache_dir, on_progress, &f.progress, &f.mlp_stats,
                     &err) != 0) {
        fprintf(stderr, "svf: %s\n", err.msg);
        return -1;
    }
    printf("# SVD of the 24 MLP matrices (%zu decomposed, %zu from the cache): %.3f s\n",
           f.mlp_stats.decomposed, f.mlp_stats.from_cache, f.mlp_stats.seconds);
    *state = &f;
    return 0;
}

/* Removes every file in dir, then dir itself. */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            remove_dir(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (!f) /* setup failed: nothing to free */
        return 0;
    remove_dir(f->root);
    t2_svf_free(f->mlp);
    t2_model_free(f->m);
    t2_pool_free(f->pool);
    json_decref(f->vectors);
    return 0;
}

/* ---- helpers ---- */

/* max |U diag(S*z*c) Vt - W| */
static double reconstruction_error(const t2_svf_matrix *mat, const float *z)
{
    float *dst = malloc((size_t)mat->m * mat->n * sizeof *dst);
    float *tmp = malloc((size_t)mat->m * mat->r * sizeof *tmp);
    assert_non_null(dst);
    assert_non_null(tmp);
    t2_svf_materialise(mat, z, dst, tmp);
    double e = 0;
    for (size_t i = 0; i < (size_t)mat->m * mat->n; i++)
        e = fmax(e, fabs((double)dst[i] - (double)mat->w[i]));
    free(dst);
    free(tmp);
    return e;
}

static void check_factors(const t2_svf_matrix *mat)
{
    assert_int_equal(mat->r, mat->m < mat->n ? mat->m : mat->n);
    double sum = 0;
    for (int k = 0; k < mat->r; k++) {
        assert_true(mat->s[k] > 0);
        if (k > 0)
            assert_true(mat->s[k] <= mat->s[k - 1]);
        sum += mat->s[k];
    }
    assert_true(fabs(sum - mat->s_sum) <= 1e-9 * sum);
}

/* Checks the factors of every matrix in s and returns the worst
 * reconstruction error; quick mode reconstructs only the first quick_n
 * matrices (one layer's). */
static double max_reconstruction_error(const t2_svf *s, size_t quick_n)
{
    double worst = 0;
    for (size_t i = 0; i < s->n; i++) {
        check_factors(&s->mats[i]);
        if (test_quick() && i >= quick_n)
            continue;
        double e = reconstruction_error(&s->mats[i], NULL);
        assert_true(e <= 1e-4);
        worst = fmax(worst, e);
    }
    return worst;
}

/* ---- sets and hash ---- */

static void test_parse_set(void **state)
{
    (void)state;
    unsigned set = 0;
    t2_err err = {{0}};
    assert_int_equal(t2_svf_parse_set("mlp", &set, &err), 0);
    assert_int_equal(set, T2_SVF_MLP);
    assert_int_equal(t2_svf_parse_set("attn", &set, &err), 0);
    assert_int_equal(set, T2_SVF_ATTN);
    const char *both[] = {"mlp,attn", "attn,mlp", "all"};
    for (int i = 0; i < 3; i++) {
        set = 0;
        assert_int_equal(t2_svf_parse_set(both[i], &set, &err), 0);
        assert_int_equal(set, T2_SVF_MLP | T2_SVF_ATTN);
    }
    const char *bad[] = {"", "MLP", "mlp,", "mlp attn", "ffn", "mlp,attn,mlp"};
    for (int i = 0; i < 6; i++) {
        set = 7;
        assert_int_equal(t2_svf_parse_set(bad[i], &set, &err), -1);
        assert_int_equal(set, 7);
        char quoted[64];
        snprintf(quoted, sizeof quoted, "'%s'", bad[i]);
        assert_non_null(strstr(err.msg, quoted));
    }
    assert_int_equal(t2_svf_parse_set(NULL, &set, &err), -1);
    assert_string_equal(t2_svf_set_name(T2_SVF_MLP), "mlp");
    assert_string_equal(t2_svf_set_name(T2_SVF_ATTN), "attn");
    assert_string_equal(t2_svf_set_name(T2_SVF_MLP | T2_SVF_ATTN), "mlp,attn");
}

static void test_build_bad_set(void **state)
{
    fixture *f = *state;
    t2_svf *s = (t2_svf *)1;
    t2_err err = {{0}};
    assert_int_equal(t2_svf_build(&s, f->m, 0, NULL, NULL, NULL, NULL, &err), -1);
    assert_null(s);
    assert_int_equal(t2_svf_build(&s, f->m, 4, NULL, NULL, NULL, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "set"));
}

static void test_hash(void **state)
{
    (void)state;
    /* published XXH64 values (seed 0) */
    assert_true(t2_hash64("", 0, 0) == 0xEF46DB3751D8E999ull);
    assert_true(t2_hash64("abc", 3, 0) == 0x44BC2CF5AD770999ull);
    /* streaming in any split equals one shot */
    uint8_t buf[300];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 131 + 7);
    uint64_t whole = t2_hash64(buf, sizeof buf, 42);
    for (size_t a = 0; a < sizeof buf; a += 7) {
        for (size_t b = a; b < sizeof buf; b += 29) {
            t2_hash64_state h;
            t2_hash64_init(&h, 42);
            t2_hash64_update(&h, buf, a);
            t2_hash64_update(&h, buf + a, b - a);
            t2_hash64_update(&h, buf + b, sizeof buf - b);
            assert_true(t2_hash64_final(&h) == whole);
        }
    }
    assert_true(t2_hash64(buf, sizeof buf, 43) != whole);
}

/* ---- the MLP factors ---- */

static void test_mlp_factors(void **state)
{
    fixture *f = *state;
    const t2_svf *s = f->mlp;
    assert_int_equal(s->n, 24);
    assert_int_equal(s->set, T2_SVF_MLP);
    const char *kinds[] = {"gate_proj", "up_proj", "down_proj"};
    for (size_t i = 0; i < s->n; i++) {
        const t2_svf_matrix *mat = &s->mats[i];
        char name[128];
        snprintf(name, sizeof name, "model.layers.%zu.mlp.%s.weight", i / 3, kinds[i % 3]);
        assert_string_equal(mat->name, name);
        assert_int_equal(mat->layer, (int)(i / 3));
        assert_int_equal(mat->kind, T2_SVF_GATE + (int)(i % 3));
        assert_int_equal(mat->m, i % 3 == 2 ? 256 : 768);
        assert_int_equal(mat->n, i % 3 == 2 ? 768 : 256);
        assert_int_equal(mat->r, 256);
        const t2_layer *L = &f->m->layers[i / 3];
        assert_ptr_equal(mat->w, i % 3 == 0 ? L->w_gate : i % 3 == 1 ? L->w_up : L->w_down);
        assert_int_equal(t2_svf_find(s, name), (int)i);
    }
    assert_int_equal(t2_svf_find(s, "model.layers.0.self_attn.q_proj.weight"), -1);
    assert_int_equal(t2_svf_find(s, "nope"), -1);
    printf("# MLP reconstruction: max abs error %.3g\n", max_reconstruction_error(s, 3));
    /* quick mode: no decomposition, no progress when the shared cache had them */
    if (test_quick() && f->mlp_stats.from_cache == 24) {
        assert_int_equal(f->progress.calls, 0);
        return;
    }
    /* the progress callback saw every matrix, in order */
    assert_int_equal(f->progress.calls, 24);
    assert_int_equal(f->progress.last_done, 24);
    assert_int_equal(f->progress.last_total, 24);
    assert_true(f->progress.monotonic);
}

/* UᵀU = I and Vt Vtᵀ = I */
static void test_orthonormal(void **state)
{
    fixture *f = *state;
    const t2_svf_matrix *mat = &f->mlp->mats[0];
    int m = mat->m, n = mat->n, r = mat->r;
    int r_check = test_quick() ? 32 : r; /* quick mode: the first 32 columns of U and V */
    double worst_u = 0, worst_v = 0;
    for (int a = 0; a < r_check; a++) {
        for (int b = a; b < r_check; b++) {
            double du = 0, dv = 0;
            for (int i = 0; i < m; i++)
                du += (double)mat->u[(size_t)i * r + a] * mat->u[(size_t)i * r + b];
            for (int j = 0; j < n; j++)
                dv += (double)mat->vt[(size_t)a * n + j] * mat->vt[(size_t)b * n + j];
            worst_u = fmax(worst_u, fabs(du - (a == b)));
            worst_v = fmax(worst_v, fabs(dv - (a == b)));
        }
    }
    printf("# orthonormality: U %.3g, V %.3g\n", worst_u, worst_v);
    assert_true(worst_u < 1e-4);
    assert_true(worst_v < 1e-4);
}

static void test_scale(void **state)
{
    fixture *f = *state;
    const t2_svf_matrix *mat = &f->mlp->mats[4];
    size_t mn = (size_t)mat->m * mat->n;
    float *z = malloc((size_t)mat->r * sizeof *z);
    float *s_out = malloc((size_t)mat->r * sizeof *s_out);
    float *a = malloc(mn * sizeof *a), *b = malloc(mn * sizeof *b);
    float *tmp = malloc((size_t)mat->m * mat->r * sizeof *tmp);
    for (int k = 0; k < mat->r; k++)
        z[k] = 1.0f;
    /* z = 1: c = 1 exactly and the same matrix as z = NULL */
    assert_true(t2_svf_scale(mat, z) == 1.0);
    assert_true(t2_svf_scale(mat, NULL) == 1.0);
    t2_svf_materialise(mat, NULL, a, tmp);
    t2_svf_materialise(mat, z, b, tmp);
    assert_memory_equal(a, b, mn * sizeof *a);
    t2_svf_scaled_s(mat, z, s_out);
    assert_memory_equal(s_out, mat->s, (size_t)mat->r * sizeof *s_out);

    /* z[0] = 2: another matrix, same singular-value mass */
    z[0] = 2.0f;
    double c = t2_svf_scale(mat, z);
    assert_true(c < 1.0);
    assert_true(fabs(c - mat->s_sum / (mat->s_sum + mat->s[0])) < 1e-12);
    t2_svf_scaled_s(mat, z, s_out);
    double sum = 0;
    for (int k = 0; k < mat->r; k++)
        sum += s_out[k];
    assert_true(fabs(sum - mat->s_sum) <= 1e-5 * mat->s_sum);
    assert_true(fabs(s_out[0] - 2.0 * c * mat->s[0]) <= 1e-6 * mat->s[0]);
    t2_svf_materialise(mat, z, b, tmp);
    double diff = 0;
    for (size_t i = 0; i < mn; i++)
        diff = fmax(diff, fabs((double)a[i] - (double)b[i]));
    assert_true(diff > 1e-3);

    /* z = 0 has nothing to normalise: c = 1, not a division by zero */
    memset(z, 0, (size_t)mat->r * sizeof *z);
    assert_true(t2_svf_scale(mat, z) == 1.0);
    free(z);
    free(s_out);
    free(a);
    free(b);
    free(tmp);
}

/* ---- the math expert against the reference ---- */

static float **field_of(t2_layer *L, int kind)
{
    switch (kind) {
    case T2_SVF_GATE: return &L->w_gate;
    case T2_SVF_UP: return &L->w_up;
    default: return &L->w_down;
    }
}

/* A copy of the model's layers with every MLP matrix replaced by the
 * expert's W'; *bufs owns the new matrices (one block). */
static t2_layer *adapted_layers(const fixture *f, const char *expert, float **bufs)
{
    char p[1024], rel[256];
    snprintf(rel, sizeof rel, "models/seedling/experts/%s.safetensors", expert);
    t2_safetensors st;
    t2_err err = {{0}};
    assert_int_equal(t2_st_open(&st, shared_path(p, sizeof p, rel), &err), 0);
    const t2_svf *s = f->mlp;
    int nl = f->m->cfg.n_layers;
    t2_layer *layers = malloc((size_t)nl * sizeof *layers);
    memcpy(layers, f->m->layers, (size_t)nl * sizeof *layers);
    size_t total = 0, tmp_max = 0;
    for (size_t i = 0; i < s->n; i++) {
        total += (size_t)s->mats[i].m * s->mats[i].n;
        tmp_max = fmax(tmp_max, (size_t)s->mats[i].m * s->mats[i].r);
    }
    float *block = malloc(total * sizeof *block), *tmp = malloc(tmp_max * sizeof *tmp);
    float *z = malloc(256 * sizeof *z);
    float *dst = block;
    for (size_t i = 0; i < s->n; i++) {
        const t2_svf_matrix *mat = &s->mats[i];
        const t2_st_tensor *t = t2_st_find(&st, mat->name);
        assert_non_null(t);
        assert_int_equal(t->dtype, T2_ST_F32);
        assert_int_equal(t->n_elements, (uint64_t)mat->r);
        t2_st_to_f32(t, z);
        t2_svf_materialise(mat, z, dst, tmp);
        *field_of(&layers[mat->layer], mat->kind) = dst;
        dst += (size_t)mat->m * mat->n;
    }
    free(z);
    free(tmp);
    t2_st_close(&st);
    *bufs = block;
    return layers;
}

static void test_math_expert_reference(void **state)
{
    fixture *f = *state;
    /* quick mode (valgrind): materialising all 56 matrices is 1.5 G
     * multiply-adds, over 100 s there; the same values are checked by the
     * release and ASan runs, and materialisation runs under valgrind in
     * test_scheduler (test_forward_batch_matches_single) */
    if (test_quick())
        skip();
    float *bufs;
    t2_layer *layers = adapted_layers(f, "math", &bufs);
    json_t *vecs = json_object_get(f->vectors, "vectors");
    assert_true(json_array_size(vecs) >= 4);
    for (size_t i = 0; i < json_array_size(vecs); i++) {
        ref_prompt r;
        assert_true(ref_prompt_load(&r, vecs, i, "logits_math"));
        size_t n_ref;
        int32_t *greedy = json_ids(json_object_get(json_object_get(r.v, "greedy"), "math"), &n_ref);
        t2_ctx *ctx;
        t2_err err = {{0}};
        assert_int_equal(t2_ctx_create(&ctx, f->m, f->pool, 0, &err), 0);
        t2_ctx_set_layers(ctx, layers);
        const float *logits;
        assert_int_equal(t2_forward(ctx, r.ids, (int)r.n, false, &logits, &err), 0);
        double e = rel_l2(logits, r.logits, 1024);
        printf("# math expert, %s prompt: relative L2 error of the logits %.3g\n",
               json_string_value(json_object_get(r.v, "family")), e);
        assert_true(e < 1e-4);

        assert_true(greedy_gives(ctx, f->m, r.ids, r.n, greedy, n_ref));
        t2_ctx_free(ctx);
        ref_prompt_free(&r);
        free(greedy);
    }
    free(layers);
    free(bufs);
}

/* ---- the cache ---- */

static t2_svf *build(const t2_model *m, unsigned set, const char *dir, t2_svf_stats *st)
{
    t2_svf *s = NULL;
    t2_err err = {{0}};
    int rc = t2_svf_build(&s, m, set, dir, NULL, NULL, st, &err);
    if (rc != 0)
        fprintf(stderr, "build: %s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_non_null(s);
    return s;
}

static void assert_same_factors(const t2_svf *a, const t2_svf *b)
{
    assert_int_equal(a->n, b->n);
    assert_true(a->key == b->key);
    for (size_t i = 0; i < a->n; i++) {
        const t2_svf_matrix *x = &a->mats[i], *y = &b->mats[i];
        assert_string_equal(x->name, y->name);
        assert_memory_equal(x->u, y->u, (size_t)x->m * x->r * sizeof(float));
        assert_memory_equal(x->s, y->s, (size_t)x->r * sizeof(float));
        assert_memory_equal(x->vt, y->vt, (size_t)x->r * x->n * sizeof(float));
        assert_true(x->s_sum == y->s_sum);
    }
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static void flip_byte(const char *path, long at)
{
    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, at, SEEK_SET), 0);
    int c = fgetc(fp);
    assert_true(c != EOF);
    assert_int_equal(fseek(fp, at, SEEK_SET), 0);
    assert_int_equal(fputc(c ^ 0x5a, fp), c ^ 0x5a);
    assert_int_equal(fclose(fp), 0);
}

/* Files in dir whose name starts with prefix. */
static int count_files(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

/* After damage to the file: a build decomposes everything and rewrites
 * it, and the build after that loads it again. */
static void expect_rebuilt(const t2_model *m, const char *dir, const t2_svf *ref)
{
    t2_svf_stats st;
    t2_svf *s = build(m, ref->set, dir, &st);
    assert_true(st.cache_rebuilt);
    assert_int_equal(st.decomposed, ref->n);
    assert_int_equal(st.from_cache, 0);
    t2_svf_free(s);
    s = build(m, ref->set, dir, &st);
    assert_false(st.cache_rebuilt);
    assert_int_equal(st.decomposed, 0);
    assert_int_equal(st.from_cache, ref->n);
    assert_same_factors(s, ref);
    t2_svf_free(s);
    assert_int_equal(count_files(dir, ".t2svf-tmp"), 0);
}

/* The seedling MLP factors: written by the fixture's cold build, loaded
 * bit-identical, rebuilt after a flipped byte. */
static void test_cache_seedling(void **state)
{
    fixture *f = *state;
    if (test_quick() && f->mlp_stats.from_cache == 24) {
        /* quick mode: another test decomposed the shared cache's factors */
        assert_int_equal(f->mlp_stats.decomposed, 0);
    } else {
        assert_int_equal(f->mlp_stats.decomposed, 24);
        assert_int_equal(f->mlp_stats.from_cache, 0);
    }
    assert_false(f->mlp_stats.cache_rebuilt);
    char *path = t2_svf_cache_path(f->cache_dir, f->m->name, T2_SVF_MLP, f->mlp->key);
    assert_non_null(path);
    char expect_name[128];
    snprintf(expect_name, sizeof expect_name, "/%s-mlp-%016llx.t2svf", f->m->name,
             (unsigned long long)f->mlp->key);
    assert_non_null(strstr(path, expect_name));
    long size = file_size(path);
    assert_true(size > 24L * 2 * 256 * 256 * 4);
    assert_int_equal(count_files(f->cache_dir, ".t2svf-tmp"), 0);

    t2_svf_stats st;
    t2_svf *again = build(f->m, T2_SVF_MLP, f->cache_dir, &st);
    assert_int_equal(st.decomposed, 0);
    assert_int_equal(st.from_cache, 24);
    assert_false(st.cache_rebuilt);
    printf("# cache load of the 24 MLP matrices: %.3f s\n", st.seconds);
    assert_same_factors(again, f->mlp);
    t2_svf_free(again);

    /* quick mode: no rebuild of the 24 seedling matrices, and the shared
     * file stays intact (test_cache_damage runs the same rebuilds on the tiny
     * model) */
    if (test_quick()) {
        free(path);
        return;
    }
    flip_byte(path, size / 2);
    expect_rebuilt(f->m, f->cache_dir, f->mlp);
    assert_int_equal(file_size(path), size);
    free(path);
}

/* A tiny model with made-up weights: the cache's failure cases cost a
 * decomposition each, which this keeps cheap (valgrind). */
typedef struct tiny {
    t2_model m;
    t2_layer layers[2];
    float *block;
} tiny;

static void tiny_init(tiny *t)
{
    memset(t, 0, sizeof *t);
    t2_config *c = &t->m.cfg;
    c->hidden = 16, c->intermediate = 24, c->n_layers = 2;
    c->n_heads = 2, c->n_kv_heads = 1, c->head_dim = 8;
    t->m.name = "tiny";
    t->m.layers = t->layers;
    size_t per_layer = 16 * 16 + 8 * 16 * 2 + 16 * 16 + 3 * 24 * 16, total = 2 * per_layer;
    t->block = malloc(total * sizeof(float));
    assert_non_null(t->block);
    uint32_t x = 12345;
    for (size_t i = 0; i < total; i++) {
        x = x * 1664525u + 1013904223u;
        t->block[i] = (float)((double)(x >> 8) / (1 << 24) - 0.5);
    }
    float *p = t->block;
    for (int l = 0; l < 2; l++) {
        t2_layer *L = &t->layers[l];
        L->wq = p, p += 16 * 16;
        L->wk = p, p += 8 * 16;
        L->wv = p, p += 8 * 16;
        L->wo = p, p += 16 * 16;
        L->w_gate = p, p += 24 * 16;
        L->w_up = p, p += 24 * 16;
        L->w_down = p, p += 24 * 16;
    }
}

/* Damaged, truncated, extended, foreign and stale files are never used. */
static void test_cache_damage(void **state)
{
    fixture *f = *state;
    tiny t;
    tiny_init(&t);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tiny", f->root);
    t2_svf_stats st;
    t2_svf *ref = build(&t.m, T2_SVF_MLP, dir, &st);
    assert_int_equal(ref->n, 6);
    assert_int_equal(st.decomposed, 6);
    assert_false(st.cache_rebuilt);
    assert_true(max_reconstruction_error(ref, ref->n) < 1e-5);
    char *path = t2_svf_cache_path(dir, "tiny", T2_SVF_MLP, ref->key);
    long size = file_size(path);
    assert_true(size > 0);

    const long flips[] = {0, 9, 12, 16, 24, 32, 36, size / 2, size - 9, size - 1};
    for (size_t i = 0; i < sizeof flips / sizeof flips[0]; i++) {
        flip_byte(path, flips[i]);
        expect_rebuilt(&t.m, dir, ref);
    }
    const long cuts[] = {0, 10, size / 2, size - 8, size - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        assert_int_equal(truncate(path, cuts[i]), 0);
        expect_rebuilt(&t.m, dir, ref);
    }
    assert_int_equal(truncate(path, size + 1), 0); /* a byte too many */
    expect_rebuilt(&t.m, dir, ref);

    /* the ATTN set gets its own file; moved to the MLP file's name, it is
     * not taken for the MLP set */
    t2_svf *attn = build(&t.m, T2_SVF_ATTN, dir, &st);
    assert_int_equal(st.decomposed, 8);
    assert_true(attn->key != ref->key);
    char *attn_path = t2_svf_cache_path(dir, "tiny", T2_SVF_ATTN, attn->key);
    assert_non_null(strstr(attn_path, "/tiny-attn-"));
    assert_true(file_size(attn_path) > 0);
    assert_int_equal(rename(attn_path, path), 0);
    expect_rebuilt(&t.m, dir, ref);
    /* both sets: a third name */
    t2_svf *both = build(&t.m, T2_SVF_MLP | T2_SVF_ATTN, dir, &st);
    assert_int_equal(st.decomposed, 14);
    char *both_path = t2_svf_cache_path(dir, "tiny", T2_SVF_MLP | T2_SVF_ATTN, both->key);
    assert_non_null(strstr(both_path, "/tiny-mlp+attn-"));
    assert_true(file_size(both_path) > 0);

    /* changed weights: another key, so the old file is not even looked at */
    t.layers[1].w_down[5] += 0.25f;
    t2_svf *changed = build(&t.m, T2_SVF_MLP, dir, &st);
    assert_true(changed->key != ref->key);
    assert_int_equal(st.decomposed, 6);
    assert_false(st.cache_rebuilt);
    t.layers[1].w_down[5] -= 0.25f;
    t2_svf *back = build(&t.m, T2_SVF_MLP, dir, &st);
    assert_int_equal(st.from_cache, 6);
    assert_same_factors(back, ref);

    free(both_path);
    free(attn_path);
    free(path);
    t2_svf_free(back);
    t2_svf_free(changed);
    t2_svf_free(both);
    t2_svf_free(attn);
    t2_svf_free(ref);
    free(t.block);
}

typedef struct waiter {
    tiny *t;
    const char *dir;
    t2_svf *s;
    t2_svf_stats st;
    volatile int done;
} waiter;

static void *build_in_thread(void *arg)
{
    waiter *w = arg;
    w->s = build(&w->t->m, T2_SVF_MLP, w->dir, &w->st);
    w->done = 1;
    return NULL;
}

/* Whether some thread is queued for a flock on path within timeout seconds:
 * /proc/locks lists waiters as "N: -> FLOCK ... MAJ:MIN:INODE ...". */
static bool waiting_on_flock(const char *path, double timeout)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return false;
    char ino[32];
    snprintf(ino, sizeof ino, ":%lu ", (unsigned long)st.st_ino);
    for (double waited = 0; waited < timeout; waited += 0.01) {
        FILE *f = fopen("/proc/locks", "r");
        char line[256];
        bool found = false;
        while (f && !found && fgets(line, sizeof line, f))
            found = strstr(line, "->") && strstr(line, "FLOCK") && strstr(line, ino);
        if (f)
            fclose(f);
        if (found)
            return true;
        usleep(10 * 1000);
    }
    return false;
}

/* Replicas sharing a cache: while one holds the set's lock (decomposing),
 * another waits, then loads the file the first wrote instead of
 * decomposing again. */
static void test_cache_lock_shared(void **state)
{
    fixture *f = *state;
    tiny t;
    tiny_init(&t);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/shared", f->root);
    t2_svf *ref = build(&t.m, T2_SVF_MLP, NULL, NULL);
    char *path = t2_svf_cache_path(dir, "tiny", T2_SVF_MLP, ref->key);
    assert_non_null(path);
    int lock = t2_svf_cache_lock(dir, path); /* "the first replica" */
    assert_true(lock >= 0);
    waiter w = {.t = &t, .dir = dir};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, build_in_thread, &w), 0);
    /* wait until the builder is queued on the lock (slow under valgrind),
     * then keep it waiting a while longer */
    char lock_path[1100];
    snprintf(lock_path, sizeof lock_path, "%s.lock", path);
    assert_true(waiting_on_flock(lock_path, 120.0));
    usleep(300 * 1000);
    assert_int_equal(w.done, 0); /* blocked on the lock, not decomposing */
    t2_err err = {{0}};
    assert_int_equal(t2_svf_cache_save(ref, dir, path, &err), 0);
    t2_svf_cache_unlock(lock);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(w.st.decomposed, 0);
    assert_int_equal(w.st.from_cache, 6);
    assert_true(w.st.lock_wait_seconds >= 0.25);
    assert_same_factors(w.s, ref);
    /* lock free and file valid: no waiting */
    t2_svf_stats st;
    t2_svf *again = build(&t.m, T2_SVF_MLP, dir, &st);
    assert_int_equal(st.from_cache, 6);
    assert_true(st.lock_wait_seconds < 0.25);
    t2_svf_free(again);
    t2_svf_free(w.s);
    t2_svf_free(ref);
    free(path);
    free(t.block);
}

/* A cache dir that cannot be created still gives factors. */
static void test_unwritable_cache(void **state)
{
    fixture *f = *state;
    tiny t;
    tiny_init(&t);
    char file[512], dir[600];
    snprintf(file, sizeof file, "%s/plain-file", f->root);
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    assert_int_equal(fclose(fp), 0);
    snprintf(dir, sizeof dir, "%s/cache", file);
    t2_svf *ref = build(&t.m, T2_SVF_MLP, NULL, NULL);
    for (int round = 0; round < 2; round++) {
        t2_svf_stats st;
        t2_svf *s = build(&t.m, T2_SVF_MLP, dir, &st);
        assert_int_equal(st.decomposed, 6);
        assert_int_equal(st.from_cache, 0);
        assert_false(st.cache_rebuilt);
        assert_same_factors(s, ref);
        t2_svf_free(s);
    }
    t2_svf_free(ref);
    free(t.block);
}

/* Weights that cannot be decomposed fail the build, naming the matrix. */
static void test_nan_weights(void **state)
{
    (void)state;
    tiny t;
    tiny_init(&t);
    t.layers[1].w_up[7] = NAN;
    t2_svf *s = (t2_svf *)1;
    t2_err err = {{0}};
    assert_int_equal(t2_svf_build(&s, &t.m, T2_SVF_MLP, NULL, NULL, NULL, NULL, &err), -1);
    assert_null(s);
    assert_non_null(strstr(err.msg, "model.layers.1.mlp.up_proj.weight"));
    free(t.block);
}

static void test_attn_factors(void **state)
{
    fixture *f = *state;
    /* quick mode: no SVD of the 32 seedling attention matrices (the tiny
     * model's ATTN sets in test_cache_damage take the same path) */
    if (test_quick())
        return;
    t2_svf_stats st;
    t2_svf *s = build(f->m, T2_SVF_ATTN, NULL, &st);
    assert_int_equal(s->n, 32);
    assert_int_equal(st.decomposed, 32);
    const char *kinds[] = {"q_proj", "k_proj", "v_proj", "o_proj"};
    const int rows[] = {256, 64, 64, 256};
    for (size_t i = 0; i < s->n; i++) {
        const t2_svf_matrix *mat = &s->mats[i];
        char name[128];
        snprintf(name, sizeof name, "model.layers.%zu.self_attn.%s.weight", i / 4, kinds[i % 4]);
        assert_string_equal(mat->name, name);
        assert_int_equal(mat->kind, T2_SVF_Q + (int)(i % 4));
        assert_int_equal(mat->m, rows[i % 4]);
        assert_int_equal(mat->n, 256);
        assert_int_equal(mat->r, rows[i % 4]);
    }
    printf("# ATTN reconstruction: max abs error %.3g\n", max_reconstruction_error(s, 4));
    t2_svf_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_set),
        cmocka_unit_test(test_build_bad_set),
        cmocka_unit_test(test_hash),
        cmocka_unit_test(test_mlp_factors),
        cmocka_unit_test(test_orthonormal),
        cmocka_unit_test(test_scale),
        cmocka_unit_test(test_math_expert_reference),
        cmocka_unit_test(test_cache_seedling),
        cmocka_unit_test(test_cache_damage),
        cmocka_unit_test(test_unwritable_cache),
        cmocka_unit_test(test_cache_lock_shared),
        cmocka_unit_test(test_nan_weights),
        cmocka_unit_test(test_attn_factors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
