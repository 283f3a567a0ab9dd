/* Normalizers and pre-tokenizers, as Hugging Face tokenizers applies them
 * to each stretch of text between added tokens: the normalizers rewrite
 * the text, then each pre-tokenizer splits every piece further. */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

pcre2_code *tok_regex_compile(const char *pat, size_t len, bool literal, t2_err *err)
{
    int code;
    PCRE2_SIZE off;
    uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP); /* LITERAL rejects UCP */
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, len, opts, &code, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        t2_err_set(err, "bad regex at offset %zu: %s", (size_t)off, (const char *)msg);
        return NULL;
    }
    /* JIT is only a speed-up; the interpreter is used if it fails. */
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    return re;
}

void tok_pipeline_free(t2_tokenizer *tok)
{
    for (size_t i = 0; i < tok->n_norms; i++) {
        free(tok->norms[i].str);
        pcre2_code_free(tok->norms[i].re);
    }
    for (size_t i = 0; i < tok->n_pres; i++)
        pcre2_code_free(tok->pres[i].re);
    tok->n_norms = tok->n_pres = 0;
}

static char *dup_bytes(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static tok_norm *new_norm(t2_tokenizer *tok, t2_err *err)
{
    if (tok->n_norms >= TOK_MAX_STEPS) {
        t2_err_set(err, "too many normalizer steps (max %d)", TOK_MAX_STEPS);
        return NULL;
    }
    tok_norm *n = &tok->norms[tok->n_norms++];
    memset(n, 0, sizeof *n);
    return n;
}

static tok_pre *new_pre(t2_tokenizer *tok, t2_err *err)
{
    if (tok->n_pres >= TOK_MAX_STEPS) {
        t2_err_set(err, "too many pre-tokenizer steps (max %d)", TOK_MAX_STEPS);
        return NULL;
    }
    tok_pre *p = &tok->pres[tok->n_pres++];
    memset(p, 0, sizeof *p);
    return p;
}

int tok_add_norm_prepend(t2_tokenizer *tok, const char *s, size_t len, t2_err *err)
{
    tok_norm *n = new_norm(tok, err);
    if (!n)
        return -1;
    n->type = TN_PREPEND;
    n->str = dup_bytes(s, len);
    n->str_len = len;
    return n->str ? 0 : t2_err_set(err, "out of memory");
}

int tok_add_norm_replace(t2_tokenizer *tok, const char *pat, size_t pat_len, bool literal,
                         const char *with, size_t with_len, t2_err *err)
{
    tok_norm *n = new_norm(tok, err);
    if (!n)
        return -1;
    n->type = TN_REPLACE;
    n->str = dup_bytes(with, with_len);
    n->str_len = with_len;
    if (!n->str)
        return t2_err_set(err, "out of memory");
    n->re = tok_regex_compile(pat, pat_len, literal, err);
    return n->re ? 0 : -1;
}

int tok_add_split(t2_tokenizer *tok, const char *pat, size_t len, bool literal,
                  enum tok_split_behavior b, bool invert, t2_err *err)
{
    tok_pre *p = new_pre(tok, err);
    if (!p)
        return -1;
    p->type = TP_SPLIT;
    p->behavior = b;
    p->invert = invert;
    p->re = tok_regex_compile(pat, len, literal, err);
    return p->re ? 0 : -1;
}

int tok_add_metaspace(t2_tokenizer *tok, const char *rep, size_t rep_len,
                      enum tok_prepend_scheme scheme, bool split, t2_err *err)
{
    if (rep_len == 0 || rep_len >= sizeof tok->pres[0].rep)
        return t2_err_set(err, "Metaspace replacement must be one character");
    tok_pre *p = new_pre(tok, err);
    if (!p)
        return -1;
    p->type = TP_METASPACE;
    memcpy(p->rep, rep, rep_len);
    p->rep_len = rep_len;
    p->prepend = scheme;
    p->split = split;
    if (split) {
        p->re = tok_regex_compile(rep, rep_len, true, err);
        if (!p->re)
            return -1;
    }
    return 0;
}

int tok_add_prefix_space(t2_tokenizer *tok, t2_err *err)
{
    tok_pre *p = new_pre(tok, err);
    if (!p)
        return -1;
    p->type = TP_PREFIX_SPACE;
    return 0;
}

/* ---- matching ---- */

static int match_error(tok_ctx *c, int rc)
{
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof msg);
    return t2_err_set(c->err, "regex match failed: %s", (const char *)msg);
}

static int add_span(tok_ctx *c, size_t start, size_t end, bool match)
{
    if (tok_grow((void **)&c->spans, &c->cap_spans, c->n_spans + 1, sizeof *c->spans, c->err) < 0)
        return -1;
    c->spans[c->n_spans++] = (tok_span){(uint32_t)start, (uint32_t)end, match};
    return 0;
}

