/* safetensors reader: 8-byte little-endian header length, JSON header
 * {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}, then
 * the data. Everything is validated against the buffer before use. */
#ifndef T2_SAFETENSORS_H
#define T2_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "mapped_file.h"

enum t2_st_dtype {
    T2_ST_F32 = 0,
    T2_ST_F16 = 1,
    T2_ST_BF16 = 2,
};

#define T2_ST_MAX_DIMS 8

typedef struct t2_st_tensor {
    char *name;
    enum t2_st_dtype dtype;
    int n_dims;
    uint64_t shape[T2_ST_MAX_DIMS];
    uint64_t n_elements;
    const uint8_t *data; /* inside the buffer */
    uint64_t nbytes;
} t2_st_tensor;

typedef struct t2_st_meta {
    char *key;
    char *value;
} t2_st_meta;

typedef struct t2_safetensors {
    t2_mapped_file file; /* only set by t2_st_open */
    size_t n_tensors;
    t2_st_tensor *tensors; /* sorted by data offset */
    size_t n_meta;
    t2_st_meta *meta;
} t2_safetensors;

/* Parses buf (not copied, must outlive st); name is used in messages. */
int t2_st_parse(t2_safetensors *st, const uint8_t *buf, size_t size, const char *name, t2_err *err);
int t2_st_open(t2_safetensors *st, const char *path, t2_err *err);
void t2_st_close(t2_safetensors *st);

const t2_st_tensor *t2_st_find(const t2_safetensors *st, const char *name);
const char *t2_st_meta_get(const t2_safetensors *st, const char *key); /* NULL if absent */
size_t t2_st_dtype_size(enum t2_st_dtype dt);
/* Converts a tensor's elements to float32 (dst holds n_elements). */
void t2_st_to_f32(const t2_st_tensor *t, float *dst);

#endif
