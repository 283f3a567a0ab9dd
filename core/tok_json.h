/* JSON helpers shared by the tokenizer.json loader files. */
#ifndef T2_TOK_JSON_H
#define T2_TOK_JSON_H

#include <jansson.h>

#include "tok_internal.h"

#define TOK_JSON_MAX_DEPTH 8

const char *tok_json_type(const json_t *node); /* its "type" string or NULL */
bool tok_json_is_type(const json_t *node, const char *t);
/* Optional boolean field: def when absent or null; -1 if another type. */
int tok_json_bool(const json_t *obj, const char *key, bool def, bool *out, t2_err *err);

/* Add the steps of a normalizer / pre_tokenizer (null: none). */
int tok_json_normalizer(t2_tokenizer *tok, const json_t *node, int depth, t2_err *err);
int tok_json_pre(t2_tokenizer *tok, const json_t *node, int depth, t2_err *err);

#endif
