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
