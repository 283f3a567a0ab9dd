/* Loader for Hugging Face tokenizer.json (BPE models: vocabulary, merges,
 * added tokens, post-processor) and the optional tokenizer_config.json.
 * Every field is type-checked: the files are untrusted input. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "mapped_file.h"
#include "tok_json.h"

const char *tok_json_type(const json_t *node)
{
    return json_string_value(json_object_get(node, "type"));
}

bool tok_json_is_type(const json_t *node, const char *t)
{
    const char *s = tok_json_type(node);
    return s && strcmp(s, t) == 0;
}

int tok_json_bool(const json_t *obj, const char *key, bool def, bool *out, t2_err *err)
{
    const json_t *v = json_object_get(obj, key);
    *out = def;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return t2_err_set(err, "\"%s\" must be a boolean", key);
    *out = json_is_true(v);
    return 0;
}

/* Whether node, or a Sequence inside it, has a component of type t. */
static bool contains_type(const json_t *node, const char *t, int depth)
{
    if (!json_is_object(node) || depth > TOK_JSON_MAX_DEPTH)
        return false;
    if (tok_json_is_type(node, t))
        return true;
    static const char *const lists[] = {"pretokenizers", "normalizers", "decoders", "processors"};
    for (size_t k = 0; k < sizeof lists / sizeof lists[0]; k++) {
        const json_t *arr = json_object_get(node, lists[k]);
        size_t i;
        const json_t *el;
        json_array_foreach(arr, i, el) if (contains_type(el, t, depth + 1)) return true;
    }
    return false;
}

/* ---- vocabulary ---- */

static int id_of(const json_t *v, int64_t *id, t2_err *err)
{
    *id = -1;
    if (!json_is_integer(v))
        return t2_err_set(err, "token id is not an integer");
    *id = json_integer_value(v);
    if (*id < 0 || *id >= TOK_MAX_VOCAB)
        return t2_err_set(err, "token id %lld out of range", (long long)*id);
    return 0;
}

static int vocab_size(const json_t *vocab, const json_t *added, int32_t *n, t2_err *err)
{
    int64_t max = -1, id;
    const char *key;
    size_t klen, i;
    json_t *val;
    json_object_keylen_foreach((json_t *)vocab, key, klen, val)
    {
        (void)klen;
        if (id_of(val, &id, err) < 0)
            return t2_err_prefix(err, "model.vocab");
        max = id > max ? id : max;
    }
    json_array_foreach(added, i, val)
    {
        if (!json_is_object(val) || id_of(json_object_get(val, "id"), &id, err) < 0)
            return t2_err_prefix(err, "added_tokens");
        max = id > max ? id : max;
    }
    size_t count = json_object_size(vocab) + json_array_size(added);
    if (max < 0)
        return t2_err_set(err, "empty vocabulary");
    /* A few holes are fine; a huge id with few tokens is an attack. */
    if ((uint64_t)max >= 2 * (uint64_t)count + 1024)
        return t2_err_set(err, "token id %lld far beyond the %zu tokens", (long long)max, count);
    *n = (int32_t)(max + 1);
    return 0;
}

static int load_vocab(t2_tokenizer *tok, const json_t *vocab, t2_err *err)
{
    const char *key;
    size_t klen;
    json_t *val;
    json_object_keylen_foreach((json_t *)vocab, key, klen, val)
    {
        if (tok_vocab_set(&tok->v, (int32_t)json_integer_value(val), key, klen, 0, err) < 0)
            return t2_err_prefix(err, "model.vocab");
    }
    return 0;
}

