/* The seedling model converted to GGUF (F32 and Q8_0) and loaded back:
 * weights, configuration, logits and greedy output against the
 * safetensors model; the embedded tokenizer against vectors.json; and
 * the loader's rejection of malformed model files. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <unistd.h>

#include "forward.h"
#include "gguf.h"
#include "gguf_export.h"
#include "gguf_names.h"
#include "gguf_write.h"
#include "model.h"
#include "test_util.h"

/* Q8_0 keeps 8 bits per weight with a per-32 scale; on seedling the
 * last-position logits differ from float32 by 3.4e-3 .. 6.3e-3 relative
 * L2 over the four reference prompts (measured); the bound leaves ~2x. */
#define Q8_0_LOGITS_TOL 1.5e-2

typedef struct fixture {
    char dir[64];
    char f32_path[128], q8_path[128];
    t2_model *ref, *f32, *q8;
    t2_pool *pool;
    json_t *vectors;
} fixture;

static int setup(void **state)
{
    static fixture f;
    char p[1024];
    t2_err err = {{0}};
    const char *src = shared_path(p, sizeof p, "models/seedling");
    snprintf(f.dir, sizeof f.dir, "/tmp/t2_gguf_model_XXXXXX");
    if (!mkdtemp(f.dir))
        return -1;
    snprintf(f.f32_path, sizeof f.f32_path, "%s/seedling-f32.gguf", f.dir);
    snprintf(f.q8_path, sizeof f.q8_path, "%s/seedling-q8_0.gguf", f.dir);
    t2_gguf_export_opts f32 = {.type = T2_GGML_F32, .pre = "smollm"};
    t2_gguf_export_opts q8 = {.type = T2_GGML_Q8_0, .pre = "smollm"};
    /* the path the tool takes (load + export), then export of a loaded model */
    if (t2_gguf_export(src, f.f32_path, &f32, &err) != 0 || t2_model_load(&f.ref, src, &err) != 0 ||
        t2_gguf_export_model(f.ref, src, f.q8_path, &q8, &err) != 0 ||
        t2_model_load(&f.f32, f.f32_path, &err) != 0 ||
        t2_model_load(&f.q8, f.q8_path, &err) != 0 || t2_pool_create(&f.pool, 2, &err) != 0) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return -1;
    }
    f.vectors = load_vectors();
    *state = &f;
    return f.vectors ? 0 : -1;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (!f) /* setup failed: nothing to free */
        return 0;
    t2_model_free(f->ref);
    t2_model_free(f->f32);
    t2_model_free(f->q8);
    t2_pool_free(f->pool);
    json_decref(f->vectors);
    unlink(f->f32_path);
    unlink(f->q8_path);
    rmdir(f->dir);
    return 0;
}

static void test_config(void **state)
{
    fixture *f = *state;
    const t2_model *ms[2] = {f->f32, f->q8};
    const t2_config *r = &f->ref->cfg;
    for (int i = 0; i < 2; i++) {
        const t2_config *c = &ms[i]->cfg;
        assert_int_equal(c->arch, T2_ARCH_LLAMA);
        assert_int_equal(c->hidden, 256);
        assert_int_equal(c->intermediate, 768);
        assert_int_equal(c->n_layers, 8);
        assert_int_equal(c->n_heads, 8);
        assert_int_equal(c->n_kv_heads, 2);
        assert_int_equal(c->head_dim, 32);
        assert_int_equal(c->vocab, 1024);
        assert_int_equal(c->max_pos, r->max_pos);
        assert_true(c->rms_eps == r->rms_eps);
        assert_true(c->rope_theta == r->rope_theta);
        assert_true(c->rope_factor == 0);
        assert_int_equal(c->rope_freq_dtype, r->rope_freq_dtype);
        assert_int_equal(c->rope_freq_dtype, T2_ROPE_FREQ_BF16); /* seedling is bf16 */
        assert_true(c->tie_embeddings);
        assert_ptr_equal(ms[i]->lm_head, ms[i]->embed);
        assert_false(c->qkv_bias);
        assert_int_equal(c->bos_id, 1);
        assert_int_equal(c->n_eos, r->n_eos);
        assert_int_equal(c->eos_ids[0], 2);
        assert_non_null(ms[i]->tok);
        /* both loaders zero the struct first: any config field the GGUF
         * path does not carry over shows up here */
        assert_memory_equal(c, r, sizeof *c);
    }
}

