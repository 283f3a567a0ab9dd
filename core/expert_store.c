/* A directory of <name>.safetensors experts mirrored in memory.
 *
 * Every disk access goes through a directory fd (openat/renameat) with
 * file names built only from validated expert names, so user input never
 * becomes a path. Writers (put/remove) are serialised by write_mu and
 * change the disk first, then the in-memory array under mu; readers only
 * take mu for a lookup and a reference count increment. */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "atomic_file.h"
#include "expert.h"
#include "fileio.h"

#define EXT ".safetensors"
#define EXT_LEN (sizeof EXT - 1)
#define TMP_TAG ".upload-"
#define TMP_TAG_LEN (sizeof TMP_TAG - 1)
#define TMP_RAND 6
/* "<64-char name>.safetensors" and ".<name>.upload-XXXXXX" both fit */
#define FNAME_CAP 96

struct t2_expert_store {
    pthread_mutex_t mu;       /* guards items / n / cap */
    pthread_mutex_t write_mu; /* serialises put/remove: disk change + swap as one step */
    int dirfd;
    char *dir;
    const t2_svf *svf; /* borrowed */
    char *base_model;  /* NULL: accept any base model */
    t2_expert **items; /* sorted by name */
    size_t n, cap;
    size_t rescan_reads; /* guarded by write_mu */
};

/* ---------- small helpers ---------- */

static void set_code(int *code, int v)
{
    if (code)
        *code = v;
}

/* Disk-full conditions, including a file size limit (EFBIG), are 507. */
static int errno_http(int e)
{
    return (e == ENOSPC || e == EDQUOT || e == EFBIG) ? 507 : 500;
}

static int io_fail(t2_err *err, int *code, int e, const char *name, const char *what)
{
    set_code(code, errno_http(e));
    if (errno_http(e) == 507)
        return t2_err_set(err, "expert '%s': disk full (%s: %s)", name, what, strerror(e));
    return t2_err_set(err, "expert '%s': %s: %s", name, what, strerror(e));
}

