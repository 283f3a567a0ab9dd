/* tokenizer.json / tokenizer_config.json -> tokenizer.ggml.* keys, the
 * way llama.cpp's converter writes a byte-level BPE ("gpt2") vocabulary. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"
#include "gguf_export.h"

#define MAX_TOKENIZER_BYTES (512u << 20)

/* llama.cpp token types */
enum { TT_NORMAL = 1, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5 };

typedef struct vocab {
    size_t n;
    const char **tok; /* by id; points into the JSON or into owned */
    int32_t *type;
    char **owned; /* "[PAD<id>]" strings we made */
    size_t n_merges;
    char **merges; /* "a b" */
} vocab;

static void vocab_free(vocab *v)
{
    if (v->owned)
        for (size_t i = 0; i < v->n; i++)
            free(v->owned[i]);
    for (size_t i = 0; i < v->n_merges; i++)
        free(v->merges[i]);
    free(v->owned);
    free(v->merges);
    free(v->tok);
    free(v->type);
}

static json_t *load_json(const char *dir, const char *file, bool required, t2_err *err)
{
    char *p = t2_path_join(dir, file);
    if (!p) {
        t2_err_set(err, "out of memory");
        return NULL;
    }
    json_t *root = NULL;
    char *text = NULL;
    size_t len;
    if (!required && !t2_file_exists(p)) {
        free(p);
        return json_object(); /* empty: every lookup misses */
    }
    if (t2_read_file(p, MAX_TOKENIZER_BYTES, &text, &len, err) == 0) {
        json_error_t je;
        root = json_loadb(text, len, 0, &je);
        if (!root)
            t2_err_set(err, "%s: invalid JSON at line %d: %s", p, je.line, je.text);
    }
    free(text);
    free(p);
    return root;
}

static int set_token(vocab *v, json_int_t id, const char *text, int32_t type, t2_err *err)
{
    if (id < 0 || (size_t)id >= v->n)
        return t2_err_set(err, "tokenizer.json: token id %lld out of range (vocab %zu)",
                          (long long)id, v->n);
    v->tok[id] = text;
    v->type[id] = type;
    return 0;
}

static int read_vocab(vocab *v, json_t *model, json_t *added, t2_err *err)
{
    json_t *vj = json_object_get(model, "vocab");
    if (!json_is_object(vj))
        return t2_err_set(err, "tokenizer.json: model.vocab is not an object");
    const char *key;
    json_t *val;
    json_object_foreach(vj, key, val)
    {
        if (!json_is_integer(val))
            return t2_err_set(err, "tokenizer.json: id of token '%s' is not an integer", key);
        json_int_t id = json_integer_value(val);
        if (id >= 0 && (size_t)id < v->n && v->tok[id])
            return t2_err_set(err, "tokenizer.json: token id %lld given twice", (long long)id);
        if (set_token(v, id, key, TT_NORMAL, err))
            return -1;
    }
    /* added tokens take precedence, as in Hugging Face tokenizers */
    size_t i;
    json_array_foreach(added, i, val)
    {
        json_t *id = json_object_get(val, "id");
        const char *content = json_string_value(json_object_get(val, "content"));
        if (!json_is_integer(id) || !content)
            return t2_err_set(err, "tokenizer.json: added_tokens[%zu] lacks id or content", i);
        int32_t type = json_is_true(json_object_get(val, "special")) ? TT_CONTROL : TT_USER_DEFINED;
        if (set_token(v, json_integer_value(id), content, type, err))
            return -1;
    }
    /* ids the tokenizer does not use: llama.cpp's "[PAD<id>]" placeholders */
    for (size_t id = 0; id < v->n; id++) {
        if (v->tok[id])
            continue;
        char buf[32];
        snprintf(buf, sizeof buf, "[PAD%zu]", id);
        if (!(v->owned[id] = strdup(buf)))
            return t2_err_set(err, "out of memory");
        v->tok[id] = v->owned[id];
        v->type[id] = TT_UNUSED;
    }
    return 0;
}

/* merges are "a b" strings (older files) or ["a", "b"] pairs (newer). */
static int read_merges(vocab *v, json_t *model, t2_err *err)
{
    json_t *mj = json_object_get(model, "merges");
    if (!mj)
        return 0;
    if (!json_is_array(mj))
        return t2_err_set(err, "tokenizer.json: model.merges is not an array");
    size_t n = json_array_size(mj);
    v->merges = calloc(n ? n : 1, sizeof *v->merges);
    if (!v->merges)
        return t2_err_set(err, "out of memory");
    size_t i;
    json_t *e;
    json_array_foreach(mj, i, e)
    {
        const char *a = NULL, *b = NULL;
        if (json_is_string(e)) {
            v->merges[i] = strdup(json_string_value(e));
        } else if (json_is_array(e) && json_array_size(e) == 2 &&
                   (a = json_string_value(json_array_get(e, 0))) &&
                   (b = json_string_value(json_array_get(e, 1)))) {
            if (asprintf(&v->merges[i], "%s %s", a, b) < 0)
                v->merges[i] = NULL;
        } else {
            return t2_err_set(err, "tokenizer.json: merges[%zu] is neither \"a b\" nor [a, b]", i);
        }
        if (!v->merges[i])
            return t2_err_set(err, "out of memory");
        v->n_merges = i + 1;
    }
    return 0;
}

