/* GGUF reader and writer: round trips through the writer, the real
 * vocabulary files, and one hand-made malformed file per rejection rule. */
#include <setjmp.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <unistd.h>

#include "dtype.h"
#include "gguf.h"
#include "gguf_write.h"

/* ---- a byte builder for hand-made (malformed) files ---- */

typedef struct bb {
    uint8_t d[4096];
    size_t n;
} bb;

static void bb_bytes(bb *b, const void *p, size_t n)
{
    assert_true(b->n + n <= sizeof b->d);
    memcpy(b->d + b->n, p, n);
    b->n += n;
}
static void bb_u32(bb *b, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        b->d[b->n++] = (uint8_t)(v >> (8 * i));
}
static void bb_u64(bb *b, uint64_t v)
{
    bb_u32(b, (uint32_t)v);
    bb_u32(b, (uint32_t)(v >> 32));
}
static void bb_str(bb *b, const char *s)
{
    bb_u64(b, strlen(s));
    bb_bytes(b, s, strlen(s));
}
static void bb_pad(bb *b, size_t align)
{
    while (b->n % align)
        b->d[b->n++] = 0;
}
static void bb_header(bb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    b->n = 0;
    bb_bytes(b, "GGUF", 4);
    bb_u32(b, version);
    bb_u64(b, n_tensors);
    bb_u64(b, n_kv);
}
static void bb_tensor(bb *b, const char *name, uint32_t n_dims, const uint64_t *dims, uint32_t type,
                      uint64_t offset)
{
    bb_str(b, name);
    bb_u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++)
        bb_u64(b, dims[i]);
    bb_u32(b, type);
    bb_u64(b, offset);
}
/* data section of n zero bytes after alignment padding */
static void bb_data(bb *b, size_t n)
{
    bb_pad(b, 32);
    assert_true(b->n + n <= sizeof b->d);
    memset(b->d + b->n, 0, n);
    b->n += n;
}

/* Parses and expects failure with `needle` in the message and the name. */
static void expect_reject(const bb *b, const char *needle)
{
    t2_gguf g;
    t2_err err = {{0}};
    int rc = t2_gguf_parse(&g, b->d, b->n, "bad.gguf", &err);
    if (rc == 0)
        t2_gguf_close(&g);
    assert_int_equal(rc, -1);
    if (!strstr(err.msg, needle) || !strstr(err.msg, "bad.gguf"))
        fail_msg("message '%s' lacks '%s'", err.msg, needle);
}

static void expect_ok(const bb *b, t2_gguf *g)
{
    t2_err err = {{0}};
    if (t2_gguf_parse(g, b->d, b->n, "ok.gguf", &err) != 0)
        fail_msg("unexpected error: %s", err.msg);
}

/* ---- writer round trips ---- */

static const float k_vals[64] = {
    0.0f,  1.0f,  -1.0f, 0.5f,   2.0f,   -0.25f,  3.0f,  100.0f, -7.5f,  0.125f, 8.0f,
    -2.0f, 4.0f,  6.0f,  -3.0f,  1.5f,   0.75f,   -0.5f, 10.0f,  12.0f,  -16.0f, 0.0625f,
    5.0f,  9.0f,  -9.0f, 11.0f,  13.0f,  -13.0f,  14.0f, 15.0f,  -15.0f, 31.0f,  0.1f,
    0.2f,  0.3f,  -0.4f, 1e-3f,  -1e-4f, 1234.5f, 7.0f,  -0.7f,  0.9f,   2.5f,   -2.5f,
    3.5f,  4.5f,  -5.5f, 6.5f,   7.25f,  -8.25f,  9.75f, 0.01f,  0.02f,  -0.03f, 0.04f,
    0.05f, 0.06f, 0.07f, -0.08f, 0.09f,  1.1f,    1.2f,  -1.3f,  1.4f};

