/* Built-in chat formats, chosen by markers in the model's Jinja template
 * (the template itself is never executed). */
#include "chat.h"

#include <stdlib.h>
#include <string.h>

enum t2_chat_format t2_chat_detect(const char *chat_template, bool *recognised)
{
    bool ok = true;
    enum t2_chat_format f = T2_CHAT_CHATML;
    if (chat_template && strstr(chat_template, "<|im_start|>"))
        f = T2_CHAT_CHATML;
    else if (chat_template && strstr(chat_template, "<|start_header_id|>"))
        f = T2_CHAT_LLAMA3;
    else if (chat_template && strstr(chat_template, "[INST]"))
        f = T2_CHAT_MISTRAL;
    else
        ok = false;
    if (recognised)
        *recognised = ok;
    return f;
}

const char *t2_chat_format_name(enum t2_chat_format f)
{
    switch (f) {
    case T2_CHAT_CHATML: return "chatml";
    case T2_CHAT_LLAMA3: return "llama3";
    case T2_CHAT_MISTRAL: return "mistral";
    }
    return "unknown";
}

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

static void put(sbuf *b, const char *s)
{
    size_t n = strlen(s);
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n + 1);
    b->len += n;
}

static void render_chatml(sbuf *b, const t2_chat_msg *m, size_t n, bool gen)
{
    for (size_t i = 0; i < n; i++) {
        put(b, "<|im_start|>");
        put(b, m[i].role);
        put(b, "\n");
        put(b, m[i].content);
        put(b, "<|im_end|>\n");
    }
    if (gen)
        put(b, "<|im_start|>assistant\n");
}

static void render_llama3(sbuf *b, const t2_chat_msg *m, size_t n, bool gen)
{
    for (size_t i = 0; i < n; i++) {
        put(b, "<|start_header_id|>");
        put(b, m[i].role);
        put(b, "<|end_header_id|>\n\n");
        put(b, m[i].content);
        put(b, "<|eot_id|>");
    }
    if (gen)
        put(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* Mistral has no system turn: system texts are joined and prepended to
 * the first user message (or form a turn of their own if none). */
static int render_mistral(sbuf *b, const t2_chat_msg *m, size_t n, t2_err *err)
{
    sbuf sys = {0};
    for (size_t i = 0; i < n; i++) {
        if (strcmp(m[i].role, "system") != 0)
            continue;
        if (sys.len)
            put(&sys, "\n\n");
        put(&sys, m[i].content);
    }
    bool sys_done = sys.len == 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(m[i].role, "user") == 0) {
            put(b, "[INST] ");
            if (!sys_done) {
                put(b, sys.p);
                put(b, "\n\n");
                sys_done = true;
            }
            put(b, m[i].content);
            put(b, " [/INST]");
        } else if (strcmp(m[i].role, "assistant") == 0) {
            put(b, m[i].content);
            put(b, "</s>");
        } else if (strcmp(m[i].role, "system") != 0) {
            free(sys.p);
            return t2_err_set(err, "mistral chat format: unsupported role \"%s\"", m[i].role);
        }
    }
    if (!sys_done) {
        put(b, "[INST] ");
        put(b, sys.p);
        put(b, " [/INST]");
    }
    bool oom = sys.oom;
    free(sys.p);
    return oom ? t2_err_set(err, "out of memory") : 0;
}

int t2_chat_render(enum t2_chat_format f, const t2_chat_msg *msgs, size_t n,
                   bool add_generation_prompt, const char *bos_text, char **out, t2_err *err)
{
    *out = NULL;
    if (n && !msgs)
        return t2_err_set(err, "chat: no messages");
    for (size_t i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content)
            return t2_err_set(err, "chat: message %zu has no role or content", i);
    sbuf b = {0};
    put(&b, "");
    if (bos_text && f != T2_CHAT_CHATML)
        put(&b, bos_text);
    int rc = 0;
    switch (f) {
    case T2_CHAT_LLAMA3: render_llama3(&b, msgs, n, add_generation_prompt); break;
    case T2_CHAT_MISTRAL: rc = render_mistral(&b, msgs, n, err); break;
    default: render_chatml(&b, msgs, n, add_generation_prompt); break;
    }
    if (rc == 0 && b.oom)
        rc = t2_err_set(err, "out of memory");
    if (rc < 0) {
        free(b.p);
        return -1;
    }
    *out = b.p;
    return 0;
}