/* The F32 file round-trips every weight bit for bit (Q/K permuted and back). */
static void test_f32_weights_exact(void **state)
{
    fixture *f = *state;
    assert_int_equal(f->f32->n_slots, f->ref->n_slots);
    for (size_t i = 0; i < f->ref->n_slots; i++) {
        assert_string_equal(f->f32->slot_names[i], f->ref->slot_names[i]);
        size_t n = f->ref->slot_rows[i] * f->ref->slot_cols[i];
        assert_memory_equal(f->f32->slots[i], f->ref->slots[i], n * sizeof(float));
    }
}

/* The file itself: llama.cpp names, types, metadata and row order. */
static void test_file_layout(void **state)
{
    fixture *f = *state;
    t2_gguf g;
    t2_err err;
    assert_int_equal(t2_gguf_open(&g, f->q8_path, &err), 0);
    char *s = t2_gguf_get_str(&g, "general.architecture");
    assert_string_equal(s, "llama");
    free(s);
    s = t2_gguf_get_str(&g, "tokenizer.ggml.pre");
    assert_string_equal(s, "smollm");
    free(s);
    s = t2_gguf_get_str(&g, "tokenizer.ggml.model");
    assert_string_equal(s, "gpt2");
    free(s);
    s = t2_gguf_get_str(&g, "tokenizer.chat_template");
    assert_non_null(strstr(s, "<|im_start|>"));
    free(s);
    uint32_t u;
    assert_true(t2_gguf_get_u32(&g, "llama.attention.head_count_kv", &u));
    assert_int_equal(u, 2);
    assert_true(t2_gguf_get_u32(&g, "llama.attention.key_length", &u));
    assert_int_equal(u, 32);
    assert_true(t2_gguf_get_u32(&g, "general.file_type", &u));
    assert_int_equal(u, 7);
    const t2_gguf_kv *tok = t2_gguf_find(&g, "tokenizer.ggml.tokens");
    assert_int_equal(tok->arr_count, 1024);
    assert_true(tok->arr_strs[1].len == 12 &&
                memcmp(tok->arr_strs[1].ptr, "<|im_start|>", 12) == 0);
    const t2_gguf_kv *tt = t2_gguf_find(&g, "tokenizer.ggml.token_type");
    assert_int_equal(t2_gguf_arr_int(tt, 0), 3); /* special added tokens are control */
    assert_int_equal(t2_gguf_arr_int(tt, 2), 3);
    assert_int_equal(t2_gguf_arr_int(tt, 100), 1);
    assert_int_equal(t2_gguf_find(&g, "tokenizer.ggml.merges")->arr_count, 765);
    assert_non_null(t2_gguf_find_tensor(&g, "token_embd.weight"));
    assert_null(t2_gguf_find_tensor(&g, "output.weight")); /* tied */
    assert_int_equal(t2_gguf_find_tensor(&g, "blk.7.ffn_down.weight")->type, T2_GGML_Q8_0);
    assert_int_equal(t2_gguf_find_tensor(&g, "blk.0.attn_norm.weight")->type, T2_GGML_F32);
    assert_int_equal(t2_gguf_find_tensor(&g, "output_norm.weight")->type, T2_GGML_F32);
    const t2_gguf_tensor *q = t2_gguf_find_tensor(&g, "blk.0.attn_q.weight");
    assert_int_equal(q->dims[0], 256);
    assert_int_equal(q->dims[1], 256);
    t2_gguf_close(&g);

    /* llama.cpp's permutation: GGUF row 2i+s of a head is HF row s*16+i */
    assert_int_equal(t2_gguf_open(&g, f->f32_path, &err), 0);
    const t2_gguf_tensor *k = t2_gguf_find_tensor(&g, "blk.3.attn_k.weight");
    const float *hf_k = f->ref->layers[3].wk;
    int hd = 32, half = 16, cols = 256;
    for (int h = 0; h < 2; h++)
        for (int i = 0; i < half; i++)
            for (int s2 = 0; s2 < 2; s2++)
                assert_memory_equal(k->data + ((size_t)(h * hd + 2 * i + s2) * cols) * 4,
                                    hf_k + (size_t)(h * hd + s2 * half + i) * cols, cols * 4);
    t2_gguf_close(&g);
}

