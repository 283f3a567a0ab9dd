#include "gguf_names.h"

#include <stdio.h>
#include <string.h>

typedef struct name_pair {
    const char *hf, *gguf;
} name_pair;

static const name_pair k_global[] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
};

/* per layer: after "model.layers.N." / "blk.N." */
static const name_pair k_layer[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.o_proj.bias", "attn_output.bias"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
};

#define N_GLOBAL (sizeof k_global / sizeof k_global[0])
#define N_LAYER (sizeof k_layer / sizeof k_layer[0])

/* Reads a canonical layer number ("0", "17"; no sign, no leading zero,
 * at most 6 digits) followed by '.'; returns the rest or NULL. */
static const char *parse_layer(const char *s, long *layer)
{
    size_t n = 0;
    while (s[n] >= '0' && s[n] <= '9')
        n++;
    if (n == 0 || n > 6 || (n > 1 && s[0] == '0') || s[n] != '.')
        return NULL;
    *layer = 0;
    for (size_t i = 0; i < n; i++)
        *layer = *layer * 10 + (s[i] - '0');
    return s + n + 1;
}

static int map_name(const char *in, char *out, size_t cap, bool to_gguf)
{
    for (size_t i = 0; i < N_GLOBAL; i++) {
        const char *from = to_gguf ? k_global[i].hf : k_global[i].gguf;
        const char *to = to_gguf ? k_global[i].gguf : k_global[i].hf;
        if (strcmp(in, from) == 0) {
            int w = snprintf(out, cap, "%s", to);
            return w >= 0 && (size_t)w < cap ? 0 : -1;
        }
    }
    const char *prefix = to_gguf ? "model.layers." : "blk.";
    size_t pl = strlen(prefix);
    if (strncmp(in, prefix, pl) != 0)
        return -1;
    long layer;
    const char *rest = parse_layer(in + pl, &layer);
    if (!rest)
        return -1;
    for (size_t i = 0; i < N_LAYER; i++) {
        const char *from = to_gguf ? k_layer[i].hf : k_layer[i].gguf;
        const char *to = to_gguf ? k_layer[i].gguf : k_layer[i].hf;
        if (strcmp(rest, from) == 0) {
            int w = snprintf(out, cap, "%s%ld.%s", to_gguf ? "blk." : "model.layers.", layer, to);
            return w >= 0 && (size_t)w < cap ? 0 : -1;
        }
    }
    return -1;
}

int t2_gguf_name_from_hf(const char *hf, char *out, size_t cap)
{
    return map_name(hf, out, cap, true);
}

int t2_gguf_name_to_hf(const char *gguf, char *out, size_t cap)
{
    return map_name(gguf, out, cap, false);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

bool t2_gguf_is_permuted_qk(const char *hf, bool *is_k)
{
    *is_k = ends_with(hf, ".self_attn.k_proj.weight") || ends_with(hf, ".self_attn.k_proj.bias");
    return *is_k || ends_with(hf, ".self_attn.q_proj.weight") ||
           ends_with(hf, ".self_attn.q_proj.bias");
}

/* Within each head of hd = 2*half rows, HF row s*half + i (s = 0, 1)
 * becomes GGUF row 2*i + s. */
void t2_gguf_permute_qk(const float *src, float *dst, size_t rows, size_t cols, int n_head,
                        bool inverse)
{
    size_t hd = rows / (size_t)n_head, half = hd / 2;
    for (size_t h = 0; h < (size_t)n_head; h++)
        for (size_t s = 0; s < 2; s++)
            for (size_t i = 0; i < half; i++) {
                size_t hf_row = h * hd + s * half + i, gg_row = h * hd + 2 * i + s;
                size_t from = inverse ? gg_row : hf_row, to = inverse ? hf_row : gg_row;
                memcpy(dst + to * cols, src + from * cols, cols * sizeof *dst);
            }
}
