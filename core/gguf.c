/* GGUF v2/v3 reader. Every length and count is checked against the bytes
 * that remain before it is used, so any input (truncated, hostile) gives
 * an error message instead of a crash or a huge allocation. */
#include "gguf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"

#define GGUF_DEFAULT_ALIGNMENT 32u
#define GGUF_MAX_KEY_LEN 65535u /* real keys are short; bounds a hostile header */
#define GGUF_MAX_NAME_LEN 65535u
#define GGUF_MAX_DIMS 4u

/* Smallest encodings, used to bound counts against the file size before
 * allocating: kv = key len (8) + 1 key byte + type (4) + 1 value byte;
 * tensor info = name len (8) + 1 name byte + n_dims (4) + 1 dim (8) +
 * type (4) + offset (8). */
#define GGUF_MIN_KV_BYTES 14u
#define GGUF_MIN_TENSOR_BYTES 33u

typedef struct reader {
    const uint8_t *buf;
    size_t size;
    size_t pos;
    const char *name;
    t2_err *err;
} reader;

/* Formats the message and prefixes the file name. */
static int fail(reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(reader *r, const char *fmt, ...)
{
    if (r->err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err->msg, sizeof r->err->msg, fmt, ap);
        va_end(ap);
        t2_err_prefix(r->err, r->name);
    }
    return -1;
}

static size_t remaining(const reader *r)
{
    return r->size - r->pos;
}

static int need(reader *r, uint64_t n, const char *what)
{
    if (n > remaining(r))
        return fail(r, "truncated file: %s needs %llu bytes at offset %zu, only %zu left", what,
                    (unsigned long long)n, r->pos, remaining(r));
    return 0;
}

static int rd_u32(reader *r, uint32_t *out, const char *what)
{
    if (need(r, 4, what))
        return -1;
    *out = t2_load_u32(r->buf + r->pos);
    r->pos += 4;
    return 0;
}

static int rd_u64(reader *r, uint64_t *out, const char *what)
{
    if (need(r, 8, what))
        return -1;
    *out = t2_load_u64(r->buf + r->pos);
    r->pos += 8;
    return 0;
}

/* u64 length + bytes; the length is compared with what remains, so a
 * huge value cannot overflow pos. */
static int rd_str(reader *r, t2_gguf_str *s, uint64_t max_len, const char *what)
{
    uint64_t len;
    if (rd_u64(r, &len, what))
        return -1;
    if (len > remaining(r))
        return fail(r,
                    "%s length %llu at offset %zu runs past the end of the file (%zu bytes left)",
                    what, (unsigned long long)len, r->pos - 8, remaining(r));
    if (len > max_len)
        return fail(r, "%s length %llu is too long (max %llu)", what, (unsigned long long)len,
                    (unsigned long long)max_len);
    s->ptr = (const char *)(r->buf + r->pos);
    s->len = len;
    r->pos += (size_t)len;
    return 0;
}

