#include "safetensors.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"

/* A header larger than this is not a weights file we want to parse. */
#define ST_MAX_HEADER (100u * 1024u * 1024u)

size_t t2_st_dtype_size(enum t2_st_dtype dt)
{
    return dt == T2_ST_F32 ? 4 : 2;
}

static int parse_dtype(const char *s, enum t2_st_dtype *out)
{
    if (strcmp(s, "F32") == 0)
        *out = T2_ST_F32;
    else if (strcmp(s, "F16") == 0)
        *out = T2_ST_F16;
    else if (strcmp(s, "BF16") == 0)
        *out = T2_ST_BF16;
    else
        return -1;
    return 0;
}

static void free_parsed(t2_safetensors *st);

static int cmp_by_offset(const void *a, const void *b)
{
    const t2_st_tensor *x = a, *y = b;
    return x->data < y->data ? -1 : x->data > y->data;
}

static int parse_metadata(t2_safetensors *st, json_t *obj, t2_err *err)
{
    if (!json_is_object(obj))
        return t2_err_set(err, "__metadata__ is not an object");
    st->meta = calloc(json_object_size(obj) + 1, sizeof *st->meta);
    if (!st->meta)
        return t2_err_set(err, "out of memory");
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        if (!json_is_string(v))
            return t2_err_set(err, "__metadata__ value of '%s' is not a string", k);
        t2_st_meta *m = &st->meta[st->n_meta];
        m->key = strdup(k);
        m->value = strdup(json_string_value(v));
        st->n_meta++;
        if (!m->key || !m->value)
            return t2_err_set(err, "out of memory");
    }
    return 0;
}

static int parse_tensor(t2_st_tensor *t, const char *name, json_t *desc, const uint8_t *data,
                        uint64_t data_size, t2_err *err)
{
    if (!json_is_object(desc))
        return t2_err_set(err, "tensor '%s': entry is not an object", name);
    json_t *jd = json_object_get(desc, "dtype");
    json_t *js = json_object_get(desc, "shape");
    json_t *jo = json_object_get(desc, "data_offsets");
    if (!json_is_string(jd) || !json_is_array(js) || !json_is_array(jo) || json_array_size(jo) != 2)
        return t2_err_set(err, "tensor '%s': needs dtype, shape and data_offsets [begin, end]",
                          name);
    if (parse_dtype(json_string_value(jd), &t->dtype) != 0)
        return t2_err_set(err, "tensor '%s': unsupported dtype '%s' (F32, F16, BF16 are)", name,
                          json_string_value(jd));
    size_t nd = json_array_size(js);
    if (nd > T2_ST_MAX_DIMS)
        return t2_err_set(err, "tensor '%s': %zu dimensions (max %d)", name, nd, T2_ST_MAX_DIMS);
    t->n_dims = (int)nd;
    uint64_t n = 1;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(js, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return t2_err_set(err, "tensor '%s': shape entries must be non-negative integers",
                              name);
        uint64_t dim = (uint64_t)json_integer_value(d);
        if (dim != 0 && n > UINT64_MAX / 8 / dim)
            return t2_err_set(err, "tensor '%s': shape too large", name);
        t->shape[i] = dim;
        n *= dim;
    }
    t->n_elements = n;
    json_t *jb = json_array_get(jo, 0), *je = json_array_get(jo, 1);
    if (!json_is_integer(jb) || !json_is_integer(je) || json_integer_value(jb) < 0 ||
        json_integer_value(je) < json_integer_value(jb))
        return t2_err_set(err, "tensor '%s': invalid data_offsets", name);
    uint64_t begin = (uint64_t)json_integer_value(jb), end = (uint64_t)json_integer_value(je);
    if (end > data_size)
        return t2_err_set(
            err, "tensor '%s': data_offsets [%llu, %llu] past the end of the data (%llu bytes)",
            name, (unsigned long long)begin, (unsigned long long)end,
            (unsigned long long)data_size);
    if (end - begin != n * t2_st_dtype_size(t->dtype))
        return t2_err_set(err, "tensor '%s': %llu bytes for shape of %llu elements of %s", name,
                          (unsigned long long)(end - begin), (unsigned long long)n,
                          json_string_value(jd));
    t->name = strdup(name);
    if (!t->name)
        return t2_err_set(err, "out of memory");
    t->data = data + begin;
    t->nbytes = end - begin;
    return 0;
}