static int load_added_one(t2_tokenizer *tok, const json_t *a, t2_err *err)
{
    const json_t *content = json_object_get(a, "content");
    if (!json_is_string(content))
        return t2_err_set(err, "\"content\" must be a string");
    bool special, lstrip, rstrip, single;
    if (tok_json_bool(a, "special", false, &special, err) < 0 ||
        tok_json_bool(a, "lstrip", false, &lstrip, err) < 0 ||
        tok_json_bool(a, "rstrip", false, &rstrip, err) < 0 ||
        tok_json_bool(a, "single_word", false, &single, err) < 0)
        return -1;
    uint8_t attr = TA_ADDED | (special ? TA_SPECIAL | TA_NOMERGE : 0) | (lstrip ? TA_LSTRIP : 0) |
                   (rstrip ? TA_RSTRIP : 0) | (single ? TA_SINGLE_WORD : 0);
    return tok_vocab_set_added(&tok->v, (int32_t)json_integer_value(json_object_get(a, "id")),
                               json_string_value(content), json_string_length(content), attr, err);
}

static int load_added(t2_tokenizer *tok, const json_t *added, t2_err *err)
{
    size_t i;
    json_t *a;
    json_array_foreach(added, i, a)
    {
        if (load_added_one(tok, a, err) < 0) {
            char where[48];
            snprintf(where, sizeof where, "added_tokens[%zu]", i);
            return t2_err_prefix(err, where);
        }
    }
    return 0;
}

