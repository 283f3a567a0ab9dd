/* The configuration schema: every key of `t2 serve` with its type, range,
 * default and help text. conf/t2.conf.example documents the same keys. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "conf.h"
#include "expert.h"

#define OFF(f) offsetof(t2_conf, f)

static int check_strategy(const char *v, char *msg, size_t cap)
{
    if (strcmp(v, "none") == 0 || strcmp(v, "prompt") == 0 || strcmp(v, "classifier") == 0)
        return 0;
    const char *name = strncmp(v, "expert:", 7) == 0    ? v + 7
                       : strncmp(v, "profile:", 8) == 0 ? v + 8
                                                        : NULL;
    if (name && t2_expert_name_valid(name))
        return 0;
    snprintf(msg, cap, "expected none, prompt, classifier, expert:NAME or profile:NAME");
    return -1;
}

/* "", "*" or a comma-separated list of http(s)://host[:port] origins */
static int check_origins(const char *v, char *msg, size_t cap)
{
    if (v[0] == '\0' || strcmp(v, "*") == 0)
        return 0;
    const char *p = v;
    while (*p) {
        size_t n = strcspn(p, ",");
        const char *o = p;
        while (n && *o == ' ')
            o++, n--;
        while (n && o[n - 1] == ' ')
            n--;
        bool scheme =
            (n > 7 && strncmp(o, "http://", 7) == 0) || (n > 8 && strncmp(o, "https://", 8) == 0);
        if (!scheme || memchr(o, '*', n) || n > 255) {
            snprintf(msg, cap,
                     "expected '*', nothing, or a comma-separated list of origins "
                     "like https://example.com");
            return -1;
        }
        p += strcspn(p, ",");
        if (*p == ',')
            p++;
    }
    return 0;
}

static int check_nonempty(const char *v, char *msg, size_t cap)
{
    if (v[0])
        return 0;
    snprintf(msg, cap, "must not be empty");
    return -1;
}

static int check_svf_set(const char *v, char *msg, size_t cap)
{
    if (strcmp(v, "mlp") == 0 || strcmp(v, "attn") == 0 || strcmp(v, "mlp,attn") == 0 ||
        strcmp(v, "attn,mlp") == 0)
        return 0;
    snprintf(msg, cap, "expected mlp, attn or mlp,attn");
    return -1;
}

static int check_api_key(const char *v, char *msg, size_t cap)
{
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p <= ' ' || *p >= 0x7f) {
            snprintf(msg, cap, "must be printable ASCII without spaces");
            return -1;
        }
    return 0;
}

