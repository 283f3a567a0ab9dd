/* GGUF v3 writer. Key/values are serialized into a byte buffer as they
 * are added; tensors are kept as float32 references and converted row by
 * row while writing, so no second full-size copy of the weights exists. */
#include "gguf_write.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dtype.h"

#define W_ALIGN 32u /* GGUF default; no general.alignment key needed */

typedef struct wtensor {
    char *name;
    uint32_t n_dims;
    uint64_t dims[4];
    uint64_t n;
    enum t2_ggml_type type;
    const float *data;
    float *owned;
    uint64_t nbytes;
    uint64_t offset;
} wtensor;

struct t2_gguf_writer {
    uint8_t *kv;
    size_t kv_len, kv_cap;
    uint64_t n_kv;
    char **keys; /* for duplicate detection */
    wtensor *t;
    size_t n_t, cap_t;
    bool failed;
    t2_err err; /* first failure */
};

static int wfail(t2_gguf_writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int wfail(t2_gguf_writer *w, const char *fmt, ...)
{
    if (!w->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(w->err.msg, sizeof w->err.msg, fmt, ap);
        va_end(ap);
        w->failed = true;
    }
    return -1;
}

t2_gguf_writer *t2_gguf_writer_new(void)
{
    return calloc(1, sizeof(t2_gguf_writer));
}

void t2_gguf_writer_free(t2_gguf_writer *w)
{
    if (!w)
        return;
    for (uint64_t i = 0; i < w->n_kv; i++)
        free(w->keys[i]);
    free(w->keys);
    for (size_t i = 0; i < w->n_t; i++) {
        free(w->t[i].name);
        free(w->t[i].owned);
    }
    free(w->t);
    free(w->kv);
    free(w);
}

/* --- key/value serialization --- */

static int put(t2_gguf_writer *w, const void *p, size_t n)
{
    if (w->failed)
        return -1;
    if (n > SIZE_MAX / 2 - w->kv_len)
        return wfail(w, "metadata too large");
    if (w->kv_len + n > w->kv_cap) {
        size_t cap = w->kv_cap ? w->kv_cap : 4096;
        while (cap < w->kv_len + n)
            cap *= 2;
        uint8_t *nb = realloc(w->kv, cap);
        if (!nb)
            return wfail(w, "out of memory");
        w->kv = nb;
        w->kv_cap = cap;
    }
    memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
    return 0;
}

static int put_u32(t2_gguf_writer *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return put(w, b, 4);
}

static int put_u64(t2_gguf_writer *w, uint64_t v)
{
    if (put_u32(w, (uint32_t)v))
        return -1;
    return put_u32(w, (uint32_t)(v >> 32));
}

static int put_str(t2_gguf_writer *w, const char *s)
{
    size_t n = strlen(s);
    if (put_u64(w, n))
        return -1;
    return put(w, s, n);
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Key + type; rejects duplicates and empty keys. */
static int begin_kv(t2_gguf_writer *w, const char *key, enum t2_gguf_vtype type)
{
    if (w->failed)
        return -1;
    if (!key || !*key)
        return wfail(w, "empty metadata key");
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->keys[i], key) == 0)
            return wfail(w, "duplicate metadata key '%s'", key);
    char **nk = realloc(w->keys, (size_t)(w->n_kv + 1) * sizeof *nk);
    if (!nk)
        return wfail(w, "out of memory");
    w->keys = nk;
    if (!(w->keys[w->n_kv] = strdup(key)))
        return wfail(w, "out of memory");
    w->n_kv++;
    if (put_str(w, key))
        return -1;
    return put_u32(w, (uint32_t)type);
}

int t2_gguf_w_u32(t2_gguf_writer *w, const char *key, uint32_t v)
{
    if (begin_kv(w, key, T2_GGUF_UINT32))
        return -1;
    return put_u32(w, v);
}

int t2_gguf_w_i32(t2_gguf_writer *w, const char *key, int32_t v)
{
    if (begin_kv(w, key, T2_GGUF_INT32))
        return -1;
    return put_u32(w, (uint32_t)v);
}

int t2_gguf_w_f32(t2_gguf_writer *w, const char *key, float v)
{
    if (begin_kv(w, key, T2_GGUF_FLOAT32))
        return -1;
    return put_u32(w, f32_bits(v));
}

int t2_gguf_w_bool(t2_gguf_writer *w, const char *key, bool v)
{
    if (begin_kv(w, key, T2_GGUF_BOOL))
        return -1;
    uint8_t b = v ? 1 : 0;
    return put(w, &b, 1);
}

int t2_gguf_w_str(t2_gguf_writer *w, const char *key, const char *s)
{
    if (begin_kv(w, key, T2_GGUF_STRING))
        return -1;
    return put_str(w, s);
}

static int begin_arr(t2_gguf_writer *w, const char *key, enum t2_gguf_vtype et, size_t n)
{
    if (begin_kv(w, key, T2_GGUF_ARRAY) || put_u32(w, (uint32_t)et))
        return -1;
    return put_u64(w, n);
}