static int32_t argmax(const float *v, int n)
{
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best])
            best = i;
    return best;
}

/* Last-position logits for ids, copied out. */
static float *logits_for(fixture *f, const t2_model *m, const int32_t *ids, size_t n)
{
    t2_ctx *c;
    t2_err err;
    const float *lg;
    assert_int_equal(t2_ctx_create(&c, m, f->pool, 0, &err), 0);
    if (t2_forward(c, ids, (int)n, false, &lg, &err) != 0)
        fail_msg("forward: %s", err.msg);
    float *out = malloc((size_t)m->cfg.vocab * sizeof *out);
    memcpy(out, lg, (size_t)m->cfg.vocab * sizeof *out);
    t2_ctx_free(c);
    return out;
}

static void test_logits(void **state)
{
    fixture *f = *state;
    json_t *vecs = json_object_get(f->vectors, "vectors");
    double worst_q8 = 0;
    /* quick mode: the first reference prompt only */
    size_t n_vecs = test_quick() ? 1 : json_array_size(vecs);
    for (size_t vi = 0; vi < n_vecs; vi++) {
        json_t *v = json_array_get(vecs, vi);
        size_t n;
        int32_t *ids = json_ids(json_object_get(v, "ids"), &n);
        float *ref = logits_for(f, f->ref, ids, n);
        float *lf = logits_for(f, f->f32, ids, n);
        float *lq = logits_for(f, f->q8, ids, n);
        double e32 = rel_l2(lf, ref, 1024), eq = rel_l2(lq, ref, 1024);
        printf("# %s: F32 GGUF rel L2 %.3g, Q8_0 GGUF rel L2 %.3g\n",
               json_string_value(json_object_get(v, "family")), e32, eq);
        assert_true(e32 <= 1e-6);
        assert_true(eq <= Q8_0_LOGITS_TOL);
        assert_int_equal(argmax(lq, 1024), argmax(ref, 1024));
        if (eq > worst_q8)
            worst_q8 = eq;
        free(ids);
        free(ref);
        free(lf);
        free(lq);
    }
    printf("# worst Q8_0 rel L2 %.3g (tolerance %.3g)\n", worst_q8, Q8_0_LOGITS_TOL);
}

/* Greedy decoding of up to max tokens, stopping after an EOS. */
static int greedy(fixture *f, const t2_model *m, const int32_t *ids, size_t n, int max,
                  int32_t *out)
{
    t2_ctx *c;
    t2_err err;
    const float *lg;
    assert_int_equal(t2_ctx_create(&c, m, f->pool, 0, &err), 0);
    assert_int_equal(t2_forward(c, ids, (int)n, false, &lg, &err), 0);
    int k = 0;
    while (k < max) {
        int32_t t = argmax(lg, m->cfg.vocab);
        out[k++] = t;
        if (t2_model_is_eos(m, t) || t2_forward(c, &t, 1, false, &lg, &err) != 0)
            break;
    }
    t2_ctx_free(c);
    return k;
}

