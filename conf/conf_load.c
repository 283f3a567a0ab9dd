/* Merging the sources: defaults < file < environment < flags. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

int t2_conf_apply_env(t2_conf *c, char *const *env, char *err, size_t cap)
{
    for (size_t i = 0; env && env[i]; i++) {
        const char *e = env[i];
        const char *eq = strchr(e, '=');
        if (strncmp(e, "T2_", 3) != 0 || !eq || eq - e - 3 > 64 || eq - e - 3 <= 0)
            continue;
        char key[65];
        size_t n = (size_t)(eq - e - 3);
        for (size_t j = 0; j < n; j++)
            key[j] = (char)tolower((unsigned char)e[3 + j]);
        key[n] = '\0';
        if (strcmp(key, "config") == 0 || !t2_conf_find(key))
            continue; /* T2_CONFIG is read by t2_conf_load; others belong to someone else */
        char source[80];
        snprintf(source, sizeof source, "environment %.*s", (int)(eq - e), e);
        if (t2_conf_set(c, key, eq + 1, source, err, cap) != 0)
            return -1;
    }
    return 0;
}

typedef struct flag_val {
    const char *key_flag; /* the flag as given, for messages */
    char key[65];
    const char *value;
} flag_val;

/* Collects --key VALUE / --key=VALUE / --bool-key pairs; *config gets
 * --config's value. Returns 0, 1 for --help, -1 on error. */
static int scan_flags(int argc, char **argv, flag_val *fv, size_t *n, const char **config,
                      char *err, size_t cap)
{
    *n = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return 1;
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            snprintf(err, cap, "unexpected argument '%.100s' (options are --key VALUE)", a);
            return -1;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        flag_val *f = &fv[*n];
        if (len > 64) {
            snprintf(err, cap, "unknown option '%.80s'", a);
            return -1;
        }
        for (size_t j = 0; j < len; j++)
            f->key[j] = name[j] == '-' ? '_' : name[j];
        f->key[len] = '\0';
        f->key_flag = a;
        bool is_config = strcmp(f->key, "config") == 0;
        const t2_conf_key *k = is_config ? NULL : t2_conf_find(f->key);
        if (!is_config && !k) {
            snprintf(err, cap, "unknown option '--%.*s' (t2 serve --help lists them)", (int)len,
                     name);
            return -1;
        }
        if (eq)
            f->value = eq + 1;
        else if (k && k->type == T2_CONF_BOOL)
            f->value = "true";
        else if (i + 1 < argc)
            f->value = argv[++i];
        else {
            snprintf(err, cap, "option '--%.*s' needs a value", (int)len, name);
            return -1;
        }
        if (is_config)
            *config = f->value;
        else
            (*n)++;
    }
    return 0;
}

int t2_conf_load(t2_conf *c, int argc, char **argv, char *const *env, char *err, size_t cap)
{
    if (t2_conf_defaults(c, err, cap) != 0)
        return -1;
    flag_val *fv = calloc((size_t)argc + 1, sizeof *fv);
    if (!fv) {
        snprintf(err, cap, "out of memory");
        return -1;
    }
    size_t n = 0;
    const char *config = NULL;
    int rc = scan_flags(argc, argv, fv, &n, &config, err, cap);
    for (size_t i = 0; rc == 0 && !config && env && env[i]; i++)
        if (strncmp(env[i], "T2_CONFIG=", 10) == 0 && env[i][10])
            config = env[i] + 10;
    if (rc == 0 && config)
        rc = t2_conf_apply_file(c, config, err, cap);
    if (rc == 0)
        rc = t2_conf_apply_env(c, env, err, cap);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char source[120];
        snprintf(source, sizeof source, "flag --%.64s", fv[i].key_flag + 2);
        char *eq = strchr(source, '=');
        if (eq)
            *eq = '\0';
        rc = t2_conf_set(c, fv[i].key, fv[i].value, source, err, cap);
    }
    free(fv);
    return rc;
}

void t2_conf_usage(FILE *f)
{
    fprintf(f, "usage: t2 serve [--config FILE] [--KEY VALUE]...\n"
               "\n"
               "Serves the model over HTTP (docs/API.md). Every option is also a config file key\n"
               "(KEY with '_' for '-', see conf/t2.conf.example) and an environment variable\n"
               "T2_KEY; precedence: flags > environment > file > defaults. T2_CONFIG names the\n"
               "file when --config is not given.\n"
               "\n"
               "  --config FILE\n"
               "      configuration file (key = value lines)\n");
    for (size_t i = 0; i < t2_conf_n_keys; i++) {
        const t2_conf_key *k = &t2_conf_schema[i];
        char flag[80];
        size_t j = 0;
        for (; j < sizeof flag - 1 && k->key[j]; j++)
            flag[j] = k->key[j] == '_' ? '-' : k->key[j];
        flag[j] = '\0';
        fprintf(f, "  --%s %s\n      %s (default: %s)\n", flag, k->arg, k->help,
                k->def[0] ? k->def : "empty");
    }
}
