/* The BPE model over one pre-tokenized piece: start from characters (or
 * bytes), then repeatedly merge the best adjacent pair. Best is the lowest
 * merge rank (Hugging Face BPE, GGUF "gpt2") or the highest score of the
 * merged token (GGUF "llama", as SentencePiece / llama.cpp do); ties go to
 * the leftmost pair. A binary heap of candidate pairs keeps this
 * O(n log n); stale candidates are recognised and skipped when popped. */
#include <string.h>

#include "tok_internal.h"

static bool pair_less(const tok_pair *a, const tok_pair *b)
{
    return a->key < b->key || (a->key == b->key && a->left < b->left);
}

static int heap_push(tok_ctx *c, tok_pair p)
{
    if (tok_grow((void **)&c->heap, &c->cap_heap, c->n_heap + 1, sizeof *c->heap, c->err) < 0)
        return -1;
    size_t i = c->n_heap++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!pair_less(&p, &c->heap[up]))
            break;
        c->heap[i] = c->heap[up];
        i = up;
    }
    c->heap[i] = p;
    return 0;
}

static tok_pair heap_pop(tok_ctx *c)
{
    tok_pair top = c->heap[0], last = c->heap[--c->n_heap];
    size_t i = 0, n = c->n_heap;
    for (;;) {
        size_t k = 2 * i + 1;
        if (k >= n)
            break;
        if (k + 1 < n && pair_less(&c->heap[k + 1], &c->heap[k]))
            k++;
        if (!pair_less(&c->heap[k], &last))
            break;
        c->heap[i] = c->heap[k];
        i = k;
    }
    if (n > 0)
        c->heap[i] = last;
    return top;
}

static bool mergeable(const tok_vocab *v, int32_t id)
{
    return id >= 0 && !(v->attr[id] & (TA_NOMERGE | TA_UNUSED | TA_SPECIAL));
}

static int try_pair(tok_ctx *c, const char *p, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return 0;
    const t2_tokenizer *tok = c->tok;
    const tok_sym *L = &c->syms[left], *R = &c->syms[right];
    tok_pair pr = {0, left, right, L->n + R->n, -1};
    if (tok->m.score_merges) {
        /* Symbols are contiguous in the piece: the pair's text is a slice. */
        pr.id = tok_vocab_find(&tok->v, p + L->start, pr.size);
        if (!mergeable(&tok->v, pr.id))
            return 0;
        pr.key = tok->v.score ? -(double)tok->v.score[pr.id] : 0.0; /* no scores: leftmost */
    } else {
        uint32_t rank;
        if (L->id < 0 || R->id < 0 || !tok_merges_get(&tok->m.merges, L->id, R->id, &rank, &pr.id))
            return 0;
        pr.key = (double)rank;
    }
    return heap_push(c, pr);
}

static int add_sym(tok_ctx *c, size_t *ns, uint32_t start, uint32_t n, int32_t id)
{
    if (tok_grow((void **)&c->syms, &c->cap_syms, *ns + 1, sizeof *c->syms, c->err) < 0)
        return -1;
    c->syms[*ns] = (tok_sym){(int32_t)*ns - 1, (int32_t)*ns + 1, start, n, id};
    (*ns)++;
    return 0;
}

/* One character that is not a token: its <0xNN> tokens, else unk. */
static int char_fallback(tok_ctx *c, size_t *ns, const char *p, uint32_t at, uint32_t l)
{
    const tok_model *m = &c->tok->m;
    bool bytes_ok = m->byte_fallback;
    for (uint32_t k = 0; k < l && bytes_ok; k++)
        bytes_ok = m->byte_tok[(uint8_t)p[at + k]] >= 0;
    if (bytes_ok) {
        for (uint32_t k = 0; k < l; k++)
            if (add_sym(c, ns, at + k, 1, m->byte_tok[(uint8_t)p[at + k]]) < 0)
                return -1;
        return 0;
    }
    if (m->unk < 0)
        return 0; /* no unk token: the character is dropped, as HF does */
    if (m->fuse_unk && *ns > 0 && c->syms[*ns - 1].id == m->unk) {
        c->syms[*ns - 1].n += l;
        return 0;
    }
    return add_sym(c, ns, at, l, m->unk);
}

