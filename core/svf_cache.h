/* Private to svf.c / svf_cache.c (and the SVF unit test): the 64-bit hash
 * behind the cache key and checksum, factor allocation, and the on-disk
 * cache of SVF factors.
 *
 * Cache file layout (version 1; integers little-endian, floats IEEE-754
 * binary32 little-endian, no padding):
 *
 *   offset 0   magic      8 bytes  "T2SVF\0\0\1"
 *              version    u32      1
 *              set        u32      T2_SVF_* bits
 *              key        u64      t2_svf.key (also in the file name)
 *              n_mats     u64
 *   table, n_mats times:
 *              name_len   u32      then name_len bytes (no NUL)
 *              m, n, r    u32 x 3
 *   data, n_mats times, in table order:
 *              U          float32 [m][r]
 *              S          float32 [r]
 *              Vt         float32 [r][n]
 *   checksum   u64      XXH64 (seed 0) of every byte before it
 *
 * The table comes before the data so that a reader can check the file size
 * before reading (or allocating for) any factor. */
#ifndef T2_SVF_CACHE_H
#define T2_SVF_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "svf.h"

#define T2_SVF_CACHE_VERSION 1u

/* Streaming XXH64 (the xxHash 64-bit algorithm, written from its
 * specification): fast enough to hash tens of GB of weights. */
typedef struct t2_hash64_state {
    uint64_t v[4];
    uint64_t seed;
    uint64_t total;
    uint8_t buf[32];
    size_t buf_len;
} t2_hash64_state;

void t2_hash64_init(t2_hash64_state *h, uint64_t seed);
void t2_hash64_update(t2_hash64_state *h, const void *data, size_t len);
uint64_t t2_hash64_final(const t2_hash64_state *h);
uint64_t t2_hash64(const void *data, size_t len, uint64_t seed);

/* One allocation per matrix holding U, S and Vt (64-byte aligned each);
 * mat->u owns it. Needs m, n, r set. -1 on out of memory. */
int t2_svf_factors_alloc(t2_svf_matrix *mat);
/* bf16 copies of U and Vt, which factored products then read, for a bf16
 * or q8_0 model (an f32 model reads the f32 factors). For q8_0 not Q8_0
 * factors: bf16's rounding (2^-9 of each value) is finer than the model's
 * own (up to 1/254 of its block's largest), where quantising U and Vt
 * would add a second Q8_0 rounding; and half of f32's bytes is what
 * lets a batch over several experts read one shared U and Vt instead of
 * each expert's Q8_0 set (1.375x an MLP matrix's values at 2 bytes
 * against 2+ sets at 1.06). */
int t2_svf_format_copies(t2_svf *s, const t2_model *m, t2_err *err);
void t2_svf_factors_free(t2_svf_matrix *mat);
/* mat->s_sum from mat->s, summed exactly as t2_svf_scale sums S*z so that
 * z = 1 gives c == 1 exactly. */
void t2_svf_update_sum(t2_svf_matrix *mat);

/* <dir>/<model>-<set, ',' -> '+'>-<key as 16 hex>.t2svf, malloc'd (NULL on
 * out of memory). */
char *t2_svf_cache_path(const char *dir, const char *model_name, unsigned set, uint64_t key);

enum t2_svf_cache_state {
    T2_SVF_CACHE_LOADED = 0,  /* every factor read and verified */
    T2_SVF_CACHE_MISSING = 1, /* no file */
    T2_SVF_CACHE_INVALID = 2, /* a file that cannot be used: stale, corrupt, unreadable */
};

/* Loads factors for s (names, shapes, set and key already filled in) from
 * path. Returns an enum t2_svf_cache_state, or -1 (err set) on out of
 * memory. Unless LOADED, no factor is left allocated. */
int t2_svf_cache_load(t2_svf *s, const char *path, t2_err *err);

/* Writes the factors atomically: creates dir (mkdir -p), writes a temp file
 * in it, fsyncs, renames to path and fsyncs the directory. */
int t2_svf_cache_save(const t2_svf *s, const char *dir, const char *path, t2_err *err);

/* Replicas sharing a cache directory decompose a set once: the first takes
 * an exclusive flock on "<path>.lock" (blocking), the others wait for it
 * and then load the file it wrote. Returns the lock's descriptor, or -1
 * when no lock can be had (read-only or missing directory, no flock on the
 * file system): the caller then decomposes unlocked, which costs time but
 * not correctness, as the save is atomic. The lock file stays (removing
 * it would race with a waiter that already opened it). */
int t2_svf_cache_lock(const char *dir, const char *path);
void t2_svf_cache_unlock(int fd);

#endif