static t2_gguf_writer *make_writer(void)
{
    t2_gguf_writer *w = t2_gguf_writer_new();
    assert_non_null(w);
    static const char *const toks[] = {"hello", "", "w\xc3\xb6rld", "<|end|>"};
    static const float fs[] = {1.5f, -2.25f, 3.0f};
    static const int32_t is[] = {1, -3, 2147483647};
    t2_gguf_w_str(w, "general.architecture", "llama");
    t2_gguf_w_u32(w, "llama.block_count", 7);
    t2_gguf_w_i32(w, "test.neg", -42);
    t2_gguf_w_f32(w, "llama.rope.freq_base", 10000.5f);
    t2_gguf_w_bool(w, "test.flag", true);
    t2_gguf_w_arr_str(w, "tokenizer.ggml.tokens", toks, 4);
    t2_gguf_w_arr_f32(w, "test.floats", fs, 3);
    t2_gguf_w_arr_i32(w, "test.ints", is, 3);
    uint64_t d1[1] = {5}, d2[2] = {32, 2}, d3[3] = {4, 2, 2};
    t2_gguf_w_tensor(w, "a.f32", T2_GGML_F32, 1, d1, k_vals);
    t2_gguf_w_tensor(w, "b.f16", T2_GGML_F16, 3, d3, k_vals);
    t2_gguf_w_tensor(w, "c.bf16", T2_GGML_BF16, 2, d2, k_vals);
    t2_gguf_w_tensor(w, "d.q8_0", T2_GGML_Q8_0, 2, d2, k_vals);
    return w;
}

static void make_mem(uint8_t **buf, size_t *size)
{
    t2_gguf_writer *w = make_writer();
    t2_err err = {{0}};
    int rc = t2_gguf_writer_write_mem(w, buf, size, &err);
    t2_gguf_writer_free(w);
    if (rc)
        fail_msg("%s", err.msg);
}

static bool str_is(t2_gguf_str s, const char *c)
{
    return s.len == strlen(c) && memcmp(s.ptr, c, s.len) == 0;
}

static void check_contents(const t2_gguf *g)
{
    assert_int_equal(g->version, 3);
    assert_int_equal(g->n_kv, 8);
    assert_int_equal(g->n_tensors, 4);
    assert_int_equal(g->alignment, 32);
    char *arch = t2_gguf_get_str(g, "general.architecture");
    assert_string_equal(arch, "llama");
    free(arch);
    uint32_t u;
    assert_true(t2_gguf_get_u32(g, "llama.block_count", &u));
    assert_int_equal(u, 7);
    uint64_t u64;
    assert_false(t2_gguf_get_u64(g, "test.neg", &u64)); /* negative does not fit */
    assert_int_equal(t2_gguf_find(g, "test.neg")->v.i64, -42);
    float f;
    assert_true(t2_gguf_get_f32(g, "llama.rope.freq_base", &f));
    assert_true(f == 10000.5f);
    bool b = false;
    assert_true(t2_gguf_get_bool(g, "test.flag", &b));
    assert_true(b);
    assert_false(t2_gguf_get_bool(g, "llama.block_count", &b));
    assert_null(t2_gguf_get_str(g, "llama.block_count"));
    assert_null(t2_gguf_get_str(g, "missing"));
    assert_null(t2_gguf_find(g, "general"));

    const t2_gguf_kv *kv = t2_gguf_find(g, "tokenizer.ggml.tokens");
    assert_non_null(kv);
    assert_int_equal(kv->type, T2_GGUF_ARRAY);
    assert_int_equal(kv->arr_type, T2_GGUF_STRING);
    assert_int_equal(kv->arr_count, 4);
    assert_true(str_is(kv->arr_strs[0], "hello"));
    assert_true(str_is(kv->arr_strs[1], ""));
    assert_true(str_is(kv->arr_strs[2], "w\xc3\xb6rld"));
    assert_true(str_is(kv->arr_strs[3], "<|end|>"));
    kv = t2_gguf_find(g, "test.floats");
    assert_int_equal(kv->arr_type, T2_GGUF_FLOAT32);
    assert_int_equal(kv->arr_count, 3);
    assert_true(t2_gguf_arr_f32(kv, 1) == -2.25f);
    kv = t2_gguf_find(g, "test.ints");
    assert_int_equal(kv->arr_type, T2_GGUF_INT32);
    assert_int_equal(t2_gguf_arr_int(kv, 1), -3);
    assert_int_equal(t2_gguf_arr_int(kv, 2), 2147483647);

    const t2_gguf_tensor *t = t2_gguf_find_tensor(g, "a.f32");
    assert_non_null(t);
    assert_int_equal(t->type, T2_GGML_F32);
    assert_int_equal(t->n_dims, 1);
    assert_int_equal(t->dims[0], 5);
    assert_int_equal(t->nbytes, 20);
    assert_memory_equal(t->data, k_vals, 20); /* little-endian host */
    assert_int_equal((t->data - g->buf) % 32, 0);

    t = t2_gguf_find_tensor(g, "b.f16");
    assert_int_equal(t->n_dims, 3);
    assert_int_equal(t->n_elements, 16);
    for (int i = 0; i < 16; i++)
        assert_int_equal(t2_load_u16(t->data + 2 * i), t2_f32_to_f16(k_vals[i]));
    assert_true(t2_f16_to_f32(t2_load_u16(t->data + 2 * 7)) == 100.0f);

    t = t2_gguf_find_tensor(g, "c.bf16");
    assert_int_equal(t->dims[0], 32);
    assert_int_equal(t->dims[1], 2);
    for (int i = 0; i < 64; i++)
        assert_int_equal(t2_load_u16(t->data + 2 * i), t2_f32_to_bf16(k_vals[i]));

    t = t2_gguf_find_tensor(g, "d.q8_0");
    assert_int_equal(t->type, T2_GGML_Q8_0);
    assert_int_equal(t->nbytes, 68);
    uint8_t q[68];
    t2_q8_0_quantize(k_vals, q, 64);
    assert_memory_equal(t->data, q, 68);
    float back[64];
    t2_q8_0_dequantize(t->data, back, 64);
    for (int i = 0; i < 64; i++) /* within half a quantization step */
        assert_true(fabsf(back[i] - k_vals[i]) <= 1234.5f / 127.0f * 0.5f + 1e-3f);
    assert_null(t2_gguf_find_tensor(g, "e"));
}