/* Size of a fixed-size scalar type, 0 for string/array/unknown. */
static size_t scalar_size(uint32_t t)
{
    switch (t) {
    case T2_GGUF_UINT8:
    case T2_GGUF_INT8:
    case T2_GGUF_BOOL: return 1;
    case T2_GGUF_UINT16:
    case T2_GGUF_INT16: return 2;
    case T2_GGUF_UINT32:
    case T2_GGUF_INT32:
    case T2_GGUF_FLOAT32: return 4;
    case T2_GGUF_UINT64:
    case T2_GGUF_INT64:
    case T2_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

static bool vtype_known(uint32_t t)
{
    return t <= T2_GGUF_FLOAT64;
}

/* Little-endian scalar at p of type t, widened into the kv union. */
static void decode_scalar(t2_gguf_kv *kv, const uint8_t *p)
{
    switch (kv->type) {
    case T2_GGUF_UINT8:
    case T2_GGUF_BOOL: kv->v.u64 = p[0]; break;
    case T2_GGUF_INT8: kv->v.i64 = (int8_t)p[0]; break;
    case T2_GGUF_UINT16: kv->v.u64 = t2_load_u16(p); break;
    case T2_GGUF_INT16: kv->v.i64 = (int16_t)t2_load_u16(p); break;
    case T2_GGUF_UINT32: kv->v.u64 = t2_load_u32(p); break;
    case T2_GGUF_INT32: kv->v.i64 = (int32_t)t2_load_u32(p); break;
    case T2_GGUF_UINT64: kv->v.u64 = t2_load_u64(p); break;
    case T2_GGUF_INT64: kv->v.i64 = (int64_t)t2_load_u64(p); break;
    case T2_GGUF_FLOAT32: {
        uint32_t u = t2_load_u32(p);
        float f;
        memcpy(&f, &u, sizeof f);
        kv->v.f64 = f;
        break;
    }
    case T2_GGUF_FLOAT64: {
        uint64_t u = t2_load_u64(p);
        memcpy(&kv->v.f64, &u, sizeof kv->v.f64);
        break;
    }
    default: break;
    }
}

#define KNAME(kv) (int)((kv)->key.len > 200 ? 200 : (kv)->key.len), (kv)->key.ptr

static int read_array(reader *r, t2_gguf_kv *kv)
{
    uint32_t et;
    if (rd_u32(r, &et, "array element type") || rd_u64(r, &kv->arr_count, "array count"))
        return -1;
    if (et == T2_GGUF_ARRAY)
        return fail(r, "key '%.*s': nested arrays are not supported", KNAME(kv));
    if (!vtype_known(et))
        return fail(r, "key '%.*s': unknown array element type %u", KNAME(kv), et);
    kv->arr_type = (enum t2_gguf_vtype)et;
    if (et == T2_GGUF_STRING) {
        /* every string needs at least its 8-byte length */
        if (kv->arr_count > remaining(r) / 8)
            return fail(r, "key '%.*s': string array count %llu runs past the end of the file",
                        KNAME(kv), (unsigned long long)kv->arr_count);
        if (kv->arr_count == 0)
            return 0;
        kv->arr_strs = calloc((size_t)kv->arr_count, sizeof *kv->arr_strs);
        if (!kv->arr_strs)
            return fail(r, "out of memory");
        for (uint64_t i = 0; i < kv->arr_count; i++)
            if (rd_str(r, &kv->arr_strs[i], UINT64_MAX, "array string"))
                return -1;
        return 0;
    }
    size_t es = scalar_size(et);
    if (kv->arr_count > remaining(r) / es)
        return fail(r, "key '%.*s': array count %llu runs past the end of the file", KNAME(kv),
                    (unsigned long long)kv->arr_count);
    kv->arr_data = r->buf + r->pos;
    r->pos += (size_t)(kv->arr_count * es);
    return 0;
}

static int read_kv(reader *r, t2_gguf_kv *kv)
{
    uint32_t type;
    if (rd_str(r, &kv->key, GGUF_MAX_KEY_LEN, "key"))
        return -1;
    if (kv->key.len == 0)
        return fail(r, "empty key at offset %zu", r->pos - 8);
    if (rd_u32(r, &type, "value type"))
        return -1;
    if (!vtype_known(type))
        return fail(r, "key '%.*s': unknown value type %u", KNAME(kv), type);
    kv->type = (enum t2_gguf_vtype)type;
    if (type == T2_GGUF_STRING)
        return rd_str(r, &kv->v.str, UINT64_MAX, "string value");
    if (type == T2_GGUF_ARRAY)
        return read_array(r, kv);
    size_t sz = scalar_size(type);
    if (need(r, sz, "value"))
        return -1;
    decode_scalar(kv, r->buf + r->pos);
    if (type == T2_GGUF_BOOL && kv->v.u64 > 1)
        return fail(r, "key '%.*s': invalid bool value %llu", KNAME(kv),
                    (unsigned long long)kv->v.u64);
    r->pos += sz;
    return 0;
}

static int cmp_str(const t2_gguf_str *a, const t2_gguf_str *b)
{
    uint64_t n = a->len < b->len ? a->len : b->len;
    int c = n ? memcmp(a->ptr, b->ptr, (size_t)n) : 0;
    if (c)
        return c;
    return (a->len > b->len) - (a->len < b->len);
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return cmp_str(*(const t2_gguf_str *const *)a, *(const t2_gguf_str *const *)b);
}

/* Sorts pointers to the strings and compares neighbours: O(n log n) so a
 * file with many entries cannot stall the parser. Returns the index of a
 * duplicate's pointer in ptrs (>= 0) or -1 if none, -2 out of memory. */
static long find_duplicate(const t2_gguf_str **ptrs, size_t n)
{
    qsort(ptrs, n, sizeof *ptrs, cmp_str_ptr);
    for (size_t i = 1; i < n; i++)
        if (cmp_str(ptrs[i - 1], ptrs[i]) == 0)
            return (long)i;
    return -1;
}

static int check_dup_keys(reader *r, const t2_gguf *g)
{
    if (g->n_kv < 2)
        return 0;
    const t2_gguf_str **p = malloc((size_t)g->n_kv * sizeof *p);
    if (!p)
        return fail(r, "out of memory");
    for (uint64_t i = 0; i < g->n_kv; i++)
        p[i] = &g->kv[i].key;
    long d = find_duplicate(p, (size_t)g->n_kv);
    int rc = 0;
    if (d >= 0)
        rc = fail(r, "duplicate key '%.*s'", (int)(p[d]->len > 200 ? 200 : p[d]->len), p[d]->ptr);
    free(p);
    return rc;
}

static int check_dup_tensors(reader *r, const t2_gguf *g)
{
    if (g->n_tensors < 2)
        return 0;
    const t2_gguf_str **p = malloc((size_t)g->n_tensors * sizeof *p);
    if (!p)
        return fail(r, "out of memory");
    for (uint64_t i = 0; i < g->n_tensors; i++)
        p[i] = &g->tensors[i].name;
    long d = find_duplicate(p, (size_t)g->n_tensors);
    int rc = 0;
    if (d >= 0)
        rc = fail(r, "duplicate tensor name '%.*s'", (int)(p[d]->len > 200 ? 200 : p[d]->len),
                  p[d]->ptr);
    free(p);
    return rc;
}

#define TNAME(t) (int)((t)->name.len > 200 ? 200 : (t)->name.len), (t)->name.ptr

static uint64_t type_block(enum t2_ggml_type t)
{
    return t == T2_GGML_Q8_0 ? T2_Q8_0_BLOCK : 1;
}

static bool ggml_type_known(uint32_t t)
{
    return t == T2_GGML_F32 || t == T2_GGML_F16 || t == T2_GGML_BF16 || t == T2_GGML_Q8_0;
}

/* Shape and type of one tensor info; offsets are checked later, once the
 * data section start is known. */
static int read_tensor_info(reader *r, t2_gguf_tensor *t)
{
    if (rd_str(r, &t->name, GGUF_MAX_NAME_LEN, "tensor name"))
        return -1;
    if (t->name.len == 0)
        return fail(r, "empty tensor name at offset %zu", r->pos - 8);
    if (rd_u32(r, &t->n_dims, "tensor n_dims"))
        return -1;
    if (t->n_dims == 0 || t->n_dims > GGUF_MAX_DIMS)
        return fail(r, "tensor '%.*s': n_dims %u out of range (1..4)", TNAME(t), t->n_dims);
    uint64_t n = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++)
        t->dims[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        if (rd_u64(r, &t->dims[d], "tensor dimension"))
            return -1;
        if (t->dims[d] == 0)
            return fail(r, "tensor '%.*s': dimension %u is 0", TNAME(t), d);
        if (__builtin_mul_overflow(n, t->dims[d], &n) || n > (uint64_t)INT64_MAX)
            return fail(r, "tensor '%.*s': element count overflows", TNAME(t));
    }
    t->n_elements = n;
    uint32_t type;
    if (rd_u32(r, &type, "tensor type") || rd_u64(r, &t->offset, "tensor offset"))
        return -1;
    if (!ggml_type_known(type))
        return fail(r, "tensor '%.*s': unsupported tensor type %u (t2 reads F32, F16, BF16, Q8_0)",
                    TNAME(t), type);
    t->type = (enum t2_ggml_type)type;
    /* ggml quantizes along rows: the row length must hold whole blocks */
    uint64_t blk = type_block(t->type);
    if (t->dims[0] % blk != 0)
        return fail(r, "tensor '%.*s': row length %llu is not a multiple of the %s block size %llu",
                    TNAME(t), (unsigned long long)t->dims[0], t2_ggml_type_name(t->type),
                    (unsigned long long)blk);
    t->nbytes = t2_ggml_type_nbytes(t->type, n);
    if (t->nbytes == 0)
        return fail(r, "tensor '%.*s': byte size overflows", TNAME(t));
    return 0;
}

static int read_alignment(reader *r, t2_gguf *g)
{
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const t2_gguf_kv *kv = t2_gguf_find(g, "general.alignment");
    if (!kv)
        return 0;
    uint64_t a;
    if (!t2_gguf_get_u64(g, "general.alignment", &a))
        return fail(r, "general.alignment has non-integer type %d", (int)kv->type);
    if (a == 0 || (a & (a - 1)) != 0 || a > UINT32_MAX)
        return fail(r, "general.alignment %llu is not a power of two", (unsigned long long)a);
    g->alignment = a;
    return 0;
}

static int cmp_tensor_offset(const void *a, const void *b)
{
    const t2_gguf_tensor *x = *(const t2_gguf_tensor *const *)a;
    const t2_gguf_tensor *y = *(const t2_gguf_tensor *const *)b;
    return (x->offset > y->offset) - (x->offset < y->offset);
}

/* Offsets aligned, data inside the file, no two tensors sharing bytes. */
static int place_tensors(reader *r, t2_gguf *g)
{
    uint64_t data_size = g->size - g->data_offset;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        t2_gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment != 0)
            return fail(r, "tensor '%.*s': offset %llu is not aligned to %llu", TNAME(t),
                        (unsigned long long)t->offset, (unsigned long long)g->alignment);
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return fail(r,
                        "tensor '%.*s': data (offset %llu, %llu bytes) is out of bounds of the "
                        "data section (%llu bytes)",
                        TNAME(t), (unsigned long long)t->offset, (unsigned long long)t->nbytes,
                        (unsigned long long)data_size);
        t->data = g->buf + g->data_offset + t->offset;
    }
    if (g->n_tensors < 2)
        return 0;
    const t2_gguf_tensor **p = malloc((size_t)g->n_tensors * sizeof *p);
    if (!p)
        return fail(r, "out of memory");
    for (uint64_t i = 0; i < g->n_tensors; i++)
        p[i] = &g->tensors[i];
    qsort(p, (size_t)g->n_tensors, sizeof *p, cmp_tensor_offset);
    int rc = 0;
    for (uint64_t i = 1; i < g->n_tensors && rc == 0; i++)
        if (p[i - 1]->offset + p[i - 1]->nbytes > p[i]->offset)
            rc = fail(r, "tensors '%.*s' and '%.*s' overlap", TNAME(p[i - 1]), TNAME(p[i]));
    free(p);
    return rc;
}

