/* Hugging Face model directory: config.json, model.safetensors or a
 * sharded model.safetensors.index.json, tokenizer.json. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"
#include "model.h"
#include "safetensors.h"

#define MAX_CONFIG_BYTES (4u << 20)
#define MAX_INDEX_BYTES (64u << 20)

static bool ignorable_tensor(const t2_model *m, const char *name)
{
    size_t n = strlen(name);
    const char *inv = "rotary_emb.inv_freq";
    if (n >= strlen(inv) && strcmp(name + n - strlen(inv), inv) == 0)
        return true;
    /* some tied checkpoints also store the (identical) output head */
    return m->cfg.tie_embeddings && strcmp(name, "lm_head.weight") == 0;
}

static int load_tensor(t2_model *m, const t2_st_tensor *t, t2_err *err)
{
    size_t rows, cols, slot;
    float *dst = t2_model_slot(m, t->name, &rows, &cols, &slot);
    if (!dst) {
        if (ignorable_tensor(m, t->name))
            return 0;
        return t2_err_set(err, "unexpected tensor '%s' for this config", t->name);
    }
    bool shape_ok = cols == 1 ? (t->n_dims == 1 && t->shape[0] == rows)
                              : (t->n_dims == 2 && t->shape[0] == rows && t->shape[1] == cols);
    if (!shape_ok)
        return t2_err_set(err, "tensor '%s' has shape [%llu%s%llu], config expects [%zu, %zu]",
                          t->name, (unsigned long long)t->shape[0], t->n_dims > 1 ? ", " : "",
                          t->n_dims > 1 ? (unsigned long long)t->shape[1] : 0ULL, rows, cols);
    if (t2_model_mark_loaded(m, slot, err) != 0)
        return -1;
    t2_st_to_f32(t, dst);
    return 0;
}

static int load_safetensors_file(t2_model *m, const char *path, t2_err *err)
{
    t2_safetensors st;
    if (t2_st_open(&st, path, err) != 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < st.n_tensors && rc == 0; i++)
        rc = load_tensor(m, &st.tensors[i], err);
    t2_st_close(&st);
    if (rc != 0)
        return t2_err_prefix(err, path);
    return 0;
}

/* model.safetensors.index.json: {"weight_map": {tensor: shard file}};
 * each distinct shard is loaded once. Shard names must be plain file
 * names inside the directory. */
static int load_sharded(t2_model *m, const char *dir, const char *index_path, t2_err *err)
{
    char *text;
    size_t len;
    if (t2_read_file(index_path, MAX_INDEX_BYTES, &text, &len, err) != 0)
        return -1;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, 0, &jerr);
    free(text);
    json_t *map = root ? json_object_get(root, "weight_map") : NULL;
    if (!json_is_object(map)) {
        json_decref(root);
        return t2_err_set(err, "%s: no weight_map object", index_path);
    }
    json_t *done = json_object();
    int rc = 0;
    const char *key;
    json_t *v;
    json_object_foreach(map, key, v)
    {
        const char *shard = json_string_value(v);
        if (!shard || strchr(shard, '/') || strcmp(shard, "..") == 0 || !*shard) {
            rc = t2_err_set(err, "%s: invalid shard name for '%s'", index_path, key);
            break;
        }
        if (json_object_get(done, shard))
            continue;
        json_object_set_new(done, shard, json_true());
        char *p = t2_path_join(dir, shard);
        rc = p ? load_safetensors_file(m, p, err) : t2_err_set(err, "out of memory");
        free(p);
        if (rc != 0)
            break;
    }
    json_decref(done);
    json_decref(root);
    return rc;
}

/* generation_config.json may list more end-of-sequence ids (Llama 3
 * instruct ends turns with <|eot_id|>). */
static void add_eos(t2_config *c, int id)
{
    if (id < 0)
        return;
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] == id)
            return;
    if (c->n_eos < T2_MAX_EOS)
        c->eos_ids[c->n_eos++] = id;
}

static void read_generation_config(t2_model *m, const char *dir)
{
    char *p = t2_path_join(dir, "generation_config.json");
    char *text = NULL;
    size_t len;
    if (p && t2_file_exists(p) && t2_read_file(p, MAX_CONFIG_BYTES, &text, &len, NULL) == 0) {
        json_t *root = json_loadb(text, len, 0, NULL);
        json_t *eos = root ? json_object_get(root, "eos_token_id") : NULL;
        if (json_is_integer(eos))
            add_eos(&m->cfg, (int)json_integer_value(eos));
        size_t i;
        json_t *e;
        if (json_is_array(eos))
            json_array_foreach(eos, i, e) if (json_is_integer(e))
                add_eos(&m->cfg, (int)json_integer_value(e));
        json_decref(root);
    }
    free(text);
    free(p);
}

static int load_config(t2_model *m, const char *dir, t2_err *err)
{
    char *p = t2_path_join(dir, "config.json");
    if (!p)
        return t2_err_set(err, "out of memory");
    char *text;
    size_t len;
    int rc = t2_read_file(p, MAX_CONFIG_BYTES, &text, &len, err);
    if (rc == 0) {
        rc = t2_config_parse_json(&m->cfg, text, len, err);
        if (rc != 0)
            t2_err_prefix(err, dir);
        free(text);
    }
    free(p);
    return rc;
}

static int load_weights(t2_model *m, const char *dir, t2_err *err)
{
    char *single = t2_path_join(dir, "model.safetensors");
    char *index = t2_path_join(dir, "model.safetensors.index.json");
    int rc;
    if (!single || !index)
        rc = t2_err_set(err, "out of memory");
    else if (t2_file_exists(single))
        rc = load_safetensors_file(m, single, err);
    else if (t2_file_exists(index))
        rc = load_sharded(m, dir, index, err);
    else
        rc = t2_err_set(err, "%s: neither model.safetensors nor model.safetensors.index.json", dir);
    free(single);
    free(index);
    if (rc == 0 && t2_model_check_complete(m, err) != 0)
        return t2_err_prefix(err, dir);
    return rc;
}

static int load_tokenizer(t2_model *m, const char *dir, t2_err *err)
{
    char *tj = t2_path_join(dir, "tokenizer.json");
    char *tc = t2_path_join(dir, "tokenizer_config.json");
    int rc;
    if (!tj || !tc)
        rc = t2_err_set(err, "out of memory");
    else
        rc = t2_tok_load_json(&m->tok, tj, t2_file_exists(tc) ? tc : NULL, err);
    free(tj);
    free(tc);
    if (rc != 0)
        return -1;
    if (t2_tok_vocab_size(m->tok) > m->cfg.vocab)
        return t2_err_set(err, "%s: tokenizer has %d tokens but the model's vocab_size is %d", dir,
                          t2_tok_vocab_size(m->tok), m->cfg.vocab);
    add_eos(&m->cfg, t2_tok_eos(m->tok));
    return 0;
}

int t2_model_load_hf_dir(t2_model *m, const char *dir, t2_err *err)
{
    if (load_config(m, dir, err) != 0)
        return -1;
    read_generation_config(m, dir);
    if (t2_model_init_weights(m, err) != 0)
        return t2_err_prefix(err, dir);
    if (load_weights(m, dir, err) != 0)
        return -1;
    return load_tokenizer(m, dir, err);
}
