/* t2-eval: the full Transformer² evaluation of a model and its experts,
 * printed in the layout of seedling's RESULTS.md: accuracy of every
 * weight set on every test set, the two-pass pipeline, the few-shot
 * mixture. Example:
 *   t2-eval --model ../shared/models/seedling \
 *           --classify-prompt "Classify the question into one of: {labels}. Answer as
 * \\boxed{category}."
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "engine.h"
#include "fileio.h"

#define N_SETS 5

static const char *set_names[N_SETS] = {"math", "code", "reasoning", "transfer", "classification"};
static const char *set_files[N_SETS] = {"math_test.jsonl", "code_test.jsonl",
                                        "reasoning_test.jsonl", "transfer_test.jsonl",
                                        "cls_test.jsonl"};

typedef struct eval_opts {
    const char *model, *experts, *data, *classify_prompt;
    size_t limit;
    int generations, threads, max_tokens;
    unsigned long long seed;
    bool skip_cem;
} eval_opts;

static void log_line(void *user, const char *msg)
{
    (void)user;
    fprintf(stderr, "t2-eval: %s\n", msg);
}

static int eval_row(t2_engine *e, t2_dataset *sets, const eval_opts *o, const char *label,
                    const t2_mixture *mx)
{
    t2_err err = {{0}};
    t2_adapted *w = NULL;
    if (mx && t2_engine_weights(e, mx, 1 << 30, &w, &err) != 0) {
        fprintf(stderr, "t2-eval: %s\n", err.msg);
        return -1;
    }
    printf("| %s |", label);
    for (int s = 0; s < N_SETS; s++) {
        double acc;
        if (t2_eval_accuracy(e, &sets[s], o->limit, w, o->max_tokens, &acc, &err) != 0) {
            fprintf(stderr, "t2-eval: %s\n", err.msg);
            t2_adapted_unref(w);
            return -1;
        }
        printf(" %.1f |", acc * 100);
        fflush(stdout);
    }
    printf("\n");
    t2_adapted_unref(w);
    return 0;
}

static int accuracy_table(t2_engine *e, t2_dataset *sets, const eval_opts *o)
{
    printf("## Accuracy (%%) on the test sets\n\n| weights | math | code | reasoning | transfer | "
           "classification |\n|---|---|---|---|---|---|\n");
    if (eval_row(e, sets, o, "base", NULL) != 0)
        return -1;
    t2_expert **list;
    size_t n = t2_store_list(e->experts, &list);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        t2_mixture mx = {0};
        if (rc == 0 && t2_mixture_add(&mx, list[i], 1.0f, NULL, 0, NULL) == 0)
            rc = eval_row(e, sets, o, list[i]->name, &mx);
        t2_mixture_clear(&mx);
        t2_expert_unref(list[i]);
    }
    free(list);
    return rc;
}

static int two_pass_table(t2_engine *e, t2_ctx *ctx, t2_dataset *sets, const eval_opts *o)
{
    printf("\n## Two-pass pipeline (%%): pass 1 classifies (generate + parse \\boxed{}), pass 2 "
           "answers with that label's expert\n\n| pass 1 | math | code | reasoning | transfer |\n"
           "|---|---|---|---|---|\n");
    enum t2_strategy strategies[2] = {T2_STRATEGY_PROMPT, T2_STRATEGY_CLASSIFIER};
    const char *names[2] = {"prompt-based (base weights)", "classification expert"};
    for (int k = 0; k < 2; k++) {
        t2_adapt_req req = {.strategy = strategies[k], .method = T2_CLS_GENERATE};
        printf("| %s |", names[k]);
        for (int s = 0; s < 4; s++) {
            double acc;
            t2_err err = {{0}};
            if (t2_eval_two_pass(e, ctx, &sets[s], o->limit, &req, o->max_tokens, &acc, &err) !=
                0) {
                fprintf(stderr, "t2-eval: %s\n", err.msg);
                return -1;
            }
            printf(" %.1f |", acc * 100);
            fflush(stdout);
        }
        printf("\n");
    }
    return 0;
}

static void cem_progress(void *user, int g, int total, double acc, double ll)
{
    (void)user;
    fprintf(stderr, "t2-eval: CEM generation %d/%d: best accuracy %.3f, mean log-likelihood %.4f\n",
            g, total, acc, ll);
}

static int few_shot_section(t2_engine *e, t2_ctx *ctx, t2_dataset *sets, const eval_opts *o)
{
    char *path = t2_path_join(o->data, "transfer_fewshot.jsonl");
    t2_dataset shots;
    t2_err err = {{0}};
    if (!path || t2_dataset_load(&shots, path, &err) != 0) {
        fprintf(stderr, "t2-eval: %s\n", err.msg);
        free(path);
        return -1;
    }
    free(path);
    t2_example *ex = calloc(shots.n, sizeof *ex);
    for (size_t i = 0; ex && i < shots.n; i++)
        ex[i] = (t2_example){shots.items[i].question, shots.items[i].answer};
    t2_cem_opts co;
    t2_cem_opts_defaults(&co);
    co.generations = o->generations;
    co.seed = o->seed;
    co.progress = cem_progress;
    t2_cem_result r;
    int code, rc = ex ? t2_engine_few_shot(e, ctx, ex, shots.n, NULL, 0, &co, &r, &code, &err) : -1;
    free(ex);
    t2_dataset_free(&shots);
    if (rc != 0) {
        fprintf(stderr, "t2-eval: %s\n", err.msg);
        return -1;
    }
    t2_mixture mx = {0};
    printf("\n## Few-shot (t2's CEM over alpha on transfer_fewshot.jsonl, %d generations, seed "
           "%llu)\n\nalpha = {",
           o->generations, o->seed);
    for (size_t i = 0; i < r.n; i++) {
        printf("%s\"%s\": %.4f", i ? ", " : "", r.experts[i], r.alpha[i]);
        t2_expert *x = t2_store_get(e->experts, r.experts[i]);
        if (x) {
            t2_mixture_add(&mx, x, r.alpha[i], NULL, 0, NULL);
            t2_expert_unref(x);
        }
    }
    t2_adapted *w = NULL;
    double acc = 0;
    rc = t2_engine_weights(e, &mx, 1 << 30, &w, &err);
    if (rc == 0)
        rc = t2_eval_accuracy(e, &sets[3], o->limit, w, o->max_tokens, &acc, &err);
    printf("}; few-shot accuracy %.1f (base %.1f), %d evaluations in %.1f s; transfer test "
           "accuracy %.1f\n",
           r.accuracy * 100, r.base_accuracy * 100, r.evaluations, r.ms / 1e3, acc * 100);
    t2_adapted_unref(w);
    t2_mixture_clear(&mx);
    t2_cem_result_clear(&r);
    return rc;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: t2-eval --model DIR [--experts DIR] [--data DIR] [--limit N] "
            "[--classify-prompt TEXT] [--generations G] [--seed S] [--no-cem] [--threads N]\n");
}

int main(int argc, char **argv)
{
    eval_opts o = {.generations = 10, .max_tokens = 16};
    static const struct option longopts[] = {{"model", required_argument, 0, 'm'},
                                             {"experts", required_argument, 0, 'e'},
                                             {"data", required_argument, 0, 'd'},
                                             {"limit", required_argument, 0, 'l'},
                                             {"classify-prompt", required_argument, 0, 'c'},
                                             {"generations", required_argument, 0, 'g'},
                                             {"seed", required_argument, 0, 's'},
                                             {"no-cem", no_argument, 0, 'n'},
                                             {"threads", required_argument, 0, 't'},
                                             {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'm': o.model = optarg; break;
        case 'e': o.experts = optarg; break;
        case 'd': o.data = optarg; break;
        case 'l': o.limit = strtoul(optarg, NULL, 10); break;
        case 'c': o.classify_prompt = optarg; break;
        case 'g': o.generations = atoi(optarg); break;
        case 's': o.seed = strtoull(optarg, NULL, 10); break;
        case 'n': o.skip_cem = true; break;
        case 't': o.threads = atoi(optarg); break;
        default: usage(); return 2;
        }
    }
    if (!o.model) {
        usage();
        return 2;
    }
    char experts_default[4096], data_default[4096];
    snprintf(experts_default, sizeof experts_default, "%s/experts", o.model);
    snprintf(data_default, sizeof data_default, "%s/data", o.model);
    if (!o.experts)
        o.experts = experts_default;
    if (!o.data)
        o.data = data_default;

    t2_engine_opts eo;
    t2_engine_opts_defaults(&eo);
    eo.model_path = o.model;
    eo.experts_dir = o.experts;
    eo.threads = o.threads;
    eo.classify_prompt = o.classify_prompt;
    eo.log = log_line;
    t2_engine *e = NULL;
    t2_ctx *ctx = NULL;
    t2_err err = {{0}};
    t2_dataset sets[N_SETS] = {{0}};
    int rc = t2_engine_open(&e, &eo, &err);
    if (rc == 0)
        rc = t2_ctx_create(&ctx, e->model, e->pool, 0, &err);
    for (int s = 0; s < N_SETS && rc == 0; s++) {
        char *p = t2_path_join(o.data, set_files[s]);
        rc = p ? t2_dataset_load(&sets[s], p, &err) : -1;
        free(p);
    }
    if (rc != 0) {
        fprintf(stderr, "t2-eval: %s\n", err.msg);
    } else {
        printf("# %s: measured results (t2, float32 CPU%s)\n\n", e->model->name,
               o.limit ? ", first items only" : "");
        rc = accuracy_table(e, sets, &o);
        if (rc == 0)
            rc = two_pass_table(e, ctx, sets, &o);
        if (rc == 0 && !o.skip_cem)
            rc = few_shot_section(e, ctx, sets, &o);
    }
    (void)set_names;
    for (int s = 0; s < N_SETS; s++)
        t2_dataset_free(&sets[s]);
    t2_ctx_free(ctx);
    t2_engine_free(e);
    return rc == 0 ? 0 : 1;
}
