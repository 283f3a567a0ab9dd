/* LRU cache of materialised adapted weight sets, bounded in bytes. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "adapt.h"

typedef struct cache_entry {
    char *key;
    t2_adapted *a;
    uint64_t last_used;
} cache_entry;

/* Tokens generated so far with a mixture's factored weights: a mixture is
 * worth materialising once that rent reaches the build's price
 * (t2_weights_policy). A fixed table; the least recently charged entry
 * makes room (a forgotten mixture only starts over). */
#define LEDGER_SLOTS 256

typedef struct ledger_entry {
    char *key;
    uint64_t tokens, last_used;
} ledger_entry;

/* Factored sets kept so that a mixture's requests share one (their
 * contexts' prompt KV is reused only under the same set, t2_ctx_reuse_prefix):
 * a few KB each, least recently used replaced. */
#define FACTORED_SLOTS 32

struct t2_adapt_cache {
    pthread_mutex_t mu;
    size_t capacity, bytes;
    size_t n, cap_entries;
    cache_entry *entries;
    uint64_t clock, hits, misses;
    ledger_entry ledger[LEDGER_SLOTS];
    size_t n_ledger;
    cache_entry factored[FACTORED_SLOTS];
    size_t n_factored;
};

/* The entry of v[0..n) with key, or NULL. */
static cache_entry *find_entry(cache_entry *v, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].key, key) == 0)
            return &v[i];
    return NULL;
}

/* The least recently used entry of v[0..n), n > 0. */
static cache_entry *oldest_entry(cache_entry *v, size_t n)
{
    cache_entry *old = &v[0];
    for (size_t i = 1; i < n; i++)
        if (v[i].last_used < old->last_used)
            old = &v[i];
    return old;
}

/* Under mu: a new reference to the set of v[0..n) with key, marked as
 * just used, or NULL. */
static t2_adapted *ref_entry(t2_adapt_cache *c, cache_entry *v, size_t n, const char *key)
{
    cache_entry *e = find_entry(v, n, key);
    if (!e)
        return NULL;
    e->last_used = ++c->clock;
    return t2_adapted_ref(e->a);
}

static void free_entries(cache_entry *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].key);
        t2_adapted_unref(v[i].a);
    }
}

int t2_adapt_cache_create(t2_adapt_cache **out, size_t capacity_bytes, t2_err *err)
{
    t2_adapt_cache *c = calloc(1, sizeof *c);
    if (!c)
        return t2_err_set(err, "out of memory");
    pthread_mutex_init(&c->mu, NULL);
    c->capacity = capacity_bytes;
    *out = c;
    return 0;
}