static int check_model(json_t *model, t2_err *err)
{
    const char *type = json_string_value(json_object_get(model, "type"));
    if (!json_is_object(model) || !type || strcmp(type, "BPE") != 0)
        return t2_err_set(err, "tokenizer.json: model type %s is not supported (BPE only)",
                          type ? type : "(missing)");
    if (json_is_true(json_object_get(model, "byte_fallback")))
        return t2_err_set(err, "tokenizer.json: SentencePiece-style BPE (byte_fallback) is not "
                               "supported by the converter, only byte-level BPE");
    return 0;
}

/* A special token named in tokenizer_config.json ("pad_token": "x" or
 * {"content": "x"}) -> its id, or -1. */
static int config_token_id(json_t *cfg, const char *field, const vocab *v)
{
    json_t *t = json_object_get(cfg, field);
    const char *s =
        json_is_object(t) ? json_string_value(json_object_get(t, "content")) : json_string_value(t);
    if (!s)
        return -1;
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->tok[i], s) == 0)
            return (int)i;
    return -1;
}

/* tokenizer_config.json "chat_template": a string, or a list of
 * {name, template} where "default" is used; else chat_template.jinja. */
static int write_chat_template(t2_gguf_writer *w, json_t *cfg, const char *dir, t2_err *err)
{
    json_t *ct = json_object_get(cfg, "chat_template");
    size_t i;
    json_t *e;
    if (json_is_string(ct))
        return t2_gguf_w_str(w, "tokenizer.chat_template", json_string_value(ct));
    json_array_foreach(ct, i, e)
    {
        const char *name = json_string_value(json_object_get(e, "name"));
        const char *tmpl = json_string_value(json_object_get(e, "template"));
        if (name && tmpl && strcmp(name, "default") == 0)
            return t2_gguf_w_str(w, "tokenizer.chat_template", tmpl);
    }
    char *p = t2_path_join(dir, "chat_template.jinja");
    int rc = 0;
    if (p && t2_file_exists(p)) {
        char *text;
        size_t len;
        rc = t2_read_file(p, MAX_TOKENIZER_BYTES, &text, &len, err);
        if (rc == 0) {
            t2_gguf_w_str(w, "tokenizer.chat_template", text);
            free(text);
        }
    }
    free(p);
    return rc;
}

static void write_vocab(t2_gguf_writer *w, const vocab *v, const char *pre)
{
    t2_gguf_w_str(w, "tokenizer.ggml.model", "gpt2");
    t2_gguf_w_str(w, "tokenizer.ggml.pre", pre);
    t2_gguf_w_arr_str(w, "tokenizer.ggml.tokens", v->tok, v->n);
    t2_gguf_w_arr_i32(w, "tokenizer.ggml.token_type", v->type, v->n);
    t2_gguf_w_arr_str(w, "tokenizer.ggml.merges", (const char *const *)v->merges, v->n_merges);
}

static void write_special(t2_gguf_writer *w, const vocab *v, const t2_config *c, json_t *cfg)
{
    if (c->bos_id >= 0)
        t2_gguf_w_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)c->bos_id);
    if (c->n_eos > 0)
        t2_gguf_w_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)c->eos_ids[0]);
    int pad = config_token_id(cfg, "pad_token", v);
    if (pad >= 0)
        t2_gguf_w_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)pad);
    /* byte-level BPE tokenizers add no BOS unless the config says so */
    t2_gguf_w_bool(w, "tokenizer.ggml.add_bos_token",
                   json_is_true(json_object_get(cfg, "add_bos_token")));
}

int t2_gguf_export_tokenizer(t2_gguf_writer *w, const char *hf_dir, const t2_config *cfg,
                             const char *pre, t2_err *err)
{
    json_t *tj = load_json(hf_dir, "tokenizer.json", true, err);
    if (!tj)
        return -1;
    json_t *tc = load_json(hf_dir, "tokenizer_config.json", false, err);
    vocab v = {0};
    json_t *model = json_object_get(tj, "model");
    int rc = tc ? check_model(model, err) : -1;
    if (rc == 0) {
        v.n = (size_t)cfg->vocab;
        v.tok = calloc(v.n, sizeof *v.tok);
        v.type = calloc(v.n, sizeof *v.type);
        v.owned = calloc(v.n, sizeof *v.owned);
        if (!v.tok || !v.type || !v.owned)
            rc = t2_err_set(err, "out of memory");
    }
    if (rc == 0)
        rc = read_vocab(&v, model, json_object_get(tj, "added_tokens"), err);
    if (rc == 0)
        rc = read_merges(&v, model, err);
    if (rc == 0) {
        write_vocab(w, &v, pre);
        write_special(w, &v, cfg, tc);
        rc = write_chat_template(w, tc, hf_dir, err);
    }
    if (rc != 0)
        t2_err_prefix(err, hf_dir);
    vocab_free(&v);
    json_decref(tc);
    json_decref(tj);
    return rc;
}