static int initial_symbols(tok_ctx *c, const char *p, uint32_t n, size_t *ns)
{
    const t2_tokenizer *tok = c->tok;
    *ns = 0;
    for (uint32_t i = 0; i < n;) {
        if (tok->kind == T2_TOK_BYTE_LEVEL) {
            int32_t id = tok->m.byte_tok[(uint8_t)p[i]];
            if (id < 0)
                id = tok->m.unk;
            if (id >= 0 && add_sym(c, ns, i, 1, id) < 0)
                return -1;
            i++;
            continue;
        }
        uint32_t l = (uint32_t)tok_utf8_len((uint8_t)p[i]);
        if (l == 0 || l > n - i)
            l = 1;
        int32_t id = tok_vocab_find(&tok->v, p + i, l);
        if (tok->m.score_merges) {
            /* unknown characters are resolved after merging */
            if (add_sym(c, ns, i, l, mergeable(&tok->v, id) ? id : -1) < 0)
                return -1;
        } else if (id >= 0) {
            if (add_sym(c, ns, i, l, id) < 0)
                return -1;
        } else if (char_fallback(c, ns, p, i, l) < 0) {
            return -1;
        }
        i += l;
    }
    if (*ns > 0)
        c->syms[*ns - 1].next = -1;
    return 0;
}

static int merge_loop(tok_ctx *c, const char *p, size_t ns)
{
    c->n_heap = 0;
    for (size_t i = 1; i < ns; i++)
        if (try_pair(c, p, (int32_t)i - 1, (int32_t)i) < 0)
            return -1;
    while (c->n_heap > 0) {
        tok_pair pr = heap_pop(c);
        tok_sym *L = &c->syms[pr.left], *R = &c->syms[pr.right];
        /* Stale if either side merged since: lengths or links changed. */
        if (L->n == 0 || R->n == 0 || L->next != pr.right || L->n + R->n != pr.size)
            continue;
        L->n += R->n;
        L->id = pr.id;
        R->n = 0;
        L->next = R->next;
        if (R->next >= 0)
            c->syms[R->next].prev = pr.left;
        if (try_pair(c, p, L->prev, pr.left) < 0 || try_pair(c, p, pr.left, L->next) < 0)
            return -1;
    }
    return 0;
}

/* Score merges leave characters that are no token: emit their bytes. */
static int emit_fallback(tok_ctx *c, const char *p, const tok_sym *s)
{
    const tok_model *m = &c->tok->m;
    for (uint32_t k = 0; k < s->n; k++) {
        int32_t id = m->byte_tok[(uint8_t)p[s->start + k]];
        if (id < 0)
            id = m->unk;
        if (id >= 0 && tok_push_id(c, id) < 0)
            return -1;
    }
    return 0;
}

static int whole_piece(tok_ctx *c, const char *p, uint32_t n, int32_t *id)
{
    const t2_tokenizer *tok = c->tok;
    if (tok->kind != T2_TOK_BYTE_LEVEL) {
        *id = tok_vocab_find(&tok->v, p, n);
        return 0;
    }
    c->scratch.len = 0;
    if (tok_buf_reserve(&c->scratch, (size_t)n * 2, c->err) < 0)
        return -1;
    for (uint32_t i = 0; i < n; i++)
        c->scratch.len +=
            tok_utf8_encode(tok_byte_to_cp((uint8_t)p[i]), c->scratch.p + c->scratch.len);
    *id = tok_vocab_find(&tok->v, c->scratch.p, c->scratch.len);
    return 0;
}

int tok_bpe_piece(tok_ctx *c, const char *p, size_t len)
{
    const t2_tokenizer *tok = c->tok;
    uint32_t n = (uint32_t)len;
    if (n == 0)
        return 0;
    if (tok->m.ignore_merges) {
        int32_t id;
        if (whole_piece(c, p, n, &id) < 0)
            return -1;
        if (id >= 0 && !(tok->v.attr[id] & TA_UNUSED))
            return tok_push_id(c, id);
    }
    size_t ns;
    if (initial_symbols(c, p, n, &ns) < 0 || merge_loop(c, p, ns) < 0)
        return -1;
    for (int32_t i = ns > 0 ? 0 : -1; i >= 0; i = c->syms[i].next) {
        const tok_sym *s = &c->syms[i];
        int rc = s->id >= 0 ? tok_push_id(c, s->id) : emit_fallback(c, p, s);
        if (rc < 0)
            return -1;
    }
    return 0;
}
