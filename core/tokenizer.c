/* Tokenizer object, accessors and the encode driver: validate the UTF-8,
 * split the text at added tokens, run each stretch between them through
 * the pipeline and the BPE model. */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

t2_tokenizer *tok_new(void)
{
    t2_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok)
        return NULL;
    tok->bos = tok->eos = -1;
    tok->m.unk = -1;
    for (int b = 0; b < 256; b++)
        tok->m.byte_tok[b] = -1;
    return tok;
}

void t2_tok_free(t2_tokenizer *tok)
{
    if (!tok)
        return;
    tok_vocab_free(&tok->v);
    tok_merges_free(&tok->m.merges);
    free(tok->added.ids);
    tok_pipeline_free(tok);
    free(tok->chat_template);
    free(tok);
}

int tok_finish_load(t2_tokenizer *tok, t2_err *err)
{
    if (tok_added_build(tok, err) < 0)
        return -1;
    tok_model_bytes(tok);
    if (tok->bos >= tok->v.n)
        tok->bos = -1;
    if (tok->eos >= tok->v.n)
        tok->eos = -1;
    if (tok->m.unk >= tok->v.n)
        tok->m.unk = -1;
    return 0;
}

enum t2_tok_kind t2_tok_kind(const t2_tokenizer *tok)
{
    return tok->kind;
}
int32_t t2_tok_vocab_size(const t2_tokenizer *tok)
{
    return tok->v.n;
}
int32_t t2_tok_bos(const t2_tokenizer *tok)
{
    return tok->bos;
}
int32_t t2_tok_eos(const t2_tokenizer *tok)
{
    return tok->eos;
}
bool t2_tok_adds_bos(const t2_tokenizer *tok)
{
    return tok->add_bos && tok->bos >= 0;
}
const char *t2_tok_chat_template(const t2_tokenizer *tok)
{
    return tok->chat_template;
}

int32_t t2_tok_find(const t2_tokenizer *tok, const char *text)
{
    return text ? tok_vocab_find(&tok->v, text, strlen(text)) : -1;
}

bool t2_tok_is_special(const t2_tokenizer *tok, int32_t id)
{
    return id >= 0 && id < tok->v.n && (tok->v.attr[id] & TA_SPECIAL);
}

int t2_tok_token_bytes(const t2_tokenizer *tok, int32_t id, char *buf, size_t cap)
{
    if (id < 0 || id >= tok->v.n)
        return -1;
    size_t n = tok->v.blen[id];
    if (n > cap)
        n = cap;
    if (n)
        memcpy(buf, tok->v.bpool + tok->v.boff[id], n);
    return (int)n;
}

size_t t2_tok_stream_cap(const t2_tokenizer *tok)
{
    /* pending bytes + the token, each byte possibly becoming U+FFFD */
    size_t need = 3 * (tok->v.max_bytes + sizeof((t2_tok_stream *)0)->pending) + 1;
    return need < 256 ? 256 : need;
}

/* ---- growable buffers ---- */

int tok_grow(void **p, size_t *cap, size_t need, size_t elem, t2_err *err)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap : 16;
    while (nc < need)
        nc *= 2;
    if (nc > SIZE_MAX / elem)
        return t2_err_set(err, "out of memory");
    void *q = realloc(*p, nc * elem);
    if (!q)
        return t2_err_set(err, "out of memory");
    *p = q;
    *cap = nc;
    return 0;
}

int tok_buf_reserve(tok_buf *b, size_t extra, t2_err *err)
{
    if (extra > SIZE_MAX / 2 - b->len)
        return t2_err_set(err, "out of memory");
    size_t old = b->cap;
    if (tok_grow((void **)&b->p, &b->cap, b->len + extra + 1, 1, err) < 0)
        return -1;
    /* PCRE2's JIT scans ahead in aligned blocks past the subject's end
     * (harmless, never across a page); defined bytes keep valgrind quiet. */
    if (b->cap > old)
        memset(b->p + old, 0, b->cap - old);
    return 0;
}