static int read_header(reader *r, t2_gguf *g)
{
    if (r->size < 4 || memcmp(r->buf, "GGUF", 4) != 0)
        return fail(r, "not a GGUF file (bad magic)");
    r->pos = 4;
    if (rd_u32(r, &g->version, "version"))
        return -1;
    if (g->version == 1)
        return fail(r, "GGUF version 1 is not supported (only versions 2 and 3)");
    if (g->version != 2 && g->version != 3)
        return fail(r, "unsupported GGUF version %u (only versions 2 and 3)", g->version);
    if (rd_u64(r, &g->n_tensors, "tensor count") || rd_u64(r, &g->n_kv, "kv count"))
        return -1;
    if (g->n_kv > remaining(r) / GGUF_MIN_KV_BYTES)
        return fail(r, "kv count %llu is too large for a file of %zu bytes (truncated or corrupt)",
                    (unsigned long long)g->n_kv, r->size);
    if (g->n_tensors > remaining(r) / GGUF_MIN_TENSOR_BYTES)
        return fail(r,
                    "tensor count %llu is too large for a file of %zu bytes (truncated or corrupt)",
                    (unsigned long long)g->n_tensors, r->size);
    return 0;
}

static int parse(reader *r, t2_gguf *g)
{
    if (read_header(r, g))
        return -1;
    if (g->n_kv) {
        g->kv = calloc((size_t)g->n_kv, sizeof *g->kv);
        if (!g->kv)
            return fail(r, "out of memory");
    }
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (read_kv(r, &g->kv[i]))
            return -1;
    if (check_dup_keys(r, g) || read_alignment(r, g))
        return -1;
    if (g->n_tensors) {
        g->tensors = calloc((size_t)g->n_tensors, sizeof *g->tensors);
        if (!g->tensors)
            return fail(r, "out of memory");
    }
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (read_tensor_info(r, &g->tensors[i]))
            return -1;
    if (check_dup_tensors(r, g))
        return -1;
    /* pos < size <= SIZE_MAX and alignment <= 2^32: no overflow on 64-bit */
    uint64_t off = ((uint64_t)r->pos + g->alignment - 1) / g->alignment * g->alignment;
    if (off > r->size) {
        /* a file without tensors may omit the trailing padding */
        if (g->n_tensors)
            return fail(r, "truncated file: data section starts at %llu, past the end (%zu bytes)",
                        (unsigned long long)off, r->size);
        off = r->size;
    }
    g->data_offset = off;
    return place_tensors(r, g);
}