static void test_q8_0_greedy(void **state)
{
    fixture *f = *state;
    json_t *v = json_array_get(json_object_get(f->vectors, "vectors"), 0);
    assert_string_equal(json_string_value(json_object_get(v, "family")), "math");
    size_t n, n_exp;
    int32_t *ids = json_ids(json_object_get(v, "ids"), &n);
    int32_t *exp = json_ids(json_object_get(json_object_get(v, "greedy"), "base"), &n_exp);
    int32_t out[16];
    int k = greedy(f, f->q8, ids, n, 16, out);
    assert_int_equal(k, (int)n_exp);
    assert_memory_equal(out, exp, n_exp * sizeof *out);
    free(ids);
    free(exp);
}

/* The tokenizer embedded in the GGUF encodes the prompts as HF did. */
static void test_tokenizer(void **state)
{
    fixture *f = *state;
    json_t *vecs = json_object_get(f->vectors, "vectors");
    size_t vi;
    json_t *v;
    json_array_foreach(vecs, vi, v)
    {
        const char *prompt = json_string_value(json_object_get(v, "prompt"));
        size_t n_exp, n;
        int32_t *exp = json_ids(json_object_get(v, "ids"), &n_exp), *ids;
        t2_err err;
        if (t2_tok_encode(f->q8->tok, prompt, strlen(prompt), false, true, &ids, &n, &err) != 0)
            fail_msg("encode: %s", err.msg);
        assert_int_equal(n, n_exp);
        assert_memory_equal(ids, exp, n * sizeof *ids);
        free(ids);
        free(exp);
    }
    assert_int_equal(t2_tok_bos(f->q8->tok), 1);
    assert_int_equal(t2_tok_eos(f->q8->tok), 2);
    assert_int_equal(t2_tok_find(f->q8->tok, "<|im_end|>"), 2);
    assert_true(t2_tok_is_special(f->q8->tok, 0));
    assert_non_null(t2_tok_chat_template(f->q8->tok));
}

/* ---- rejection of malformed model files (tiny hand-made models) ---- */

enum fault { F_NONE, F_ARCH, F_EXTRA_TENSOR, F_SHAPE, F_MISSING, F_NO_HEADS, F_MANY_LAYERS };

static void tiny_model(const char *path, enum fault fault)
{
    static float zeros[64 * 64];
    t2_gguf_writer *w = t2_gguf_writer_new();
    t2_gguf_w_str(w, "general.architecture", fault == F_ARCH ? "gpt2" : "llama");
    t2_gguf_w_u32(w, "llama.context_length", 64);
    t2_gguf_w_u32(w, "llama.embedding_length", 32);
    t2_gguf_w_u32(w, "llama.block_count", fault == F_MANY_LAYERS ? 100000 : 1);
    t2_gguf_w_u32(w, "llama.feed_forward_length", 64);
    if (fault != F_NO_HEADS)
        t2_gguf_w_u32(w, "llama.attention.head_count", 2);
    t2_gguf_w_u32(w, "llama.attention.head_count_kv", 1);
    t2_gguf_w_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    struct {
        const char *name;
        uint64_t d0, d1;
    } t[] = {{"token_embd.weight", 32, 8},
             {"output_norm.weight", 32, 0},
             {"blk.0.attn_norm.weight", 32, 0},
             {"blk.0.attn_q.weight", 32, 32},
             {"blk.0.attn_k.weight", 32, 16},
             {"blk.0.attn_v.weight", 32, 16},
             {"blk.0.attn_output.weight", 32, 32},
             {"blk.0.ffn_norm.weight", 32, 0},
             {"blk.0.ffn_gate.weight", 32, 64},
             {"blk.0.ffn_up.weight", 32, 64},
             {"blk.0.ffn_down.weight", fault == F_SHAPE ? 32 : 64, fault == F_SHAPE ? 64 : 32}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        if (fault == F_MISSING && i == 9)
            continue;
        uint64_t dims[2] = {t[i].d0, t[i].d1};
        t2_gguf_w_tensor(w, t[i].name, T2_GGML_F32, t[i].d1 ? 2 : 1, dims, zeros);
    }
    if (fault == F_EXTRA_TENSOR)
        t2_gguf_w_tensor(w, "blk.0.attn_qkv.weight", T2_GGML_F32, 2, (uint64_t[]){32, 64}, zeros);
    t2_err err;
    assert_int_equal(t2_gguf_writer_write_file(w, path, &err), 0);
    t2_gguf_writer_free(w);
}