static void warnf(void (*warn)(void *, const char *), void *user, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void warnf(void (*warn)(void *, const char *), void *user, const char *fmt, ...)
{
    if (!warn)
        return;
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    warn(user, msg);
}

static void final_name(char *buf, const char *name)
{
    snprintf(buf, FNAME_CAP, "%s" EXT, name);
}

static bool is_alnum(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* ".<anything>.upload-XXXXXX": our temp files, never anything else. */
static bool is_temp_name(const char *f)
{
    size_t n = strlen(f);
    if (f[0] != '.' || n < 2 + TMP_TAG_LEN + TMP_RAND)
        return false;
    const char *tag = f + n - TMP_RAND - TMP_TAG_LEN;
    if (memcmp(tag, TMP_TAG, TMP_TAG_LEN) != 0)
        return false;
    for (size_t i = n - TMP_RAND; i < n; i++)
        if (!is_alnum(f[i]))
            return false;
    return true;
}

/* "<name>.safetensors" -> name into buf; false for other files. */
static bool expert_file_name(const char *f, char *buf, size_t cap)
{
    size_t n = strlen(f);
    if (n <= EXT_LEN || strcmp(f + n - EXT_LEN, EXT) != 0 || n - EXT_LEN >= cap)
        return false;
    memcpy(buf, f, n - EXT_LEN);
    buf[n - EXT_LEN] = '\0';
    return true;
}

/* Binary search; *pos = index of the match or the insertion point. */
static bool find_index(const t2_expert_store *st, const char *name, size_t *pos)
{
    size_t lo = 0, hi = st->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->items[mid]->name, name);
        if (c == 0) {
            *pos = mid;
            return true;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *pos = lo;
    return false;
}

/* Capacity for one more entry, reserved before touching the disk so the
 * swap after a successful rename cannot fail. Caller holds mu. */
static int reserve_one(t2_expert_store *st)
{
    if (st->n < st->cap)
        return 0;
    size_t cap = st->cap ? st->cap * 2 : 8;
    t2_expert **items = realloc(st->items, cap * sizeof *items);
    if (!items)
        return -1;
    st->items = items;
    st->cap = cap;
    return 0;
}

/* Inserts or replaces e; returns the replaced expert (caller unrefs) or
 * NULL. Caller holds mu and has reserved capacity. */
static t2_expert *swap_in(t2_expert_store *st, t2_expert *e)
{
    size_t pos;
    if (find_index(st, e->name, &pos)) {
        t2_expert *old = st->items[pos];
        st->items[pos] = e;
        return old;
    }
    memmove(st->items + pos + 1, st->items + pos, (st->n - pos) * sizeof *st->items);
    st->items[pos] = e;
    st->n++;
    return NULL;
}

/* ---------- directory creation and reading ---------- */

static int read_fd(int fd, size_t max, uint8_t **out, size_t *len, t2_err *err)
{
    struct stat sb;
    if (fstat(fd, &sb) != 0)
        return t2_err_set(err, "stat: %s", strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return t2_err_set(err, "not a regular file");
    if ((unsigned long long)sb.st_size > max)
        return t2_err_set(err, "file too large (%lld bytes, limit %zu)", (long long)sb.st_size,
                          max);
    size_t n = (size_t)sb.st_size, got = 0;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return t2_err_set(err, "out of memory");
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            free(buf);
            return t2_err_set(err, "read: %s",
                              r < 0 ? strerror(errno) : "file shrank while reading");
        }
        got += (size_t)r;
    }
    *out = buf;
    *len = n;
    return 0;
}

/* Reads dir/f (relative to the directory fd) fully into memory. */
static int read_at(int dirfd, const char *f, size_t max, uint8_t **out, size_t *len, t2_err *err)
{
    int fd = openat(dirfd, f, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return t2_err_set(err, "cannot open: %s", strerror(errno));
    int rc = read_fd(fd, max, out, len, err);
    close(fd);
    return rc;
}

/* Largest plausible expert: every vector as F32 plus room for a big header. */
static size_t max_file_bytes(const t2_svf *svf)
{
    size_t total = 64u << 20;
    for (size_t i = 0; i < svf->n; i++)
        total += (size_t)svf->mats[i].r * 4;
    return total;
}

/* ---------- open: scan the directory ---------- */

typedef struct scan_ctx {
    void (*warn)(void *, const char *);
    void *user;
    size_t rejected;
} scan_ctx;

static int load_entry(t2_expert_store *st, const char *f, scan_ctx *sc, t2_err *err)
{
    char name[FNAME_CAP];
    if (!expert_file_name(f, name, sizeof name))
        return 0; /* not an expert file: ignore (README, subdirectories, ...) */
    if (!t2_expert_name_valid(name)) {
        warnf(sc->warn, sc->user, "%s/%s: skipped: '%s' is not a valid expert name", st->dir, f,
              name);
        sc->rejected++;
        return 0;
    }
    char *src = t2_path_join(st->dir, f);
    if (!src)
        return t2_err_set(err, "out of memory");
    uint8_t *buf = NULL;
    size_t len = 0;
    t2_expert *e = NULL;
    t2_err e2;
    int rc = read_at(st->dirfd, f, max_file_bytes(st->svf), &buf, &len, &e2);
    if (rc != 0)
        t2_err_prefix(&e2, src);
    else
        rc = t2_expert_parse(&e, buf, len, src, st->svf, st->base_model, name, &e2);
    free(buf);
    free(src);
    if (rc != 0) {
        warnf(sc->warn, sc->user, "skipped expert file: %s", e2.msg);
        sc->rejected++;
        return 0;
    }
    if (reserve_one(st) != 0) {
        t2_expert_unref(e);
        return t2_err_set(err, "out of memory");
    }
    t2_expert_unref(swap_in(st, e)); /* file names are unique: never replaces */
    return 0;
}

static void remove_temp(t2_expert_store *st, const char *f, scan_ctx *sc)
{
    if (unlinkat(st->dirfd, f, 0) == 0)
        warnf(sc->warn, sc->user, "%s/%s: removed temp file of an interrupted upload", st->dir, f);
    else
        warnf(sc->warn, sc->user, "%s/%s: cannot remove temp file: %s", st->dir, f,
              strerror(errno));
}

static int scan_dir(t2_expert_store *st, scan_ctx *sc, t2_err *err)
{
    int fd = dup(st->dirfd); /* fdopendir takes ownership */
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return t2_err_set(err, "%s: cannot list directory: %s", st->dir, strerror(e));
    }
    int rc = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno != 0)
                rc = t2_err_set(err, "%s: cannot list directory: %s", st->dir, strerror(errno));
            break;
        }
        if (is_temp_name(de->d_name))
            remove_temp(st, de->d_name, sc);
        else if (load_entry(st, de->d_name, sc, err) != 0) {
            rc = -1;
            break;
        }
    }
    closedir(d);
    return rc;
}

