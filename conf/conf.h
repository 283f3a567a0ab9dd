/* Configuration of `t2 serve`: one schema (conf_schema.c) with a default
 * for every key; values come from a file (`key = value`), environment
 * variables T2_<KEY> and command-line flags --key-name, merged with the
 * precedence flags > environment > file > defaults. Every value is
 * validated as it is set, and an error names the key and where the value
 * came from. No I/O besides reading the config file. */
#ifndef T2_CONF_H
#define T2_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef struct t2_conf {
    char *config;          /* the file that was read, or NULL */
    char *model;           /* model directory or GGUF file */
    char *experts;         /* "auto": <model>/experts if it exists; "none": no experts */
    double experts_rescan; /* seconds between rescans of the experts dir, 0: off */
    char *profiles;        /* "none": no profiles */
    char *svd_cache;       /* "none": no cache */
    char *svf_set;         /* adapted matrices: mlp, attn, mlp,attn */
    char *weights;         /* weight format in memory: f32, bf16, q8_0 */
    char *kv_cache;        /* K/V cache format: f32, f16 */
    char *host;
    int port;    /* 0: any free port (the URL is logged) */
    int threads; /* 0: all cores */
    int max_seqs;
    int queue;
    int pass1_workers;
    int ctx; /* context per sequence, 0: model max capped at 4096 */
    int adapted_cache_mb;
    int materialise_min_tokens; /* factored tokens of a weight set before it is built */
    double max_body;            /* MB */
    int max_tokens;             /* the most a request may ask for */
    int default_max_tokens;     /* when a request does not say */
    double timeout;             /* seconds per generation, 0: none */
    double grace;               /* seconds in-flight requests get at shutdown */
    double idle_timeout;        /* seconds before an idle connection is closed */
    int max_connections;
    char *api_key;            /* "": none */
    bool api_key_all;         /* require the key on every endpoint but /health, /ready */
    char *cors_origins;       /* generation endpoints: "*", "" or a comma-separated list */
    char *cors_admin_origins; /* experts, profiles, adapt */
    char *default_strategy;   /* none | prompt | classifier | expert:NAME | profile:NAME */
    char *classify_method;    /* likelihood | generate */
    char *classify_prompt;    /* "": the built-in prompt */
    char *log_format;         /* text | json */
    char *log_level;          /* debug | info | warn | error */
} t2_conf;

enum t2_conf_type { T2_CONF_STR, T2_CONF_INT, T2_CONF_NUM, T2_CONF_BOOL };

/* One key of the schema. The flag is --key with '_' replaced by '-', the
 * environment variable T2_ followed by the key in upper case. */
typedef struct t2_conf_key {
    const char *key;
    enum t2_conf_type type;
    size_t offset;       /* into t2_conf */
    double lo, hi;       /* INT, NUM: inclusive range */
    const char *choices; /* STR: "a|b|c" allowed values, or NULL */
    const char *def;     /* default, as text, parsed like any other source */
    const char *arg;     /* placeholder in --help, e.g. "DIR" */
    const char *help;
    /* STR: extra validation; returns 0 or fills msg ("expected ...") */
    int (*check)(const char *value, char *msg, size_t cap);
} t2_conf_key;

extern const t2_conf_key t2_conf_schema[];
extern const size_t t2_conf_n_keys;

const t2_conf_key *t2_conf_find(const char *key);

/* Every key set to its default. */
int t2_conf_defaults(t2_conf *c, char *err, size_t cap);
void t2_conf_free(t2_conf *c);

/* Sets one key from text; `source` names where it came from ("flag --port",
 * "environment T2_PORT", "file t2.conf:12") for the error message. */
int t2_conf_set(t2_conf *c, const char *key, const char *value, const char *source, char *err,
                size_t cap);

/* Applies a config file's text (see conf/t2.conf.example for the format):
 * unknown keys are errors. `name` is used in messages. */
int t2_conf_apply_text(t2_conf *c, const char *text, size_t len, const char *name, char *err,
                       size_t cap);
/* Reads and applies a file (at most 1 MiB). */
int t2_conf_apply_file(t2_conf *c, const char *path, char *err, size_t cap);
/* Applies every T2_<KEY> of env (a NULL-terminated "NAME=value" array);
 * variables that are not schema keys are ignored (T2_SHARED and such). */
int t2_conf_apply_env(t2_conf *c, char *const *env, char *err, size_t cap);

/* The whole merge: defaults, then the file (--config FILE, else
 * T2_CONFIG), then env, then the flags (argv[0] is the subcommand name).
 * Returns 0, -1 with a message (exit status 2), or 1 when --help was
 * asked for. */
int t2_conf_load(t2_conf *c, int argc, char **argv, char *const *env, char *err, size_t cap);

void t2_conf_usage(FILE *f);

#endif