int t2_gguf_w_arr_str(t2_gguf_writer *w, const char *key, const char *const *s, size_t n)
{
    if (begin_arr(w, key, T2_GGUF_STRING, n))
        return -1;
    for (size_t i = 0; i < n; i++)
        if (put_str(w, s[i] ? s[i] : ""))
            return -1;
    return 0;
}

int t2_gguf_w_arr_f32(t2_gguf_writer *w, const char *key, const float *v, size_t n)
{
    if (begin_arr(w, key, T2_GGUF_FLOAT32, n))
        return -1;
    for (size_t i = 0; i < n; i++)
        if (put_u32(w, f32_bits(v[i])))
            return -1;
    return 0;
}

int t2_gguf_w_arr_i32(t2_gguf_writer *w, const char *key, const int32_t *v, size_t n)
{
    if (begin_arr(w, key, T2_GGUF_INT32, n))
        return -1;
    for (size_t i = 0; i < n; i++)
        if (put_u32(w, (uint32_t)v[i]))
            return -1;
    return 0;
}

/* --- tensors --- */

static int check_tensor(t2_gguf_writer *w, const char *name, enum t2_ggml_type type,
                        uint32_t n_dims, const uint64_t *dims, const float *data, uint64_t *n)
{
    if (w->failed)
        return -1;
    if (!name || !*name)
        return wfail(w, "empty tensor name");
    if (!data)
        return wfail(w, "tensor '%s': no data", name);
    if (n_dims < 1 || n_dims > 4)
        return wfail(w, "tensor '%s': n_dims %u out of range (1..4)", name, n_dims);
    if (type != T2_GGML_F32 && type != T2_GGML_F16 && type != T2_GGML_BF16 && type != T2_GGML_Q8_0)
        return wfail(w, "tensor '%s': unsupported type %d", name, (int)type);
    *n = 1;
    for (uint32_t d = 0; d < n_dims; d++)
        if (dims[d] == 0 || __builtin_mul_overflow(*n, dims[d], n) || *n > (uint64_t)INT64_MAX)
            return wfail(w, "tensor '%s': bad dimension %u", name, d);
    if (type == T2_GGML_Q8_0 && dims[0] % T2_Q8_0_BLOCK != 0)
        return wfail(w, "tensor '%s': row length %llu is not a multiple of the Q8_0 block size 32",
                     name, (unsigned long long)dims[0]);
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return wfail(w, "duplicate tensor name '%s'", name);
    return 0;
}

static int add_tensor(t2_gguf_writer *w, const char *name, enum t2_ggml_type type, uint32_t n_dims,
                      const uint64_t *dims, const float *data, float *owned)
{
    uint64_t n = 0;
    if (check_tensor(w, name, type, n_dims, dims, data, &n))
        goto fail;
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? w->cap_t * 2 : 64;
        wtensor *nt = realloc(w->t, cap * sizeof *nt);
        if (!nt) {
            wfail(w, "out of memory");
            goto fail;
        }
        w->t = nt;
        w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) {
        wfail(w, "out of memory");
        goto fail;
    }
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < 4; d++)
        t->dims[d] = d < n_dims ? dims[d] : 1;
    t->n = n;
    t->type = type;
    t->data = data;
    t->owned = owned;
    t->nbytes = t2_ggml_type_nbytes(type, n);
    w->n_t++;
    return 0;
fail:
    free(owned);
    return -1;
}

int t2_gguf_w_tensor(t2_gguf_writer *w, const char *name, enum t2_ggml_type type, uint32_t n_dims,
                     const uint64_t *dims, const float *data)
{
    return add_tensor(w, name, type, n_dims, dims, data, NULL);
}

int t2_gguf_w_tensor_owned(t2_gguf_writer *w, const char *name, enum t2_ggml_type type,
                           uint32_t n_dims, const uint64_t *dims, float *data)
{
    return add_tensor(w, name, type, n_dims, dims, data, data);
}

/* --- output --- */

static uint64_t align_up(uint64_t x)
{
    return (x + W_ALIGN - 1) / W_ALIGN * W_ALIGN;
}

static int out_bytes(FILE *f, const void *p, size_t n, t2_err *err)
{
    if (n && fwrite(p, 1, n, f) != n)
        return t2_err_set(err, "write failed: %s", strerror(errno));
    return 0;
}

static int out_u32(FILE *f, uint32_t v, t2_err *err)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return out_bytes(f, b, 4, err);
}

static int out_u64(FILE *f, uint64_t v, t2_err *err)
{
    if (out_u32(f, (uint32_t)v, err))
        return -1;
    return out_u32(f, (uint32_t)(v >> 32), err);
}

static int out_pad(FILE *f, uint64_t pos, t2_err *err)
{
    static const uint8_t zeros[W_ALIGN];
    return out_bytes(f, zeros, (size_t)(align_up(pos) - pos), err);
}