static void test_roundtrip_mem(void **state)
{
    (void)state;
    uint8_t *buf;
    size_t size;
    make_mem(&buf, &size);
    t2_gguf g;
    t2_err err;
    assert_int_equal(t2_gguf_parse(&g, buf, size, "mem", &err), 0);
    check_contents(&g);
    t2_gguf_close(&g);
    free(buf);
}

static void test_roundtrip_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/t2_gguf_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/out.gguf", dir);
    t2_gguf_writer *w = make_writer();
    t2_err err;
    assert_int_equal(t2_gguf_writer_write_file(w, path, &err), 0);
    t2_gguf_writer_free(w);
    t2_gguf g;
    assert_int_equal(t2_gguf_open(&g, path, &err), 0);
    check_contents(&g);
    t2_gguf_close(&g);
    /* the temp file was renamed away: only out.gguf remains */
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') {
            assert_string_equal(e->d_name, "out.gguf");
            n++;
        }
    closedir(d);
    assert_int_equal(n, 1);
    unlink(path);
    rmdir(dir);
}

static void test_writer_errors(void **state)
{
    (void)state;
    t2_gguf_writer *w = t2_gguf_writer_new();
    uint64_t d[2] = {33, 1};
    float x[33] = {0};
    assert_int_equal(t2_gguf_w_u32(w, "k", 1), 0);
    assert_int_equal(t2_gguf_w_u32(w, "k", 2), -1); /* duplicate key */
    assert_int_equal(t2_gguf_w_tensor(w, "t", T2_GGML_Q8_0, 2, d, x), -1);
    uint8_t *buf = NULL;
    size_t size;
    t2_err err;
    assert_int_equal(t2_gguf_writer_write_mem(w, &buf, &size, &err), -1);
    assert_non_null(strstr(err.msg, "duplicate metadata key 'k'")); /* the first error */
    assert_null(buf);
    t2_gguf_writer_free(w);

    w = t2_gguf_writer_new();
    assert_int_equal(t2_gguf_w_tensor(w, "t", T2_GGML_Q8_0, 2, d, x), -1);
    assert_int_equal(t2_gguf_writer_write_file(w, "/tmp/t2_never_written.gguf", &err), -1);
    assert_non_null(strstr(err.msg, "multiple of the Q8_0 block"));
    assert_int_equal(access("/tmp/t2_never_written.gguf", F_OK), -1);
    t2_gguf_writer_free(w);
}