/* Covers s[0..n) with alternating gap / match spans (empty matches are
 * ignored), like Hugging Face's find_matches. */
static int find_spans(tok_ctx *c, const pcre2_code *re, const char *s, size_t n)
{
    c->n_spans = 0;
    size_t pos = 0, prev = 0;
    while (pos < n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, c->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0)
            return match_error(c, rc);
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
        size_t ms = ov[0], me = ov[1];
        if (me <= ms || ms < pos || me > n) {
            size_t at = ms > pos && ms < n ? ms : pos;
            size_t step = tok_utf8_len((uint8_t)s[at]);
            pos = at + (step ? step : 1);
            continue;
        }
        if (ms > prev && add_span(c, prev, ms, false) < 0)
            return -1;
        if (add_span(c, ms, me, true) < 0)
            return -1;
        prev = pos = me;
    }
    if (prev < n && add_span(c, prev, n, false) < 0)
        return -1;
    return 0;
}

static int out_piece(tok_ctx *c, uint32_t off, uint32_t len, bool origin)
{
    if (len == 0)
        return 0;
    if (tok_grow((void **)&c->pieces2, &c->cap_pieces2, c->n_pieces2 + 1, sizeof *c->pieces2,
                 c->err) < 0)
        return -1;
    c->pieces2[c->n_pieces2++] = (tok_piece){off, len, origin};
    return 0;
}

/* Applies a SplitDelimiterBehavior to c->spans in place. */
static void fold_spans(tok_ctx *c, enum tok_split_behavior b)
{
    size_t o = 0;
    bool prev_match = false;
    if (b == TS_MERGED_NEXT) {
        /* Fold from the right: a match joins the span after it. */
        size_t n = c->n_spans, w = n;
        for (size_t k = n; k-- > 0;) {
            tok_span sp = c->spans[k];
            if (sp.match && !prev_match && w < n)
                c->spans[w].start = sp.start;
            else
                c->spans[--w] = (tok_span){sp.start, sp.end, false};
            prev_match = sp.match;
        }
        memmove(c->spans, c->spans + w, (n - w) * sizeof *c->spans);
        c->n_spans = n - w;
        return;
    }
    for (size_t k = 0; k < c->n_spans; k++) {
        tok_span sp = c->spans[k];
        switch (b) {
        case TS_REMOVED:
            if (!sp.match)
                c->spans[o++] = sp;
            break;
        case TS_MERGED_PREV:
            if (sp.match && !prev_match && o > 0)
                c->spans[o - 1].end = sp.end;
            else
                c->spans[o++] = (tok_span){sp.start, sp.end, false};
            break;
        case TS_CONTIGUOUS:
            if (sp.match && prev_match && o > 0)
                c->spans[o - 1].end = sp.end;
            else
                c->spans[o++] = sp;
            break;
        default: c->spans[o++] = sp; break;
        }
        prev_match = sp.match;
    }
    c->n_spans = o;
}

static int split_piece(tok_ctx *c, const tok_pre *p, tok_piece pc)
{
    if (find_spans(c, p->re, c->text.p + pc.off, pc.len) < 0)
        return -1;
    if (p->invert)
        for (size_t k = 0; k < c->n_spans; k++)
            c->spans[k].match = !c->spans[k].match;
    fold_spans(c, p->behavior);
    for (size_t k = 0; k < c->n_spans; k++) {
        tok_span sp = c->spans[k];
        if (out_piece(c, pc.off + sp.start, sp.end - sp.start, pc.origin && sp.start == 0) < 0)
            return -1;
    }
    return 0;
}

/* Appends prefix + text[off..off+len) with every `from` byte run
 * replaced; returns the new offset. */
static int rewrite_piece(tok_ctx *c, tok_piece *pc, const char *prefix, size_t plen,
                         const char *rep, size_t rlen)
{
    size_t need = plen + (size_t)pc->len * (rlen ? rlen : 1);
    if (need > UINT32_MAX / 2 || tok_buf_reserve(&c->text, need, c->err) < 0)
        return -1;
    size_t at = c->text.len;
    char *dst = c->text.p + at, *d = dst;
    const char *src = c->text.p + pc->off;
    memcpy(d, prefix, plen);
    d += plen;
    for (uint32_t i = 0; i < pc->len; i++) {
        if (rlen && src[i] == ' ') {
            memcpy(d, rep, rlen);
            d += rlen;
        } else {
            *d++ = src[i];
        }
    }
    c->text.len = at + (size_t)(d - dst);
    pc->off = (uint32_t)at;
    pc->len = (uint32_t)(d - dst);
    return 0;
}

