/* config.json -> t2_config. Accepts transformers 4 (rope_theta,
 * rope_scaling, torch_dtype) and transformers 5 (rope_parameters, dtype). */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "model.h"

static int get_int(json_t *root, const char *key, int *out, bool required, t2_err *err)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (required)
            return t2_err_set(err, "config.json: missing '%s'", key);
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > (1 << 30))
        return t2_err_set(err, "config.json: '%s' must be a non-negative integer", key);
    *out = (int)json_integer_value(v);
    return 0;
}

static int get_float(json_t *obj, const char *key, float *out, t2_err *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v) || !isfinite(json_number_value(v)))
        return t2_err_set(err, "config.json: '%s' must be a number", key);
    *out = (float)json_number_value(v);
    return 0;
}

static int parse_arch(t2_config *cfg, json_t *root, t2_err *err)
{
    json_t *archs = json_object_get(root, "architectures");
    const char *a = json_is_array(archs) ? json_string_value(json_array_get(archs, 0)) : NULL;
    if (!a) {
        const char *mt = json_string_value(json_object_get(root, "model_type"));
        if (!mt)
            return t2_err_set(err, "config.json: no 'architectures' or 'model_type'");
        a = strcmp(mt, "qwen2") == 0     ? "Qwen2ForCausalLM"
            : strcmp(mt, "mistral") == 0 ? "MistralForCausalLM"
            : strcmp(mt, "llama") == 0   ? "LlamaForCausalLM"
                                         : mt;
    }
    if (strcmp(a, "LlamaForCausalLM") == 0 || strcmp(a, "MistralForCausalLM") == 0) {
        cfg->arch = T2_ARCH_LLAMA;
    } else if (strcmp(a, "Qwen2ForCausalLM") == 0) {
        cfg->arch = T2_ARCH_QWEN2;
        cfg->qkv_bias = true;
    } else {
        return t2_err_set(err,
                          "config.json: unsupported architecture '%s' (LlamaForCausalLM, "
                          "MistralForCausalLM, Qwen2ForCausalLM are)",
                          a);
    }
    return 0;
}

/* rope_scaling (transformers 4) or rope_parameters (5): only "llama3"
 * changes the frequencies; "default" / absent means none. */
static int parse_rope(t2_config *cfg, json_t *root, t2_err *err)
{
    cfg->rope_theta = 10000.0f;
    if (get_float(root, "rope_theta", &cfg->rope_theta, err) != 0)
        return -1;
    json_t *rp = json_object_get(root, "rope_parameters");
    if (json_is_object(rp) && get_float(rp, "rope_theta", &cfg->rope_theta, err) != 0)
        return -1;
    json_t *rs = json_object_get(root, "rope_scaling");
    if (!json_is_object(rs))
        rs = rp;
    if (!json_is_object(rs))
        return 0;
    const char *type = json_string_value(json_object_get(rs, "rope_type"));
    if (!type)
        type = json_string_value(json_object_get(rs, "type"));
    if (!type || strcmp(type, "default") == 0)
        return 0;
    if (strcmp(type, "llama3") != 0)
        return t2_err_set(err, "config.json: unsupported rope scaling type '%s' (llama3 is)", type);
    cfg->rope_factor = 8.0f;
    cfg->rope_low_freq_factor = 1.0f;
    cfg->rope_high_freq_factor = 4.0f;
    cfg->rope_orig_max_pos = 8192;
    if (get_float(rs, "factor", &cfg->rope_factor, err) != 0 ||
        get_float(rs, "low_freq_factor", &cfg->rope_low_freq_factor, err) != 0 ||
        get_float(rs, "high_freq_factor", &cfg->rope_high_freq_factor, err) != 0 ||
        get_int(rs, "original_max_position_embeddings", &cfg->rope_orig_max_pos, false, err) != 0)
        return -1;
    if (!(cfg->rope_factor > 0) || !(cfg->rope_high_freq_factor > cfg->rope_low_freq_factor) ||
        cfg->rope_orig_max_pos <= 0)
        return t2_err_set(err, "config.json: invalid llama3 rope scaling parameters");
    return 0;
}

static int parse_eos(t2_config *cfg, json_t *root, t2_err *err)
{
    json_t *v = json_object_get(root, "eos_token_id");
    cfg->n_eos = 0;
    if (json_is_integer(v)) {
        cfg->eos_ids[cfg->n_eos++] = (int)json_integer_value(v);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            if (!json_is_integer(e))
                return t2_err_set(err, "config.json: eos_token_id entries must be integers");
            if (cfg->n_eos < T2_MAX_EOS)
                cfg->eos_ids[cfg->n_eos++] = (int)json_integer_value(e);
        }
    }
    cfg->bos_id = -1;
    json_t *b = json_object_get(root, "bos_token_id");
    if (json_is_integer(b))
        cfg->bos_id = (int)json_integer_value(b);
    return 0;
}

static int parse_fields(t2_config *cfg, json_t *root, t2_err *err)
{
    if (parse_arch(cfg, root, err) != 0)
        return -1;
    cfg->max_pos = 2048;
    cfg->rms_eps = 1e-6f;
    if (get_int(root, "hidden_size", &cfg->hidden, true, err) ||
        get_int(root, "intermediate_size", &cfg->intermediate, true, err) ||
        get_int(root, "num_hidden_layers", &cfg->n_layers, true, err) ||
        get_int(root, "num_attention_heads", &cfg->n_heads, true, err) ||
        get_int(root, "vocab_size", &cfg->vocab, true, err) ||
        get_int(root, "max_position_embeddings", &cfg->max_pos, false, err) ||
        get_float(root, "rms_norm_eps", &cfg->rms_eps, err))
        return -1;
    cfg->n_kv_heads = cfg->n_heads;
    if (get_int(root, "num_key_value_heads", &cfg->n_kv_heads, false, err) != 0)
        return -1;
    cfg->head_dim = cfg->n_heads > 0 ? cfg->hidden / cfg->n_heads : 0;
    if (get_int(root, "head_dim", &cfg->head_dim, false, err) != 0)
        return -1;
    json_t *tie = json_object_get(root, "tie_word_embeddings");
    cfg->tie_embeddings = json_is_true(tie);
    if (json_is_true(json_object_get(root, "attention_bias")))
        cfg->qkv_bias = cfg->o_bias = true;
    if (json_is_true(json_object_get(root, "mlp_bias")))
        return t2_err_set(err, "config.json: mlp_bias is not supported");
    const char *dtype = json_string_value(json_object_get(root, "dtype"));
    if (!dtype)
        dtype = json_string_value(json_object_get(root, "torch_dtype"));
    if (dtype && strcmp(dtype, "bfloat16") == 0)
        cfg->rope_freq_dtype = T2_ROPE_FREQ_BF16;
    else if (dtype && strcmp(dtype, "float16") == 0)
        cfg->rope_freq_dtype = T2_ROPE_FREQ_F16;
    if (parse_rope(cfg, root, err) != 0 || parse_eos(cfg, root, err) != 0)
        return -1;
    return 0;
}

int t2_config_parse_json(t2_config *cfg, const char *json, size_t len, t2_err *err)
{
    memset(cfg, 0, sizeof *cfg);
    json_error_t jerr;
    json_t *root = json_loadb(json, len, 0, &jerr);
    if (!root)
        return t2_err_set(err, "config.json: invalid JSON: %s (line %d)", jerr.text, jerr.line);
    int rc = json_is_object(root) ? parse_fields(cfg, root, err)
                                  : t2_err_set(err, "config.json: not a JSON object");
    json_decref(root);
    return rc;
}