int t2_gguf_parse(t2_gguf *g, const uint8_t *buf, size_t size, const char *name, t2_err *err)
{
    memset(g, 0, sizeof *g);
    g->buf = buf;
    g->size = size;
    reader r = {
        .buf = buf, .size = buf ? size : 0, .pos = 0, .name = name ? name : "gguf", .err = err};
    if (parse(&r, g)) {
        t2_gguf_close(g);
        return -1;
    }
    return 0;
}

int t2_gguf_open(t2_gguf *g, const char *path, t2_err *err)
{
    t2_mapped_file mf;
    memset(g, 0, sizeof *g);
    if (t2_mapped_file_open(&mf, path, err))
        return -1;
    if (t2_gguf_parse(g, mf.data, mf.size, path, err)) {
        t2_mapped_file_close(&mf);
        return -1;
    }
    g->file = mf;
    return 0;
}

void t2_gguf_close(t2_gguf *g)
{
    if (g->kv)
        for (uint64_t i = 0; i < g->n_kv; i++)
            free(g->kv[i].arr_strs);
    free(g->kv);
    free(g->tensors);
    t2_mapped_file_close(&g->file);
    memset(g, 0, sizeof *g);
}

static bool str_eq(const t2_gguf_str *s, const char *c)
{
    size_t n = strlen(c);
    return s->len == n && memcmp(s->ptr, c, n) == 0;
}

