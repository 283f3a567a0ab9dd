/* Generation loop over one context: prefill the prompt, then sample
 * token by token until EOS, a stop string, max_tokens, the end of the
 * context or cancellation. Text is streamed through a callback with
 * complete UTF-8 only, holding back what could be the start of a stop
 * string. */
#ifndef T2_GENERATE_H
#define T2_GENERATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "forward.h"
#include "model.h"
#include "sampling.h"

enum t2_finish {
    T2_FINISH_STOP = 0,      /* EOS token or a stop string */
    T2_FINISH_LENGTH = 1,    /* max_tokens or the context is full */
    T2_FINISH_CANCELLED = 2, /* the callback asked to stop */
    T2_FINISH_TIMEOUT = 3,   /* the request's time limit passed */
};

const char *t2_finish_name(enum t2_finish f);

typedef struct t2_gen_params {
    t2_sampling sampling;
    int max_tokens;    /* > 0 */
    const char **stop; /* stop strings (not included in the text) */
    size_t n_stop;
    bool ignore_eos;
    bool skip_special; /* drop special tokens from the text (default true) */
} t2_gen_params;

void t2_gen_params_defaults(t2_gen_params *p);

/* Called with each piece of new text (may be empty when a token only
 * completed a held-back byte sequence). Return false to cancel. */
typedef bool (*t2_gen_cb)(void *user, const char *text, size_t len, int32_t token);

typedef struct t2_gen_result {
    char *text; /* malloc'd, NUL-terminated; caller frees with t2_gen_result_free */
    size_t len;
    int32_t *tokens; /* generated ids, including a final EOS */
    int n_tokens;
    int n_prompt;
    enum t2_finish finish;
    double prefill_ms, decode_ms;
} t2_gen_result;

void t2_gen_result_free(t2_gen_result *r);

/* Generates after prompt from the context's current state (normally
 * empty). cb may be NULL. */
int t2_generate(t2_ctx *ctx, const t2_model *m, const int32_t *prompt, size_t n_prompt,
                const t2_gen_params *p, t2_gen_cb cb, void *user, t2_gen_result *res, t2_err *err);

/* One sequence's generation state, for callers that drive the forward
 * passes themselves (the batching scheduler). Feed it the logits after
 * each forward pass; it samples, streams text through cb and decides
 * when the sequence ends. */
typedef struct t2_gen_seq t2_gen_seq;

int t2_gen_seq_create(t2_gen_seq **out, const t2_model *m, const int32_t *prompt, size_t n_prompt,
                      const t2_gen_params *p, t2_gen_cb cb, void *user, t2_err *err);
void t2_gen_seq_free(t2_gen_seq *g);
/* Samples the next token from logits (not modified). Returns true when
 * the sequence has ended (EOS, stop string, max_tokens, cancelled by cb,
 * or context_full); otherwise *next must be fed to the model. */
bool t2_gen_seq_step(t2_gen_seq *g, const float *logits, bool context_full, int32_t *next);
/* Ends the sequence from outside (cancel, timeout: pass T2_FINISH_*). */
void t2_gen_seq_end(t2_gen_seq *g, enum t2_finish finish);
bool t2_gen_seq_finished(const t2_gen_seq *g, enum t2_finish *finish);
int t2_gen_seq_n_tokens(const t2_gen_seq *g);
/* Moves the text and tokens into res (timings left 0). */
int t2_gen_seq_take_result(t2_gen_seq *g, t2_gen_result *res, t2_err *err);

#endif
