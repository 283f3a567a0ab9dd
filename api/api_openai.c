/* OpenAI-compatible requests (/v1/chat/completions, /v1/completions):
 * lenient about fields t2 does not use, since SDKs send many, strict about
 * the values it does use. Model ids select experts and profiles. */
#include <stdio.h>
#include <string.h>

#include "api_gen.h"
#include "api_json.h"
#include "api_render.h"

/* "<model>" -> the default adaptation, "<model>:<expert>" -> that expert,
 * "<model>:profile:<name>" -> that profile; anything else -> 404. */
static int resolve_model(const t2_api_limits *lim, const char *id, t2_api_gen_req *r, t2_api_err *e)
{
    const char *base = lim->model_name;
    size_t nb = strlen(base);
    r->model = id;
    if (strcmp(id, base) == 0)
        return 0;
    if (strncmp(id, base, nb) == 0 && id[nb] == ':') {
        const char *rest = id + nb + 1;
        bool profile = strncmp(rest, "profile:", 8) == 0;
        const char *name = profile ? rest + 8 : rest;
        if (t2_expert_name_valid(name)) {
            r->adapt_explicit = true;
            r->adapt.strategy = profile ? T2_STRATEGY_PROFILE : T2_STRATEGY_EXPERT;
            if (profile)
                r->adapt.profile = name;
            else
                r->adapt.expert = name;
            return 0;
        }
    }
    char shown[80];
    snprintf(shown, sizeof shown, "%.64s", id);
    t2_api_utf8_sanitize(shown);
    return t2_api_fail(e, 404, "model_not_found", "model",
                       "the model '%s' does not exist (GET /v1/models lists the ids)", shown);
}

/* A field that would change what the response holds, which t2 does not
 * produce: present with anything but its "off" value (absent, null, or
 * what `off` accepts) is 422, as n > 1 is, rather than an answer without
 * what was asked for. */
static int reject_unless_off(json_t *root, const char *key, bool (*off)(json_t *), const char *why,
                             t2_api_err *e)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v) || off(v))
        return 0;
    return t2_api_fail(e, 422, "invalid_value", key, "'%s' is not supported: %s", key, why);
}

static bool is_false(json_t *v)
{
    return json_is_false(v);
}

static bool is_zero(json_t *v)
{
    return json_is_integer(v) && json_integer_value(v) == 0;
}

static bool is_empty_string(json_t *v)
{
    return json_is_string(v) && json_string_length(v) == 0;
}

/* {"type": "text"}: the default; JSON modes and schemas are not enforced */
static bool is_text_format(json_t *v)
{
    const char *t = json_string_value(json_object_get(v, "type"));
    return json_is_object(v) && t && strcmp(t, "text") == 0;
}

#define NO_LOGPROBS "t2 does not return log-probabilities; leave it out"

/* Fields common to both OpenAI families. */
static int parse_common(json_t *root, const t2_api_limits *lim, t2_api_gen_req *r, t2_api_err *e)
{
    const char *model = NULL;
    long long n = 1;
    if (t2_api_get_str(root, "model", NULL, 256, &model, NULL, e) < 0 ||
        t2_api_get_int(root, "n", NULL, 1, 1, &n, e) < 0)
        return -1;
    r->adapt.method = lim->default_method;
    if (model && resolve_model(lim, model, r, e) != 0)
        return -1;
    if (!model)
        r->model = lim->model_name;
    json_t *mt = json_object_get(root, "max_completion_tokens");
    const char *mt_key = mt && !json_is_null(mt) ? "max_completion_tokens" : "max_tokens";
    if (t2_api_parse_sampling(root, lim, mt_key, r, e) != 0 || t2_api_parse_stop(root, r, e) != 0 ||
        t2_api_get_bool(root, "stream", NULL, &r->stream, e) < 0)
        return -1;
    json_t *so = json_object_get(root, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so))
            return t2_api_fail(e, 422, "invalid_type", "stream_options",
                               "'stream_options' must be an object");
        if (t2_api_get_bool(so, "include_usage", "stream_options", &r->include_usage, e) < 0)
            return -1;
    }
    /* t2's extension: an adaptation object like /v1/generate's, with the
     * base model id only (a model id with an expert already chose) */
    json_t *ad = json_object_get(root, "adaptation");
    if (ad && !json_is_null(ad)) {
        if (r->adapt_explicit)
            return t2_api_fail(e, 422, "invalid_value", "adaptation",
                               "'adaptation' needs the base model id; '%s' already selects an "
                               "expert or profile",
                               r->model);
        if (t2_api_parse_adaptation(ad, "adaptation", r, e) != 0)
            return -1;
    }
    if (!r->adapt_explicit &&
        t2_api_default_adaptation(lim->default_strategy, lim->default_method, &r->adapt, e) != 0)
        return -1;
    return 0;
}

int t2_api_parse_chat(const char *body, size_t len, const t2_api_limits *lim, t2_api_gen_req *r,
                      t2_api_err *e)
{
    memset(r, 0, sizeof *r);
    r->kind = T2_API_CHAT;
    if (t2_api_parse_body(body, len, &r->root, e) != 0)
        return -1;
    if (t2_api_parse_messages(r->root, true, r, e) != 0 ||
        reject_unless_off(r->root, "logprobs", is_false, NO_LOGPROBS, e) != 0 ||
        reject_unless_off(r->root, "top_logprobs", is_zero, NO_LOGPROBS, e) != 0 ||
        reject_unless_off(r->root, "response_format", is_text_format,
                          "t2 does not constrain the output to JSON; leave it out or "
                          "{\"type\": \"text\"}",
                          e) != 0)
        return -1;
    return parse_common(r->root, lim, r, e);
}

