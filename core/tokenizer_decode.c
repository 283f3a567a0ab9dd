/* Decoding ids back to text, whole or streamed token by token. Token
 * bytes are passed through a small UTF-8 state machine that holds back an
 * incomplete sequence and turns invalid bytes into U+FFFD (one per
 * maximal invalid subsequence, as the WHATWG decoder does). */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

static const char REPLACEMENT[3] = {(char)0xEF, (char)0xBF, (char)0xBD};

static void sink_put(tok_sink *s, const char *b, size_t n)
{
    if (s->failed)
        return;
    if (s->len + n + 1 > s->cap) {
        if (!s->grow) {
            s->failed = true; /* a fixed buffer keeps whole characters only */
            return;
        }
        size_t cap = s->cap ? s->cap : 64;
        while (cap < s->len + n + 1)
            cap *= 2;
        char *p = realloc(s->p, cap);
        if (!p) {
            s->failed = true;
            return;
        }
        s->p = p;
        s->cap = cap;
    }
    memcpy(s->p + s->len, b, n);
    s->len += n;
}

void tok_utf8_feed(tok_sink *s, char *pend, size_t *n_pend, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)b[i];
        if (*n_pend > 0) {
            uint8_t lead = (uint8_t)pend[0];
            if (tok_utf8_cont_ok(lead, *n_pend, c)) {
                pend[(*n_pend)++] = (char)c;
                if (*n_pend == tok_utf8_len(lead)) {
                    sink_put(s, pend, *n_pend);
                    *n_pend = 0;
                }
                continue;
            }
            sink_put(s, REPLACEMENT, 3); /* truncated sequence; c starts afresh */
            *n_pend = 0;
        }
        if (c < 0x80) {
            sink_put(s, (const char *)&b[i], 1);
        } else if (tok_utf8_len(c) == 0) {
            sink_put(s, REPLACEMENT, 3);
        } else {
            pend[0] = (char)c;
            *n_pend = 1;
        }
    }
}

void tok_utf8_flush(tok_sink *s, char *pend, size_t *n_pend)
{
    (void)pend;
    if (*n_pend > 0)
        sink_put(s, REPLACEMENT, 3);
    *n_pend = 0;
}

/* The bytes of id to emit, or false to emit nothing. */
static bool token_view(const t2_tokenizer *tok, int32_t id, bool skip_special, bool *at_start,
                       const char **b, size_t *n)
{
    if (id < 0 || id >= tok->v.n)
        return false;
    if (skip_special && (tok->v.attr[id] & TA_SPECIAL))
        return false;
    *b = tok->v.bpool + tok->v.boff[id];
    *n = tok->v.blen[id];
    if (*n == 0)
        return false;
    if (*at_start && (*b)[0] == ' ') {
        (*b)++;
        (*n)--;
    }
    *at_start = false;
    return true;
}

int t2_tok_decode(const t2_tokenizer *tok, const int32_t *ids, size_t n, bool skip_special,
                  char **out, size_t *out_len, t2_err *err)
{
    if (!tok || !out || (!ids && n))
        return t2_err_set(err, "t2_tok_decode: invalid arguments");
    *out = NULL;
    if (out_len)
        *out_len = 0;
    tok_sink s = {.grow = true};
    char pend[8];
    size_t n_pend = 0;
    bool at_start = tok->strip_space;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= tok->v.n) {
            free(s.p);
            return t2_err_set(err, "invalid token id %d at position %zu", (int)ids[i], i);
        }
        const char *b;
        size_t bn;
        if (token_view(tok, ids[i], skip_special, &at_start, &b, &bn))
            tok_utf8_feed(&s, pend, &n_pend, b, bn);
    }
    tok_utf8_flush(&s, pend, &n_pend);
    sink_put(&s, "", 0);
    if (s.failed) {
        free(s.p);
        return t2_err_set(err, "out of memory decoding %zu tokens", n);
    }
    s.p[s.len] = '\0';
    *out = s.p;
    if (out_len)
        *out_len = s.len;
    return 0;
}

void t2_tok_stream_init(t2_tok_stream *s, const t2_tokenizer *tok, bool skip_special)
{
    memset(s, 0, sizeof *s);
    s->tok = tok;
    s->skip_special = skip_special;
    s->at_start = tok->strip_space;
}

size_t t2_tok_stream_push(t2_tok_stream *s, int32_t id, char *out, size_t cap)
{
    if (!out || cap == 0)
        return 0;
    tok_sink k = {.p = out, .cap = cap};
    const char *b;
    size_t bn;
    if (token_view(s->tok, id, s->skip_special, &s->at_start, &b, &bn))
        tok_utf8_feed(&k, s->pending, &s->n_pending, b, bn);
    out[k.len] = '\0';
    return k.len;
}

size_t t2_tok_stream_flush(t2_tok_stream *s, char *out, size_t cap)
{
    if (!out || cap == 0)
        return 0;
    tok_sink k = {.p = out, .cap = cap};
    tok_utf8_flush(&k, s->pending, &s->n_pending);
    out[k.len] = '\0';
    return k.len;
}