/* One row (dims[0] values) in the tensor's storage format into buf. */
static void convert_row(const wtensor *t, const float *src, uint8_t *buf, size_t n)
{
    switch (t->type) {
    case T2_GGML_F32:
        for (size_t i = 0; i < n; i++) {
            uint32_t u = f32_bits(src[i]);
            for (int b = 0; b < 4; b++)
                buf[i * 4 + (size_t)b] = (uint8_t)(u >> (8 * b));
        }
        break;
    case T2_GGML_F16:
    case T2_GGML_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = t->type == T2_GGML_F16 ? t2_f32_to_f16(src[i]) : t2_f32_to_bf16(src[i]);
            buf[i * 2] = (uint8_t)h;
            buf[i * 2 + 1] = (uint8_t)(h >> 8);
        }
        break;
    case T2_GGML_Q8_0: t2_q8_0_quantize(src, buf, n); break;
    }
}

static int out_tensor_data(FILE *f, const wtensor *t, t2_err *err)
{
    size_t row = (size_t)t->dims[0];
    size_t row_bytes = (size_t)t2_ggml_type_nbytes(t->type, row);
    uint8_t *buf = malloc(row_bytes);
    if (!buf)
        return t2_err_set(err, "out of memory");
    int rc = 0;
    for (uint64_t r = 0; r < t->n / row && rc == 0; r++) {
        convert_row(t, t->data + r * row, buf, row);
        rc = out_bytes(f, buf, row_bytes, err);
    }
    free(buf);
    return rc;
}

static int out_header(t2_gguf_writer *w, FILE *f, uint64_t *pos, t2_err *err)
{
    if (out_bytes(f, "GGUF", 4, err) || out_u32(f, 3, err) || out_u64(f, w->n_t, err) ||
        out_u64(f, w->n_kv, err) || out_bytes(f, w->kv, w->kv_len, err))
        return -1;
    *pos = 24 + w->kv_len;
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        wtensor *t = &w->t[i];
        size_t nl = strlen(t->name);
        t->offset = off;
        off = align_up(off + t->nbytes);
        if (out_u64(f, nl, err) || out_bytes(f, t->name, nl, err) || out_u32(f, t->n_dims, err))
            return -1;
        for (uint32_t d = 0; d < t->n_dims; d++)
            if (out_u64(f, t->dims[d], err))
                return -1;
        if (out_u32(f, (uint32_t)t->type, err) || out_u64(f, t->offset, err))
            return -1;
        *pos += 8 + nl + 4 + 8ull * t->n_dims + 4 + 8;
    }
    return 0;
}

static int write_stream(t2_gguf_writer *w, FILE *f, t2_err *err)
{
    if (w->failed) {
        if (err)
            *err = w->err;
        return -1;
    }
    uint64_t pos;
    if (out_header(w, f, &pos, err) || out_pad(f, pos, err))
        return -1;
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        if (out_tensor_data(f, t, err))
            return t2_err_prefix(err, t->name);
        /* ggml pads every tensor, the last too (it reads the padded total) */
        if (out_pad(f, t->nbytes, err))
            return -1;
    }
    return 0;
}

int t2_gguf_writer_write_mem(t2_gguf_writer *w, uint8_t **buf, size_t *size, t2_err *err)
{
    char *p = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&p, &n);
    if (!f)
        return t2_err_set(err, "open_memstream: %s", strerror(errno));
    int rc = write_stream(w, f, err);
    if (fclose(f) != 0 && rc == 0)
        rc = t2_err_set(err, "write failed: %s", strerror(errno));
    if (rc) {
        free(p);
        return -1;
    }
    *buf = (uint8_t *)p;
    *size = n;
    return 0;
}

/* fsync the directory so the rename itself survives a crash. */
static void sync_dir(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

int t2_gguf_writer_write_file(t2_gguf_writer *w, const char *path, t2_err *err)
{
    if (w->failed) {
        if (err)
            *err = w->err;
        return t2_err_prefix(err, path);
    }
    size_t n = strlen(path);
    char *tmp = malloc(n + 16);
    if (!tmp)
        return t2_err_set(err, "%s: out of memory", path);
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmpXXXXXX", 11);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        t2_err_set(err, "%s: cannot create temp file: %s", path, strerror(errno));
        free(tmp);
        return -1;
    }
    fchmod(fd, 0644); /* mkstemp creates 0600; a model file is not secret */
    FILE *f = fdopen(fd, "wb");
    int rc = 0;
    if (!f) {
        close(fd);
        rc = t2_err_set(err, "fdopen: %s", strerror(errno));
    } else {
        rc = write_stream(w, f, err);
        if (rc == 0 && (fflush(f) != 0 || fsync(fileno(f)) != 0))
            rc = t2_err_set(err, "write failed: %s", strerror(errno));
        if (fclose(f) != 0 && rc == 0)
            rc = t2_err_set(err, "write failed: %s", strerror(errno));
    }
    if (rc == 0 && rename(tmp, path) != 0)
        rc = t2_err_set(err, "rename to final name failed: %s", strerror(errno));
    if (rc) {
        unlink(tmp);
        t2_err_prefix(err, path);
    } else {
        sync_dir(path);
    }
    free(tmp);
    return rc;
}