const t2_gguf_kv *t2_gguf_find(const t2_gguf *g, const char *key)
{
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (str_eq(&g->kv[i].key, key))
            return &g->kv[i];
    return NULL;
}

const t2_gguf_tensor *t2_gguf_find_tensor(const t2_gguf *g, const char *name)
{
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (str_eq(&g->tensors[i].name, name))
            return &g->tensors[i];
    return NULL;
}

static bool is_unsigned(enum t2_gguf_vtype t)
{
    return t == T2_GGUF_UINT8 || t == T2_GGUF_UINT16 || t == T2_GGUF_UINT32 || t == T2_GGUF_UINT64;
}

static bool is_signed(enum t2_gguf_vtype t)
{
    return t == T2_GGUF_INT8 || t == T2_GGUF_INT16 || t == T2_GGUF_INT32 || t == T2_GGUF_INT64;
}

bool t2_gguf_get_u64(const t2_gguf *g, const char *key, uint64_t *out)
{
    const t2_gguf_kv *kv = t2_gguf_find(g, key);
    if (!kv)
        return false;
    if (is_unsigned(kv->type)) {
        *out = kv->v.u64;
        return true;
    }
    if (is_signed(kv->type) && kv->v.i64 >= 0) {
        *out = (uint64_t)kv->v.i64;
        return true;
    }
    return false;
}

