/* Parsing pieces shared by the generation request families: adaptation,
 * stop strings, messages, sampling fields. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api_gen.h"
#include "api_json.h"

const char *t2_api_gen_own(t2_api_gen_req *r, char *s)
{
    if (!s)
        return NULL;
    char **grown = realloc(r->owned, (r->n_owned + 1) * sizeof *grown);
    if (!grown) {
        free(s);
        return NULL;
    }
    r->owned = grown;
    r->owned[r->n_owned++] = s;
    return s;
}

void t2_api_gen_req_free(t2_api_gen_req *r)
{
    for (size_t i = 0; i < r->n_owned; i++)
        free(r->owned[i]);
    free(r->owned);
    free(r->msgs);
    json_decref(r->root);
    memset(r, 0, sizeof *r);
}

/* ---- adaptation ---- */

static int parse_mixture(json_t *mix, const char *field, t2_api_gen_req *r, t2_api_err *e)
{
    if (!json_is_object(mix))
        return t2_api_fail(e, 422, "invalid_type", field,
                           "'%s' must be an object of expert weights, e.g. {\"math\": 0.7}", field);
    size_t n = json_object_size(mix);
    if (n == 0 || n > T2_API_MAX_MIX)
        return t2_api_fail(e, 422, "invalid_value", field, "'%s' must name 1 to %d experts", field,
                           T2_API_MAX_MIX);
    const char *name;
    json_t *v;
    size_t i = 0;
    json_object_foreach(mix, name, v)
    {
        char f[96];
        snprintf(f, sizeof f, "%s.%.64s", field, name);
        if (!t2_expert_name_valid(name)) {
            t2_api_utf8_sanitize(f);
            return t2_api_fail(e, 422, "invalid_value", f,
                               "'%s': expert names match [A-Za-z0-9._-]{1,64}", f);
        }
        if (!json_is_number(v) || !isfinite(json_number_value(v)) ||
            fabs(json_number_value(v)) > 100)
            return t2_api_fail(e, 422, "invalid_value", f, "'%s' must be a number in [-100, 100]",
                               f);
        r->mix_names[i] = name;
        r->mix_alpha[i++] = (float)json_number_value(v);
    }
    r->adapt.n_mix = n;
    r->adapt.mix_names = r->mix_names;
    r->adapt.mix_alpha = r->mix_alpha;
    return 0;
}

static int get_name(json_t *obj, const char *key, const char *prefix, const char **out,
                    t2_api_err *e)
{
    int got = t2_api_get_str(obj, key, prefix, 64, out, NULL, e);
    if (got == 1 && !t2_expert_name_valid(*out)) {
        char f[96];
        t2_api_field(f, sizeof f, prefix, key);
        return t2_api_fail(e, 422, "invalid_value", f,
                           "'%s' must match [A-Za-z0-9._-]{1,64} (not starting with a dot)", f);
    }
    return got;
}

/* A field given that the strategy does not use: an error, so that a
 * request never silently does something else than it says. */
static int unused(const char *prefix, const char *key, enum t2_strategy s, t2_api_err *e)
{
    char f[96];
    t2_api_field(f, sizeof f, prefix, key);
    return t2_api_fail(e, 422, "invalid_value", f, "'%s' is not used with strategy '%s'", f,
                       t2_strategy_name(s));
}