int tok_buf_append(tok_buf *b, const char *s, size_t n, t2_err *err)
{
    if (tok_buf_reserve(b, n, err) < 0)
        return -1;
    if (n)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

int tok_push_id(tok_ctx *c, int32_t id)
{
    if (tok_grow((void **)&c->ids, &c->cap_ids, c->n_ids + 1, sizeof *c->ids, c->err) < 0)
        return -1;
    c->ids[c->n_ids++] = id;
    return 0;
}

static void ctx_free(tok_ctx *c)
{
    free(c->ids);
    free(c->text.p);
    free(c->scratch.p);
    free(c->pieces);
    free(c->pieces2);
    free(c->spans);
    free(c->syms);
    free(c->heap);
    pcre2_match_data_free(c->md);
}

/* ---- added tokens ---- */

static bool is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

static bool is_word(char ch)
{
    uint8_t u = (uint8_t)ch;
    return u >= 0x80 || u == '_' || (u >= '0' && u <= '9') ||
           ((u | 0x20) >= 'a' && (u | 0x20) <= 'z');
}

/* The longest added token starting at text[i], or -1. */
static int32_t match_added(const t2_tokenizer *tok, const char *text, size_t len, size_t i,
                           bool parse_special)
{
    uint8_t b = (uint8_t)text[i];
    const tok_added *ad = &tok->added;
    if ((b & 0xC0) == 0x80 || ad->first[b] == ad->first[b + 1])
        return -1;
    for (uint32_t k = ad->first[b]; k < ad->first[b + 1]; k++) {
        int32_t id = ad->ids[k];
        uint8_t a = tok->v.attr[id];
        size_t n = tok->v.len[id];
        if ((a & TA_SPECIAL) && !parse_special)
            continue;
        if (n > len - i || memcmp(text + i, tok_text(&tok->v, id), n) != 0)
            continue;
        if ((a & TA_SINGLE_WORD) &&
            ((i > 0 && is_word(text[i - 1])) || (i + n < len && is_word(text[i + n]))))
            continue;
        return id;
    }
    return -1;
}

static int encode_segment(tok_ctx *c, const char *s, size_t n, bool origin)
{
    if (n == 0)
        return 0;
    if (tok_pretokenize(c, s, n, origin) < 0)
        return -1;
    for (size_t i = 0; i < c->n_pieces; i++)
        if (tok_bpe_piece(c, c->text.p + c->pieces[i].off, c->pieces[i].len) < 0)
            return -1;
    return 0;
}

static int encode_all(tok_ctx *c, const char *text, size_t len, bool parse_special)
{
    const t2_tokenizer *tok = c->tok;
    size_t seg = 0, i = 0;
    while (i < len) {
        int32_t id = tok->added.n ? match_added(tok, text, len, i, parse_special) : -1;
        if (id < 0) {
            i++;
            continue;
        }
        uint8_t a = tok->v.attr[id];
        size_t end = i;
        if (a & TA_LSTRIP)
            while (end > seg && is_space(text[end - 1]))
                end--;
        if (encode_segment(c, text + seg, end - seg, seg == 0) < 0 || tok_push_id(c, id) < 0)
            return -1;
        i += tok->v.len[id];
        if (a & TA_RSTRIP)
            while (i < len && is_space(text[i]))
                i++;
        seg = i;
    }
    return encode_segment(c, text + seg, len - seg, seg == 0);
}

int t2_tok_encode(const t2_tokenizer *tok, const char *text, size_t len, bool add_bos,
                  bool parse_special, int32_t **ids, size_t *n_ids, t2_err *err)
{
    if (!tok || !ids || !n_ids || (!text && len))
        return t2_err_set(err, "t2_tok_encode: invalid arguments");
    *ids = NULL;
    *n_ids = 0;
    size_t bad;
    if (!tok_utf8_valid(text, len, &bad))
        return t2_err_set(err, "invalid UTF-8 in input at byte offset %zu (byte 0x%02X)", bad,
                          (unsigned)(uint8_t)text[bad]);
    tok_ctx c = {.tok = tok, .err = err};
    c.md = pcre2_match_data_create(1, NULL);
    int rc = c.md ? 0 : t2_err_set(err, "out of memory");
    if (rc == 0 && add_bos && tok->bos >= 0)
        rc = tok_push_id(&c, tok->bos);
    if (rc == 0)
        rc = encode_all(&c, text ? text : "", len, parse_special);
    if (rc == 0 && c.n_ids == 0)
        rc = tok_grow((void **)&c.ids, &c.cap_ids, 1, sizeof *c.ids, err);
    if (rc == 0) {
        *ids = c.ids;
        *n_ids = c.n_ids;
        c.ids = NULL;
    }
    ctx_free(&c);
    return rc;
}