bool t2_gguf_get_u32(const t2_gguf *g, const char *key, uint32_t *out)
{
    uint64_t v;
    if (!t2_gguf_get_u64(g, key, &v) || v > UINT32_MAX)
        return false;
    *out = (uint32_t)v;
    return true;
}

bool t2_gguf_get_f32(const t2_gguf *g, const char *key, float *out)
{
    const t2_gguf_kv *kv = t2_gguf_find(g, key);
    if (!kv)
        return false;
    if (kv->type == T2_GGUF_FLOAT32 || kv->type == T2_GGUF_FLOAT64)
        *out = (float)kv->v.f64;
    else if (is_unsigned(kv->type))
        *out = (float)kv->v.u64;
    else if (is_signed(kv->type))
        *out = (float)kv->v.i64;
    else
        return false;
    return true;
}

bool t2_gguf_get_bool(const t2_gguf *g, const char *key, bool *out)
{
    const t2_gguf_kv *kv = t2_gguf_find(g, key);
    if (!kv || kv->type != T2_GGUF_BOOL)
        return false;
    *out = kv->v.u64 != 0;
    return true;
}

char *t2_gguf_get_str(const t2_gguf *g, const char *key)
{
    const t2_gguf_kv *kv = t2_gguf_find(g, key);
    if (!kv || kv->type != T2_GGUF_STRING || kv->v.str.len >= SIZE_MAX)
        return NULL;
    char *s = malloc((size_t)kv->v.str.len + 1);
    if (!s)
        return NULL;
    if (kv->v.str.len)
        memcpy(s, kv->v.str.ptr, (size_t)kv->v.str.len);
    s[kv->v.str.len] = '\0';
    return s;
}

float t2_gguf_arr_f32(const t2_gguf_kv *kv, uint64_t i)
{
    if (kv->arr_type == T2_GGUF_FLOAT32) {
        uint32_t u = t2_load_u32(kv->arr_data + i * 4);
        float f;
        memcpy(&f, &u, sizeof f);
        return f;
    }
    if (kv->arr_type == T2_GGUF_FLOAT64) {
        uint64_t u = t2_load_u64(kv->arr_data + i * 8);
        double d;
        memcpy(&d, &u, sizeof d);
        return (float)d;
    }
    return (float)t2_gguf_arr_int(kv, i);
}

int64_t t2_gguf_arr_int(const t2_gguf_kv *kv, uint64_t i)
{
    const uint8_t *p = kv->arr_data;
    switch (kv->arr_type) {
    case T2_GGUF_UINT8:
    case T2_GGUF_BOOL: return p[i];
    case T2_GGUF_INT8: return (int8_t)p[i];
    case T2_GGUF_UINT16: return t2_load_u16(p + i * 2);
    case T2_GGUF_INT16: return (int16_t)t2_load_u16(p + i * 2);
    case T2_GGUF_UINT32: return t2_load_u32(p + i * 4);
    case T2_GGUF_INT32: return (int32_t)t2_load_u32(p + i * 4);
    case T2_GGUF_UINT64:
    case T2_GGUF_INT64: return (int64_t)t2_load_u64(p + i * 8);
    default: return 0;
    }
}

uint64_t t2_ggml_type_nbytes(enum t2_ggml_type type, uint64_t n)
{
    switch (type) {
    case T2_GGML_F32: return n > UINT64_MAX / 4 ? 0 : n * 4;
    case T2_GGML_F16:
    case T2_GGML_BF16: return n > UINT64_MAX / 2 ? 0 : n * 2;
    case T2_GGML_Q8_0: return n % T2_Q8_0_BLOCK ? 0 : n / T2_Q8_0_BLOCK * T2_Q8_0_BYTES;
    default: return 0;
    }
}

const char *t2_ggml_type_name(enum t2_ggml_type type)
{
    switch (type) {
    case T2_GGML_F32: return "F32";
    case T2_GGML_F16: return "F16";
    case T2_GGML_BF16: return "BF16";
    case T2_GGML_Q8_0: return "Q8_0";
    default: return "unknown";
    }
}