static t2_expert_store *store_alloc(const char *dir, const t2_svf *svf, const char *base_model)
{
    t2_expert_store *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->dirfd = -1;
    st->svf = svf;
    st->dir = strdup(dir);
    st->base_model = base_model ? strdup(base_model) : NULL;
    bool ok = st->dir && (!base_model || st->base_model);
    if (ok && pthread_mutex_init(&st->mu, NULL) != 0)
        ok = false;
    if (ok && pthread_mutex_init(&st->write_mu, NULL) != 0) {
        pthread_mutex_destroy(&st->mu);
        ok = false;
    }
    if (!ok) {
        free(st->dir);
        free(st->base_model);
        free(st);
        return NULL;
    }
    return st;
}

int t2_store_open(t2_expert_store **out, const char *dir, const t2_svf *svf,
                  const char *base_model_name, void (*warn)(void *user, const char *msg),
                  void *user, size_t *n_rejected, t2_err *err)
{
    *out = NULL;
    if (n_rejected)
        *n_rejected = 0;
    if (!dir || !*dir)
        return t2_err_set(err, "expert directory: empty path");
    if (t2_mkdir_p(dir, err) != 0)
        return -1;
    t2_expert_store *st = store_alloc(dir, svf, base_model_name);
    if (!st)
        return t2_err_set(err, "out of memory");
    st->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (st->dirfd < 0) {
        t2_err_set(err, "%s: cannot open directory: %s", dir, strerror(errno));
        t2_store_free(st);
        return -1;
    }
    scan_ctx sc = {warn, user, 0};
    if (scan_dir(st, &sc, err) != 0) {
        t2_store_free(st);
        return -1;
    }
    if (n_rejected)
        *n_rejected = sc.rejected;
    *out = st;
    return 0;
}

void t2_store_free(t2_expert_store *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->n; i++)
        t2_expert_unref(st->items[i]);
    free(st->items);
    if (st->dirfd >= 0)
        close(st->dirfd);
    pthread_mutex_destroy(&st->mu);
    pthread_mutex_destroy(&st->write_mu);
    free(st->dir);
    free(st->base_model);
    free(st);
}

/* ---------- put: temp file + fsync + rename + fsync dir ---------- */

static void random_suffix(char *out)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char r[TMP_RAND];
    if (getrandom(r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
        /* no entropy yet: O_EXCL still guarantees uniqueness, this only spreads names */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        unsigned long long x =
            (unsigned long long)ts.tv_nsec ^ ((unsigned long long)getpid() << 20);
        for (int i = 0; i < TMP_RAND; i++, x = x * 6364136223846793005ull + 1442695040888963407ull)
            r[i] = (unsigned char)(x >> 33);
    }
    for (int i = 0; i < TMP_RAND; i++)
        out[i] = alphabet[r[i] % (sizeof alphabet - 1)];
    out[TMP_RAND] = '\0';
}