/* ---- real files ---- */

static void check_vocab(const char *file, const char *model, const char *pre, uint64_t n_tokens)
{
    const char *shared = getenv("T2_SHARED");
    if (!shared)
        skip();
    char path[1024];
    snprintf(path, sizeof path, "%s/vocab/%s", shared, file);
    t2_gguf g;
    t2_err err;
    if (t2_gguf_open(&g, path, &err))
        fail_msg("%s", err.msg);
    char *s = t2_gguf_get_str(&g, "tokenizer.ggml.model");
    assert_string_equal(s, model);
    free(s);
    s = t2_gguf_get_str(&g, "tokenizer.ggml.pre");
    assert_string_equal(s, pre);
    free(s);
    const t2_gguf_kv *tok = t2_gguf_find(&g, "tokenizer.ggml.tokens");
    assert_non_null(tok);
    assert_int_equal(tok->arr_type, T2_GGUF_STRING);
    assert_int_equal(tok->arr_count, n_tokens);
    const t2_gguf_kv *tt = t2_gguf_find(&g, "tokenizer.ggml.token_type");
    assert_int_equal(tt->arr_count, n_tokens);
    assert_int_equal(g.n_tensors, 0);
    t2_gguf_close(&g);
}

static void test_vocab_files(void **state)
{
    (void)state;
    check_vocab("ggml-vocab-gpt-2.gguf", "gpt2", "gpt-2", 50257);
    check_vocab("ggml-vocab-starcoder.gguf", "gpt2", "starcoder", 49152);
    check_vocab("ggml-vocab-llama-spm.gguf", "llama", "default", 32000);
    check_vocab("ggml-vocab-phi-3.gguf", "llama", "default", 32064);

    const char *shared = getenv("T2_SHARED");
    char path[1024];
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-gpt-2.gguf", shared);
    t2_gguf g;
    t2_err err;
    assert_int_equal(t2_gguf_open(&g, path, &err), 0);
    const t2_gguf_kv *tok = t2_gguf_find(&g, "tokenizer.ggml.tokens");
    assert_true(str_is(tok->arr_strs[0], "!"));
    assert_true(str_is(tok->arr_strs[50256], "<|endoftext|>"));
    uint32_t bos;
    assert_true(t2_gguf_get_u32(&g, "tokenizer.ggml.bos_token_id", &bos));
    assert_int_equal(bos, 50256);
    t2_gguf_close(&g);

    assert_int_equal(t2_gguf_open(&g, "/nonexistent/x.gguf", &err), -1);
    assert_non_null(strstr(err.msg, "/nonexistent/x.gguf"));
}

/* ---- robustness ---- */

static void test_truncated(void **state)
{
    (void)state;
    uint8_t *buf;
    size_t size;
    make_mem(&buf, &size);
    /* the data of the last tensor ends before the trailing padding */
    t2_gguf full;
    t2_err err;
    assert_int_equal(t2_gguf_parse(&full, buf, size, "mem", &err), 0);
    size_t data_end = 0;
    for (uint64_t i = 0; i < full.n_tensors; i++) {
        size_t e = (size_t)(full.tensors[i].data - buf + (ptrdiff_t)full.tensors[i].nbytes);
        if (e > data_end)
            data_end = e;
    }
    t2_gguf_close(&full);
    for (size_t cut = 0; cut < size; cut++) {
        /* a fresh copy of exactly `cut` bytes, so valgrind sees any overread */
        uint8_t *p = malloc(cut ? cut : 1);
        memcpy(p, buf, cut);
        t2_gguf g;
        int rc = t2_gguf_parse(&g, p, cut, "cut.gguf", &err);
        if (cut < data_end) {
            assert_int_equal(rc, -1);
            assert_non_null(strstr(err.msg, "cut.gguf"));
        } else if (rc == 0) {
            t2_gguf_close(&g);
        }
        free(p);
    }
    /* one clear message for a cut inside the kv section */
    assert_int_equal(t2_gguf_parse(&full, buf, 60, "cut.gguf", &err), -1);
    assert_non_null(strstr(err.msg, "truncated"));
    free(buf);
}

