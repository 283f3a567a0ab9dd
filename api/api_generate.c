/* POST /v1/generate: t2's own generation request (strict: unknown fields
 * are errors) and its response. */
#include <string.h>

#include "api_gen.h"
#include "api_json.h"
#include "api_render.h"

int t2_api_parse_generate(const char *body, size_t len, const t2_api_limits *lim, t2_api_gen_req *r,
                          t2_api_err *e)
{
    memset(r, 0, sizeof *r);
    r->kind = T2_API_GENERATE;
    if (t2_api_parse_body(body, len, &r->root, e) != 0)
        return -1;
    json_t *root = r->root;
    static const char *const allowed[] = {"prompt",
                                          "messages",
                                          "max_tokens",
                                          "temperature",
                                          "top_k",
                                          "top_p",
                                          "min_p",
                                          "repetition_penalty",
                                          "frequency_penalty",
                                          "presence_penalty",
                                          "seed",
                                          "stop",
                                          "stream",
                                          "adaptation",
                                          NULL};
    if (t2_api_only_fields(root, allowed, NULL, e) != 0)
        return -1;
    if (t2_api_parse_prompt_or_messages(root, r, e) != 0)
        return -1;
    if (t2_api_parse_sampling(root, lim, "max_tokens", r, e) != 0 ||
        t2_api_parse_stop(root, r, e) != 0 ||
        t2_api_get_bool(root, "stream", NULL, &r->stream, e) < 0)
        return -1;
    r->adapt.method = lim->default_method;
    json_t *ad = json_object_get(root, "adaptation");
    if (ad && !json_is_null(ad) && t2_api_parse_adaptation(ad, "adaptation", r, e) != 0)
        return -1;
    if (!r->adapt_explicit &&
        t2_api_default_adaptation(lim->default_strategy, lim->default_method, &r->adapt, e) != 0)
        return -1;
    r->model = lim->model_name;
    return 0;
}

json_t *t2_api_usage_json(const t2_api_usage *u)
{
    return json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", u->prompt_tokens,
                     "completion_tokens", u->completion_tokens, "total_tokens",
                     u->prompt_tokens + u->completion_tokens, "prompt_tokens_details",
                     "cached_tokens", u->cached_tokens);
}

json_t *t2_api_generate_json(const char *text, size_t len, const char *finish,
                             const t2_api_usage *u, json_t *adaptation)
{
    json_t *root = json_object();
    json_t *t = t2_api_text(text, len);
    if (!root || !t) {
        json_decref(root);
        json_decref(t);
        json_decref(adaptation);
        return NULL;
    }
    json_object_set_new(root, "text", t);
    json_object_set_new(root, "finish_reason", json_string(finish));
    json_object_set_new(root, "usage", t2_api_usage_json(u));
    json_object_set_new(root, "adaptation", adaptation ? adaptation : json_null());
    return root;
}