/* Creates ".<name>.upload-XXXXXX" with O_EXCL; returns fd or -1 (errno set). */
static int open_temp(int dirfd, const char *name, char *tmp)
{
    for (int attempt = 0; attempt < 64; attempt++) {
        char rnd[TMP_RAND + 1];
        random_suffix(rnd);
        snprintf(tmp, FNAME_CAP, ".%s" TMP_TAG "%s", name, rnd);
        int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    errno = EEXIST;
    return -1;
}

/* Full write loop; 0 or an errno value. */
static int write_all(int fd, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return errno;
        if (w == 0)
            return EIO;
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Writes and syncs the temp file; on failure returns -1 with the step
 * that failed in *what and the errno in *e. Always closes fd. */
static int write_temp(int fd, const uint8_t *buf, size_t len, const char **what, int *e)
{
    *e = write_all(fd, buf, len);
    *what = "write";
    if (*e == 0 && fsync(fd) != 0) {
        *e = errno;
        *what = "fsync";
    }
    if (close(fd) != 0 && *e == 0) {
        *e = errno;
        *what = "close";
    }
    return *e ? -1 : 0;
}

/* Puts the bytes on disk as <name>.safetensors. *renamed says whether the
 * new file replaced the name (then memory must follow even if the final
 * directory fsync failed). */
static int commit_file(t2_expert_store *st, const char *name, const uint8_t *buf, size_t len,
                       bool *renamed, int *code, t2_err *err)
{
    *renamed = false;
    char tmp[FNAME_CAP], fin[FNAME_CAP];
    final_name(fin, name);
    int fd = open_temp(st->dirfd, name, tmp);
    if (fd < 0)
        return io_fail(err, code, errno, name, "create temp file");
    const char *what;
    int e;
    if (write_temp(fd, buf, len, &what, &e) != 0) {
        unlinkat(st->dirfd, tmp, 0);
        return io_fail(err, code, e, name, what);
    }
    if (renameat(st->dirfd, tmp, st->dirfd, fin) != 0) {
        e = errno;
        unlinkat(st->dirfd, tmp, 0);
        return io_fail(err, code, e, name, "rename");
    }
    *renamed = true;
    if (fsync(st->dirfd) != 0)
        return io_fail(err, code, errno, name, "fsync directory");
    return 0;
}

int t2_store_put(t2_expert_store *st, const char *name, const uint8_t *buf, size_t len,
                 bool *replaced, int *err_code, t2_err *err)
{
    return t2_store_put_ref(st, name, buf, len, replaced, NULL, err_code, err);
}

int t2_store_put_ref(t2_expert_store *st, const char *name, const uint8_t *buf, size_t len,
                     bool *replaced, t2_expert **stored, int *err_code, t2_err *err)
{
    if (replaced)
        *replaced = false;
    if (stored)
        *stored = NULL;
    set_code(err_code, 0);
    t2_expert *e;
    if (!name) { /* without an override, parse would take the metadata name */
        set_code(err_code, 422);
        return t2_err_set(err, "upload: no expert name given");
    }
    /* validates the name (override) before any path is built */
    if (t2_expert_parse(&e, buf, len, "upload", st->svf, st->base_model, name, err) != 0) {
        set_code(err_code, 422);
        return -1;
    }
    pthread_mutex_lock(&st->write_mu);
    pthread_mutex_lock(&st->mu);
    int rc = reserve_one(st);
    pthread_mutex_unlock(&st->mu);
    bool renamed = false;
    if (rc != 0) {
        set_code(err_code, 500);
        t2_err_set(err, "expert '%s': out of memory", name);
    } else {
        rc = commit_file(st, name, buf, len, &renamed, err_code, err);
    }
    t2_expert *old = NULL;
    if (renamed) { /* the disk has the new version: memory follows */
        pthread_mutex_lock(&st->mu);
        old = swap_in(st, e);
        if (stored)
            *stored = t2_expert_ref(e);
        pthread_mutex_unlock(&st->mu);
    } else {
        t2_expert_unref(e);
    }
    pthread_mutex_unlock(&st->write_mu);
    if (replaced)
        *replaced = old != NULL;
    t2_expert_unref(old); /* requests holding it keep it alive */
    return rc;
}

/* ---------- remove, lookups ---------- */

/* Drops name from memory; returns the expert (caller unrefs). */
static t2_expert *take_out(t2_expert_store *st, const char *name)
{
    pthread_mutex_lock(&st->mu);
    size_t pos;
    t2_expert *e = NULL;
    if (find_index(st, name, &pos)) {
        e = st->items[pos];
        memmove(st->items + pos, st->items + pos + 1, (st->n - pos - 1) * sizeof *st->items);
        st->n--;
    }
    pthread_mutex_unlock(&st->mu);
    return e;
}

static bool contains(t2_expert_store *st, const char *name)
{
    pthread_mutex_lock(&st->mu);
    size_t pos;
    bool found = find_index(st, name, &pos);
    pthread_mutex_unlock(&st->mu);
    return found;
}

int t2_store_remove(t2_expert_store *st, const char *name, int *err_code, t2_err *err)
{
    set_code(err_code, 0);
    /* an invalid name cannot be in the store; never build a path from it */
    if (!t2_expert_name_valid(name) || !contains(st, name)) {
        set_code(err_code, 404);
        return t2_err_set(err, "no expert named '%s'", name ? name : "");
    }
    pthread_mutex_lock(&st->write_mu);
    int rc = 0;
    char fin[FNAME_CAP];
    final_name(fin, name);
    bool gone = true;
    if (!contains(st, name)) { /* removed by a concurrent writer meanwhile */
        set_code(err_code, 404);
        rc = t2_err_set(err, "no expert named '%s'", name);
        gone = false;
    } else if (unlinkat(st->dirfd, fin, 0) != 0 && errno != ENOENT) {
        rc = io_fail(err, err_code, errno, name, "unlink");
        gone = false;
    } else if (fsync(st->dirfd) != 0) {
        rc = io_fail(err, err_code, errno, name, "fsync directory"); /* file is gone: drop anyway */
    }
    t2_expert *e = gone ? take_out(st, name) : NULL;
    pthread_mutex_unlock(&st->write_mu);
    t2_expert_unref(e);
    return rc;
}

t2_expert *t2_store_get(t2_expert_store *st, const char *name)
{
    if (!name)
        return NULL;
    pthread_mutex_lock(&st->mu);
    size_t pos;
    t2_expert *e = find_index(st, name, &pos) ? t2_expert_ref(st->items[pos]) : NULL;
    pthread_mutex_unlock(&st->mu);
    return e;
}

size_t t2_store_list(t2_expert_store *st, t2_expert ***out)
{
    pthread_mutex_lock(&st->mu);
    size_t n = st->n;
    t2_expert **arr = malloc((n ? n : 1) * sizeof *arr);
    if (!arr)
        n = 0;
    for (size_t i = 0; i < n; i++)
        arr[i] = t2_expert_ref(st->items[i]);
    pthread_mutex_unlock(&st->mu);
    *out = arr;
    return n;
}

t2_expert *t2_store_find_task(t2_expert_store *st, const char *task)
{
    if (!task)
        return NULL;
    pthread_mutex_lock(&st->mu);
    t2_expert *e = NULL;
    for (size_t i = 0; i < st->n && !e; i++)
        if (strcmp(st->items[i]->task, task) == 0)
            e = t2_expert_ref(st->items[i]);
    pthread_mutex_unlock(&st->mu);
    return e;
}

/* ---------- rescan: follow changes other processes made ---------- */

/* One file's expert, parsed, or NULL when it is not (or no longer) valid. */
static t2_expert *load_file(t2_expert_store *st, const char *f, const char *name)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    t2_expert *e = NULL;
    t2_err err;
    if (read_at(st->dirfd, f, max_file_bytes(st->svf), &buf, &len, &err) == 0)
        t2_expert_parse(&e, buf, len, f, st->svf, st->base_model, name, &err);
    free(buf);
    return e;
}

static bool file_id_at(int dirfd, const char *f, t2_file_id *id)
{
    struct stat sb;
    if (fstatat(dirfd, f, &sb, 0) != 0)
        return false;
    *id = (t2_file_id){(uint64_t)sb.st_dev, (uint64_t)sb.st_ino, (uint64_t)sb.st_size,
                       (uint64_t)sb.st_mtim.tv_sec * 1000000000u + (uint64_t)sb.st_mtim.tv_nsec,
                       (uint64_t)sb.st_ctim.tv_sec * 1000000000u + (uint64_t)sb.st_ctim.tv_nsec};
    return true;
}

/* Same file, unchanged. A file changed in the last 2 s is never taken as
 * unchanged: on a filesystem with coarse timestamps a rewrite in place
 * within the same tick keeps them (git's "racily clean" rule). */
static bool file_id_same(const t2_file_id *a, const t2_file_id *b)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t now_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
    return a->ino != 0 && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns &&
           b->mtime_ns + 2000000000u < now_ns;
}

