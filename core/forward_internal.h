/* Internals shared by forward.c (contexts, public entry points) and
 * forward_layers.c (the layer computations over a set of rows). */
#ifndef T2_FORWARD_INTERNAL_H
#define T2_FORWARD_INTERNAL_H

#include "forward.h"

/* Rows per pass through the layers: bounds scratch memory, large enough
 * for the kernels to run at full speed. Also the largest decode batch
 * and the most logits rows one pass writes to the context's scratch. */
#define T2_CHUNK 128

/* The prefill passes of a prompt whose products are sgemm calls
 * (t2_ctx.chunk), and the most rows of any pass: each call packs its
 * share of W from memory (perf, smollm2-360m f32, 128-row passes: 11 % of
 * the samples in OpenBLAS's packing of W against 41 % in its kernel), so
 * longer passes read the weights fewer times (docs/PERFORMANCE.md, stop
 * 26). */
#define T2_MAX_ROWS 512

/* The most tasks one query-by-query row's keys are split into. */
#define T2_ATTN_SPLITS 8

/* Products with at most this many rows of X run on core/kernels (each
 * weight row read once for all of them); larger ones on sgemm, except
 * where the format or the variant has a prompt path of its own (q8_0,
 * bf16_prompt, short_prompt_rows: forward_layers.c, matmul_rows). */
#define T2_KERNEL_ROWS 16

struct t2_ctx {
    const t2_model *m;
    const t2_layer *layers;
    t2_pool *pool;
    int n_ctx;
    int n_past;
    void *arena; /* one mapping for the caches and scratch below (forward.c) */
    size_t arena_bytes;
    /* [n_layers][n_kv_heads][n_ctx][head_dim], floats or (kv_f16) f16 */
    void *k_cache, *v_cache;
    bool kv_f16;
    int chunk;    /* rows per prefill pass: T2_MAX_ROWS for prompts on sgemm, else T2_CHUNK */
    size_t max_r; /* the largest r = min(m, n) of any product */
    /* scratch for one pass of up to `chunk` rows */
    float *x, *xn, *q, *k, *v, *att, *gate, *up;
    float *rope_cos, *rope_sin; /* [chunk][head_dim/2] */
    float *inv_freq;            /* [head_dim/2] */
    /* per worker: T2_ATTN_LANES * n_ctx scores, then head_dim + 2 floats */
    float *scores;
    size_t scores_stride;
    /* a query-by-query row's partial softmaxes (forward_attn.c):
     * [chunk][n_heads][T2_ATTN_SPLITS][head_dim + 2] */
    float *attn_part;
    int attn_split_keys;        /* a row's keys per split, up to T2_ATTN_SPLITS */
    int attn_chunk_keys;        /* keys whose K (or V) rows one worker keeps in L2 */
    float *logits;              /* [T2_CHUNK][vocab] */
    float *fact_tmp;            /* 2 x [chunk][max_r] for factored products */
    size_t fact_half;           /* floats in one half of fact_tmp */
    float *gather_x, *gather_y; /* [T2_CHUNK][max dim] for mixed-weight batches */
    float *rot_dz;              /* [T2_KERNEL_ROWS][max_r], q8_0 only */
    float *rot_part;            /* per worker the same, q8_0 only */
    const t2_kernels *kern;     /* the kernel variant in use */
    t2_pass_profile *prof;      /* where passes' time goes, or NULL (t2_ctx_set_profile) */
    t2_q8_act xq;               /* X quantised for Q8_0 products: [xq_rows][max dim] */
    int xq_rows;                /* T2_CHUNK for a q8_0 model (prefill too), else T2_KERNEL_ROWS */
    bool one_seq;               /* this pass's rows are one sequence's (t2_run_rows) */
    /* a q8_0 model's factored products multiply bf16 U and Vt with X and
     * Vt X rounded to bf16 (finer than the Q8_0 rounding its dense
     * products give X): 3 x [fact_half], X then the two halves of
     * fact_tmp; NULL for other models */
    uint16_t *xb;
    float *deq; /* [n_threads][deq_floats]: dequantised weight rows */
    size_t deq_floats;
    float *logits_all; /* grows for all_logits requests */
    size_t logits_all_cap;
    /* prompt-prefix reuse (t2_ctx_reuse_prefix): while tracking, hist[i]
     * is the token whose KV sits in slot i, for i < n_hist, computed with
     * hist_layers (named hist_key by the caller) */
    bool tracking;
    bool armed; /* a reuse call precedes the next evaluation */
    int32_t *hist;
    int n_hist;
    const t2_layer *hist_layers;
    char *hist_key;
};

/* The profile's clock: seconds, or 0 when c has no profile. */
double t2_prof_now(const t2_ctx *c);
/* Adds the time since t0 (t2_prof_now) to stage s of c's profile. */
void t2_prof_add(t2_ctx *c, t2_stage s, double t0);

/* One row of a pass: a token of some sequence. */
typedef struct t2_row {
    t2_ctx *seq;            /* whose KV cache it reads and extends */
    int pos;                /* its position in that sequence (RoPE) */
    const t2_layer *layers; /* the weights it runs with */
    /* branches (t2_forward_branches): the row's KV goes to slot
     * pos + kv_shift and it reads keys 0..that slot except the slots
     * [gap_from, gap_to) of other branches; 0, 0, 0 for a plain row */
    int kv_shift, gap_from, gap_to;
} t2_row;

/* Which runs of rows (consecutive rows of one sequence) attention takes
 * through k->attn16: from *min_rows rows (their query heads fill at
 * least half its lanes; INT_MAX: never, as when a kv head has more than
 * T2_ATTN_LANES query heads or d > T2_ATTN_MAX_D) up to *max_rows per
 * call. group: query heads per kv head. */
void t2_attn_lane_plan(const t2_kernels *k, int group, int d, int *min_rows, int *max_rows);

/* Stores the K and V rows of `rows` (ws->k, ws->v) in their sequences'
 * caches and writes each row's attention over them to ws->att. */
void t2_attend(t2_ctx *ws, const t2_row *rows, int layer, int n);

/* Runs rows through every layer using ws's scratch (n <= ws->chunk) and
 * writes logits for rows [logits_from, n) to logits_out (if not NULL).
 * Does not update n_past. */
void t2_run_rows(t2_ctx *ws, const t2_row *rows, const int32_t *tokens, int n, float *logits_out,
                 int logits_from);

#endif
