/* The SVF factor cache (layout in svf_cache.h) and its hash. */
#include "svf_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h"

/* Float data is written as it lies in memory. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the SVF cache assumes little-endian");

static const uint8_t CACHE_MAGIC[8] = {'T', '2', 'S', 'V', 'F', 0, 0, 1};
/* Longer names are not parameter names: refuse before allocating. */
#define MAX_NAME 4096u

/* ---- XXH64 ---- */

#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full
#define P3 0x165667B19E3779F9ull
#define P4 0x85EBCA77C2B2AE63ull
#define P5 0x27D4EB2F165667C5ull

static inline uint64_t rotl64(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

static inline uint64_t read64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint32_t read32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint64_t xx_round(uint64_t acc, uint64_t input)
{
    acc += input * P2;
    acc = rotl64(acc, 31);
    return acc * P1;
}

static inline uint64_t xx_merge(uint64_t acc, uint64_t val)
{
    acc ^= xx_round(0, val);
    return acc * P1 + P4;
}

void t2_hash64_init(t2_hash64_state *h, uint64_t seed)
{
    memset(h, 0, sizeof *h);
    h->seed = seed;
    h->v[0] = seed + P1 + P2;
    h->v[1] = seed + P2;
    h->v[2] = seed;
    h->v[3] = seed - P1;
}

static void xx_stripe(uint64_t v[4], const uint8_t *p)
{
    v[0] = xx_round(v[0], read64(p));
    v[1] = xx_round(v[1], read64(p + 8));
    v[2] = xx_round(v[2], read64(p + 16));
    v[3] = xx_round(v[3], read64(p + 24));
}

void t2_hash64_update(t2_hash64_state *h, const void *data, size_t len)
{
    const uint8_t *p = data;
    h->total += len;
    if (h->buf_len + len < 32) {
        if (len)
            memcpy(h->buf + h->buf_len, p, len);
        h->buf_len += len;
        return;
    }
    if (h->buf_len) {
        size_t fill = 32 - h->buf_len;
        memcpy(h->buf + h->buf_len, p, fill);
        xx_stripe(h->v, h->buf);
        p += fill;
        len -= fill;
        h->buf_len = 0;
    }
    uint64_t v[4] = {h->v[0], h->v[1], h->v[2], h->v[3]};
    for (; len >= 32; p += 32, len -= 32)
        xx_stripe(v, p);
    memcpy(h->v, v, sizeof v);
    if (len)
        memcpy(h->buf, p, len);
    h->buf_len = len;
}

uint64_t t2_hash64_final(const t2_hash64_state *h)
{
    uint64_t acc;
    if (h->total >= 32) {
        acc = rotl64(h->v[0], 1) + rotl64(h->v[1], 7) + rotl64(h->v[2], 12) + rotl64(h->v[3], 18);
        for (int i = 0; i < 4; i++)
            acc = xx_merge(acc, h->v[i]);
    } else {
        acc = h->seed + P5;
    }
    acc += h->total;
    const uint8_t *p = h->buf;
    size_t len = h->buf_len;
    for (; len >= 8; p += 8, len -= 8) {
        acc ^= xx_round(0, read64(p));
        acc = rotl64(acc, 27) * P1 + P4;
    }
    if (len >= 4) {
        acc ^= (uint64_t)read32(p) * P1;
        acc = rotl64(acc, 23) * P2 + P3;
        p += 4;
        len -= 4;
    }
    for (; len > 0; p++, len--) {
        acc ^= *p * P5;
        acc = rotl64(acc, 11) * P1;
    }
    acc ^= acc >> 33;
    acc *= P2;
    acc ^= acc >> 29;
    acc *= P3;
    acc ^= acc >> 32;
    return acc;
}

uint64_t t2_hash64(const void *data, size_t len, uint64_t seed)
{
    t2_hash64_state h;
    t2_hash64_init(&h, seed);
    t2_hash64_update(&h, data, len);
    return t2_hash64_final(&h);
}

/* ---- names ---- */

char *t2_svf_cache_path(const char *dir, const char *model_name, unsigned set, uint64_t key)
{
    char set_name[32];
    snprintf(set_name, sizeof set_name, "%s", t2_svf_set_name(set));
    for (char *c = set_name; *c; c++)
        if (*c == ',')
            *c = '+';
    size_t cap = strlen(dir) + strlen(model_name) + strlen(set_name) + 40;
    char *path = malloc(cap);
    if (path)
        snprintf(path, cap, "%s/%s-%s-%016" PRIx64 ".t2svf", dir, model_name, set_name, key);
    return path;
}

/* ---- little-endian integers ---- */

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

#define HEADER_BYTES 32u /* magic, version, set, key, n_mats */

static size_t factor_floats(const t2_svf_matrix *mat)
{
    return (size_t)mat->m * mat->r + (size_t)mat->r + (size_t)mat->r * mat->n;
}

/* ---- reading ---- */

/* A FILE read that feeds every byte into the checksum. */
typedef struct reader {
    FILE *f;
    t2_hash64_state h;
} reader;

static bool rd(reader *r, void *dst, size_t len)
{
    if (fread(dst, 1, len, r->f) != len)
        return false;
    t2_hash64_update(&r->h, dst, len);
    return true;
}

static bool read_header(reader *r, const t2_svf *s)
{
    uint8_t b[HEADER_BYTES];
    if (!rd(r, b, sizeof b))
        return false;
    return memcmp(b, CACHE_MAGIC, 8) == 0 && get_u32(b + 8) == T2_SVF_CACHE_VERSION &&
           get_u32(b + 12) == s->set && get_u64(b + 16) == s->key && get_u64(b + 24) == s->n;
}

/* One table entry against the matrix the model expects. */
static bool read_entry(reader *r, const t2_svf_matrix *mat)
{
    uint8_t b[12];
    if (!rd(r, b, 4))
        return false;
    uint32_t len = get_u32(b);
    if (len != strlen(mat->name) || len > MAX_NAME)
        return false;
    char name[MAX_NAME];
    if (!rd(r, name, len) || memcmp(name, mat->name, len) != 0)
        return false;
    if (!rd(r, b, 12))
        return false;
    return get_u32(b) == (uint32_t)mat->m && get_u32(b + 4) == (uint32_t)mat->n &&
           get_u32(b + 8) == (uint32_t)mat->r;
}

/* The file size the table implies: checked before any factor is read. */
static uint64_t expected_size(const t2_svf *s)
{
    uint64_t total = HEADER_BYTES + 8;
    for (size_t i = 0; i < s->n; i++)
        total += 4 + strlen(s->mats[i].name) + 12 + 4 * (uint64_t)factor_floats(&s->mats[i]);
    return total;
}

static void free_all_factors(t2_svf *s)
{
    for (size_t i = 0; i < s->n; i++)
        t2_svf_factors_free(&s->mats[i]);
}

/* Reads every matrix's factors; -1 on out of memory, 1 on a short read. */
static int read_factors(reader *r, t2_svf *s, t2_err *err)
{
    for (size_t i = 0; i < s->n; i++) {
        t2_svf_matrix *mat = &s->mats[i];
        if (t2_svf_factors_alloc(mat) != 0)
            return t2_err_set(err, "%s: out of memory for the SVF factors", mat->name);
        if (!rd(r, mat->u, (size_t)mat->m * mat->r * sizeof(float)) ||
            !rd(r, mat->s, (size_t)mat->r * sizeof(float)) ||
            !rd(r, mat->vt, (size_t)mat->r * mat->n * sizeof(float)))
            return 1;
    }
    return 0;
}

/* The checksum guards against damage; this against a file that was
 * written wrong: singular values are finite, >= 0 and descending. */
static bool plausible(const t2_svf *s)
{
    for (size_t i = 0; i < s->n; i++) {
        const float *sv = s->mats[i].s;
        for (int k = 0; k < s->mats[i].r; k++)
            if (!(sv[k] >= 0 && sv[k] < INFINITY) || (k > 0 && sv[k] > sv[k - 1]))
                return false;
    }
    return true;
}

/* Everything after opening: header, table, size, data, checksum. */
static int load_open(reader *r, t2_svf *s, t2_err *err)
{
    struct stat st;
    if (fstat(fileno(r->f), &st) != 0 || !S_ISREG(st.st_mode))
        return T2_SVF_CACHE_INVALID;
    if (!read_header(r, s))
        return T2_SVF_CACHE_INVALID;
    for (size_t i = 0; i < s->n; i++)
        if (!read_entry(r, &s->mats[i]))
            return T2_SVF_CACHE_INVALID;
    if ((uint64_t)st.st_size != expected_size(s))
        return T2_SVF_CACHE_INVALID;
    int rc = read_factors(r, s, err);
    if (rc != 0)
        return rc < 0 ? -1 : T2_SVF_CACHE_INVALID;
    uint8_t b[8];
    uint64_t want = t2_hash64_final(&r->h);
    if (fread(b, 1, 8, r->f) != 8 || get_u64(b) != want || !plausible(s))
        return T2_SVF_CACHE_INVALID;
    return T2_SVF_CACHE_LOADED;
}

int t2_svf_cache_load(t2_svf *s, const char *path, t2_err *err)
{
    reader r = {.f = fopen(path, "rbe")};
    if (!r.f)
        /* ENOTDIR: the cache dir is a file, so there is no cache file either */
        return errno == ENOENT || errno == ENOTDIR ? T2_SVF_CACHE_MISSING : T2_SVF_CACHE_INVALID;
    t2_hash64_init(&r.h, 0);
    int rc = load_open(&r, s, err);
    fclose(r.f);
    if (rc != T2_SVF_CACHE_LOADED)
        free_all_factors(s);
    else
        for (size_t i = 0; i < s->n; i++)
            t2_svf_update_sum(&s->mats[i]);
    return rc;
}

/* ---- writing ---- */

typedef struct writer {
    FILE *f;
    t2_hash64_state h;
} writer;

static bool wr(writer *w, const void *src, size_t len)
{
    t2_hash64_update(&w->h, src, len);
    return fwrite(src, 1, len, w->f) == len;
}

static bool write_table(writer *w, const t2_svf *s)
{
    uint8_t b[HEADER_BYTES];
    memcpy(b, CACHE_MAGIC, 8);
    put_u32(b + 8, T2_SVF_CACHE_VERSION);
    put_u32(b + 12, s->set);
    put_u64(b + 16, s->key);
    put_u64(b + 24, s->n);
    if (!wr(w, b, sizeof b))
        return false;
    for (size_t i = 0; i < s->n; i++) {
        const t2_svf_matrix *mat = &s->mats[i];
        uint32_t len = (uint32_t)strlen(mat->name);
        put_u32(b, len);
        if (!wr(w, b, 4) || !wr(w, mat->name, len))
            return false;
        put_u32(b, (uint32_t)mat->m);
        put_u32(b + 4, (uint32_t)mat->n);
        put_u32(b + 8, (uint32_t)mat->r);
        if (!wr(w, b, 12))
            return false;
    }
    return true;
}

static bool write_body(writer *w, const t2_svf *s)
{
    if (!write_table(w, s))
        return false;
    for (size_t i = 0; i < s->n; i++) {
        const t2_svf_matrix *mat = &s->mats[i];
        if (!wr(w, mat->u, (size_t)mat->m * mat->r * sizeof(float)) ||
            !wr(w, mat->s, (size_t)mat->r * sizeof(float)) ||
            !wr(w, mat->vt, (size_t)mat->r * mat->n * sizeof(float)))
            return false;
    }
    uint8_t b[8];
    put_u64(b, t2_hash64_final(&w->h));
    return fwrite(b, 1, 8, w->f) == 8;
}

/* A mkstemp template in dir: hidden, so a crash leaves no *.t2svf behind. */
static char *temp_template(const char *dir)
{
    size_t cap = strlen(dir) + 32;
    char *p = malloc(cap);
    if (p)
        snprintf(p, cap, "%s/.t2svf-tmp-XXXXXX", dir);
    return p;
}

/* fsync the directory so that the rename itself survives a crash. */
static int sync_dir(const char *dir, t2_err *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return t2_err_set(err, "%s: cannot open directory: %s", dir, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0)
        return t2_err_set(err, "%s: fsync: %s", dir, strerror(e));
    return 0;
}

/* Writes, flushes, fsyncs and closes the temp file (closed in every case). */
static int write_temp(int fd, const char *tmp, const t2_svf *s, t2_err *err)
{
    writer w = {.f = fdopen(fd, "wb")};
    if (!w.f) {
        int e = errno;
        close(fd);
        return t2_err_set(err, "%s: fdopen: %s", tmp, strerror(e));
    }
    t2_hash64_init(&w.h, 0);
    int rc = 0;
    /* mkstemp makes 0600; the cache is not secret */
    if (fchmod(fd, 0644) != 0)
        rc = t2_err_set(err, "%s: chmod: %s", tmp, strerror(errno));
    else if (!write_body(&w, s) || fflush(w.f) != 0)
        rc = t2_err_set(err, "%s: write: %s", tmp, strerror(errno));
    else if (fsync(fd) != 0)
        rc = t2_err_set(err, "%s: fsync: %s", tmp, strerror(errno));
    if (fclose(w.f) != 0 && rc == 0)
        rc = t2_err_set(err, "%s: close: %s", tmp, strerror(errno));
    return rc;
}

int t2_svf_cache_save(const t2_svf *s, const char *dir, const char *path, t2_err *err)
{
    if (t2_mkdir_p(dir, err) != 0)
        return -1;
    char *tmp = temp_template(dir);
    if (!tmp)
        return t2_err_set(err, "out of memory");
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        t2_err_set(err, "%s: cannot create a temp file: %s", dir, strerror(errno));
        free(tmp);
        return -1;
    }
    int rc = write_temp(fd, tmp, s, err);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = t2_err_set(err, "%s: rename: %s", path, strerror(errno));
    if (rc != 0)
        unlink(tmp); /* best effort: the error already says what failed */
    free(tmp);
    if (rc == 0)
        rc = sync_dir(dir, err);
    return rc;
}

int t2_svf_cache_lock(const char *dir, const char *path)
{
    t2_err ignored = {{0}};
    if (t2_mkdir_p(dir, &ignored) != 0)
        return -1;
    size_t cap = strlen(path) + 8;
    char *lock_path = malloc(cap);
    if (!lock_path)
        return -1;
    snprintf(lock_path, cap, "%s.lock", path);
    int fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    free(lock_path);
    if (fd < 0)
        return -1;
    int rc;
    do
        rc = flock(fd, LOCK_EX);
    while (rc != 0 && errno == EINTR);
    if (rc != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

void t2_svf_cache_unlock(int fd)
{
    if (fd >= 0)
        close(fd); /* closing the last descriptor releases the flock */
}
