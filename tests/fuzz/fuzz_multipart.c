/* multipart/form-data expert uploads (api/multipart.c). The input's first
 * line is the Content-Type header, the rest the body. Every part returned
 * must lie inside the body. */
#include <string.h>

#include "fuzz.h"
#include "multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size < 256 ? size : 256);
    if (!nl)
        return 0;
    char ct[257];
    size_t ct_len = (size_t)(nl - data);
    memcpy(ct, data, ct_len);
    ct[ct_len] = '\0';
    const uint8_t *body = nl + 1;
    size_t len = size - ct_len - 1;

    char boundary[T2_MP_MAX_BOUNDARY + 1];
    t2_api_err e;
    if (t2_mp_boundary(ct, boundary, sizeof boundary, &e) == 0)
        FUZZ_CHECK(strlen(boundary) >= 1 && strlen(boundary) <= T2_MP_MAX_BOUNDARY);
    t2_mp_part parts[T2_MP_MAX_PARTS];
    size_t n = 0;
    if (t2_mp_parse(ct, body, len, parts, T2_MP_MAX_PARTS, &n, &e) != 0) {
        FUZZ_CHECK(e.status == 400 || e.status == 415);
        return 0;
    }
    FUZZ_CHECK(n <= T2_MP_MAX_PARTS);
    for (size_t i = 0; i < n; i++) {
        const t2_mp_part *p = &parts[i];
        FUZZ_CHECK(fuzz_inside(p->name, p->name_len, body, len));
        FUZZ_CHECK(!p->filename || fuzz_inside(p->filename, p->filename_len, body, len));
        FUZZ_CHECK(!p->type || fuzz_inside(p->type, p->type_len, body, len));
        FUZZ_CHECK(fuzz_inside(p->data, p->len, body, len));
    }
    (void)t2_mp_find(parts, n, "file");
    return 0;
}
