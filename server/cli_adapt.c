/* t2 adapt: the few-shot search (CEM over expert mixture weights) on a
 * JSON-lines file of {"question", "answer"} examples, saved as a named
 * adaptation profile that `t2 generate --profile NAME` (and the server)
 * reuse. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "dataset.h"
#include "engine.h"

typedef struct adapt_opts {
    const char *model, *examples, *name;
    const char *experts_list; /* comma separated, NULL = all */
    t2_engine_opts eo;
    t2_cem_opts co;
} adapt_opts;

static void usage(FILE *f)
{
    fprintf(
        f, "usage: t2 adapt --model DIR --experts DIR --profiles DIR --examples FILE.jsonl --name "
           "NAME\n"
           "                [--use A,B,C] [--generations G] [--population P] [--seed S]\n"
           "                [--svd-cache DIR] [--threads N]\n"
           "\n"
           "Searches mixture weights (one per expert, in [0, 1]) that maximise greedy exact-match\n"
           "accuracy on the examples (cross-entropy method, as the Transformer² reference), and\n"
           "saves them as the profile NAME.\n");
}

static void log_line(void *user, const char *msg)
{
    (void)user;
    fprintf(stderr, "t2: %s\n", msg);
}

static void progress(void *user, int g, int total, double acc, double ll)
{
    (void)user;
    fprintf(stderr, "t2: generation %d/%d: best accuracy %.3f, mean log-likelihood %.4f\n", g,
            total, acc, ll);
}

static int parse(int argc, char **argv, adapt_opts *o)
{
    static const struct option longopts[] = {{"model", required_argument, 0, 'm'},
                                             {"experts", required_argument, 0, 'e'},
                                             {"profiles", required_argument, 0, 'P'},
                                             {"examples", required_argument, 0, 'x'},
                                             {"name", required_argument, 0, 'n'},
                                             {"use", required_argument, 0, 'u'},
                                             {"generations", required_argument, 0, 'g'},
                                             {"population", required_argument, 0, 'p'},
                                             {"seed", required_argument, 0, 's'},
                                             {"svd-cache", required_argument, 0, 'c'},
                                             {"threads", required_argument, 0, 't'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'm': o->model = optarg; break;
        case 'e': o->eo.experts_dir = optarg; break;
        case 'P': o->eo.profiles_dir = optarg; break;
        case 'x': o->examples = optarg; break;
        case 'n': o->name = optarg; break;
        case 'u': o->experts_list = optarg; break;
        case 'g': o->co.generations = atoi(optarg); break;
        case 'p': o->co.population = atoi(optarg); break;
        case 's': o->co.seed = strtoull(optarg, NULL, 10); break;
        case 'c': o->eo.svd_cache_dir = optarg; break;
        case 't': o->eo.threads = atoi(optarg); break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
    }
    if (!o->model || !o->eo.experts_dir || !o->eo.profiles_dir || !o->examples || !o->name) {
        fprintf(stderr,
                "t2 adapt: --model, --experts, --profiles, --examples and --name are required\n");
        return -1;
    }
    if (!t2_expert_name_valid(o->name)) {
        fprintf(stderr, "t2 adapt: profile name must match [A-Za-z0-9._-]{1,64}\n");
        return -1;
    }
    return 0;
}

static int save_profile(t2_engine *e, const adapt_opts *o, const t2_cem_result *r)
{
    t2_profile p = {.name = (char *)o->name,
                    .n = r->n,
                    .experts = r->experts,
                    .alpha = r->alpha,
                    .source = "few_shot",
                    .accuracy = r->accuracy,
                    .created = (long long)time(NULL)};
    t2_err err;
    int code;
    if (t2_profiles_put(e->profiles, &p, &code, &err) != 0) {
        fprintf(stderr, "t2 adapt: %s\n", err.msg);
        return -1;
    }
    char *json = t2_profile_to_json(&p);
    printf("%s\n", json ? json : "");
    free(json);
    return 0;
}

int t2_cli_adapt(int argc, char **argv)
{
    adapt_opts o = {0};
    t2_engine_opts_defaults(&o.eo);
    t2_cem_opts_defaults(&o.co);
    o.eo.log = log_line;
    o.co.progress = progress;
    if (parse(argc, argv, &o) != 0)
        return 2;
    o.eo.model_path = o.model;
    t2_err err = {{0}};
    t2_engine *e = NULL;
    t2_ctx *ctx = NULL;
    t2_dataset ds = {0};
    char *list = o.experts_list ? strdup(o.experts_list) : NULL;
    const char *names[64];
    size_t n_names = 0;
    for (char *save = NULL, *t = list ? strtok_r(list, ",", &save) : NULL; t && n_names < 64;
         t = strtok_r(NULL, ",", &save))
        names[n_names++] = t;
    int status = 1;
    if (t2_dataset_load(&ds, o.examples, &err) == 0 && t2_engine_open(&e, &o.eo, &err) == 0 &&
        t2_ctx_create(&ctx, e->model, e->pool, 0, &err) == 0) {
        t2_example *ex = calloc(ds.n + 1, sizeof *ex);
        for (size_t i = 0; ex && i < ds.n; i++)
            ex[i] = (t2_example){ds.items[i].question, ds.items[i].answer};
        t2_cem_result r;
        int code;
        if (ex &&
            t2_engine_few_shot(e, ctx, ex, ds.n, names, n_names, &o.co, &r, &code, &err) == 0) {
            fprintf(stderr,
                    "t2: accuracy on the examples %.3f (base %.3f), %d evaluations, %.1f s\n",
                    r.accuracy, r.base_accuracy, r.evaluations, r.ms / 1e3);
            status = save_profile(e, &o, &r) == 0 ? 0 : 1;
            t2_cem_result_clear(&r);
        } else {
            fprintf(stderr, "t2 adapt: %s\n", err.msg);
        }
        free(ex);
    } else {
        fprintf(stderr, "t2 adapt: %s\n", err.msg);
    }
    free(list);
    t2_dataset_free(&ds);
    t2_ctx_free(ctx);
    t2_engine_free(e);
    return status;
}