int t2_api_parse_adaptation(json_t *obj, const char *field, t2_api_gen_req *r, t2_api_err *e)
{
    if (!json_is_object(obj))
        return t2_api_fail(e, 422, "invalid_type", field, "'%s' must be an object", field);
    static const char *const allowed[] = {"strategy", "expert",  "mixture",
                                          "method",   "profile", NULL};
    if (t2_api_only_fields(obj, allowed, field, e) != 0)
        return -1;
    const char *strategy = NULL, *method = NULL;
    char f[96];
    int has_s = t2_api_get_str(obj, "strategy", field, 32, &strategy, NULL, e);
    int has_m = has_s < 0 ? -1 : t2_api_get_str(obj, "method", field, 32, &method, NULL, e);
    int has_x = has_m < 0 ? -1 : get_name(obj, "expert", field, &r->adapt.expert, e);
    int has_p = has_x < 0 ? -1 : get_name(obj, "profile", field, &r->adapt.profile, e);
    if (has_p < 0)
        return -1;
    json_t *mix = json_object_get(obj, "mixture");
    bool has_mix = mix && !json_is_null(mix);
    if (has_mix && parse_mixture(mix, t2_api_field(f, sizeof f, field, "mixture"), r, e) != 0)
        return -1;
    enum t2_strategy s;
    if (has_s) {
        if (t2_strategy_parse(strategy, &s) != 0)
            return t2_api_fail(
                e, 422, "invalid_value", t2_api_field(f, sizeof f, field, "strategy"),
                "'%s' must be none, expert, mixture, prompt, classifier or profile", f);
        if (s == T2_STRATEGY_FEW_SHOT)
            return t2_api_fail(e, 422, "unsupported_strategy",
                               t2_api_field(f, sizeof f, field, "strategy"),
                               "strategy 'few_shot' is a search over examples: POST them to "
                               "/v1/adapt, which stores a profile, then use strategy 'profile'");
    } else if (has_x + has_p + has_mix > 1) {
        return t2_api_fail(e, 422, "invalid_value", field,
                           "'%s' gives more than one of expert, mixture and profile: choose with "
                           "'strategy'",
                           field);
    } else if (has_x || has_p || has_mix) {
        s = has_x ? T2_STRATEGY_EXPERT : has_p ? T2_STRATEGY_PROFILE : T2_STRATEGY_MIXTURE;
    } else if (has_m) {
        s = T2_STRATEGY_PROMPT;
    } else {
        return 0; /* {}: the default */
    }
    r->adapt.strategy = s;
    r->adapt_explicit = true;
    if (s == T2_STRATEGY_EXPERT && !has_x)
        return t2_api_fail(e, 422, "missing_field", t2_api_field(f, sizeof f, field, "expert"),
                           "'%s' is required with strategy 'expert'", f);
    if (s == T2_STRATEGY_PROFILE && !has_p)
        return t2_api_fail(e, 422, "missing_field", t2_api_field(f, sizeof f, field, "profile"),
                           "'%s' is required with strategy 'profile'", f);
    if (s == T2_STRATEGY_MIXTURE && !has_mix)
        return t2_api_fail(e, 422, "missing_field", t2_api_field(f, sizeof f, field, "mixture"),
                           "'%s' is required with strategy 'mixture'", f);
    if (has_x && s != T2_STRATEGY_EXPERT)
        return unused(field, "expert", s, e);
    if (has_p && s != T2_STRATEGY_PROFILE)
        return unused(field, "profile", s, e);
    if (has_mix && s != T2_STRATEGY_MIXTURE)
        return unused(field, "mixture", s, e);
    if (has_m && s != T2_STRATEGY_PROMPT && s != T2_STRATEGY_CLASSIFIER)
        return unused(field, "method", s, e);
    if (has_m && t2_cls_method_parse(method, &r->adapt.method) != 0)
        return t2_api_fail(e, 422, "invalid_value", t2_api_field(f, sizeof f, field, "method"),
                           "'%s' must be likelihood or generate", f);
    return 0;
}

int t2_api_default_adaptation(const char *spec, enum t2_cls_method method, t2_adapt_req *a,
                              t2_api_err *e)
{
    memset(a, 0, sizeof *a);
    a->method = method;
    if (!spec || strcmp(spec, "none") == 0)
        a->strategy = T2_STRATEGY_NONE;
    else if (strcmp(spec, "prompt") == 0)
        a->strategy = T2_STRATEGY_PROMPT;
    else if (strcmp(spec, "classifier") == 0)
        a->strategy = T2_STRATEGY_CLASSIFIER;
    else if (strncmp(spec, "expert:", 7) == 0)
        a->strategy = T2_STRATEGY_EXPERT, a->expert = spec + 7;
    else if (strncmp(spec, "profile:", 8) == 0)
        a->strategy = T2_STRATEGY_PROFILE, a->profile = spec + 8;
    else
        return t2_api_fail(e, 500, NULL, NULL, "invalid default strategy '%.64s'", spec);
    return 0;
}

/* ---- stop ---- */

