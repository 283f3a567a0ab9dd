/* tokenizer.json's "normalizer" and "pre_tokenizer" sections, turned into
 * the encode pipeline's steps. Unsupported components are errors, not
 * silently different tokens. */
#include <string.h>

#include "tok_json.h"

/* A Split/Replace "pattern": {"String": s} or {"Regex": r}. */
static int get_pattern(const json_t *node, const char **pat, size_t *len, bool *literal,
                       t2_err *err)
{
    const json_t *p = json_object_get(node, "pattern");
    const json_t *s = json_object_get(p, "String"), *r = json_object_get(p, "Regex");
    const json_t *v = json_is_string(s) ? s : r;
    if (!json_is_string(v))
        return t2_err_set(err, "%s: \"pattern\" must be {\"String\": ...} or {\"Regex\": ...}",
                          tok_json_type(node));
    *pat = json_string_value(v);
    *len = json_string_length(v);
    *literal = v == s;
    return 0;
}

static int norm_sequence(t2_tokenizer *tok, const json_t *node, int depth, t2_err *err)
{
    const json_t *list = json_object_get(node, "normalizers");
    if (!json_is_array(list))
        return t2_err_set(err, "normalizer Sequence without \"normalizers\" array");
    size_t i;
    const json_t *el;
    json_array_foreach(list, i, el) if (tok_json_normalizer(tok, el, depth + 1, err) < 0) return -1;
    return 0;
}

int tok_json_normalizer(t2_tokenizer *tok, const json_t *node, int depth, t2_err *err)
{
    if (!node || json_is_null(node))
        return 0;
    const char *t = tok_json_type(node);
    if (!json_is_object(node) || !t)
        return t2_err_set(err, "normalizer must be an object with a \"type\"");
    if (depth > TOK_JSON_MAX_DEPTH)
        return t2_err_set(err, "normalizers nested too deeply");
    if (strcmp(t, "Sequence") == 0)
        return norm_sequence(tok, node, depth, err);
    if (strcmp(t, "NFC") == 0)
        return 0; /* text is taken as already NFC (see report): no Unicode tables here */
    if (strcmp(t, "Prepend") == 0) {
        const json_t *p = json_object_get(node, "prepend");
        if (!json_is_string(p))
            return t2_err_set(err, "Prepend: \"prepend\" must be a string");
        return tok_add_norm_prepend(tok, json_string_value(p), json_string_length(p), err);
    }
    if (strcmp(t, "Replace") == 0) {
        const char *pat;
        size_t plen;
        bool literal;
        const json_t *c = json_object_get(node, "content");
        if (get_pattern(node, &pat, &plen, &literal, err) < 0)
            return -1;
        if (!json_is_string(c))
            return t2_err_set(err, "Replace: \"content\" must be a string");
        return tok_add_norm_replace(tok, pat, plen, literal, json_string_value(c),
                                    json_string_length(c), err);
    }
    return t2_err_set(err, "unsupported normalizer \"%s\"", t);
}

static int behavior_of(const json_t *node, enum tok_split_behavior *b, t2_err *err)
{
    *b = TS_ISOLATED;
    static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious",
                                        "MergedWithNext", "Contiguous"};
    const char *s = json_string_value(json_object_get(node, "behavior"));
    for (int k = 0; s && k < 5; k++) {
        if (strcmp(s, names[k]) == 0) {
            *b = (enum tok_split_behavior)k;
            return 0;
        }
    }
    return t2_err_set(err, "Split: unknown \"behavior\" %s", s ? s : "(missing)");
}

static int pre_split(t2_tokenizer *tok, const json_t *node, t2_err *err)
{
    const char *pat;
    size_t plen;
    bool literal, invert;
    enum tok_split_behavior b = TS_ISOLATED;
    if (get_pattern(node, &pat, &plen, &literal, err) < 0 || behavior_of(node, &b, err) < 0 ||
        tok_json_bool(node, "invert", false, &invert, err) < 0)
        return -1;
    return tok_add_split(tok, pat, plen, literal, b, invert, err);
}

