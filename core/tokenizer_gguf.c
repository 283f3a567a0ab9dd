/* Loader for the tokenizer embedded in a GGUF (tokenizer.ggml.*):
 * "gpt2" is byte-level BPE with a merge list, its pre-tokenizer regex
 * chosen by tokenizer.ggml.pre; "llama" is SentencePiece BPE, merged by
 * token score as llama.cpp does, with <0xNN> byte fallback. */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

/* llama.cpp token types */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

/* *out = the array under key, NULL if absent; -1 if of the wrong type. */
static int get_array(const t2_gguf *g, const char *key, bool strings, const t2_gguf_kv **out,
                     t2_err *err)
{
    const t2_gguf_kv *kv = t2_gguf_find(g, key);
    *out = NULL;
    if (!kv)
        return 0;
    bool is_str = kv->type == T2_GGUF_ARRAY && kv->arr_type == T2_GGUF_STRING;
    bool is_num = kv->type == T2_GGUF_ARRAY && kv->arr_type != T2_GGUF_STRING &&
                  kv->arr_type != T2_GGUF_ARRAY;
    if (strings ? !is_str : !is_num)
        return t2_err_set(err, "%s: expected an array of %s", key, strings ? "strings" : "numbers");
    if (strings && kv->arr_count && !kv->arr_strs)
        return t2_err_set(err, "%s: string array not indexed", key);
    *out = kv;
    return 0;
}

static int req_strings(const t2_gguf *g, const char *key, const t2_gguf_kv **out, t2_err *err)
{
    if (get_array(g, key, true, out, err) < 0)
        return -1;
    return *out ? 0 : t2_err_set(err, "%s missing", key);
}

/* Optional per-token array: absent is fine, a wrong count or type is not. */
static int opt_array(const t2_gguf *g, const char *key, uint64_t n, const t2_gguf_kv **out,
                     t2_err *err)
{
    if (get_array(g, key, false, out, err) < 0)
        return -1;
    if (*out && (*out)->arr_count != n)
        return t2_err_set(err, "%s has %llu entries for %llu tokens", key,
                          (unsigned long long)(*out)->arr_count, (unsigned long long)n);
    return 0;
}

static uint8_t attr_of_type(int64_t t)
{
    switch (t) {
    case TT_UNKNOWN:
    case TT_CONTROL: return TA_ADDED | TA_SPECIAL | TA_NOMERGE;
    case TT_USER: return TA_ADDED;
    case TT_UNUSED: return TA_NOMERGE;
    case TT_BYTE: return TA_BYTE | TA_NOMERGE;
    default: return 0;
    }
}

static int load_tokens(t2_tokenizer *tok, const t2_gguf *g, t2_err *err)
{
    const t2_gguf_kv *toks;
    if (req_strings(g, "tokenizer.ggml.tokens", &toks, err) < 0)
        return -1;
    uint64_t n = toks->arr_count;
    if (n == 0 || n > TOK_MAX_VOCAB)
        return t2_err_set(err, "tokenizer.ggml.tokens: %llu tokens (1..%d allowed)",
                          (unsigned long long)n, TOK_MAX_VOCAB);
    const t2_gguf_kv *types = NULL, *scores = NULL;
    if (opt_array(g, "tokenizer.ggml.token_type", n, &types, err) < 0 ||
        opt_array(g, "tokenizer.ggml.scores", n, &scores, err) < 0 ||
        tok_vocab_init(&tok->v, (int32_t)n, err) < 0)
        return -1;
    if (scores) {
        tok->v.score = malloc((size_t)n * sizeof *tok->v.score);
        if (!tok->v.score)
            return t2_err_set(err, "out of memory (scores)");
    }
    for (uint64_t i = 0; i < n; i++) {
        uint8_t attr = types ? attr_of_type(t2_gguf_arr_int(types, i)) : 0;
        const t2_gguf_str *s = &toks->arr_strs[i];
        if (tok_vocab_set(&tok->v, (int32_t)i, s->ptr, (size_t)s->len, attr, err) < 0)
            return -1;
        if (scores)
            tok->v.score[i] = t2_gguf_arr_f32(scores, i);
    }
    return tok_vocab_finish(&tok->v, tok->kind, err);
}

static int load_merges(t2_tokenizer *tok, const t2_gguf *g, t2_err *err)
{
    const t2_gguf_kv *m;
    if (req_strings(g, "tokenizer.ggml.merges", &m, err) < 0)
        return -1;
    if (m->arr_count > TOK_MAX_VOCAB)
        return t2_err_set(err, "too many merges (%llu)", (unsigned long long)m->arr_count);
    if (tok_merges_init(&tok->m.merges, (size_t)m->arr_count, err) < 0)
        return -1;
    for (uint64_t i = 0; i < m->arr_count; i++)
        if (tok_merges_add_text(tok, m->arr_strs[i].ptr, (size_t)m->arr_strs[i].len, (uint32_t)i,
                                err) < 0)
            return -1;
    return 0;
}