static void expect_load_error(fixture *f, enum fault fault, const char *needle)
{
    char path[160];
    snprintf(path, sizeof path, "%s/bad.gguf", f->dir);
    tiny_model(path, fault);
    t2_model *m = NULL;
    t2_err err = {{0}};
    assert_int_equal(t2_model_load(&m, path, &err), -1);
    assert_null(m);
    if (!strstr(err.msg, needle) || !strstr(err.msg, "bad.gguf"))
        fail_msg("message '%s' lacks '%s'", err.msg, needle);
    unlink(path);
}

static void test_rejects(void **state)
{
    fixture *f = *state;
    expect_load_error(f, F_ARCH, "architecture 'gpt2' is not supported");
    expect_load_error(f, F_EXTRA_TENSOR, "unexpected tensor 'blk.0.attn_qkv.weight'");
    expect_load_error(f, F_SHAPE, "blk.0.ffn_down.weight' has shape [32, 64], expected [64, 32]");
    expect_load_error(f, F_MISSING, "model.layers.0.mlp.up_proj.weight' missing");
    expect_load_error(f, F_NO_HEADS, "missing metadata key llama.attention.head_count");
    /* a small file claiming a huge model is rejected before allocating */
    expect_load_error(f, F_MANY_LAYERS, "but the file has only");
}

static void test_names(void **state)
{
    (void)state;
    char out[128];
    assert_int_equal(
        t2_gguf_name_from_hf("model.layers.12.self_attn.o_proj.weight", out, sizeof out), 0);
    assert_string_equal(out, "blk.12.attn_output.weight");
    assert_int_equal(t2_gguf_name_to_hf("blk.3.attn_q.bias", out, sizeof out), 0);
    assert_string_equal(out, "model.layers.3.self_attn.q_proj.bias");
    assert_int_equal(t2_gguf_name_to_hf("output.weight", out, sizeof out), 0);
    assert_string_equal(out, "lm_head.weight");
    assert_int_equal(t2_gguf_name_to_hf("blk.03.attn_q.bias", out, sizeof out), -1);
    assert_int_equal(t2_gguf_name_to_hf("blk.-1.attn_q.bias", out, sizeof out), -1);
    assert_int_equal(t2_gguf_name_to_hf("blk.1.attn_qkv.weight", out, sizeof out), -1);
    assert_int_equal(t2_gguf_name_to_hf("blk.1.", out, sizeof out), -1);
    assert_int_equal(t2_gguf_name_from_hf("model.layers.1.mlp.up_proj.weight", out, 8), -1);
    /* permute then inverse is the identity; one row of a 2-head case */
    float src[8 * 3], mid[8 * 3], back[8 * 3];
    for (int i = 0; i < 24; i++)
        src[i] = (float)i;
    t2_gguf_permute_qk(src, mid, 8, 3, 2, false);
    assert_true(mid[1 * 3] == src[2 * 3]); /* head 0: gguf row 1 = hf row half(2)+0 */
    assert_true(mid[2 * 3] == src[1 * 3]);
    t2_gguf_permute_qk(mid, back, 8, 3, 2, true);
    assert_memory_equal(back, src, sizeof src);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),      cmocka_unit_test(test_f32_weights_exact),
        cmocka_unit_test(test_file_layout), cmocka_unit_test(test_logits),
        cmocka_unit_test(test_q8_0_greedy), cmocka_unit_test(test_tokenizer),
        cmocka_unit_test(test_rejects),     cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