static int check_overlaps(const t2_safetensors *st, t2_err *err)
{
    for (size_t i = 1; i < st->n_tensors; i++) {
        const t2_st_tensor *a = &st->tensors[i - 1], *b = &st->tensors[i];
        if (a->data + a->nbytes > b->data)
            return t2_err_set(err, "tensors '%s' and '%s' overlap", a->name, b->name);
    }
    return 0;
}

static int parse_header(t2_safetensors *st, json_t *root, const uint8_t *data, uint64_t data_size,
                        t2_err *err)
{
    if (!json_is_object(root))
        return t2_err_set(err, "header is not a JSON object");
    st->tensors = calloc(json_object_size(root) + 1, sizeof *st->tensors);
    if (!st->tensors)
        return t2_err_set(err, "out of memory");
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v)
    {
        if (strcmp(k, "__metadata__") == 0) {
            if (parse_metadata(st, v, err) != 0)
                return -1;
            continue;
        }
        if (parse_tensor(&st->tensors[st->n_tensors], k, v, data, data_size, err) != 0)
            return -1;
        st->n_tensors++;
    }
    qsort(st->tensors, st->n_tensors, sizeof *st->tensors, cmp_by_offset);
    return check_overlaps(st, err);
}

int t2_st_parse(t2_safetensors *st, const uint8_t *buf, size_t size, const char *name, t2_err *err)
{
    memset(st, 0, sizeof *st);
    if (size < 8) {
        t2_err_set(err, "file too short for a safetensors header (%zu bytes)", size);
        return t2_err_prefix(err, name);
    }
    uint64_t hlen = t2_load_u64(buf);
    if (hlen > size - 8 || hlen > ST_MAX_HEADER) {
        t2_err_set(err, "header length %llu past the end of the file (%zu bytes)",
                   (unsigned long long)hlen, size);
        return t2_err_prefix(err, name);
    }
    json_error_t jerr;
    json_t *root = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        t2_err_set(err, "header is not valid JSON: %s (offset %d)", jerr.text, jerr.position);
        return t2_err_prefix(err, name);
    }
    int rc = parse_header(st, root, buf + 8 + hlen, size - 8 - hlen, err);
    json_decref(root);
    if (rc != 0) {
        free_parsed(st);
        return t2_err_prefix(err, name);
    }
    return 0;
}

int t2_st_open(t2_safetensors *st, const char *path, t2_err *err)
{
    memset(st, 0, sizeof *st);
    t2_mapped_file mf;
    if (t2_mapped_file_open(&mf, path, err) != 0)
        return -1;
    if (t2_st_parse(st, mf.data, mf.size, path, err) != 0) {
        t2_mapped_file_close(&mf);
        return -1;
    }
    st->file = mf; /* the tensors point into it: it lives as long as st */
    return 0;
}

static void free_parsed(t2_safetensors *st)
{
    for (size_t i = 0; i < st->n_tensors; i++)
        free(st->tensors[i].name);
    free(st->tensors);
    for (size_t i = 0; i < st->n_meta; i++) {
        free(st->meta[i].key);
        free(st->meta[i].value);
    }
    free(st->meta);
    st->tensors = NULL;
    st->meta = NULL;
    st->n_tensors = st->n_meta = 0;
}

void t2_st_close(t2_safetensors *st)
{
    free_parsed(st);
    t2_mapped_file_close(&st->file);
}

const t2_st_tensor *t2_st_find(const t2_safetensors *st, const char *name)
{
    for (size_t i = 0; i < st->n_tensors; i++)
        if (strcmp(st->tensors[i].name, name) == 0)
            return &st->tensors[i];
    return NULL;
}

const char *t2_st_meta_get(const t2_safetensors *st, const char *key)
{
    for (size_t i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta[i].key, key) == 0)
            return st->meta[i].value;
    return NULL;
}

void t2_st_to_f32(const t2_st_tensor *t, float *dst)
{
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case T2_ST_F32: memcpy(dst, p, t->n_elements * 4); break;
    case T2_ST_F16:
        for (uint64_t i = 0; i < t->n_elements; i++)
            dst[i] = t2_f16_to_f32(t2_load_u16(p + 2 * i));
        break;
    case T2_ST_BF16:
        for (uint64_t i = 0; i < t->n_elements; i++)
            dst[i] = t2_bf16_to_f32(t2_load_u16(p + 2 * i));
        break;
    }
}
