/* GGUF: header, metadata, tensor directory (core/gguf.c), every typed
 * getter and array reader on what parsed, then the GGUF tokenizer loader
 * (core/tokenizer_gguf.c) with one encode/decode when it loads. */
#include <string.h>

#include "fuzz.h"
#include "gguf.h"
#include "tokenizer.h"

static void check_kv(const t2_gguf *g, const t2_gguf_kv *kv, const uint8_t *data, size_t size)
{
    FUZZ_CHECK(fuzz_inside(kv->key.ptr, kv->key.len, data, size));
    char key[256];
    if (kv->key.len < sizeof key && !memchr(kv->key.ptr, '\0', kv->key.len)) {
        memcpy(key, kv->key.ptr, kv->key.len);
        key[kv->key.len] = '\0';
        FUZZ_CHECK(t2_gguf_find(g, key) == kv); /* duplicate keys are rejected */
        uint64_t u;
        float f;
        bool b;
        (void)t2_gguf_get_u64(g, key, &u);
        (void)t2_gguf_get_f32(g, key, &f);
        (void)t2_gguf_get_bool(g, key, &b);
        free(t2_gguf_get_str(g, key));
    }
    if (kv->type == T2_GGUF_STRING)
        FUZZ_CHECK(fuzz_inside(kv->v.str.ptr, kv->v.str.len, data, size));
    if (kv->type != T2_GGUF_ARRAY)
        return;
    if (kv->arr_type == T2_GGUF_STRING) {
        for (uint64_t i = 0; i < kv->arr_count; i++)
            FUZZ_CHECK(fuzz_inside(kv->arr_strs[i].ptr, kv->arr_strs[i].len, data, size));
        return;
    }
    volatile float sink = 0; /* keeps the reads */
    for (uint64_t i = 0; i < kv->arr_count; i++)
        sink += t2_gguf_arr_f32(kv, i) + (float)t2_gguf_arr_int(kv, i);
    (void)sink;
}

static void try_tokenizer(const t2_gguf *g)
{
    t2_tokenizer *tok;
    t2_err err;
    if (t2_tok_load_gguf(&tok, g, &err) != 0)
        return;
    static const char text[] = "Hello world! <|im_start|>x 123 \xc3\xa9\xe2\x96\x81 \n\n";
    int32_t *ids;
    size_t n;
    if (t2_tok_encode(tok, text, sizeof text - 1, true, true, &ids, &n, &err) == 0) {
        char *out;
        size_t len;
        if (t2_tok_decode(tok, ids, n, false, &out, &len, &err) == 0)
            free(out);
        free(ids);
    }
    t2_tok_free(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    t2_gguf g;
    t2_err err;
    if (t2_gguf_parse(&g, data, size, "fuzz", &err) != 0)
        return 0;
    for (uint64_t i = 0; i < g.n_kv; i++)
        check_kv(&g, &g.kv[i], data, size);
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const t2_gguf_tensor *t = &g.tensors[i];
        FUZZ_CHECK(fuzz_inside(t->name.ptr, t->name.len, data, size));
        FUZZ_CHECK(fuzz_inside(t->data, t->nbytes, data, size));
        FUZZ_CHECK(t->nbytes == t2_ggml_type_nbytes(t->type, t->n_elements));
    }
    try_tokenizer(&g);
    t2_gguf_close(&g);
    return 0;
}