/* Flips bytes of a valid file: every result is rejected or parsed, never a crash. */
static void test_mutations(void **state)
{
    (void)state;
    uint8_t *buf;
    size_t size;
    make_mem(&buf, &size);
    uint8_t *p = malloc(size);
    static const uint8_t vals[] = {0x00, 0x01, 0x7f, 0x80, 0xff};
    for (size_t i = 0; i < size; i++) {
        for (size_t v = 0; v < sizeof vals; v++) {
            memcpy(p, buf, size);
            p[i] = vals[v];
            t2_gguf g;
            t2_err err;
            if (t2_gguf_parse(&g, p, size, "m", &err) == 0) {
                /* touch what a loader would read */
                free(t2_gguf_get_str(&g, "general.architecture"));
                for (uint64_t k = 0; k < g.n_tensors; k++)
                    if (g.tensors[k].nbytes)
                        assert_true(g.tensors[k].data[g.tensors[k].nbytes - 1] < 256);
                t2_gguf_close(&g);
            }
        }
    }
    free(p);
    free(buf);
}

static void test_string_past_end(void **state)
{
    (void)state;
    bb b;
    bb_header(&b, 3, 0, 1);
    bb_u64(&b, 1000); /* key length */
    bb_data(&b, 64);
    expect_reject(&b, "runs past the end");
    bb_header(&b, 3, 0, 1);
    bb_u64(&b, UINT64_MAX); /* would overflow a naive pos + len check */
    bb_data(&b, 64);
    expect_reject(&b, "runs past the end");
    /* a string value, not only a key */
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, T2_GGUF_STRING);
    bb_u64(&b, UINT64_MAX - 3);
    bb_data(&b, 64);
    expect_reject(&b, "runs past the end");
}

static void test_absurd_counts(void **state)
{
    (void)state;
    bb b;
    bb_header(&b, 3, 0, UINT64_MAX);
    bb_data(&b, 64);
    expect_reject(&b, "kv count");
    bb_header(&b, 3, 1ull << 60, 0);
    bb_data(&b, 64);
    expect_reject(&b, "tensor count");
    /* an array count that would need more bytes than the file has */
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "a");
    bb_u32(&b, T2_GGUF_ARRAY);
    bb_u32(&b, T2_GGUF_UINT64);
    bb_u64(&b, 1ull << 61); /* * 8 overflows */
    bb_data(&b, 64);
    expect_reject(&b, "array count");
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "a");
    bb_u32(&b, T2_GGUF_ARRAY);
    bb_u32(&b, T2_GGUF_STRING);
    bb_u64(&b, 1000);
    bb_data(&b, 64);
    expect_reject(&b, "string array count");
}

/* A one-tensor file with the given tensor fields. */
static void one_tensor(bb *b, uint32_t n_dims, const uint64_t *dims, uint32_t type, uint64_t off,
                       size_t data)
{
    bb_header(b, 3, 1, 0);
    bb_tensor(b, "blk.0.w", n_dims, dims, type, off);
    bb_data(b, data);
}