const t2_conf_key t2_conf_schema[] = {
    {"model", T2_CONF_STR, OFF(model), 0, 0, NULL, "../shared/models/seedling", "DIR|FILE",
     "model: a Hugging Face directory or a GGUF file", check_nonempty},
    {"experts", T2_CONF_STR, OFF(experts), 0, 0, NULL, "auto", "DIR",
     "expert vectors directory; auto: <model>/experts if it exists; none: no experts",
     check_nonempty},
    {"experts_rescan", T2_CONF_NUM, OFF(experts_rescan), 0, 86400, NULL, "5", "SECONDS",
     "how often the experts directory is rescanned for changes made by other replicas; 0: never",
     NULL},
    {"profiles", T2_CONF_STR, OFF(profiles), 0, 0, NULL, "./profiles", "DIR",
     "adaptation profiles directory (created if missing); none: no profiles", check_nonempty},
    {"svd_cache", T2_CONF_STR, OFF(svd_cache), 0, 0, NULL, "none", "DIR",
     "cache of the SVD factors (created if missing); none: decompose at every start",
     check_nonempty},
    {"svf_set", T2_CONF_STR, OFF(svf_set), 0, 0, NULL, "mlp", "SET",
     "matrices the experts adapt: mlp, attn or mlp,attn", check_svf_set},
    {"weights", T2_CONF_STR, OFF(weights), 0, 0, "f32|bf16|q8_0", "f32", "FMT",
     "weight format in memory: f32, bf16 (half the bytes) or q8_0 (about a quarter)", NULL},
    {"kv_cache", T2_CONF_STR, OFF(kv_cache), 0, 0, "f32|f16", "f32", "FMT",
     "K/V cache format: f32, or f16 (half the memory and attention bytes per token; logits "
     "within ~1e-3 of f32's)",
     NULL},
    {"host", T2_CONF_STR, OFF(host), 0, 0, NULL, "127.0.0.1", "HOST",
     "address to listen on (0.0.0.0 or :: for every interface)", check_nonempty},
    {"port", T2_CONF_INT, OFF(port), 0, 65535, NULL, "8080", "N",
     "TCP port; 0 picks a free one (the URL is logged)", NULL},
    {"threads", T2_CONF_INT, OFF(threads), 0, 1024, NULL, "0", "N",
     "compute threads; 0: one per core", NULL},
    {"max_seqs", T2_CONF_INT, OFF(max_seqs), 1, 256, NULL, "8", "N",
     "sequences decoded together (continuous batching)", NULL},
    {"queue", T2_CONF_INT, OFF(queue), 1, 100000, NULL, "64", "N",
     "requests waiting for a slot before 429", NULL},
    {"pass1_workers", T2_CONF_INT, OFF(pass1_workers), 1, 64, NULL, "1", "N",
     "threads for pass 1 (classification, few-shot search)", NULL},
    {"ctx", T2_CONF_INT, OFF(ctx), 0, 1 << 20, NULL, "0", "N",
     "context tokens per sequence; 0: the model's maximum, at most 4096", NULL},
    {"adapted_cache_mb", T2_CONF_INT, OFF(adapted_cache_mb), 0, 1 << 20, NULL, "512", "MB",
     "memory for materialised adapted weight sets", NULL},
    {"materialise_min_tokens", T2_CONF_INT, OFF(materialise_min_tokens), 1, 1 << 20, NULL, "64",
     "N",
     "a weight set not in the cache runs factored until this many tokens (over all its "
     "requests) were generated with it, then is materialised in the background and cached",
     NULL},
    {"max_body", T2_CONF_NUM, OFF(max_body), 0.001, 4096, NULL, "64", "MB",
     "largest request body (expert uploads included); larger: 413", NULL},
    {"max_tokens", T2_CONF_INT, OFF(max_tokens), 1, 1 << 20, NULL, "4096", "N",
     "the most tokens a request may generate; more: 422", NULL},
    {"default_max_tokens", T2_CONF_INT, OFF(default_max_tokens), 1, 1 << 20, NULL, "256", "N",
     "tokens generated when a request does not say (capped by max_tokens)", NULL},
    {"timeout", T2_CONF_NUM, OFF(timeout), 0, 86400, NULL, "300", "S",
     "seconds a generation may run before it ends with finish_reason timeout; 0: none", NULL},
    {"grace", T2_CONF_NUM, OFF(grace), 0, 3600, NULL, "10", "S",
     "seconds in-flight requests get to finish after SIGTERM/SIGINT before they are cancelled",
     NULL},
    {"idle_timeout", T2_CONF_NUM, OFF(idle_timeout), 1, 86400, NULL, "60", "S",
     "seconds an idle keep-alive connection stays open", NULL},
    {"max_connections", T2_CONF_INT, OFF(max_connections), 1, 100000, NULL, "512", "N",
     "open connections at most", NULL},
    {"api_key", T2_CONF_STR, OFF(api_key), 0, 0, NULL, "", "KEY",
     "when set, `Authorization: Bearer KEY` is required on expert/profile mutations and "
     "/v1/adapt",
     check_api_key},
    {"api_key_all", T2_CONF_BOOL, OFF(api_key_all), 0, 0, NULL, "false", "BOOL",
     "require the API key on every endpoint except /health and /ready", NULL},
    {"cors_origins", T2_CONF_STR, OFF(cors_origins), 0, 0, NULL, "*", "LIST",
     "origins allowed by CORS on generation endpoints: *, nothing, or a comma-separated list",
     check_origins},
    {"cors_admin_origins", T2_CONF_STR, OFF(cors_admin_origins), 0, 0, NULL, "", "LIST",
     "origins allowed by CORS on /v1/experts, /v1/profiles and /v1/adapt (default: none)",
     check_origins},
    {"default_strategy", T2_CONF_STR, OFF(default_strategy), 0, 0, NULL, "prompt", "S",
     "adaptation when a request names none: none, prompt, classifier, expert:NAME, "
     "profile:NAME (without experts: none)",
     check_strategy},
    {"classify_method", T2_CONF_STR, OFF(classify_method), 0, 0, "likelihood|generate",
     "likelihood", "M", "pass-1 classification method when a request names none", NULL},
    {"classify_prompt", T2_CONF_STR, OFF(classify_prompt), 0, 0, NULL, "", "TEXT",
     "pass-1 classification system prompt with {labels} and {descriptions}; empty: built-in", NULL},
    {"log_format", T2_CONF_STR, OFF(log_format), 0, 0, "text|json", "text", "F",
     "log lines as text or JSON lines", NULL},
    {"log_level", T2_CONF_STR, OFF(log_level), 0, 0, "debug|info|warn|error", "info", "L",
     "least severe messages logged (access lines are info)", NULL},
};

const size_t t2_conf_n_keys = sizeof t2_conf_schema / sizeof t2_conf_schema[0];