static int add_stop(json_t *v, size_t i, t2_api_gen_req *r, t2_api_err *e)
{
    char f[32];
    snprintf(f, sizeof f, "stop[%zu]", i);
    if (!json_is_string(v))
        return t2_api_fail(e, 422, "invalid_type", "stop",
                           "'stop' must be a string or an array of strings");
    size_t n = json_string_length(v);
    if (n == 0 || n > T2_API_MAX_STOP_LEN)
        return t2_api_fail(e, 422, "invalid_value", f, "'%s' must be 1 to %d bytes long", f,
                           T2_API_MAX_STOP_LEN);
    if (!t2_api_utf8_valid(json_string_value(v), n))
        return t2_api_fail(e, 422, "invalid_utf8", f, "'%s' is not valid UTF-8 text", f);
    r->stop[r->gen.n_stop++] = json_string_value(v);
    return 0;
}

int t2_api_parse_stop(json_t *root, t2_api_gen_req *r, t2_api_err *e)
{
    json_t *v = json_object_get(root, "stop");
    r->gen.stop = r->stop;
    r->gen.n_stop = 0;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_array(v))
        return add_stop(v, 0, r, e);
    if (json_array_size(v) > T2_API_MAX_STOP)
        return t2_api_fail(e, 422, "invalid_value", "stop", "'stop' holds at most %d strings",
                           T2_API_MAX_STOP);
    for (size_t i = 0; i < json_array_size(v); i++)
        if (add_stop(json_array_get(v, i), i, r, e) != 0)
            return -1;
    return 0;
}

/* ---- messages ---- */

/* OpenAI content parts: [{"type": "text", "text": "..."}] joined by newlines. */
static const char *join_parts(json_t *parts, const char *f, t2_api_gen_req *r, t2_api_err *e)
{
    size_t total = 1;
    for (size_t i = 0; i < json_array_size(parts); i++) {
        json_t *p = json_array_get(parts, i);
        json_t *text = json_object_get(p, "text");
        if (!json_is_object(p) || !json_is_string(json_object_get(p, "type")) ||
            strcmp(json_string_value(json_object_get(p, "type")), "text") != 0 ||
            !json_is_string(text)) {
            t2_api_fail(e, 422, "invalid_value", f,
                        "'%s': only text content parts ({\"type\": \"text\", \"text\": ...}) "
                        "are supported",
                        f);
            return NULL;
        }
        total += json_string_length(text) + 1;
    }
    char *s = malloc(total);
    if (!s) {
        t2_api_fail(e, 500, NULL, NULL, "out of memory");
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < json_array_size(parts); i++) {
        json_t *text = json_object_get(json_array_get(parts, i), "text");
        if (i)
            s[o++] = '\n';
        memcpy(s + o, json_string_value(text), json_string_length(text));
        o += json_string_length(text);
    }
    s[o] = '\0';
    const char *kept = t2_api_gen_own(r, s);
    if (!kept)
        t2_api_fail(e, 500, NULL, NULL, "out of memory");
    return kept;
}

static const char *parse_role(json_t *m, const char *f, bool lenient, t2_api_err *e)
{
    static const char *roles[] = {"system", "user", "assistant"};
    const char *role = NULL;
    if (t2_api_get_str(m, "role", f, 32, &role, NULL, e) < 0)
        return NULL;
    if (!role) {
        t2_api_fail(e, 422, "missing_field", f, "'%s.role' is required", f);
        return NULL;
    }
    for (size_t i = 0; i < 3; i++)
        if (strcmp(role, roles[i]) == 0)
            return roles[i];
    if (lenient && strcmp(role, "developer") == 0)
        return roles[0];
    t2_api_fail(e, 422, "invalid_value", f, "'%s.role' must be system, user or assistant", f);
    return NULL;
}

int t2_api_parse_prompt_or_messages(json_t *root, t2_api_gen_req *r, t2_api_err *e)
{
    int has_prompt =
        t2_api_get_str(root, "prompt", NULL, T2_API_MAX_STRING, &r->prompt, &r->prompt_len, e);
    if (has_prompt < 0)
        return -1;
    json_t *msgs = json_object_get(root, "messages");
    bool has_msgs = msgs && !json_is_null(msgs);
    if (has_prompt && has_msgs)
        return t2_api_fail(e, 422, "invalid_value", "messages",
                           "give either 'prompt' or 'messages', not both");
    if (!has_prompt && !has_msgs)
        return t2_api_fail(e, 422, "missing_field", "prompt", "'prompt' or 'messages' is required");
    if (has_prompt && r->prompt_len == 0)
        return t2_api_fail(e, 422, "invalid_value", "prompt", "'prompt' must not be empty");
    if (has_msgs && t2_api_parse_messages(root, false, r, e) != 0)
        return -1;
    if (has_prompt)
        r->question = r->prompt;
    return 0;
}

