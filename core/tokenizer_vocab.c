/* Vocabulary table with an open-addressing text->id index, the decoded
 * bytes of every token, and the tables derived from it (added-token scan
 * table, byte tokens). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

#define EMPTY32 UINT32_MAX

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

int tok_vocab_init(tok_vocab *v, int32_t n, t2_err *err)
{
    memset(v, 0, sizeof *v);
    if (n <= 0 || n > TOK_MAX_VOCAB)
        return t2_err_set(err, "vocabulary size %d out of range (1..%d)", (int)n, TOK_MAX_VOCAB);
    v->n = n;
    size_t un = (size_t)n;
    v->off = calloc(un, sizeof *v->off);
    v->len = calloc(un, sizeof *v->len);
    v->boff = calloc(un, sizeof *v->boff);
    v->blen = calloc(un, sizeof *v->blen);
    v->attr = malloc(un);
    if (!v->off || !v->len || !v->boff || !v->blen || !v->attr)
        return t2_err_set(err, "out of memory (vocabulary of %d tokens)", (int)n);
    memset(v->attr, TA_UNUSED, un);
    return 0;
}

void tok_vocab_free(tok_vocab *v)
{
    free(v->off);
    free(v->len);
    free(v->boff);
    free(v->blen);
    free(v->attr);
    free(v->score);
    free(v->pool);
    free(v->bpool);
    free(v->slots);
    memset(v, 0, sizeof *v);
}

static int pool_append(tok_vocab *v, const char *s, size_t n, t2_err *err)
{
    if (v->pool_len + n + 1 > v->pool_cap) {
        size_t cap = v->pool_cap ? v->pool_cap : 4096;
        while (cap < v->pool_len + n + 1)
            cap *= 2;
        if (cap > UINT32_MAX)
            return t2_err_set(err, "vocabulary text too large");
        char *p = realloc(v->pool, cap);
        if (!p)
            return t2_err_set(err, "out of memory (vocabulary text)");
        v->pool = p;
        v->pool_cap = cap;
    }
    memcpy(v->pool + v->pool_len, s, n);
    v->pool[v->pool_len + n] = '\0';
    v->pool_len += n + 1;
    return 0;
}

int tok_vocab_set(tok_vocab *v, int32_t id, const char *text, size_t len, uint8_t attr, t2_err *err)
{
    if (id < 0 || id >= v->n)
        return t2_err_set(err, "token id %d out of range (vocabulary size %d)", (int)id, (int)v->n);
    if (len > TOK_MAX_TOKEN_LEN)
        return t2_err_set(err, "token %d is too long (%zu bytes)", (int)id, len);
    if (!(v->attr[id] & TA_UNUSED))
        return t2_err_set(err, "token id %d given twice", (int)id);
    size_t at = v->pool_len;
    if (pool_append(v, text, len, err) < 0)
        return -1;
    v->off[id] = (uint32_t)at;
    v->len[id] = (uint32_t)len;
    v->attr[id] = attr;
    return 0;
}

int tok_vocab_set_added(tok_vocab *v, int32_t id, const char *text, size_t len, uint8_t attr,
                        t2_err *err)
{
    if (id < 0 || id >= v->n || (v->attr[id] & TA_UNUSED))
        return tok_vocab_set(v, id, text, len, attr, err);
    if (v->len[id] == len && memcmp(tok_text(v, id), text, len) == 0) {
        v->attr[id] |= attr;
        return 0;
    }
    /* An added token re-using an id renames it, as in Hugging Face. */
    if (len > TOK_MAX_TOKEN_LEN)
        return t2_err_set(err, "token %d is too long (%zu bytes)", (int)id, len);
    size_t at = v->pool_len;
    if (pool_append(v, text, len, err) < 0)
        return -1;
    v->off[id] = (uint32_t)at;
    v->len[id] = (uint32_t)len;
    v->attr[id] = attr;
    return 0;
}

static int32_t slot_find(const tok_vocab *v, const char *s, size_t len, uint32_t *slot)
{
    uint32_t i = (uint32_t)hash_bytes(s, len) & v->mask;
    for (;;) {
        uint32_t id = v->slots[i];
        if (id == EMPTY32) {
            *slot = i;
            return -1;
        }
        if (v->len[id] == len && memcmp(v->pool + v->off[id], s, len) == 0) {
            *slot = i;
            return (int32_t)id;
        }
        i = (i + 1) & v->mask;
    }
}

int32_t tok_vocab_find(const tok_vocab *v, const char *s, size_t len)
{
    if (!v->slots)
        return -1;
    uint32_t slot;
    return slot_find(v, s, len, &slot);
}