static void test_tensor_offset_oob(void **state)
{
    (void)state;
    bb b;
    uint64_t d[1] = {4};
    one_tensor(&b, 1, d, T2_GGML_F32, 0, 16);
    t2_gguf g;
    expect_ok(&b, &g);
    assert_int_equal(g.tensors[0].nbytes, 16);
    t2_gguf_close(&g);
    one_tensor(&b, 1, d, T2_GGML_F32, 1024, 16);
    expect_reject(&b, "out of bounds");
    one_tensor(&b, 1, d, T2_GGML_F32, 0, 8); /* data shorter than the tensor */
    expect_reject(&b, "out of bounds");
    one_tensor(&b, 1, d, T2_GGML_F32, UINT64_MAX - 31, 16); /* offset + size overflows */
    expect_reject(&b, "out of bounds");
}

static void test_tensor_overlap(void **state)
{
    (void)state;
    bb b;
    uint64_t d16[1] = {16}, d8[1] = {8};
    bb_header(&b, 3, 2, 0);
    bb_tensor(&b, "a", 1, d16, T2_GGML_F32, 0); /* bytes 0..63 */
    bb_tensor(&b, "b", 1, d8, T2_GGML_F32, 32); /* bytes 32..63 */
    bb_data(&b, 128);
    expect_reject(&b, "overlap");
    bb_header(&b, 3, 2, 0);
    bb_tensor(&b, "a", 1, d16, T2_GGML_F32, 0);
    bb_tensor(&b, "b", 1, d8, T2_GGML_F32, 64);
    bb_data(&b, 128);
    t2_gguf g;
    expect_ok(&b, &g);
    t2_gguf_close(&g);
}

static void test_tensor_misaligned(void **state)
{
    (void)state;
    bb b;
    uint64_t d[1] = {4};
    one_tensor(&b, 1, d, T2_GGML_F32, 4, 64);
    expect_reject(&b, "not aligned");
    /* a custom alignment is honoured */
    bb_header(&b, 3, 1, 1);
    bb_str(&b, "general.alignment");
    bb_u32(&b, T2_GGUF_UINT32);
    bb_u32(&b, 64);
    bb_tensor(&b, "t", 1, d, T2_GGML_F32, 32);
    bb_pad(&b, 64);
    bb_data(&b, 128);
    expect_reject(&b, "not aligned to 64");
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "general.alignment");
    bb_u32(&b, T2_GGUF_UINT32);
    bb_u32(&b, 48);
    expect_reject(&b, "not a power of two");
}

static void test_unknown_dtype(void **state)
{
    (void)state;
    bb b;
    uint64_t d[1] = {32};
    one_tensor(&b, 1, d, 2 /* Q4_0 */, 0, 64);
    expect_reject(&b, "unsupported tensor type 2");
    expect_reject(&b, "blk.0.w");
    one_tensor(&b, 1, d, 0xffffffffu, 0, 64);
    expect_reject(&b, "unsupported tensor type 4294967295");
}

static void test_unknown_kv_type(void **state)
{
    (void)state;
    bb b;
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "weird.key");
    bb_u32(&b, 13);
    bb_u64(&b, 0);
    expect_reject(&b, "unknown value type 13");
    expect_reject(&b, "weird.key");
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "weird.arr");
    bb_u32(&b, T2_GGUF_ARRAY);
    bb_u32(&b, 99);
    bb_u64(&b, 0);
    expect_reject(&b, "unknown array element type 99");
}

static void test_nested_array(void **state)
{
    (void)state;
    bb b;
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "nested");
    bb_u32(&b, T2_GGUF_ARRAY);
    bb_u32(&b, T2_GGUF_ARRAY);
    bb_u64(&b, 1);
    bb_u32(&b, T2_GGUF_UINT8);
    bb_u64(&b, 1);
    bb_u32(&b, 0);
    expect_reject(&b, "nested arrays");
}

static void test_bad_magic(void **state)
{
    (void)state;
    bb b;
    bb_header(&b, 3, 0, 0);
    b.d[3] = 'G';
    expect_reject(&b, "bad magic");
    b.n = 2;
    expect_reject(&b, "bad magic");
    t2_gguf g;
    t2_err err;
    assert_int_equal(t2_gguf_parse(&g, NULL, 0, "empty", &err), -1);
    assert_non_null(strstr(err.msg, "bad magic"));
}