static int metaspace_piece(tok_ctx *c, const tok_pre *p, tok_piece pc)
{
    bool starts = false;
    /* Compare after replacement: a leading space becomes the replacement. */
    if (pc.len > 0 && c->text.p[pc.off] == ' ')
        starts = true;
    else if (pc.len >= p->rep_len && memcmp(c->text.p + pc.off, p->rep, p->rep_len) == 0)
        starts = true;
    bool prepend = !starts && (p->prepend == TM_ALWAYS || (p->prepend == TM_FIRST && pc.origin));
    if (rewrite_piece(c, &pc, p->rep, prepend ? p->rep_len : 0, p->rep, p->rep_len) < 0)
        return -1;
    if (!p->split)
        return out_piece(c, pc.off, pc.len, pc.origin);
    tok_pre sp = {.type = TP_SPLIT, .re = p->re, .behavior = TS_MERGED_NEXT};
    return split_piece(c, &sp, pc);
}

static int prefix_space_piece(tok_ctx *c, tok_piece pc)
{
    if (pc.len > 0 && c->text.p[pc.off] != ' ' && rewrite_piece(c, &pc, " ", 1, NULL, 0) < 0)
        return -1;
    return out_piece(c, pc.off, pc.len, pc.origin);
}

static int apply_pre(tok_ctx *c, const tok_pre *p)
{
    c->n_pieces2 = 0;
    for (size_t i = 0; i < c->n_pieces; i++) {
        tok_piece pc = c->pieces[i];
        int rc;
        switch (p->type) {
        case TP_SPLIT: rc = split_piece(c, p, pc); break;
        case TP_METASPACE: rc = metaspace_piece(c, p, pc); break;
        default: rc = prefix_space_piece(c, pc); break;
        }
        if (rc < 0)
            return -1;
    }
    tok_piece *t = c->pieces;
    size_t tc = c->cap_pieces;
    c->pieces = c->pieces2;
    c->cap_pieces = c->cap_pieces2;
    c->n_pieces = c->n_pieces2;
    c->pieces2 = t;
    c->cap_pieces2 = tc;
    return 0;
}

/* ---- normalizers: c->text -> c->scratch, then swapped ---- */

static int norm_replace(tok_ctx *c, const tok_norm *nm)
{
    if (find_spans(c, nm->re, c->text.p, c->text.len) < 0)
        return -1;
    c->scratch.len = 0;
    for (size_t k = 0; k < c->n_spans; k++) {
        tok_span sp = c->spans[k];
        const char *s = sp.match ? nm->str : c->text.p + sp.start;
        size_t n = sp.match ? nm->str_len : sp.end - sp.start;
        if (tok_buf_append(&c->scratch, s, n, c->err) < 0)
            return -1;
    }
    return 0;
}

static int norm_prepend(tok_ctx *c, const tok_norm *nm)
{
    c->scratch.len = 0;
    if (c->text.len == 0)
        return 0;
    if (tok_buf_append(&c->scratch, nm->str, nm->str_len, c->err) < 0)
        return -1;
    return tok_buf_append(&c->scratch, c->text.p, c->text.len, c->err);
}

static int apply_norm(tok_ctx *c, const tok_norm *nm)
{
    int rc = nm->type == TN_PREPEND ? norm_prepend(c, nm) : norm_replace(c, nm);
    if (rc < 0)
        return -1;
    if (c->scratch.len > UINT32_MAX / 4)
        return t2_err_set(c->err, "text too long");
    tok_buf t = c->text;
    c->text = c->scratch;
    c->scratch = t;
    return 0;
}

int tok_pretokenize(tok_ctx *c, const char *s, size_t len, bool origin)
{
    const t2_tokenizer *tok = c->tok;
    if (len > UINT32_MAX / 8)
        return t2_err_set(c->err, "text too long (%zu bytes)", len);
    c->text.len = 0;
    if (tok_buf_append(&c->text, s, len, c->err) < 0)
        return -1;
    for (size_t i = 0; i < tok->n_norms; i++)
        if (apply_norm(c, &tok->norms[i]) < 0)
            return -1;
    c->n_pieces = 0;
    if (c->text.len > 0) {
        if (tok_grow((void **)&c->pieces, &c->cap_pieces, 1, sizeof *c->pieces, c->err) < 0)
            return -1;
        c->pieces[0] = (tok_piece){0, (uint32_t)c->text.len, origin};
        c->n_pieces = 1;
    }
    for (size_t i = 0; i < tok->n_pres; i++)
        if (apply_pre(c, &tok->pres[i]) < 0)
            return -1;
    return 0;
}
