/* GGUF (version 2 and 3) reader: metadata key/values and tensor directory,
 * validated against the buffer bounds before anything is trusted.
 * The parser works on a memory buffer so it can be fuzzed; t2_gguf_open
 * maps a file and parses it. All views point into the buffer. */
#ifndef T2_GGUF_H
#define T2_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "mapped_file.h"

enum t2_gguf_vtype {
    T2_GGUF_UINT8 = 0,
    T2_GGUF_INT8 = 1,
    T2_GGUF_UINT16 = 2,
    T2_GGUF_INT16 = 3,
    T2_GGUF_UINT32 = 4,
    T2_GGUF_INT32 = 5,
    T2_GGUF_FLOAT32 = 6,
    T2_GGUF_BOOL = 7,
    T2_GGUF_STRING = 8,
    T2_GGUF_ARRAY = 9,
    T2_GGUF_UINT64 = 10,
    T2_GGUF_INT64 = 11,
    T2_GGUF_FLOAT64 = 12,
};

/* ggml tensor types t2 understands (values as in ggml). */
enum t2_ggml_type {
    T2_GGML_F32 = 0,
    T2_GGML_F16 = 1,
    T2_GGML_Q8_0 = 8,
    T2_GGML_BF16 = 30,
};

/* A length-delimited string inside the buffer (not NUL-terminated). */
typedef struct t2_gguf_str {
    const char *ptr;
    uint64_t len;
} t2_gguf_str;

typedef struct t2_gguf_kv {
    t2_gguf_str key;
    enum t2_gguf_vtype type;
    union {
        uint64_t u64; /* UINT8..UINT64, BOOL */
        int64_t i64;  /* INT8..INT64 (sign-extended) */
        double f64;   /* FLOAT32, FLOAT64 */
        t2_gguf_str str;
    } v;
    /* ARRAY only: element type and count. Numeric elements stay in the
     * buffer at arr_data (little-endian, possibly unaligned: read with
     * t2_gguf_arr_* helpers). String arrays are indexed into arr_strs
     * (allocated by the parser, arr_count entries). Nested arrays are
     * rejected. */
    enum t2_gguf_vtype arr_type;
    uint64_t arr_count;
    const uint8_t *arr_data;
    t2_gguf_str *arr_strs;
} t2_gguf_kv;

typedef struct t2_gguf_tensor {
    t2_gguf_str name;
    uint32_t n_dims;
    uint64_t dims[4]; /* ggml order: dims[0] is the fastest-varying (row length) */
    uint64_t n_elements;
    enum t2_ggml_type type;
    uint64_t offset;     /* relative to the data section */
    const uint8_t *data; /* inside the buffer, bounds-checked */
    uint64_t nbytes;
} t2_gguf_tensor;

typedef struct t2_gguf {
    t2_mapped_file file; /* only set by t2_gguf_open */
    const uint8_t *buf;
    size_t size;
    uint32_t version;
    uint64_t n_kv;
    t2_gguf_kv *kv;
    uint64_t n_tensors;
    t2_gguf_tensor *tensors;
    uint64_t alignment;
    uint64_t data_offset; /* start of the tensor data section in buf */
} t2_gguf;

/* Parses buf (not copied; must outlive g). `name` is used in messages. */
int t2_gguf_parse(t2_gguf *g, const uint8_t *buf, size_t size, const char *name, t2_err *err);
int t2_gguf_open(t2_gguf *g, const char *path, t2_err *err);
void t2_gguf_close(t2_gguf *g);

const t2_gguf_kv *t2_gguf_find(const t2_gguf *g, const char *key);
const t2_gguf_tensor *t2_gguf_find_tensor(const t2_gguf *g, const char *name);

/* Typed lookups: return false if missing or of an incompatible type.
 * Integer getters accept any integer type whose value fits. */
bool t2_gguf_get_u64(const t2_gguf *g, const char *key, uint64_t *out);
bool t2_gguf_get_u32(const t2_gguf *g, const char *key, uint32_t *out);
bool t2_gguf_get_f32(const t2_gguf *g, const char *key, float *out);
bool t2_gguf_get_bool(const t2_gguf *g, const char *key, bool *out);
/* Returns a malloc'd NUL-terminated copy, or NULL if missing / not a string. */
char *t2_gguf_get_str(const t2_gguf *g, const char *key);

/* Array element readers (caller checks i < arr_count and arr_type). */
float t2_gguf_arr_f32(const t2_gguf_kv *kv, uint64_t i);
int64_t t2_gguf_arr_int(const t2_gguf_kv *kv, uint64_t i); /* any integer element type */

/* Bytes for n elements of a ggml type; 0 if unknown type or n not a
 * multiple of the block size. */
uint64_t t2_ggml_type_nbytes(enum t2_ggml_type type, uint64_t n);
const char *t2_ggml_type_name(enum t2_ggml_type type);

#endif
