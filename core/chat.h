/* Chat templates: the model's Jinja chat_template is not executed; it
 * selects one of the built-in formats by recognising its markers. */
#ifndef T2_CHAT_H
#define T2_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

enum t2_chat_format {
    T2_CHAT_CHATML = 0,  /* <|im_start|>role\n...<|im_end|>\n (Qwen2, SmolLM2) */
    T2_CHAT_LLAMA3 = 1,  /* <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
    T2_CHAT_MISTRAL = 2, /* [INST] ... [/INST] */
};

typedef struct t2_chat_msg {
    const char *role; /* "system", "user", "assistant" */
    const char *content;
} t2_chat_msg;

/* Picks the format for a template text (NULL -> ChatML). *recognised is
 * set false when the template was unknown and ChatML is the fallback
 * (the caller logs a warning). */
enum t2_chat_format t2_chat_detect(const char *chat_template, bool *recognised);
const char *t2_chat_format_name(enum t2_chat_format f);

/* Renders messages into prompt text containing the special-token text
 * (encode it with parse_special = true). bos_text is prepended where the
 * format expects it (Llama 3: "<|begin_of_text|>", Mistral: "<s>"); may
 * be NULL. add_generation_prompt appends the assistant header.
 * *out is malloc'd. */
int t2_chat_render(enum t2_chat_format f, const t2_chat_msg *msgs, size_t n,
                   bool add_generation_prompt, const char *bos_text, char **out, t2_err *err);

#endif