static void test_bad_version(void **state)
{
    (void)state;
    bb b;
    bb_header(&b, 1, 0, 0);
    expect_reject(&b, "version 1 is not supported");
    bb_header(&b, 4, 0, 0);
    expect_reject(&b, "unsupported GGUF version 4");
    bb_header(&b, 2, 0, 0); /* v2 has the same layout and is accepted */
    t2_gguf g;
    expect_ok(&b, &g);
    assert_int_equal(g.version, 2);
    t2_gguf_close(&g);
}

static void test_bad_n_dims(void **state)
{
    (void)state;
    bb b;
    uint64_t d[5] = {1, 1, 1, 1, 1};
    one_tensor(&b, 0, d, T2_GGML_F32, 0, 64);
    expect_reject(&b, "n_dims 0 out of range");
    one_tensor(&b, 5, d, T2_GGML_F32, 0, 64);
    expect_reject(&b, "n_dims 5 out of range");
    one_tensor(&b, 4, d, T2_GGML_F32, 0, 64);
    t2_gguf g;
    expect_ok(&b, &g);
    t2_gguf_close(&g);
    uint64_t huge[3] = {1ull << 32, 1ull << 32, 4};
    one_tensor(&b, 3, huge, T2_GGML_F32, 0, 64);
    expect_reject(&b, "element count overflows");
    uint64_t zero[2] = {4, 0};
    one_tensor(&b, 2, zero, T2_GGML_F32, 0, 64);
    expect_reject(&b, "dimension 1 is 0");
}

static void test_q8_0_block(void **state)
{
    (void)state;
    bb b;
    uint64_t d[2] = {48, 2}; /* 96 elements: a multiple of 32, but rows are not */
    one_tensor(&b, 2, d, T2_GGML_Q8_0, 0, 256);
    expect_reject(&b, "not a multiple of the Q8_0 block size 32");
    uint64_t d1[1] = {33};
    one_tensor(&b, 1, d1, T2_GGML_Q8_0, 0, 256);
    expect_reject(&b, "not a multiple of the Q8_0 block size 32");
    uint64_t ok[2] = {64, 2};
    one_tensor(&b, 2, ok, T2_GGML_Q8_0, 0, 4 * 34);
    t2_gguf g;
    expect_ok(&b, &g);
    assert_int_equal(g.tensors[0].nbytes, 4 * 34);
    t2_gguf_close(&g);
}

static void test_duplicates(void **state)
{
    (void)state;
    bb b;
    uint64_t d[1] = {8};
    bb_header(&b, 3, 2, 0);
    bb_tensor(&b, "same", 1, d, T2_GGML_F32, 0);
    bb_tensor(&b, "same", 1, d, T2_GGML_F32, 32);
    bb_data(&b, 64);
    expect_reject(&b, "duplicate tensor name 'same'");
    bb_header(&b, 3, 0, 2);
    bb_str(&b, "k");
    bb_u32(&b, T2_GGUF_UINT8);
    bb_bytes(&b, "\x01", 1);
    bb_str(&b, "k");
    bb_u32(&b, T2_GGUF_UINT8);
    bb_bytes(&b, "\x02", 1);
    expect_reject(&b, "duplicate key 'k'");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_mem),     cmocka_unit_test(test_roundtrip_file),
        cmocka_unit_test(test_writer_errors),     cmocka_unit_test(test_vocab_files),
        cmocka_unit_test(test_truncated),         cmocka_unit_test(test_mutations),
        cmocka_unit_test(test_string_past_end),   cmocka_unit_test(test_absurd_counts),
        cmocka_unit_test(test_tensor_offset_oob), cmocka_unit_test(test_tensor_overlap),
        cmocka_unit_test(test_tensor_misaligned), cmocka_unit_test(test_unknown_dtype),
        cmocka_unit_test(test_unknown_kv_type),   cmocka_unit_test(test_nested_array),
        cmocka_unit_test(test_bad_magic),         cmocka_unit_test(test_bad_version),
        cmocka_unit_test(test_bad_n_dims),        cmocka_unit_test(test_q8_0_block),
        cmocka_unit_test(test_duplicates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