int t2_api_parse_completion(const char *body, size_t len, const t2_api_limits *lim,
                            t2_api_gen_req *r, t2_api_err *e)
{
    memset(r, 0, sizeof *r);
    r->kind = T2_API_COMPLETION;
    if (t2_api_parse_body(body, len, &r->root, e) != 0)
        return -1;
    json_t *p = json_object_get(r->root, "prompt");
    if (json_is_array(p) && json_array_size(p) == 1 && json_is_string(json_array_get(p, 0)))
        p = json_array_get(p, 0);
    if (!p || json_is_null(p))
        return t2_api_fail(e, 422, "missing_field", "prompt", "'prompt' is required");
    if (!json_is_string(p))
        return t2_api_fail(e, 422, "invalid_type", "prompt",
                           "'prompt' must be a string (or an array of one string)");
    r->prompt = json_string_value(p);
    r->prompt_len = json_string_length(p);
    if (r->prompt_len == 0)
        return t2_api_fail(e, 422, "invalid_value", "prompt", "'prompt' must not be empty");
    if (!t2_api_utf8_valid(r->prompt, r->prompt_len))
        return t2_api_fail(e, 422, "invalid_utf8", "prompt", "'prompt' is not valid UTF-8 text");
    r->question = r->prompt;
    long long best_of = 1;
    if (t2_api_get_int(r->root, "best_of", NULL, 1, 1, &best_of, e) < 0 ||
        reject_unless_off(r->root, "logprobs", is_false, NO_LOGPROBS, e) != 0 ||
        reject_unless_off(r->root, "echo", is_false,
                          "the text returned is the completion alone; leave it out or false",
                          e) != 0 ||
        reject_unless_off(r->root, "suffix", is_empty_string,
                          "t2 does not insert text; leave it out", e) != 0)
        return -1;
    return parse_common(r->root, lim, r, e);
}

/* ---- rendering ---- */

void t2_oai_ids_init(t2_oai_ids *ids, bool chat, const char *model, long long created,
                     unsigned long long nonce)
{
    snprintf(ids->id, sizeof ids->id, "%s-%016llx", chat ? "chatcmpl" : "cmpl", nonce);
    ids->created = created;
    ids->model = model;
    ids->chat = chat;
}

static json_t *envelope(const t2_oai_ids *ids, const char *object)
{
    return json_pack("{s:s, s:s, s:I, s:s}", "id", ids->id, "object", object, "created",
                     (json_int_t)ids->created, "model", ids->model);
}

static json_t *finish_json(const char *finish)
{
    return finish ? json_string(finish) : json_null();
}

json_t *t2_oai_response(const t2_oai_ids *ids, const char *text, size_t len, const char *finish,
                        const t2_api_usage *u)
{
    json_t *root = envelope(ids, ids->chat ? "chat.completion" : "text_completion");
    json_t *choice = json_object(), *choices = json_array();
    if (!root || !choice || !choices) {
        json_decref(root);
        json_decref(choice);
        json_decref(choices);
        return NULL;
    }
    json_object_set_new(choice, "index", json_integer(0));
    if (ids->chat)
        json_object_set_new(
            choice, "message",
            json_pack("{s:s, s:o}", "role", "assistant", "content", t2_api_text(text, len)));
    else
        json_object_set_new(choice, "text", t2_api_text(text, len));
    json_object_set_new(choice, "logprobs", json_null());
    json_object_set_new(choice, "finish_reason", finish_json(finish));
    json_array_append_new(choices, choice);
    json_object_set_new(root, "choices", choices);
    json_object_set_new(root, "usage", t2_api_usage_json(u));
    return root;
}

json_t *t2_oai_chunk(const t2_oai_ids *ids, bool first, const char *text, size_t len,
                     const char *finish, bool usage_field)
{
    json_t *root = envelope(ids, ids->chat ? "chat.completion.chunk" : "text_completion");
    json_t *choice = json_object(), *choices = json_array();
    if (!root || !choice || !choices) {
        json_decref(root);
        json_decref(choice);
        json_decref(choices);
        return NULL;
    }
    json_object_set_new(choice, "index", json_integer(0));
    if (ids->chat) {
        json_t *delta = json_object();
        if (first)
            json_object_set_new(delta, "role", json_string("assistant"));
        if (text && (len || first))
            json_object_set_new(delta, "content", t2_api_text(text, len));
        json_object_set_new(choice, "delta", delta);
    } else {
        json_object_set_new(choice, "text", t2_api_text(text ? text : "", text ? len : 0));
    }
    json_object_set_new(choice, "logprobs", json_null());
    json_object_set_new(choice, "finish_reason", finish_json(finish));
    json_array_append_new(choices, choice);
    json_object_set_new(root, "choices", choices);
    if (usage_field)
        json_object_set_new(root, "usage", json_null());
    return root;
}

json_t *t2_oai_usage_chunk(const t2_oai_ids *ids, const t2_api_usage *u)
{
    json_t *root = envelope(ids, ids->chat ? "chat.completion.chunk" : "text_completion");
    if (!root)
        return NULL;
    json_object_set_new(root, "choices", json_array());
    json_object_set_new(root, "usage", t2_api_usage_json(u));
    return root;
}
