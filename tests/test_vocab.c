/* Conformance of the GGUF-embedded tokenizers against llama.cpp's vocab
 * test vectors (shared/vocab): every input must encode to exactly the ids
 * the original Hugging Face tokenizer gives (no BOS), and decode back to
 * the input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "gguf.h"
#include "test_util.h"
#include "tokenizer.h"

#define SEP "\n__ggml_vocab_test__\n"

typedef struct vec {
    char *text;
    size_t len;
    int32_t *ids;
    size_t n;
} vec;

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    *len = b ? fread(b, 1, (size_t)sz, f) : 0;
    fclose(f);
    if (b)
        b[*len] = '\0';
    return b;
}

/* .inp: each input followed by SEP; .out: one line of ids per input. */
static vec *read_vectors(const char *base, size_t *count)
{
    char p[1024], q[256];
    size_t ilen, olen;
    snprintf(q, sizeof q, "vocab/%s.inp", base);
    char *inp = read_all(shared_path(p, sizeof p, q), &ilen);
    snprintf(q, sizeof q, "vocab/%s.out", base);
    char *out = read_all(shared_path(p, sizeof p, q), &olen);
    assert_non_null(inp);
    assert_non_null(out);
    vec *v = calloc(256, sizeof *v);
    size_t n = 0;
    char *s = inp, *o = out;
    for (char *e; (e = strstr(s, SEP)) != NULL && n < 256; s = e + strlen(SEP), n++) {
        v[n].len = (size_t)(e - s);
        v[n].text = malloc(v[n].len + 1);
        memcpy(v[n].text, s, v[n].len);
        v[n].text[v[n].len] = '\0';
        char *nl = strchr(o, '\n');
        assert_non_null(nl);
        *nl = '\0';
        v[n].ids = malloc(sizeof(int32_t) * (strlen(o) + 1));
        for (char *t = o, *end; (v[n].ids[v[n].n] = (int32_t)strtol(t, &end, 10)), end != t;
             t = end)
            v[n].n++;
        o = nl + 1;
    }
    assert_int_equal(*o, '\0'); /* as many outputs as inputs */
    free(inp);
    free(out);
    *count = n;
    return v;
}

static void print_ids(const char *what, const int32_t *ids, size_t n)
{
    fprintf(stderr, "    %s:", what);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, " %d", (int)ids[i]);
    fprintf(stderr, "\n");
}

static int check_one(const t2_tokenizer *tok, const vec *v, size_t idx)
{
    int32_t *ids;
    size_t n;
    t2_err err = {{0}};
    int bad = 0;
    if (t2_tok_encode(tok, v->text, v->len, false, false, &ids, &n, &err) != 0) {
        fprintf(stderr, "  [%zu] encode failed: %s\n", idx, err.msg);
        return 1;
    }
    if (n != v->n || memcmp(ids, v->ids, n * sizeof *ids) != 0) {
        fprintf(stderr, "  [%zu] ids differ for \"%s\"\n", idx, v->text);
        print_ids("expected", v->ids, v->n);
        print_ids("got     ", ids, n);
        bad = 1;
    }
    char *text;
    size_t tlen;
    if (t2_tok_decode(tok, ids, n, false, &text, &tlen, &err) != 0) {
        fprintf(stderr, "  [%zu] decode failed: %s\n", idx, err.msg);
        bad = 1;
    } else {
        if (tlen != v->len || memcmp(text, v->text, tlen) != 0) {
            fprintf(stderr, "  [%zu] decode gives \"%s\" for \"%s\"\n", idx, text, v->text);
            bad = 1;
        }
        free(text);
    }
    free(ids);
    return bad;
}