static bool name_in(const char *name, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(name, *list) == 0)
            return true;
    return false;
}

/* GGUF stores only the pre-tokenizer's name; these are the regexes of the
 * models' own tokenizer.json files. Unknown names get GPT-2's. */
static int bpe_pretokenizer(t2_tokenizer *tok, const char *pre, t2_err *err)
{
    static const char *const digits[] = {"starcoder", "smollm", NULL};
    static const char *const llama3[] = {"llama3", "llama-bpe", "llama-v3", NULL};
    const char *re = TOK_GPT2_REGEX;
    if (pre && name_in(pre, digits)) {
        if (tok_add_split(tok, "\\p{N}", 5, false, TS_ISOLATED, false, err) < 0)
            return -1;
    } else if (pre && name_in(pre, llama3)) {
        re = TOK_LLAMA3_REGEX;
        tok->m.ignore_merges = true;
    } else if (pre && strcmp(pre, "qwen2") == 0) {
        re = TOK_QWEN2_REGEX;
    }
    return tok_add_split(tok, re, strlen(re), false, TS_ISOLATED, false, err);
}

/* SentencePiece: "▁" for spaces, and one in front of each stretch of
 * text (the start and after every added token), as llama.cpp does. */
static int spm_pipeline(t2_tokenizer *tok, const t2_gguf *g, t2_err *err)
{
    bool prefix = true;
    (void)t2_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &prefix);
    if (prefix && tok_add_norm_prepend(tok, "\xE2\x96\x81", 3, err) < 0)
        return -1;
    tok->strip_space = prefix;
    tok->m.score_merges = true;
    tok->m.byte_fallback = true;
    return tok_add_norm_replace(tok, " ", 1, true, "\xE2\x96\x81", 3, err);
}

static int32_t get_id(const t2_gguf *g, const char *key)
{
    uint32_t v;
    return t2_gguf_get_u32(g, key, &v) && v < TOK_MAX_VOCAB ? (int32_t)v : -1;
}

static int load_meta(t2_tokenizer *tok, const t2_gguf *g, t2_err *err)
{
    tok->bos = get_id(g, "tokenizer.ggml.bos_token_id");
    tok->eos = get_id(g, "tokenizer.ggml.eos_token_id");
    tok->m.unk = get_id(g, "tokenizer.ggml.unknown_token_id");
    tok->add_bos = tok->kind == T2_TOK_SPM;
    (void)t2_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &tok->add_bos);
    if (t2_gguf_find(g, "tokenizer.chat_template")) {
        tok->chat_template = t2_gguf_get_str(g, "tokenizer.chat_template");
        if (!tok->chat_template)
            return t2_err_set(err, "tokenizer.chat_template is not a string");
    }
    return 0;
}

static int load(t2_tokenizer *tok, const t2_gguf *g, t2_err *err)
{
    char *model = t2_gguf_get_str(g, "tokenizer.ggml.model");
    if (!model)
        return t2_err_set(err, "tokenizer.ggml.model missing or not a string");
    bool gpt2 = strcmp(model, "gpt2") == 0, llama = strcmp(model, "llama") == 0;
    if (!gpt2 && !llama) {
        t2_err_set(err, "unsupported tokenizer.ggml.model \"%.64s\" (gpt2 or llama)", model);
        free(model);
        return -1;
    }
    free(model);
    tok->kind = gpt2 ? T2_TOK_BYTE_LEVEL : T2_TOK_SPM;
    if (load_tokens(tok, g, err) < 0)
        return -1;
    int rc;
    if (gpt2) {
        char *pre = t2_gguf_get_str(g, "tokenizer.ggml.pre");
        rc = load_merges(tok, g, err);
        if (rc == 0)
            rc = bpe_pretokenizer(tok, pre, err);
        free(pre);
    } else {
        rc = spm_pipeline(tok, g, err);
    }
    if (rc < 0 || load_meta(tok, g, err) < 0)
        return -1;
    return tok_finish_load(tok, err);
}

int t2_tok_load_gguf(t2_tokenizer **out, const t2_gguf *g, t2_err *err)
{
    t2_err local;
    if (!err)
        err = &local;
    *out = NULL;
    t2_tokenizer *tok = tok_new();
    if (!tok)
        return t2_err_set(err, "out of memory");
    if (load(tok, g, err) < 0) {
        t2_tok_free(tok);
        return t2_err_prefix(err, "GGUF tokenizer");
    }
    *out = tok;
    return 0;
}