void t2_adapt_cache_free(t2_adapt_cache *c)
{
    if (!c)
        return;
    free_entries(c->entries, c->n);
    free(c->entries);
    for (size_t i = 0; i < c->n_ledger; i++)
        free(c->ledger[i].key);
    free_entries(c->factored, c->n_factored);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static t2_adapted *lookup(t2_adapt_cache *c, const char *key, bool count)
{
    pthread_mutex_lock(&c->mu);
    t2_adapted *found = ref_entry(c, c->entries, c->n, key);
    if (count && found)
        c->hits++;
    else if (count)
        c->misses++;
    pthread_mutex_unlock(&c->mu);
    return found;
}

t2_adapted *t2_adapt_cache_get(t2_adapt_cache *c, const char *key)
{
    return lookup(c, key, true);
}

t2_adapted *t2_adapt_cache_peek(t2_adapt_cache *c, const char *key)
{
    return c ? lookup(c, key, false) : NULL;
}

static void evict_one(t2_adapt_cache *c)
{
    cache_entry *lru = oldest_entry(c->entries, c->n);
    c->bytes -= lru->a->bytes;
    free(lru->key);
    t2_adapted_unref(lru->a); /* users still holding it keep it alive */
    *lru = c->entries[--c->n];
}

void t2_adapt_cache_put(t2_adapt_cache *c, const char *key, t2_adapted *a)
{
    if (a->bytes > c->capacity)
        return;
    pthread_mutex_lock(&c->mu);
    if (find_entry(c->entries, c->n, key)) { /* built twice concurrently: keep the first */
        pthread_mutex_unlock(&c->mu);
        return;
    }
    while (c->n && c->bytes + a->bytes > c->capacity)
        evict_one(c);
    if (c->n == c->cap_entries) {
        size_t cap = c->cap_entries ? 2 * c->cap_entries : 8;
        cache_entry *e = realloc(c->entries, cap * sizeof *e);
        if (!e) {
            pthread_mutex_unlock(&c->mu);
            return; /* not caching is always correct */
        }
        c->entries = e;
        c->cap_entries = cap;
    }
    char *k = strdup(key);
    if (k) {
        c->entries[c->n++] = (cache_entry){k, t2_adapted_ref(a), ++c->clock};
        c->bytes += a->bytes;
    }
    pthread_mutex_unlock(&c->mu);
}

size_t t2_adapt_cache_capacity(const t2_adapt_cache *c)
{
    return c->capacity; /* set once at creation */
}

void t2_adapt_cache_stats(t2_adapt_cache *c, uint64_t *hits, uint64_t *misses, size_t *bytes,
                          size_t *entries)
{
    pthread_mutex_lock(&c->mu);
    *hits = c->hits;
    *misses = c->misses;
    *bytes = c->bytes;
    *entries = c->n;
    pthread_mutex_unlock(&c->mu);
}

static ledger_entry *ledger_find(t2_adapt_cache *c, const char *key)
{
    for (size_t i = 0; i < c->n_ledger; i++)
        if (strcmp(c->ledger[i].key, key) == 0)
            return &c->ledger[i];
    return NULL;
}

uint64_t t2_adapt_cache_tokens(t2_adapt_cache *c, const char *key)
{
    if (!c)
        return 0;
    pthread_mutex_lock(&c->mu);
    ledger_entry *l = ledger_find(c, key);
    uint64_t t = l ? l->tokens : 0;
    pthread_mutex_unlock(&c->mu);
    return t;
}

uint64_t t2_adapt_cache_charge(t2_adapt_cache *c, const char *key, uint64_t tokens)
{
    if (!c)
        return tokens;
    pthread_mutex_lock(&c->mu);
    ledger_entry *l = ledger_find(c, key);
    if (!l) {
        char *k = strdup(key);
        if (!k) { /* not remembering only delays a build */
            pthread_mutex_unlock(&c->mu);
            return tokens;
        }
        if (c->n_ledger == LEDGER_SLOTS) {
            l = &c->ledger[0];
            for (size_t i = 1; i < c->n_ledger; i++)
                if (c->ledger[i].last_used < l->last_used)
                    l = &c->ledger[i];
            free(l->key);
        } else {
            l = &c->ledger[c->n_ledger++];
        }
        *l = (ledger_entry){k, 0, 0};
    }
    l->tokens += tokens;
    l->last_used = ++c->clock;
    uint64_t t = l->tokens;
    pthread_mutex_unlock(&c->mu);
    return t;
}

t2_adapted *t2_adapt_cache_factored_get(t2_adapt_cache *c, const char *key)
{
    pthread_mutex_lock(&c->mu);
    t2_adapted *found = ref_entry(c, c->factored, c->n_factored, key);
    pthread_mutex_unlock(&c->mu);
    return found;
}

void t2_adapt_cache_factored_put(t2_adapt_cache *c, const char *key, t2_adapted *a)
{
    char *k = strdup(key);
    if (!k) /* not sharing is always correct */
        return;
    pthread_mutex_lock(&c->mu);
    /* made twice concurrently: the later one stays */
    cache_entry *e = find_entry(c->factored, c->n_factored, key);
    if (!e)
        e = c->n_factored < FACTORED_SLOTS ? &c->factored[c->n_factored++]
                                           : oldest_entry(c->factored, c->n_factored);
    t2_adapted *drop = e->a;
    char *drop_key = e->key;
    *e = (cache_entry){k, t2_adapted_ref(a), ++c->clock};
    pthread_mutex_unlock(&c->mu);
    free(drop_key);
    t2_adapted_unref(drop);
}
