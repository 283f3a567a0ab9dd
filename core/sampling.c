#include "sampling.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void t2_sampling_defaults(t2_sampling *s)
{
    s->temperature = 0.0f;
    s->top_k = 0;
    s->top_p = 1.0f;
    s->min_p = 0.0f;
    s->repeat_penalty = 1.0f;
    s->frequency_penalty = 0.0f;
    s->presence_penalty = 0.0f;
    s->repeat_last_n = 64;
    s->seed = 0;
}

int t2_sampling_validate(const t2_sampling *s, t2_err *err)
{
    if (!(s->temperature >= 0.0f) || !isfinite(s->temperature) || s->temperature > 100.0f)
        return t2_err_set(err, "temperature must be between 0 and 100");
    if (s->top_k < 0)
        return t2_err_set(err, "top_k must be >= 0");
    if (!(s->top_p > 0.0f && s->top_p <= 1.0f))
        return t2_err_set(err, "top_p must be in (0, 1]");
    if (!(s->min_p >= 0.0f && s->min_p <= 1.0f))
        return t2_err_set(err, "min_p must be in [0, 1]");
    if (!(s->repeat_penalty > 0.0f) || !isfinite(s->repeat_penalty))
        return t2_err_set(err, "repetition_penalty must be > 0");
    if (!(fabsf(s->frequency_penalty) <= 2.0f))
        return t2_err_set(err, "frequency_penalty must be in [-2, 2]");
    if (!(fabsf(s->presence_penalty) <= 2.0f))
        return t2_err_set(err, "presence_penalty must be in [-2, 2]");
    if (s->repeat_last_n < 0)
        return t2_err_set(err, "repeat_last_n must be >= 0");
    return 0;
}

/* splitmix64 seeds xoshiro256**: small, fast, reproducible everywhere. */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t xoshiro_next(uint64_t s[4])
{
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* uniform in [0, 1) with 24 bits, like a float32 draw */
static float uniform01(uint64_t s[4])
{
    return (float)(xoshiro_next(s) >> 40) / 16777216.0f;
}

int t2_sampler_init(t2_sampler *s, const t2_sampling *p, int vocab, t2_err *err)
{
    memset(s, 0, sizeof *s);
    if (t2_sampling_validate(p, err) != 0)
        return -1;
    s->p = *p;
    s->vocab = vocab;
    uint64_t x = p->seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&x);
    s->idx = malloc((size_t)vocab * sizeof *s->idx);
    s->prob = malloc((size_t)vocab * sizeof *s->prob);
    if (!s->idx || !s->prob) {
        t2_sampler_free(s);
        return t2_err_set(err, "out of memory");
    }
    return 0;
}

void t2_sampler_free(t2_sampler *s)
{
    free(s->idx);
    free(s->prob);
    s->idx = NULL;
    s->prob = NULL;
}

double t2_log_softmax_at(const float *logits, int n, int32_t id)
{
    float mx = logits[0];
    for (int i = 1; i < n; i++)
        mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0.0;
    for (int i = 0; i < n; i++)
        sum += exp((double)(logits[i] - mx));
    return (double)(logits[id] - mx) - log(sum);
}

int32_t t2_argmax(const float *v, int n)
{
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best])
            best = i;
    return best;
}

/* The penalties over the last repeat_last_n tokens of hist, as llama.cpp
 * applies them (the prompt's tokens count too): the repetition penalty,
 * then frequency times the token's count and presence once. s->prob
 * counts each token's occurrences, and is zeroed again as each is done. */
static void apply_penalties(const t2_sampler *s, float *logits, const int32_t *hist, size_t n)
{
    const t2_sampling *p = &s->p;
    if ((p->repeat_penalty == 1.0f && p->frequency_penalty == 0.0f &&
         p->presence_penalty == 0.0f) ||
        p->repeat_last_n == 0)
        return;
    size_t from = n > (size_t)p->repeat_last_n ? n - (size_t)p->repeat_last_n : 0;
    memset(s->prob, 0, (size_t)s->vocab * sizeof *s->prob);
    for (size_t i = from; i < n; i++)
        if (hist[i] >= 0 && hist[i] < s->vocab)
            s->prob[hist[i]] += 1.0f;
    for (size_t i = from; i < n; i++) {
        int32_t t = hist[i];
        if (t < 0 || t >= s->vocab || s->prob[t] == 0.0f)
            continue; /* out of range, or already done */
        float l = logits[t];
        l = l > 0 ? l / p->repeat_penalty : l * p->repeat_penalty;
        logits[t] = l - p->frequency_penalty * s->prob[t] - p->presence_penalty;
        s->prob[t] = 0.0f;
    }
}

static int cmp_desc(const void *a, const void *b, void *keys)
{
    const float *k = keys;
    float x = k[*(const int32_t *)a], y = k[*(const int32_t *)b];
    if (x != y)
        return x < y ? 1 : -1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

int32_t t2_sampler_next(t2_sampler *s, float *logits, const int32_t *history, size_t n_history)
{
    int V = s->vocab;
    apply_penalties(s, logits, history, n_history);
    if (s->p.temperature == 0.0f)
        return t2_argmax(logits, V);
    for (int i = 0; i < V; i++) {
        logits[i] /= s->p.temperature;
        s->idx[i] = i;
    }
    qsort_r(s->idx, (size_t)V, sizeof *s->idx, cmp_desc, logits);
    int n = V;
    if (s->p.top_k > 0 && s->p.top_k < n)
        n = s->p.top_k;
    /* softmax over the kept candidates (sorted, so the max is first) */
    float mx = logits[s->idx[0]], sum = 0.0f;
    for (int i = 0; i < n; i++) {
        s->prob[i] = expf(logits[s->idx[i]] - mx);
        sum += s->prob[i];
    }
    for (int i = 0; i < n; i++)
        s->prob[i] /= sum;
    if (s->p.top_p < 1.0f) {
        float cum = 0.0f;
        for (int i = 0; i < n; i++) {
            cum += s->prob[i];
            if (cum >= s->p.top_p) {
                n = i + 1;
                break;
            }
        }
    }
    if (s->p.min_p > 0.0f) {
        float limit = s->p.min_p * s->prob[0];
        int keep = 1;
        while (keep < n && s->prob[keep] >= limit)
            keep++;
        n = keep;
    }
    float total = 0.0f;
    for (int i = 0; i < n; i++)
        total += s->prob[i];
    float r = uniform01(s->rng) * total, acc = 0.0f;
    for (int i = 0; i < n; i++) {
        acc += s->prob[i];
        if (r < acc)
            return s->idx[i];
    }
    return s->idx[n - 1];
}
