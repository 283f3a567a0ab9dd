#include "dataset.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"

#define MAX_DATASET_BYTES (256u << 20)

static char *dup_field(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? strdup(s) : NULL;
}

static int parse_line(t2_qa *q, const char *line, size_t len, size_t lineno, t2_err *err)
{
    json_error_t jerr;
    json_t *o = json_loadb(line, len, 0, &jerr);
    if (!json_is_object(o)) {
        json_decref(o);
        return t2_err_set(err, "line %zu: not a JSON object", lineno);
    }
    q->question = dup_field(o, "question");
    q->answer = dup_field(o, "answer");
    q->system = dup_field(o, "system");
    q->label = dup_field(o, "label");
    q->family = dup_field(o, "family");
    json_decref(o);
    if (!q->question || !q->answer)
        return t2_err_set(err, "line %zu: needs string fields 'question' and 'answer'", lineno);
    return 0;
}

int t2_dataset_load(t2_dataset *ds, const char *path, t2_err *err)
{
    memset(ds, 0, sizeof *ds);
    char *text;
    size_t len;
    if (t2_read_file(path, MAX_DATASET_BYTES, &text, &len, err) != 0)
        return -1;
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    ds->items = calloc(lines, sizeof *ds->items);
    int rc = ds->items ? 0 : t2_err_set(err, "out of memory");
    size_t lineno = 0;
    for (char *p = text; rc == 0 && p < text + len;) {
        char *nl = memchr(p, '\n', (size_t)(text + len - p));
        size_t l = nl ? (size_t)(nl - p) : (size_t)(text + len - p);
        lineno++;
        if (l > 0)
            rc = parse_line(&ds->items[ds->n++], p, l, lineno, err);
        p += l + 1;
    }
    free(text);
    if (rc != 0) {
        t2_err_prefix(err, path);
        t2_dataset_free(ds);
        return -1;
    }
    return 0;
}

void t2_dataset_free(t2_dataset *ds)
{
    for (size_t i = 0; i < ds->n; i++) {
        free(ds->items[i].question);
        free(ds->items[i].answer);
        free(ds->items[i].system);
        free(ds->items[i].label);
        free(ds->items[i].family);
    }
    free(ds->items);
    memset(ds, 0, sizeof *ds);
}

static int answer_item(t2_engine *e, t2_ctx *ctx, const t2_qa *q, const t2_adapted *w,
                       int max_tokens, bool *correct, t2_err *err)
{
    t2_chat_msg msgs[2];
    size_t n = 0;
    if (q->system)
        msgs[n++] = (t2_chat_msg){"system", q->system};
    msgs[n++] = (t2_chat_msg){"user", q->question};
    int32_t *ids;
    size_t n_ids;
    if (t2_engine_chat_ids(e, msgs, n, &ids, &n_ids, err) != 0)
        return -1;
    t2_ctx_truncate(ctx, 0);
    t2_ctx_set_layers(ctx, w ? w->layers : NULL);
    t2_gen_params gp;
    t2_gen_params_defaults(&gp);
    gp.max_tokens = max_tokens;
    t2_gen_result res;
    int rc = t2_generate(ctx, e->model, ids, n_ids, &gp, NULL, NULL, &res, err);
    t2_ctx_set_layers(ctx, NULL);
    free(ids);
    if (rc != 0)
        return -1;
    *correct = t2_answer_matches(res.text, q->answer);
    t2_gen_result_free(&res);
    return 0;
}

int t2_eval_accuracy(t2_engine *e, t2_ctx *ctx, const t2_dataset *ds, size_t limit,
                     const t2_adapted *weights, int max_tokens, double *accuracy, t2_err *err)
{
    size_t n = limit && limit < ds->n ? limit : ds->n, right = 0;
    for (size_t i = 0; i < n; i++) {
        bool ok;
        if (answer_item(e, ctx, &ds->items[i], weights, max_tokens, &ok, err) != 0)
            return -1;
        right += ok;
    }
    *accuracy = n ? (double)right / (double)n : 0.0;
    return 0;
}

int t2_eval_two_pass(t2_engine *e, t2_ctx *ctx, const t2_dataset *ds, size_t limit,
                     const t2_adapt_req *req, int max_tokens, double *accuracy, t2_err *err)
{
    size_t n = limit && limit < ds->n ? limit : ds->n, right = 0;
    for (size_t i = 0; i < n; i++) {
        t2_decision d;
        int code;
        if (t2_engine_decide(e, ctx, req, ds->items[i].question, &d, &code, err) != 0)
            return -1;
        t2_adapted *w = NULL;
        bool ok = false;
        int rc = t2_engine_weights(e, &d.mixture, max_tokens, &w, err);
        if (rc == 0)
            rc = answer_item(e, ctx, &ds->items[i], w, max_tokens, &ok, err);
        t2_adapted_unref(w);
        t2_decision_clear(&d);
        if (rc != 0)
            return -1;
        right += ok;
    }
    *accuracy = n ? (double)right / (double)n : 0.0;
    return 0;
}