static int build_index(tok_vocab *v, t2_err *err)
{
    uint32_t size = tok_table_size((size_t)v->n);
    v->slots = malloc((size_t)size * sizeof *v->slots);
    if (!v->slots)
        return t2_err_set(err, "out of memory (vocabulary index)");
    memset(v->slots, 0xFF, (size_t)size * sizeof *v->slots);
    v->mask = size - 1;
    for (int32_t id = 0; id < v->n; id++) {
        if (v->attr[id] & TA_UNUSED)
            continue;
        uint32_t slot;
        int32_t old = slot_find(v, v->pool + v->off[id], v->len[id], &slot);
        /* Same text twice: the lowest id wins, unless a later one is an
         * added token (Hugging Face looks added tokens up first). */
        if (old < 0 || ((v->attr[id] & TA_ADDED) && !(v->attr[old] & TA_ADDED)))
            v->slots[slot] = (uint32_t)id;
    }
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* "<0xNN>" -> NN, else -1 */
static int byte_token_value(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    int hi = hexval(s[3]), lo = hexval(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/* Decoded bytes of one token into out (capacity >= len + 1). */
static size_t token_decoded(const tok_vocab *v, enum t2_tok_kind kind, int32_t id, char *out)
{
    const char *s = tok_text(v, id);
    size_t n = v->len[id], o = 0;
    uint8_t a = v->attr[id];
    if (a & TA_UNUSED)
        return 0;
    if (a & (TA_ADDED | TA_SPECIAL)) {
        memcpy(out, s, n);
        return n;
    }
    if (kind == T2_TOK_SPM) {
        int b = byte_token_value(s, n);
        if (b >= 0) {
            out[0] = (char)b;
            return 1;
        }
        for (size_t i = 0; i < n; i++) {
            if (i + 3 <= n && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
                out[o++] = ' ';
                i += 2;
            } else {
                out[o++] = s[i];
            }
        }
        return o;
    }
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int l = tok_utf8_decode(s + i, n - i, &cp);
        int b = l > 0 ? tok_cp_to_byte(cp) : -1;
        if (b >= 0) {
            out[o++] = (char)b;
            i += (size_t)l;
        } else {
            size_t k = l > 0 ? (size_t)l : 1; /* unmapped: keep as is */
            memcpy(out + o, s + i, k);
            o += k;
            i += k;
        }
    }
    return o;
}

static int build_bytes(tok_vocab *v, enum t2_tok_kind kind, t2_err *err)
{
    /* Decoding never makes a token longer, so the text pool size bounds it. */
    v->bpool = malloc(v->pool_len + 1);
    if (!v->bpool)
        return t2_err_set(err, "out of memory (token bytes)");
    size_t at = 0;
    for (int32_t id = 0; id < v->n; id++) {
        if (kind == T2_TOK_SPM && !(v->attr[id] & (TA_UNUSED | TA_ADDED | TA_SPECIAL)) &&
            byte_token_value(tok_text(v, id), v->len[id]) >= 0)
            v->attr[id] |= TA_BYTE;
        size_t n = token_decoded(v, kind, id, v->bpool + at);
        v->boff[id] = (uint32_t)at;
        v->blen[id] = (uint32_t)n;
        if (n > v->max_bytes)
            v->max_bytes = n;
        at += n;
    }
    v->bpool_len = at;
    return 0;
}

int tok_vocab_finish(tok_vocab *v, enum t2_tok_kind kind, t2_err *err)
{
    if (!v->pool && pool_append(v, "", 0, err) < 0)
        return -1;
    if (build_bytes(v, kind, err) < 0)
        return -1;
    return build_index(v, err);
}

/* ---- added tokens ---- */

static int cmp_added(const void *pa, const void *pb, void *ctx)
{
    const tok_vocab *v = ctx;
    int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    uint8_t fa = (uint8_t)tok_text(v, a)[0], fb = (uint8_t)tok_text(v, b)[0];
    if (fa != fb)
        return fa < fb ? -1 : 1;
    if (v->len[a] != v->len[b])
        return v->len[a] > v->len[b] ? -1 : 1;
    return a < b ? -1 : (a > b);
}

int tok_added_build(t2_tokenizer *tok, t2_err *err)
{
    const tok_vocab *v = &tok->v;
    tok_added *ad = &tok->added;
    size_t n = 0;
    for (int32_t id = 0; id < v->n; id++)
        if ((v->attr[id] & TA_ADDED) && v->len[id] > 0)
            n++;
    ad->ids = malloc((n ? n : 1) * sizeof *ad->ids);
    if (!ad->ids)
        return t2_err_set(err, "out of memory (added tokens)");
    ad->n = 0;
    for (int32_t id = 0; id < v->n; id++) {
        /* Matching splits the input at the token's ends: only valid
         * UTF-8 tokens keep the pieces valid. */
        if ((v->attr[id] & TA_ADDED) && v->len[id] > 0 &&
            tok_utf8_valid(tok_text(v, id), v->len[id], NULL))
            ad->ids[ad->n++] = id;
    }
    qsort_r(ad->ids, ad->n, sizeof *ad->ids, cmp_added, (void *)v);
    memset(ad->first, 0, sizeof ad->first);
    for (size_t i = 0; i < ad->n; i++)
        ad->first[(uint8_t)tok_text(v, ad->ids[i])[0] + 1]++;
    for (int b = 0; b < 256; b++)
        ad->first[b + 1] += ad->first[b];
    return 0;
}

void tok_model_bytes(t2_tokenizer *tok)
{
    for (int b = 0; b < 256; b++) {
        char s[8];
        size_t n;
        if (tok->kind == T2_TOK_BYTE_LEVEL)
            n = tok_utf8_encode(tok_byte_to_cp((uint8_t)b), s);
        else
            n = (size_t)snprintf(s, sizeof s, "<0x%02X>", b);
        tok->m.byte_tok[b] = tok_vocab_find(&tok->v, s, n);
    }
}