/* Loads a new or changed file; returns 1 when the store changed. A file
 * whose identity (inode, size, mtime, ctime) is the one last read is not
 * read again: idle rescans of many large experts cost a stat each. */
static int rescan_entry(t2_expert_store *st, const char *f, char (*seen)[FNAME_CAP], size_t *n_seen,
                        size_t cap_seen)
{
    char name[FNAME_CAP];
    if (!expert_file_name(f, name, sizeof name) || !t2_expert_name_valid(name))
        return 0;
    if (*n_seen < cap_seen)
        memcpy(seen[(*n_seen)++], name, sizeof name);
    t2_file_id id;
    bool have_id = file_id_at(st->dirfd, f, &id);
    size_t pos;
    pthread_mutex_lock(&st->mu);
    bool unchanged =
        have_id && find_index(st, name, &pos) && file_id_same(&st->items[pos]->file_id, &id);
    pthread_mutex_unlock(&st->mu);
    if (unchanged)
        return 0;
    st->rescan_reads++;
    /* stat before read: a file replaced in between is read new with the
     * old identity, so the next rescan reads it once more (never stale) */
    t2_expert *e = load_file(st, f, name);
    if (!e) /* invalid or vanished: keep what we have (it was valid) */
        return 0;
    if (have_id)
        e->file_id = id;
    pthread_mutex_lock(&st->mu);
    bool same = find_index(st, name, &pos) && st->items[pos]->version == e->version;
    if (same && have_id)
        st->items[pos]->file_id = id;
    t2_expert *old = NULL;
    int changed = 0;
    if (!same && reserve_one(st) == 0) {
        old = swap_in(st, e);
        e = NULL;
        changed = 1;
    }
    pthread_mutex_unlock(&st->mu);
    t2_expert_unref(e);
    t2_expert_unref(old); /* requests holding it keep it alive */
    return changed;
}