int t2_api_parse_messages(json_t *root, bool lenient, t2_api_gen_req *r, t2_api_err *e)
{
    json_t *msgs = json_object_get(root, "messages");
    if (!json_is_array(msgs))
        return t2_api_fail(e, 422, "invalid_type", "messages",
                           "'messages' must be an array of {role, content} objects");
    size_t n = json_array_size(msgs);
    if (n == 0 || n > T2_API_MAX_MESSAGES)
        return t2_api_fail(e, 422, "invalid_value", "messages",
                           "'messages' must hold 1 to %d messages", T2_API_MAX_MESSAGES);
    r->msgs = calloc(n, sizeof *r->msgs);
    if (!r->msgs)
        return t2_api_fail(e, 500, NULL, NULL, "out of memory");
    static const char *const strict_fields[] = {"role", "content", NULL};
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(msgs, i);
        char f[48];
        snprintf(f, sizeof f, "messages[%zu]", i);
        if (!json_is_object(m))
            return t2_api_fail(e, 422, "invalid_type", f, "'%s' must be a {role, content} object",
                               f);
        if (!lenient && t2_api_only_fields(m, strict_fields, f, e) != 0)
            return -1;
        const char *role = parse_role(m, f, lenient, e);
        if (!role)
            return -1;
        json_t *c = json_object_get(m, "content");
        const char *content = NULL;
        char cf[64];
        snprintf(cf, sizeof cf, "%s.content", f);
        if (lenient && json_is_array(c))
            content = join_parts(c, cf, r, e);
        else if (lenient && (!c || json_is_null(c)))
            content = "";
        else if (t2_api_get_str(m, "content", f, T2_API_MAX_STRING, &content, NULL, e) == 0)
            t2_api_fail(e, 422, "missing_field", cf, "'%s' is required", cf);
        if (!content)
            return -1;
        r->msgs[i] = (t2_chat_msg){role, content};
        if (strcmp(role, "user") == 0 || !r->question)
            r->question = content;
    }
    r->n_msgs = n;
    return 0;
}

/* ---- sampling ---- */

int t2_api_parse_sampling(json_t *root, const t2_api_limits *lim, const char *max_tokens_key,
                          t2_api_gen_req *r, t2_api_err *e)
{
    t2_gen_params_defaults(&r->gen);
    t2_sampling *s = &r->gen.sampling;
    long long mt =
        lim->default_max_tokens < lim->max_tokens ? lim->default_max_tokens : lim->max_tokens;
    long long top_k = 0, seed = 0;
    double temp = s->temperature, top_p = s->top_p, min_p = s->min_p, rep = s->repeat_penalty;
    double freq = s->frequency_penalty, pres = s->presence_penalty;
    if ((max_tokens_key &&
         t2_api_get_int(root, max_tokens_key, NULL, 1, lim->max_tokens, &mt, e) < 0) ||
        t2_api_get_num(root, "temperature", NULL, 0, 100, false, &temp, e) < 0 ||
        t2_api_get_num(root, "top_p", NULL, 0, 1, true, &top_p, e) < 0 ||
        t2_api_get_int(root, "top_k", NULL, 0, 1 << 30, &top_k, e) < 0 ||
        t2_api_get_num(root, "min_p", NULL, 0, 1, false, &min_p, e) < 0 ||
        t2_api_get_num(root, "repetition_penalty", NULL, 0, 100, true, &rep, e) < 0 ||
        t2_api_get_num(root, "frequency_penalty", NULL, -2, 2, false, &freq, e) < 0 ||
        t2_api_get_num(root, "presence_penalty", NULL, -2, 2, false, &pres, e) < 0 ||
        t2_api_get_int(root, "seed", NULL, 0, INT64_MAX, &seed, e) < 0)
        return -1;
    r->gen.max_tokens = (int)mt;
    s->temperature = (float)temp;
    s->top_p = (float)top_p;
    s->top_k = (int)top_k;
    s->min_p = (float)min_p;
    s->repeat_penalty = (float)rep;
    s->frequency_penalty = (float)freq;
    s->presence_penalty = (float)pres;
    s->seed = (uint64_t)seed;
    t2_err err;
    if (t2_sampling_validate(s, &err) != 0)
        return t2_api_fail(e, 422, "invalid_value", NULL, "%s", err.msg);
    return 0;
}
