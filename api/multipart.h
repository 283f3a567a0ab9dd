/* A small multipart/form-data parser (RFC 7578 / RFC 2046) over a body
 * held in memory: every part's form name, filename, content type and
 * bytes, as slices of the body. Bounds-checked throughout; fuzzable. */
#ifndef T2_MULTIPART_H
#define T2_MULTIPART_H

#include <stddef.h>
#include <stdint.h>

#include "api_error.h"

#define T2_MP_MAX_PARTS 16
#define T2_MP_MAX_HEADERS 16
#define T2_MP_MAX_HEADER_BYTES 8192
#define T2_MP_MAX_BOUNDARY 70

typedef struct t2_mp_part {
    const char *name; /* Content-Disposition name, not NUL-terminated */
    size_t name_len;
    const char *filename; /* NULL when the part is not a file */
    size_t filename_len;
    const char *type; /* the part's Content-Type, NULL when absent */
    size_t type_len;
    const uint8_t *data;
    size_t len;
} t2_mp_part;

/* The boundary of a "multipart/form-data; boundary=..." Content-Type into
 * out (cap > T2_MP_MAX_BOUNDARY). 415 when the type is not
 * multipart/form-data, 400 when the boundary is missing or invalid. */
int t2_mp_boundary(const char *content_type, char *out, size_t cap, t2_api_err *e);

/* Splits body into at most max parts (400 "invalid_multipart" on any
 * malformation: missing delimiters, header lines without a colon, too many
 * or too long headers, a part without Content-Disposition: form-data and a
 * name, more than max parts, no closing delimiter). */
int t2_mp_parse(const char *content_type, const uint8_t *body, size_t len, t2_mp_part *parts,
                size_t max, size_t *n, t2_api_err *e);

/* The first part with that form name, or NULL. */
const t2_mp_part *t2_mp_find(const t2_mp_part *parts, size_t n, const char *name);

#endif
