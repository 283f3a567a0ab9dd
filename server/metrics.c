/* Counters, gauges and histograms in the Prometheus exposition format. */
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double bounds[T2_HIST_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                               1,     2.5,  5,     10,   30,  60,   120};

void t2_metrics_init(t2_metrics *m)
{
    memset(m, 0, sizeof *m);
}

void t2_metrics_free(t2_metrics *m)
{
    free(m->req);
    memset(m, 0, sizeof *m);
}

void t2_metrics_request(t2_metrics *m, const char *endpoint, int status)
{
    for (size_t i = 0; i < m->n_req; i++)
        if (m->req[i].status == status && strcmp(m->req[i].endpoint, endpoint) == 0) {
            m->req[i].n++;
            return;
        }
    if (m->n_req == m->cap_req) {
        size_t cap = m->cap_req ? m->cap_req * 2 : 32;
        t2_req_count *grown = realloc(m->req, cap * sizeof *grown);
        if (!grown)
            return; /* a lost sample rather than a failed request */
        m->req = grown;
        m->cap_req = cap;
    }
    m->req[m->n_req++] = (t2_req_count){endpoint, status, 1};
}

void t2_hist_observe(t2_hist *h, double v)
{
    size_t b = 0;
    while (b < T2_HIST_BUCKETS && v > bounds[b])
        b++;
    h->counts[b]++;
    h->sum += v;
    h->n++;
}

void t2_metrics_job(t2_metrics *m, int completion_tokens, double pass1_s, double pass2_s)
{
    if (completion_tokens > 0)
        m->tokens_generated += (uint64_t)completion_tokens;
    if (pass1_s >= 0)
        t2_hist_observe(&m->pass1, pass1_s);
    if (pass2_s >= 0)
        t2_hist_observe(&m->pass2, pass2_s);
}

typedef struct buf {
    char *p;
    size_t len, cap;
    int failed;
} buf;

static void put(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(buf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap + (size_t)n + 1) * 2;
        char *grown = realloc(b->p, cap);
        if (!grown) {
            b->failed = 1;
            return;
        }
        b->p = grown;
        b->cap = cap;
    }
}

static void hist(buf *b, const char *name, const char *help, const t2_hist *h)
{
    put(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (size_t i = 0; i < T2_HIST_BUCKETS; i++) {
        cum += h->counts[i];
        put(b, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i], (unsigned long long)cum);
    }
    cum += h->counts[T2_HIST_BUCKETS];
    put(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
        (unsigned long long)cum, name, h->sum, name, (unsigned long long)h->n);
}

char *t2_metrics_render(const t2_metrics *m, const t2_metrics_gauges *g, size_t *len)
{
    buf b = {malloc(4096), 0, 4096, 0};
    if (!b.p)
        return NULL;
    b.p[0] = '\0';
    put(&b, "# HELP t2_requests_total HTTP requests by endpoint and status.\n"
            "# TYPE t2_requests_total counter\n");
    for (size_t i = 0; i < m->n_req; i++)
        put(&b, "t2_requests_total{endpoint=\"%s\",status=\"%d\"} %llu\n", m->req[i].endpoint,
            m->req[i].status, (unsigned long long)m->req[i].n);
    put(&b,
        "# HELP t2_ready Whether the model is loaded and requests are accepted.\n"
        "# TYPE t2_ready gauge\nt2_ready %d\n",
        g->ready);
    put(&b,
        "# HELP t2_queue_depth Generation requests waiting for a slot.\n"
        "# TYPE t2_queue_depth gauge\nt2_queue_depth %d\n",
        g->queued);
    put(&b,
        "# HELP t2_running_sequences Sequences in the running batch.\n"
        "# TYPE t2_running_sequences gauge\nt2_running_sequences %d\n",
        g->running);
    put(&b,
        "# HELP t2_tokens_generated_total Completion tokens generated.\n"
        "# TYPE t2_tokens_generated_total counter\nt2_tokens_generated_total %llu\n",
        (unsigned long long)m->tokens_generated);
    hist(&b, "t2_pass1_seconds", "Pass-1 (adaptation decision) latency.", &m->pass1);
    hist(&b, "t2_pass2_seconds", "Pass-2 (generation) duration.", &m->pass2);
    put(&b,
        "# HELP t2_experts_loaded Experts in the store.\n"
        "# TYPE t2_experts_loaded gauge\nt2_experts_loaded %zu\n",
        g->experts);
    put(&b,
        "# HELP t2_adapted_cache_hits_total Adapted-weight cache hits.\n"
        "# TYPE t2_adapted_cache_hits_total counter\nt2_adapted_cache_hits_total %llu\n",
        (unsigned long long)g->cache_hits);
    put(&b,
        "# HELP t2_adapted_cache_misses_total Adapted-weight cache misses.\n"
        "# TYPE t2_adapted_cache_misses_total counter\nt2_adapted_cache_misses_total %llu\n",
        (unsigned long long)g->cache_misses);
    put(&b,
        "# HELP t2_adapted_cache_sets Materialised adapted weight sets in the cache.\n"
        "# TYPE t2_adapted_cache_sets gauge\nt2_adapted_cache_sets %zu\n",
        g->cache_entries);
    put(&b,
        "# HELP t2_adapted_builds_total Adapted weight sets built in the background.\n"
        "# TYPE t2_adapted_builds_total counter\nt2_adapted_builds_total %lu\n",
        g->builds);
    put(&b,
        "# HELP t2_adapted_cache_bytes Memory of the cached adapted weight sets.\n"
        "# TYPE t2_adapted_cache_bytes gauge\nt2_adapted_cache_bytes %zu\n",
        g->cache_bytes);
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}