static int load_merges(t2_tokenizer *tok, const json_t *merges, t2_err *err)
{
    size_t n = json_array_size(merges);
    if (n > TOK_MAX_VOCAB)
        return t2_err_set(err, "too many merges (%zu)", n);
    if (tok_merges_init(&tok->m.merges, n, err) < 0)
        return -1;
    size_t i;
    json_t *m;
    json_array_foreach(merges, i, m)
    {
        int rc;
        if (json_is_string(m)) {
            rc = tok_merges_add_text(tok, json_string_value(m), json_string_length(m), (uint32_t)i,
                                     err);
        } else if (json_is_array(m) && json_array_size(m) == 2 &&
                   json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
            const json_t *a = json_array_get(m, 0), *b = json_array_get(m, 1);
            rc = tok_merges_add_pair(tok, json_string_value(a), json_string_length(a),
                                     json_string_value(b), json_string_length(b), (uint32_t)i, err);
        } else {
            rc = t2_err_set(err, "merges[%zu]: expected \"a b\" or [\"a\", \"b\"]", i);
        }
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int model_options(t2_tokenizer *tok, const json_t *model, t2_err *err)
{
    tok_model *m = &tok->m;
    if (tok_json_bool(model, "byte_fallback", false, &m->byte_fallback, err) < 0 ||
        tok_json_bool(model, "fuse_unk", false, &m->fuse_unk, err) < 0 ||
        tok_json_bool(model, "ignore_merges", false, &m->ignore_merges, err) < 0)
        return t2_err_prefix(err, "model");
    static const char *const unsupported[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (size_t k = 0; k < 2; k++) {
        const json_t *v = json_object_get(model, unsupported[k]);
        if (v && !json_is_null(v) && !(json_is_string(v) && json_string_length(v) == 0))
            return t2_err_set(err, "model.%s is not supported", unsupported[k]);
    }
    const json_t *unk = json_object_get(model, "unk_token");
    if (unk && !json_is_null(unk)) {
        if (!json_is_string(unk))
            return t2_err_set(err, "model.unk_token must be a string");
        m->unk = tok_vocab_find(&tok->v, json_string_value(unk), json_string_length(unk));
    }
    return 0;
}

/* ---- post-processor: a TemplateProcessing starting with a special
 * token means the model prepends BOS ---- */

static const json_t *find_template(const json_t *pp)
{
    if (tok_json_is_type(pp, "TemplateProcessing"))
        return pp;
    size_t i;
    const json_t *el;
    json_array_foreach(json_object_get(pp, "processors"), i,
                       el) if (tok_json_is_type(el, "TemplateProcessing")) return el;
    return NULL;
}

static void load_post(t2_tokenizer *tok, const json_t *pp)
{
    const json_t *tp = find_template(pp);
    const json_t *first = json_array_get(json_object_get(tp, "single"), 0);
    const json_t *st = json_object_get(json_object_get(first, "SpecialToken"), "id");
    if (!json_is_string(st))
        return;
    const json_t *spec =
        json_object_get(json_object_get(tp, "special_tokens"), json_string_value(st));
    const json_t *id = json_array_get(json_object_get(spec, "ids"), 0);
    int32_t bos = tok_vocab_find(&tok->v, json_string_value(st), json_string_length(st));
    if (json_is_integer(id) && json_integer_value(id) >= 0 && json_integer_value(id) < tok->v.n)
        bos = (int32_t)json_integer_value(id);
    if (bos >= 0) {
        tok->bos = bos;
        tok->add_bos = true;
    }
}

/* ---- top level ---- */

static bool encoder_prepends_space(const t2_tokenizer *tok)
{
    for (size_t i = 0; i < tok->n_norms; i++)
        if (tok->norms[i].type == TN_PREPEND)
            return true;
    return false;
}

static int load_model(t2_tokenizer *tok, const json_t *root, t2_err *err)
{
    const json_t *model = json_object_get(root, "model");
    if (!json_is_object(model))
        return t2_err_set(err, "missing \"model\" object");
    const char *mt = tok_json_type(model);
    if (mt && strcmp(mt, "BPE") != 0)
        return t2_err_set(err, "unsupported model type \"%s\" (only BPE)", mt);
    const json_t *vocab = json_object_get(model, "vocab");
    const json_t *merges = json_object_get(model, "merges");
    const json_t *added = json_object_get(root, "added_tokens");
    if (!json_is_object(vocab))
        return t2_err_set(err, "model.vocab must be an object");
    if (!json_is_array(merges))
        return t2_err_set(err, "model.merges must be an array");
    if (added && !json_is_null(added) && !json_is_array(added))
        return t2_err_set(err, "added_tokens must be an array");
    int32_t n = 0;
    if (vocab_size(vocab, added, &n, err) < 0 || tok_vocab_init(&tok->v, n, err) < 0 ||
        load_vocab(tok, vocab, err) < 0 || load_added(tok, added, err) < 0 ||
        tok_vocab_finish(&tok->v, tok->kind, err) < 0 || load_merges(tok, merges, err) < 0)
        return -1;
    return model_options(tok, model, err);
}

static int load_root(t2_tokenizer *tok, const json_t *root, t2_err *err)
{
    if (!json_is_object(root))
        return t2_err_set(err, "top level is not an object");
    const json_t *pre = json_object_get(root, "pre_tokenizer");
    const json_t *dec = json_object_get(root, "decoder");
    bool byte_level = contains_type(pre, "ByteLevel", 0) || contains_type(dec, "ByteLevel", 0);
    tok->kind = byte_level ? T2_TOK_BYTE_LEVEL : T2_TOK_SPM;
    if (load_model(tok, root, err) < 0)
        return -1;
    if (tok_json_normalizer(tok, json_object_get(root, "normalizer"), 0, err) < 0 ||
        tok_json_pre(tok, pre, 0, err) < 0)
        return -1;
    if (tok->kind == T2_TOK_SPM && encoder_prepends_space(tok))
        tok->strip_space = true;
    if (tok->kind != T2_TOK_SPM)
        tok->strip_space = false;
    load_post(tok, json_object_get(root, "post_processor"));
    return tok_finish_load(tok, err);
}

static int load_buf(t2_tokenizer **out, const char *json, size_t len, t2_err *err)
{
    *out = NULL;
    if (!json || len == 0)
        return t2_err_set(err, "empty");
    json_error_t je;
    json_t *root = json_loadb(json, len, 0, &je);
    if (!root)
        return t2_err_set(err, "line %d column %d: %s", je.line, je.column, je.text);
    t2_tokenizer *tok = tok_new();
    int rc = tok ? load_root(tok, root, err) : t2_err_set(err, "out of memory");
    json_decref(root);
    if (rc < 0) {
        t2_tok_free(tok);
        return -1;
    }
    *out = tok;
    return 0;
}

int t2_tok_load_json_buf(t2_tokenizer **out, const char *json, size_t len, t2_err *err)
{
    if (load_buf(out, json, len, err) < 0)
        return t2_err_prefix(err, "tokenizer.json");
    return 0;
}

/* ---- tokenizer_config.json ---- */

/* bos_token / eos_token: "text" or {"content": "text", ...} */
static int32_t config_token(const t2_tokenizer *tok, const json_t *cfg, const char *key)
{
    const json_t *v = json_object_get(cfg, key);
    if (json_is_object(v))
        v = json_object_get(v, "content");
    if (!json_is_string(v))
        return -1;
    return tok_vocab_find(&tok->v, json_string_value(v), json_string_length(v));
}

/* chat_template: a string, or a list of {"name", "template"} ("default"
 * preferred, else the first). */
static const char *config_template(const json_t *cfg)
{
    const json_t *ct = json_object_get(cfg, "chat_template");
    if (json_is_string(ct))
        return json_string_value(ct);
    const char *first = NULL;
    size_t i;
    const json_t *el;
    json_array_foreach(ct, i, el)
    {
        const char *name = json_string_value(json_object_get(el, "name"));
        const char *t = json_string_value(json_object_get(el, "template"));
        if (t && name && strcmp(name, "default") == 0)
            return t;
        if (t && !first)
            first = t;
    }
    return first;
}

static int apply_config(t2_tokenizer *tok, const json_t *cfg, t2_err *err)
{
    if (!json_is_object(cfg))
        return t2_err_set(err, "top level is not an object");
    int32_t bos = config_token(tok, cfg, "bos_token"), eos = config_token(tok, cfg, "eos_token");
    if (bos >= 0)
        tok->bos = bos;
    if (eos >= 0)
        tok->eos = eos;
    const json_t *ab = json_object_get(cfg, "add_bos_token");
    if (json_is_boolean(ab))
        tok->add_bos = json_is_true(ab);
    const char *t = config_template(cfg);
    if (t) {
        free(tok->chat_template);
        tok->chat_template = strdup(t);
        if (!tok->chat_template)
            return t2_err_set(err, "out of memory");
    }
    return 0;
}

static int load_json_file(const char *path, json_t **root, t2_err *err)
{
    t2_mapped_file mf;
    if (t2_mapped_file_open(&mf, path, err) < 0)
        return -1;
    if (mf.size == 0) {
        t2_mapped_file_close(&mf);
        return t2_err_set(err, "%s: empty file", path);
    }
    json_error_t je;
    *root = json_loadb((const char *)mf.data, mf.size, 0, &je);
    t2_mapped_file_close(&mf);
    if (!*root)
        return t2_err_set(err, "%s: line %d column %d: %s", path, je.line, je.column, je.text);
    return 0;
}

int t2_tok_load_json(t2_tokenizer **out, const char *tokenizer_json_path,
                     const char *tokenizer_config_json_path, t2_err *err)
{
    *out = NULL;
    t2_mapped_file mf;
    if (t2_mapped_file_open(&mf, tokenizer_json_path, err) < 0)
        return -1;
    t2_tokenizer *tok;
    int rc = load_buf(&tok, (const char *)mf.data, mf.size, err);
    t2_mapped_file_close(&mf);
    if (rc < 0)
        return t2_err_prefix(err, tokenizer_json_path);
    if (tokenizer_config_json_path) {
        json_t *cfg = NULL;
        rc = load_json_file(tokenizer_config_json_path, &cfg, err);
        if (rc == 0) {
            rc = apply_config(tok, cfg, err);
            json_decref(cfg);
            if (rc < 0)
                t2_err_prefix(err, tokenizer_config_json_path);
        }
        if (rc < 0) {
            t2_tok_free(tok);
            return -1;
        }
    }
    *out = tok;
    return 0;
}
