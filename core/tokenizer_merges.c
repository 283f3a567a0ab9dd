/* The merge map: (left id, right id) -> (rank, merged id), an
 * open-addressing hash table, filled from "a b" strings or pairs. */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

#define EMPTY64 UINT64_MAX

static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

uint32_t tok_table_size(size_t n)
{
    uint32_t s = 16;
    while (s < 2 * n)
        s <<= 1;
    return s;
}

int tok_merges_init(tok_merges *m, size_t n, t2_err *err)
{
    memset(m, 0, sizeof *m);
    uint32_t size = tok_table_size(n);
    m->slots = malloc((size_t)size * sizeof *m->slots);
    if (!m->slots)
        return t2_err_set(err, "out of memory (%zu merges)", n);
    for (uint32_t i = 0; i < size; i++)
        m->slots[i].key = EMPTY64;
    m->mask = size - 1;
    return 0;
}

void tok_merges_free(tok_merges *m)
{
    free(m->slots);
    memset(m, 0, sizeof *m);
}

static uint64_t pair_key(int32_t a, int32_t b)
{
    return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
}

/* The table is sized for the declared count, and a duplicate keeps its
 * first (best) rank, so it never fills up. */
void tok_merges_add(tok_merges *m, int32_t a, int32_t b, uint32_t rank, int32_t id)
{
    uint64_t key = pair_key(a, b);
    uint32_t i = (uint32_t)hash_u64(key) & m->mask;
    while (m->slots[i].key != EMPTY64) {
        if (m->slots[i].key == key)
            return;
        i = (i + 1) & m->mask;
    }
    if (m->n + 1 >= (size_t)m->mask)
        return;
    m->slots[i] = (tok_merge_slot){key, rank, id};
    m->n++;
}

bool tok_merges_get(const tok_merges *m, int32_t a, int32_t b, uint32_t *rank, int32_t *id)
{
    if (!m->slots)
        return false;
    uint64_t key = pair_key(a, b);
    uint32_t i = (uint32_t)hash_u64(key) & m->mask;
    while (m->slots[i].key != EMPTY64) {
        if (m->slots[i].key == key) {
            *rank = m->slots[i].rank;
            *id = m->slots[i].id;
            return true;
        }
        i = (i + 1) & m->mask;
    }
    return false;
}

/* A merge whose tokens are not in the vocabulary can never apply; it is
 * skipped rather than failing the load. */
int tok_merges_add_pair(t2_tokenizer *tok, const char *a, size_t alen, const char *b, size_t blen,
                        uint32_t rank, t2_err *err)
{
    if (alen + blen > TOK_MAX_TOKEN_LEN)
        return 0;
    int32_t ia = tok_vocab_find(&tok->v, a, alen);
    int32_t ib = tok_vocab_find(&tok->v, b, blen);
    if (ia < 0 || ib < 0)
        return 0;
    char stack[256];
    char *cat = alen + blen <= sizeof stack ? stack : malloc(alen + blen);
    if (!cat)
        return t2_err_set(err, "out of memory (merge %u)", rank);
    memcpy(cat, a, alen);
    memcpy(cat + alen, b, blen);
    int32_t id = tok_vocab_find(&tok->v, cat, alen + blen);
    if (cat != stack)
        free(cat);
    if (id >= 0)
        tok_merges_add(&tok->m.merges, ia, ib, rank, id);
    return 0;
}

int tok_merges_add_text(t2_tokenizer *tok, const char *s, size_t len, uint32_t rank, t2_err *err)
{
    /* The separator is the first space after the first byte, as
     * llama.cpp splits, so a left token may itself be a space. */
    const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
    if (!sp)
        return t2_err_set(err, "merge %u is not \"left right\"", rank);
    size_t alen = (size_t)(sp - s);
    return tok_merges_add_pair(tok, s, alen, sp + 1, len - alen - 1, rank, err);
}