static int pre_bytelevel(t2_tokenizer *tok, const json_t *node, t2_err *err)
{
    bool prefix, use_regex;
    if (tok_json_bool(node, "add_prefix_space", true, &prefix, err) < 0 ||
        tok_json_bool(node, "use_regex", true, &use_regex, err) < 0)
        return -1;
    if (prefix && tok_add_prefix_space(tok, err) < 0)
        return -1;
    if (!use_regex)
        return 0;
    return tok_add_split(tok, TOK_GPT2_REGEX, strlen(TOK_GPT2_REGEX), false, TS_ISOLATED, false,
                         err);
}

static int pre_metaspace(t2_tokenizer *tok, const json_t *node, t2_err *err)
{
    const json_t *rep = json_object_get(node, "replacement");
    const char *r = json_is_string(rep) ? json_string_value(rep) : "\xE2\x96\x81";
    bool split, legacy_prefix;
    if (tok_json_bool(node, "split", true, &split, err) < 0 ||
        tok_json_bool(node, "add_prefix_space", true, &legacy_prefix, err) < 0)
        return -1;
    enum tok_prepend_scheme scheme = legacy_prefix ? TM_ALWAYS : TM_NEVER;
    const char *ps = json_string_value(json_object_get(node, "prepend_scheme"));
    if (ps && strcmp(ps, "always") == 0)
        scheme = TM_ALWAYS;
    else if (ps && strcmp(ps, "first") == 0)
        scheme = TM_FIRST;
    else if (ps && strcmp(ps, "never") == 0)
        scheme = TM_NEVER;
    else if (ps)
        return t2_err_set(err, "Metaspace: unknown prepend_scheme \"%s\"", ps);
    if (scheme != TM_NEVER)
        tok->strip_space = true;
    return tok_add_metaspace(tok, r, strlen(r), scheme, split, err);
}

static int pre_sequence(t2_tokenizer *tok, const json_t *node, int depth, t2_err *err)
{
    const json_t *list = json_object_get(node, "pretokenizers");
    if (!json_is_array(list))
        return t2_err_set(err, "pre_tokenizer Sequence without \"pretokenizers\" array");
    size_t i;
    const json_t *el;
    json_array_foreach(list, i, el) if (tok_json_pre(tok, el, depth + 1, err) < 0) return -1;
    return 0;
}

int tok_json_pre(t2_tokenizer *tok, const json_t *node, int depth, t2_err *err)
{
    if (!node || json_is_null(node))
        return 0;
    const char *t = tok_json_type(node);
    if (!json_is_object(node) || !t)
        return t2_err_set(err, "pre_tokenizer must be an object with a \"type\"");
    if (depth > TOK_JSON_MAX_DEPTH)
        return t2_err_set(err, "pre_tokenizers nested too deeply");
    if (strcmp(t, "Sequence") == 0)
        return pre_sequence(tok, node, depth, err);
    if (strcmp(t, "Split") == 0)
        return pre_split(tok, node, err);
    if (strcmp(t, "ByteLevel") == 0)
        return pre_bytelevel(tok, node, err);
    if (strcmp(t, "Metaspace") == 0)
        return pre_metaspace(tok, node, err);
    if (strcmp(t, "Digits") == 0) {
        bool individual;
        if (tok_json_bool(node, "individual_digits", false, &individual, err) < 0)
            return -1;
        const char *p = individual ? "\\p{N}" : "\\p{N}+";
        return tok_add_split(tok, p, strlen(p), false, TS_ISOLATED, false, err);
    }
    if (strcmp(t, "Whitespace") == 0)
        return tok_add_split(tok, "\\w+|[^\\w\\s]+", 13, false, TS_REMOVED, true, err);
    if (strcmp(t, "WhitespaceSplit") == 0)
        return tok_add_split(tok, "\\s+", 3, false, TS_REMOVED, false, err);
    return t2_err_set(err, "unsupported pre_tokenizer \"%s\"", t);
}