static void run_vocab(const char *base, enum t2_tok_kind kind)
{
    char p[1024], q[256];
    snprintf(q, sizeof q, "vocab/%s", base);
    t2_gguf g;
    t2_err err = {{0}};
    assert_int_equal(t2_gguf_open(&g, shared_path(p, sizeof p, q), &err), 0);
    t2_tokenizer *tok;
    int rc = t2_tok_load_gguf(&tok, &g, &err);
    if (rc != 0)
        fprintf(stderr, "%s: %s\n", base, err.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(t2_tok_kind(tok), kind);
    size_t count;
    vec *v = read_vectors(base, &count);
    assert_true(count > 40);
    int fails = 0;
    for (size_t i = 0; i < count; i++)
        fails += check_one(tok, &v[i], i);
    fprintf(stderr, "%s: %zu vectors, %d failing\n", base, count, fails);
    for (size_t i = 0; i < count; i++) {
        free(v[i].text);
        free(v[i].ids);
    }
    free(v);
    t2_tok_free(tok);
    t2_gguf_close(&g);
    assert_int_equal(fails, 0);
}

static void test_gpt2(void **state)
{
    (void)state;
    run_vocab("ggml-vocab-gpt-2.gguf", T2_TOK_BYTE_LEVEL);
}

static void test_starcoder(void **state)
{
    (void)state;
    run_vocab("ggml-vocab-starcoder.gguf", T2_TOK_BYTE_LEVEL);
}

static void test_llama_spm(void **state)
{
    (void)state;
    run_vocab("ggml-vocab-llama-spm.gguf", T2_TOK_SPM);
}

static void test_phi3(void **state)
{
    (void)state;
    run_vocab("ggml-vocab-phi-3.gguf", T2_TOK_SPM);
}

/* ids, specials and metadata read from the GGUF */
static void test_metadata(void **state)
{
    (void)state;
    char p[1024];
    t2_gguf g;
    t2_err err = {{0}};
    assert_int_equal(
        t2_gguf_open(&g, shared_path(p, sizeof p, "vocab/ggml-vocab-phi-3.gguf"), &err), 0);
    t2_tokenizer *tok;
    assert_int_equal(t2_tok_load_gguf(&tok, &g, &err), 0);
    assert_int_equal(t2_tok_vocab_size(tok), 32064);
    assert_int_equal(t2_tok_bos(tok), 1);
    assert_int_equal(t2_tok_eos(tok), 32000);
    assert_true(t2_tok_adds_bos(tok));
    assert_true(t2_tok_is_special(tok, 32007)); /* <|end|> */
    assert_false(t2_tok_is_special(tok, 2));    /* </s> is user-defined in Phi-3 */
    assert_int_equal(t2_tok_find(tok, "<|user|>"), 32010);
    assert_non_null(t2_tok_chat_template(tok));
    assert_non_null(strstr(t2_tok_chat_template(tok), "<|user|>"));

    /* specials are matched only with parse_special */
    int32_t *ids;
    size_t n;
    const char *s = "<|user|>\nHi<|end|>";
    assert_int_equal(t2_tok_encode(tok, s, strlen(s), true, true, &ids, &n, &err), 0);
    assert_true(n >= 4);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 32010);
    assert_int_equal(ids[n - 1], 32007);
    char *text;
    assert_int_equal(t2_tok_decode(tok, ids, n, true, &text, NULL, &err), 0);
    assert_string_equal(text, "\nHi");
    free(text);
    free(ids);
    assert_int_equal(t2_tok_encode(tok, s, strlen(s), false, false, &ids, &n, &err), 0);
    for (size_t i = 0; i < n; i++)
        assert_true(ids[i] < 32000);
    free(ids);

    /* <0xNN> bytes decode to the byte: a 4-byte emoji from byte tokens */
    int32_t emoji[] = {243, 162, 169, 156};
    assert_int_equal(t2_tok_decode(tok, emoji, 4, false, &text, NULL, &err), 0);
    assert_string_equal(text, "\xF0\x9F\xA6\x99");
    free(text);
    t2_tok_free(tok);
    t2_gguf_close(&g);
}

/* Random byte changes all over a real vocab GGUF: parsing or loading may
 * fail, but never crashes, and what loads encodes and decodes. */
static void fuzz_file(const char *base, int iters)
{
    char p[1024], q[256];
    snprintf(q, sizeof q, "vocab/%s", base);
    size_t len;
    uint8_t *orig = (uint8_t *)read_all(shared_path(p, sizeof p, q), &len);
    assert_non_null(orig);
    uint8_t *buf = malloc(len);
    uint32_t rng = 777;
    int parsed = 0, loaded = 0;
    for (int it = 0; it < iters; it++) {
        memcpy(buf, orig, len);
        /* Only printable bytes change (token text, mostly), so the
         * length fields stay and most mutants get to the tokenizer. */
        for (int k = 0; k < 200; k++) {
            rng = rng * 1664525u + 1013904223u;
            size_t at = (size_t)(((uint64_t)rng * len) >> 32);
            rng = rng * 1664525u + 1013904223u;
            if (buf[at] > 0x20 && buf[at] < 0x7F)
                buf[at] = (uint8_t)(rng >> 24);
        }
        t2_gguf g;
        t2_err err = {{0}};
        if (t2_gguf_parse(&g, buf, len, base, &err) != 0)
            continue;
        parsed++;
        t2_tokenizer *tok;
        if (t2_tok_load_gguf(&tok, &g, &err) == 0) {
            loaded++;
            const char *s =
                " Hello w\xC3\xB6rld 123 \xF0\x9F\xA6\x99 <s> </s> <|endoftext|>\n\t  x";
            int32_t *ids;
            size_t n;
            if (t2_tok_encode(tok, s, strlen(s), true, true, &ids, &n, &err) == 0) {
                char *text;
                if (t2_tok_decode(tok, ids, n, false, &text, NULL, &err) == 0)
                    free(text);
                free(ids);
            }
            t2_tok_free(tok);
        }
        t2_gguf_close(&g);
    }
    fprintf(stderr, "%s: %d mutants, %d parsed, %d loaded\n", base, iters, parsed, loaded);
    free(buf);
    free(orig);
}

static void test_fuzz(void **state)
{
    (void)state;
    int iters = test_quick() ? 4 : 20; /* quick mode: 4 mutants per file */
    fuzz_file("ggml-vocab-gpt-2.gguf", iters);
    fuzz_file("ggml-vocab-llama-spm.gguf", iters);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2),      cmocka_unit_test(test_starcoder),
        cmocka_unit_test(test_llama_spm), cmocka_unit_test(test_phi3),
        cmocka_unit_test(test_metadata),  cmocka_unit_test(test_fuzz),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