static bool in_seen(char (*seen)[FNAME_CAP], size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(seen[i], name) == 0)
            return true;
    return false;
}

/* Drops experts whose files are gone; returns how many. */
static size_t drop_missing(t2_expert_store *st, char (*seen)[FNAME_CAP], size_t n_seen)
{
    size_t dropped = 0;
    pthread_mutex_lock(&st->mu);
    for (size_t i = 0; i < st->n;) {
        if (in_seen(seen, n_seen, st->items[i]->name)) {
            i++;
            continue;
        }
        t2_expert *e = st->items[i];
        memmove(st->items + i, st->items + i + 1, (st->n - i - 1) * sizeof *st->items);
        st->n--;
        t2_expert_unref(e);
        dropped++;
    }
    pthread_mutex_unlock(&st->mu);
    return dropped;
}

size_t t2_store_rescan_reads(t2_expert_store *st)
{
    pthread_mutex_lock(&st->write_mu);
    size_t n = st->rescan_reads;
    pthread_mutex_unlock(&st->write_mu);
    return n;
}

int t2_store_rescan(t2_expert_store *st, size_t *changes, t2_err *err)
{
    *changes = 0;
    pthread_mutex_lock(&st->write_mu); /* no local put/remove in between */
    int fd = dup(st->dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        pthread_mutex_unlock(&st->write_mu);
        return t2_err_set(err, "%s: cannot list directory: %s", st->dir, strerror(e));
    }
    rewinddir(d); /* the dup shares the offset of earlier listings */
    size_t cap_seen = 4096, n_seen = 0;
    char(*seen)[FNAME_CAP] = malloc(cap_seen * sizeof *seen);
    int rc = seen ? 0 : t2_err_set(err, "out of memory");
    for (struct dirent *de; rc == 0 && (errno = 0, de = readdir(d)) != NULL;)
        *changes += (size_t)rescan_entry(st, de->d_name, seen, &n_seen, cap_seen);
    if (rc == 0 && errno != 0)
        rc = t2_err_set(err, "%s: cannot list directory: %s", st->dir, strerror(errno));
    closedir(d);
    /* an incomplete listing must not drop anything */
    if (rc == 0 && n_seen < cap_seen)
        *changes += drop_missing(st, seen, n_seen);
    free(seen);
    pthread_mutex_unlock(&st->write_mu);
    return rc;
}
