/* The metrics registry of t2 serve, rendered in the Prometheus text format.
 * Updated and read on the loop thread only (the scheduler's figures arrive
 * there with each job's completion), so it needs no locks. */
#ifndef T2_METRICS_H
#define T2_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define T2_HIST_BUCKETS 14

typedef struct t2_hist {
    uint64_t counts[T2_HIST_BUCKETS + 1]; /* last: +Inf */
    double sum;
    uint64_t n;
} t2_hist;

typedef struct t2_req_count {
    const char *endpoint; /* a route label (static string) */
    int status;
    uint64_t n;
} t2_req_count;

typedef struct t2_metrics {
    t2_req_count *req;
    size_t n_req, cap_req;
    uint64_t tokens_generated;
    t2_hist pass1, pass2; /* seconds */
} t2_metrics;

/* Figures read when rendering. */
typedef struct t2_metrics_gauges {
    int queued, running;
    size_t experts;
    uint64_t cache_hits, cache_misses;
    size_t cache_entries, cache_bytes; /* materialised sets held, their memory */
    unsigned long builds;              /* sets built in the background */
    int ready;
} t2_metrics_gauges;

void t2_metrics_init(t2_metrics *m);
void t2_metrics_free(t2_metrics *m);
void t2_metrics_request(t2_metrics *m, const char *endpoint, int status);
void t2_metrics_job(t2_metrics *m, int completion_tokens, double pass1_s, double pass2_s);
void t2_hist_observe(t2_hist *h, double v);
/* malloc'd text; NULL when out of memory. */
char *t2_metrics_render(const t2_metrics *m, const t2_metrics_gauges *g, size_t *len);

#endif
