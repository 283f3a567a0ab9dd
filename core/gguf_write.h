/* Small GGUF v3 writer: metadata key/values and float32 tensors stored as
 * F32, F16, BF16 or Q8_0. Output is written atomically (temp file, fsync,
 * rename) or into a memory buffer.
 *
 * Adding functions never abort: the first failure (duplicate key or
 * tensor name, bad shape, out of memory) is remembered and returned by
 * the final write, so callers can add everything and check once. */
#ifndef T2_GGUF_WRITE_H
#define T2_GGUF_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "gguf.h"

typedef struct t2_gguf_writer t2_gguf_writer;

t2_gguf_writer *t2_gguf_writer_new(void); /* NULL when out of memory */
void t2_gguf_writer_free(t2_gguf_writer *w);

/* Each returns 0, or -1 after recording the error. */
int t2_gguf_w_u32(t2_gguf_writer *w, const char *key, uint32_t v);
int t2_gguf_w_i32(t2_gguf_writer *w, const char *key, int32_t v);
int t2_gguf_w_f32(t2_gguf_writer *w, const char *key, float v);
int t2_gguf_w_bool(t2_gguf_writer *w, const char *key, bool v);
int t2_gguf_w_str(t2_gguf_writer *w, const char *key, const char *s);
int t2_gguf_w_arr_str(t2_gguf_writer *w, const char *key, const char *const *s, size_t n);
int t2_gguf_w_arr_f32(t2_gguf_writer *w, const char *key, const float *v, size_t n);
int t2_gguf_w_arr_i32(t2_gguf_writer *w, const char *key, const int32_t *v, size_t n);

/* A tensor of n_dims (1..4) dims in ggml order (dims[0] = row length)
 * from float32 data, converted to `type` when written. The data is
 * borrowed: it must stay valid until the write. Q8_0 needs dims[0] % 32 == 0. */
int t2_gguf_w_tensor(t2_gguf_writer *w, const char *name, enum t2_ggml_type type, uint32_t n_dims,
                     const uint64_t *dims, const float *data);
/* Same, but takes ownership of a malloc'd buffer (freed with the writer,
 * or at once on failure). For converted copies such as permuted rows. */
int t2_gguf_w_tensor_owned(t2_gguf_writer *w, const char *name, enum t2_ggml_type type,
                           uint32_t n_dims, const uint64_t *dims, float *data);

/* Writes path atomically: path.tmpXXXXXX in the same directory, fsync,
 * rename over path. On failure nothing is left behind. */
int t2_gguf_writer_write_file(t2_gguf_writer *w, const char *path, t2_err *err);
/* Writes into a malloc'd buffer (*buf, caller frees). */
int t2_gguf_writer_write_mem(t2_gguf_writer *w, uint8_t **buf, size_t *size, t2_err *err);

#endif
