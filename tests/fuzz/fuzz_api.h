/* Shared by the request-parsing targets: the limits a server passes (as
 * in conf's defaults) and the checks on what a parser returns. */
#ifndef T2_FUZZ_API_H
#define T2_FUZZ_API_H

#include <string.h>

#include "api_gen.h"
#include "chat.h"
#include "fuzz.h"

static const t2_api_limits fuzz_limits = {
    .max_tokens = 4096,
    .default_max_tokens = 256,
    .default_strategy = "prompt",
    .default_method = T2_CLS_LIKELIHOOD,
    .model_name = "seedling",
};

/* A refused request is a 4xx with a message (500 only for out of memory). */
static inline void fuzz_check_refusal(const t2_api_err *e)
{
    FUZZ_CHECK((e->status >= 400 && e->status < 500) || e->status == 500);
    FUZZ_CHECK(memchr(e->message, '\0', sizeof e->message) != NULL);
}

/* What the server does next with an accepted request: its messages go
 * through every chat template (core/chat.c). */
static inline void fuzz_use_request(const t2_api_gen_req *r)
{
    FUZZ_CHECK(r->prompt || r->n_msgs > 0);
    FUZZ_CHECK(!r->prompt || strlen(r->prompt) == r->prompt_len);
    FUZZ_CHECK(r->gen.n_stop <= T2_API_MAX_STOP);
    for (int f = T2_CHAT_CHATML; f <= T2_CHAT_MISTRAL && r->n_msgs > 0; f++) {
        char *out;
        t2_err err;
        if (t2_chat_render((enum t2_chat_format)f, r->msgs, r->n_msgs, true, "<s>", &out, &err) ==
            0)
            free(out);
    }
}

#endif
